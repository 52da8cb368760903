"""`ns-export scene-graph` through nerfstudio's real console script; the stock subcommands unchanged."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
STOCK = ("pointcloud", "tsdf", "poisson", "marching-cubes", "cameras", "gaussian-splat")


def _env(**extra: str) -> dict[str, str]:
    """Environment of the subprocesses: fixed width, and libusb for open3d where the system has none.

    nerfstudio's exporter imports open3d, whose binary needs libusb-1.0.so.0 (Debian: libusb-1.0-0); the
    test extra's libusb-package ships the library, preloaded here so the test runs on bare machines too.
    """
    env = {key: value for key, value in os.environ.items() if key != "RELATIONFIELD_NS_EXPORT"}
    env.update(COLUMNS="100", OMP_NUM_THREADS="1", **extra)
    if ctypes.util.find_library("usb-1.0") is None:
        import libusb_package

        env["LD_PRELOAD"] = str(Path(libusb_package.__file__).parent / "libusb-1.0.so")
    return env


def _run(args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=_env(**extra), timeout=600)


def test_help_lists_scene_graph_beside_the_stock_subcommands():
    result = _run([str(BIN / "ns-export"), "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    for name in (*STOCK, "scene-graph"):
        assert f"• {name}" in result.stdout
    result = _run([str(BIN / "ns-export"), "scene-graph", "--help"])
    assert result.returncode == 0 and "--load-config" in result.stdout and "--all-pairs" in result.stdout


def test_stock_subcommand_help_is_unchanged_and_the_shim_can_be_turned_off():
    shimmed = _run([str(BIN / "ns-export"), "pointcloud", "--help"])
    stock = _run(
        [
            sys.executable,
            "-c",
            "import sys, tyro; from nerfstudio.scripts import exporter; "
            "tyro.extras.set_accent_color('bright_yellow'); tyro.cli(exporter.Commands, prog=sys.argv[1])",
            str(BIN / "ns-export"),
            "pointcloud",
            "--help",
        ]
    )
    assert shimmed.returncode == 0 and stock.returncode == 0, shimmed.stderr[-2000:] + stock.stderr[-2000:]
    assert "--normal-method" in stock.stdout
    assert shimmed.stdout == stock.stdout
    off = _run([str(BIN / "ns-export"), "--help"], RELATIONFIELD_NS_EXPORT="0")
    assert off.returncode == 0 and "• pointcloud" in off.stdout and "scene-graph" not in off.stdout


def test_a_bad_scene_graph_call_exits_non_zero_with_a_message(tmp_path):
    result = _run(
        [str(BIN / "ns-export"), "scene-graph", "--load-config", str(tmp_path / "missing.yml"), "--output-dir", "x"]
    )
    assert result.returncode != 0
    assert "missing.yml" in result.stderr


@pytest.mark.slow
def test_scene_graph_writes_the_files_of_relationfield_export(trained_run, tmp_path):
    common = ["--load-config", str(trained_run), "--max-views", "6"]
    ours = _run([str(BIN / "relationfield"), "export", "scene-graph", *common, "--output-dir", str(tmp_path / "a")])
    theirs = _run([str(BIN / "ns-export"), "scene-graph", *common, "--output-dir", str(tmp_path / "b")])
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {"scene_graph.json", "scene_graph.png", "points.ply"} <= set(files)
    assert files == sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file())
    nodes = [json.loads((tmp_path / d / "scene_graph.json").read_text())["nodes"] for d in ("a", "b")]
    assert len(nodes[0]) > 0
    assert [(n["id"], n["label"]) for n in nodes[0]] == [(n["id"], n["label"]) for n in nodes[1]]
