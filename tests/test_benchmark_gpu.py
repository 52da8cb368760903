"""scripts/benchmark_gpu.py: refuses to run without CUDA unless --dry-run, and its dry run measures both methods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, also on a machine with a GPU
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_without_cuda_it_says_so_and_exits_non_zero(tmp_path):
    done = _run("--output", str(tmp_path / "b"))
    assert done.returncode == 2, done.stderr
    assert "no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "b").exists()  # nothing written


@pytest.mark.slow
def test_dry_run_trains_both_methods_and_writes_the_results(tmp_path):
    done = _run("--output", str(tmp_path), "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["device"] == "cpu" and results["steps"] == 3
    for name in ("relationfield", "nerfacto"):
        assert results[name]["step_seconds"] > 0 and results[name]["peak_gpu_memory_mib"] is None
    assert results["step_time_ratio"] == pytest.approx(
        results["relationfield"]["step_seconds"] / results["nerfacto"]["step_seconds"]
    )
    assert len(list(tmp_path.glob("runs/*/*/*/nerfstudio_models/step-*.ckpt"))) == 2  # both trained to the end


def test_the_capture_is_reused_only_with_the_same_settings_and_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import benchmark_gpu

    args = benchmark_gpu.Args(output=tmp_path, frames=3, resolution="32x24", seed=0)
    capture = benchmark_gpu._capture(args)
    made = (capture / "transforms.json").stat().st_mtime_ns
    assert benchmark_gpu._capture(args) == capture and (capture / "transforms.json").stat().st_mtime_ns == made
    stamp = capture / "benchmark_capture.json"
    stamp.write_text(stamp.read_text().replace('"code": "', '"code": "older-'))  # made by other code
    benchmark_gpu._capture(args)
    assert (capture / "transforms.json").stat().st_mtime_ns != made
    assert json.loads(stamp.read_text())["code"] == benchmark_gpu._capture_code_hash()
