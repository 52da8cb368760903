"""Point-overlap matching of predicted nodes to ground-truth objects (`relationfield eval --matching points`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from relationfield.cli import entrypoint
from relationfield.errors import UserError
from relationfield.evaluation import evaluate
from relationfield.evaluation.point_matching import match_by_points, overlap_matrix
from relationfield.scene_graph.ply import write_ply


def grid(lo, hi, step=0.02) -> np.ndarray:
    """Points on a regular grid over the top face (z = hi[2]) of a box: a surface, as scans and exports have."""
    xs, ys = np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step)
    x, y = np.meshgrid(xs, ys)
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, hi[2])], axis=1)


TABLE = grid((0.0, 0.0, 0.0), (1.0, 1.0, 0.75))
CHAIR = grid((0.6, 0.6, 0.0), (1.0, 1.0, 0.45))  # pushed under the table: its box lies inside the table's


def test_overlap_of_identical_half_and_disjoint_surfaces():
    gt_points = np.concatenate([TABLE, CHAIR])
    gt_ids = np.r_[np.full(len(TABLE), 10), np.full(len(CHAIR), 20)]
    nodes = np.concatenate([TABLE + [0.0, 0.0, 0.01], CHAIR + [5.0, 0.0, 0.0]])  # node 3 is far away
    node_ids = np.r_[np.full(len(TABLE), 1), np.full(len(CHAIR), 3)]
    overlap = overlap_matrix(nodes, node_ids, gt_points, gt_ids, [1, 3], [10, 20], radius=0.03)
    assert overlap[0, 0] == pytest.approx(1.0)  # the same surface, 1 cm off
    assert overlap[0, 1] == 0.0 and overlap[1].max() == 0.0
    # Half the table: a = |half| (all its points are on the table), b = the table points within 3 cm of it (the
    # half and one more grid column), over |half| + |table|: about 2/3.
    half = TABLE[TABLE[:, 0] < 0.5]
    overlap = overlap_matrix(half, np.full(len(half), 2), gt_points, gt_ids, [2], [10, 20], radius=0.03)
    column = len(np.unique(TABLE[:, 1]))
    expected = (2 * len(half) + column) / (len(half) + len(TABLE))
    assert overlap[0, 0] == pytest.approx(expected) and overlap[0, 1] == 0.0


def test_points_match_a_chair_under_a_table_that_boxes_confuse():
    gt_points = np.concatenate([TABLE, CHAIR])
    gt_ids = np.r_[np.full(len(TABLE), 10), np.full(len(CHAIR), 20)]
    nodes = np.concatenate([TABLE[TABLE[:, 0] < 0.55], CHAIR])  # the table node misses the part over the chair
    node_ids = np.r_[np.full(int((TABLE[:, 0] < 0.55).sum()), 1), np.full(len(CHAIR), 2)]
    matches = match_by_points([1, 2], [10, 20], (nodes, node_ids, gt_points, gt_ids), min_overlap=0.1)
    assert {(m.node_id, m.gt_id) for m in matches} == {(1, 10), (2, 20)}
    assert all(0.1 <= m.iou <= 1.0 for m in matches)
    assert match_by_points([1, 2], [10, 20], (nodes, node_ids, gt_points, gt_ids), min_overlap=0.99) == [
        m for m in matches if m.iou >= 0.99
    ]
    with pytest.raises(UserError, match="empty"):
        match_by_points([1], [10], (nodes, node_ids, np.zeros((0, 3)), np.zeros(0)), min_overlap=0.1)


def scene(tmp_path: Path) -> tuple[Path, Path]:
    """A prediction whose table node misses the table's half over the chair and whose chair node has a box like
    the table's (a stray point), with the ground truth."""
    table_box = {"min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.75]}
    truth = {
        "objects": [
            {"id": 10, "label": "table", "aabb": table_box},
            {"id": 20, "label": "chair", "aabb": {"min": [0.6, 0.6, 0.0], "max": [1.0, 1.0, 0.45]}},
        ],
        "relationships": [[20, 10, "close by"]],
    }
    scores = [["chair", 0.6], ["table", 0.4]]
    nodes = [
        {
            "id": 1,
            "label": "table",
            "label_scores": [["table", 0.9], ["chair", 0.1]],
            "aabb": {"min": [0.0, 0.0, 0.0], "max": [0.55, 1.0, 0.75]},
        },
        {"id": 2, "label": "chair", "label_scores": scores, "aabb": {"min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.7]}},
    ]
    links = [{"source": 2, "target": 1, "predicate": "close by", "score": 0.9,
              "predicate_scores": [["close by", 0.9], ["none", 0.1]]}]  # fmt: skip
    pred = {"format": "relationfield-scene-graph", "version": 1, "directed": True, "multigraph": False,
            "graph": {}, "nodes": nodes, "links": links}  # fmt: skip
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gt_path, pred_path = tmp_path / "gt" / "scene_graph.json", tmp_path / "pred" / "scene_graph.json"
    gt_path.write_text(json.dumps(truth))
    pred_path.write_text(json.dumps(pred))
    grey = lambda n: np.full((n, 3), 128, dtype=np.uint8)  # noqa: E731
    gt_ids = np.r_[np.full(len(TABLE), 10), np.full(len(CHAIR), 20)]
    write_ply(tmp_path / "gt" / "points.ply", np.concatenate([TABLE, CHAIR]), grey(len(gt_ids)), gt_ids)
    seen = TABLE[TABLE[:, 0] < 0.55]
    node_ids = np.r_[np.full(len(seen), 1), np.full(len(CHAIR), 2)]
    write_ply(tmp_path / "pred" / "points.ply", np.concatenate([seen, CHAIR]), grey(len(node_ids)), node_ids)
    return pred_path, gt_path


def test_eval_matches_by_points_where_boxes_fail(tmp_path: Path, capsys):
    pred_path, gt_path = scene(tmp_path)
    pred, gt = json.loads(pred_path.read_text()), json.loads(gt_path.read_text())
    by_boxes = evaluate(pred, gt)
    assert [(m.node_id, m.gt_id) for m in by_boxes.matches] == [(2, 10)]  # the chair node's box took the table
    entrypoint(["eval", "--pred", str(pred_path), "--gt", str(gt_path), "--matching", "points"])
    report = json.loads((pred_path.parent / "eval.json").read_text())
    assert sorted((m["node_id"], m["gt_id"]) for m in report["matches"]) == [(1, 10), (2, 20)]
    assert report["settings"]["matching"] == "points"
    assert report["recall"]["predicate"]["1"] == 1.0
    capsys.readouterr()
    (gt_path.parent / "points.ply").unlink()
    with pytest.raises(SystemExit):
        entrypoint(["eval", "--pred", str(pred_path), "--gt", str(gt_path), "--matching", "points"])
    assert "ground truth's points.ply" in capsys.readouterr().err
