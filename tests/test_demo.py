"""`relationfield demo`: a smoke run with few steps, reuse of finished stages, and its errors."""

from __future__ import annotations

import json

import pytest

from relationfield.cli import entrypoint

SMALL = ["--steps", "12", "--frames", "8", "--resolution", "64x48"]


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    entrypoint(["demo", "--output", str(out), *SMALL])
    report = capsys.readouterr().out
    config = out / "runs" / "demo" / "relationfield-lite" / "run" / "config.yml"
    for path in (config, out / "scene_graph" / "scene_graph.json", out / "scene_graph" / "scene_graph.png"):
        assert path.is_file(), path
        assert str(path) in report
    for metric in ("Object R@1 / R@5 / R@10", "Reference R@1 / R@3", "Reference, support predicates", "None precision"):
        assert metric in report
    assert f"ns-viewer --load-config {config} --viewer.websocket-host 127.0.0.1" in report
    evaluation = json.loads((out / "scene_graph" / "eval.json").read_text())
    assert evaluation["counts"]["gt_objects"] > 0
    # the demo scores every pair, so Reference R@k and none precision see the far objects too
    graph = json.loads((out / "scene_graph" / "scene_graph.json").read_text())
    count = len(graph["nodes"])
    assert len(graph["links"]) == count * (count - 1)

    # A second run reuses the capture, the labels and the trained run.
    checkpoint = next((config.parent / "nerfstudio_models").glob("*.ckpt"))
    stamp = checkpoint.stat().st_mtime_ns
    entrypoint(["demo", "--output", str(out), *SMALL])
    again = capsys.readouterr().out
    assert "reusing the trained run" in again and "reusing the capture" in again
    assert checkpoint.stat().st_mtime_ns == stamp


def test_demo_refuses_a_directory_made_with_other_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"steps": 1}))
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["demo", "--output", str(out), *SMALL])
    assert exit_info.value.code == 2
    assert "other settings" in capsys.readouterr().err


def test_demo_refuses_a_foreign_non_empty_directory(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["demo", "--output", str(tmp_path), *SMALL])
    assert exit_info.value.code == 2
    assert "not a demo directory" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_rejects_zero_steps(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["demo", "--output", str(tmp_path / "d"), "--steps", "0"])
    assert exit_info.value.code == 2
    assert "--steps" in capsys.readouterr().err
