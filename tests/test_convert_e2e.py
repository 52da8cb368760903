"""Converted scans end to end: `relationfield convert` -> `label-gt` -> relationfield-lite -> export -> eval.

Each converter's tiny fixture (written in the dataset's own on-disk format by its converter test) is converted
through the command line, labelled from its ground truth, trained for a few steps, exported and scored: the
captures are ones the rest of the package works on, not only files that look right.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import lite_config, train_on_one_thread

from relationfield.cli import entrypoint

pytestmark = pytest.mark.slow

STEPS = 12


def _rscan(root: Path) -> tuple[list[str], int]:
    from test_convert_rscan import SCAN_ID, _write_relationships, _write_scan

    scan = root / SCAN_ID
    _write_scan(scan)
    relationships = _write_relationships(root / "relationships.json")
    return ["3rscan", "--scan", str(scan), "--3dssg", str(relationships)], 3


def _scannetpp(root: Path) -> tuple[list[str], int]:
    from test_convert_scannetpp import write_scene

    return ["scannetpp", "--scene", str(write_scene(root))], 3


def _replica(root: Path) -> tuple[list[str], int]:
    from test_convert_replica import write_scene

    return ["replica", "--scene", str(write_scene(root))], 3


CONVERTERS: dict[str, Callable[[Path], tuple[list[str], int]]] = {
    "3rscan": _rscan,
    "replica": _replica,
    "scannetpp": _scannetpp,
}
"""Per dataset: write its fixture under a folder, return the `relationfield convert` arguments and the number of
ground-truth objects the capture must have."""


def _train(capture: Path, runs: Path) -> Path:
    """relationfield-lite for STEPS steps on the capture's label store; returns the run's config.yml."""
    config = lite_config(capture, capture / "relationfield", runs, STEPS)
    config.pipeline.datamanager.dataparser.eval_mode = "all"  # a fixture of 3 frames has none to spare
    return train_on_one_thread(config)


@pytest.mark.parametrize("dataset", sorted(CONVERTERS))
def test_converted_capture_trains_exports_and_scores(dataset: str, tmp_path: Path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    arguments, num_objects = CONVERTERS[dataset](source)
    capture = tmp_path / "capture"
    entrypoint(["convert", *arguments, "--output", str(capture)])
    truth = json.loads((capture / "ground_truth" / "scene_graph.json").read_text())
    assert len(truth["objects"]) == num_objects

    entrypoint(["label-gt", "--data", str(capture)])
    manifest = json.loads((capture / "relationfield" / "manifest.json").read_text())
    assert manifest["frames"]["names"]  # every frame labelled from the ray-cast instance maps

    config = _train(capture, tmp_path / "runs")
    assert sorted((config.parent / "nerfstudio_models").glob("*.ckpt"))

    graph = tmp_path / "graph"
    export = ["export", "scene-graph", "--load-config", str(config), "--output-dir", str(graph), "--all-pairs"]
    entrypoint([*export, "--label-top-k", "0", "--predicate-top-k", "0"])  # every score, as the 3DSSG runner keeps
    exported = json.loads((graph / "scene_graph.json").read_text())
    assert all(len(node["label_scores"]) == 160 for node in exported["nodes"])  # 3DSSG's classes
    assert all(len(link["predicate_scores"]) == 27 for link in exported["links"])  # 26 predicates and "none"
    truth_file = capture / "ground_truth" / "scene_graph.json"
    entrypoint(["eval", "--pred", str(graph / "scene_graph.json"), "--gt", str(truth_file)])
    report = json.loads((graph / "eval.json").read_text())
    assert report["counts"]["gt_objects"] == num_objects
    assert report["counts"]["gt_triplets"] == len(truth["relationships"])
    assert report["counts"]["pred_nodes"] >= 1
    assert 0.0 <= report["recall"]["object"]["10"] <= 1.0
    assert "Object R@1" in capsys.readouterr().out
    # The capture's points on the annotated objects match nodes by point overlap too.
    assert (capture / "ground_truth" / "points.ply").is_file()
    entrypoint(["eval", "--pred", str(graph / "scene_graph.json"), "--gt", str(truth_file), "--matching", "points"])
    by_points = json.loads((graph / "eval.json").read_text())
    assert by_points["settings"]["matching"] == "points"
    assert by_points["counts"]["gt_objects"] == num_objects
