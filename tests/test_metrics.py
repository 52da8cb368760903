"""Tests for relationfield.evaluation: scene-graph evaluation (3DSSG-style recall@k).

Every expected recall below is worked out by hand in the comments and asserted exactly.
Recalls are ``hits / total`` computed by Python's correctly rounded division, so ``== 3 / 5`` is exact.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relationfield.errors import UserError
from relationfield.evaluation import (
    OBJECT_KS,
    PREDICATE_KS,
    RELATION_KS,
    EvalResult,
    aabb_iou,
    evaluate,
    evaluate_files,
    rank_with_ties,
)

PREDICATES = ("supported by", "standing on", "close by", "bigger than", "smaller than", "higher than", "lower than")

# ------------------------------------------------------------------------------------------------
# Builders


def box(lo: Sequence[float], hi: Sequence[float]) -> dict[str, list[float]]:
    return {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}


def node(node_id: int, aabb: dict[str, list[float]] | None, label_scores: list[list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node_id,
        "label": label_scores[0][0] if label_scores else "",
        "label_scores": label_scores,
        "centroid": [0.0, 0.0, 0.0],
        "point_count": 10,
    }
    if aabb is not None:
        out["aabb"] = aabb
    return out


def link(source: int, target: int, predicate_scores: list[list[Any]]) -> dict[str, Any]:
    return {
        "source": source,
        "target": target,
        "predicate": predicate_scores[0][0],
        "score": predicate_scores[0][1],
        "predicate_scores": predicate_scores,
    }


def prediction(nodes: list[dict[str, Any]], links: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "format": "relationfield-scene-graph",
        "version": 1,
        "directed": True,
        "multigraph": False,
        "nodes": list(nodes),
        "links": list(links),
    }


def gt_objects(
    objects: list[tuple[int, str, dict[str, list[float]]]], relationships: list[list[Any]]
) -> dict[str, Any]:
    return {
        "objects": [{"id": i, "label": label, "aabb": aabb, "structural": False} for i, label, aabb in objects],
        "relationships": relationships,
    }


def perfect_prediction(gt: dict[str, Any]) -> dict[str, Any]:
    """The ground truth as a prediction: same boxes, GT label at 1.0, GT predicates at 1.0, others lower."""
    nodes = [node(100 + o["id"], o["aabb"], [[o["label"], 1.0], ["zzz-other", 0.5]]) for o in gt["objects"]]
    by_pair: dict[tuple[int, int], set[str]] = {}
    for s, o, p in gt["relationships"]:
        by_pair.setdefault((s, o), set()).add(p)
    links = []
    for (s, o), predicates in by_pair.items():
        scores = [[p, 1.0] for p in sorted(predicates)]
        scores += [[p, 0.1] for p in PREDICATES if p not in predicates] + [["none", 0.0]]
        links.append(link(100 + s, 100 + o, scores))
    return prediction(nodes, links)


CHAIR = box([0, 0, 0], [1, 1, 1])
TABLE = box([2, 0, 0], [4, 2, 1])
LAMP = box([5, 5, 0], [5.5, 5.5, 2])
CUP = box([2.5, 0.5, 1], [2.7, 0.7, 1.2])


def main_case() -> tuple[dict[str, Any], dict[str, Any]]:
    """4 GT objects, 3 predicted nodes (the lamp is not predicted), 5 GT triplets."""
    gt = gt_objects(
        [(1, "chair", CHAIR), (2, "table", TABLE), (3, "lamp", LAMP), (4, "cup", CUP)],
        [
            [1, 2, "close by"],  # pair (1, 2) has two predicates
            [1, 2, "smaller than"],
            [2, 1, "bigger than"],  # its link's top predicate is "none"
            [3, 2, "standing on"],  # the lamp is unmatched
            [4, 2, "standing on"],  # both matched, but no link 30 -> 20
        ],
    )
    pred = prediction(
        [
            # IoU 1 with the chair; "chair" ties with "stool" at 0.6 -> rank 2 (ties against us)
            node(10, CHAIR, [["chair", 0.6], ["stool", 0.6], ["table", 0.1]]),
            # half the table's height: IoU 2 / 4 = 0.5; "Table " normalises to "table", rank 1
            node(20, box([2, 0, 0], [4, 2, 0.5]), [["Table ", 0.9], ["desk", 0.05]]),
            # IoU 1 with the cup, rank 1
            node(30, CUP, [["cup", 0.7], ["mug", 0.3]]),
        ],
        [
            link(10, 20, [["close by", 0.7], ["smaller than", 0.2], ["none", 0.1]]),
            link(20, 10, [["none", 0.8], ["bigger than", 0.15], ["close by", 0.05]]),
        ],
    )
    return pred, gt


# ------------------------------------------------------------------------------------------------
# Helpers


def test_rank_with_ties_counts_ties_against_us() -> None:
    scores = [("chair", 0.5), ("stool", 0.5), ("table", 0.1)]
    assert rank_with_ties(scores, "chair") == 2  # stool ties with it
    assert rank_with_ties(scores, "stool") == 2
    assert rank_with_ties(scores, "table") == 3
    assert rank_with_ties(scores, " Chair ") == 2  # names are normalised
    assert rank_with_ties(scores, "sofa") is None
    assert rank_with_ties([], "sofa") is None
    assert rank_with_ties([("chair", 0.9)], "chair") == 1
    # a name listed twice keeps its best score: chair 0.6 > x 0.5
    assert rank_with_ties([("chair", 0.2), ("CHAIR", 0.6), ("x", 0.5)], "chair") == 1


def test_aabb_iou() -> None:
    assert aabb_iou([0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]) == 1.0
    assert aabb_iou([0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0.5]) == 0.5
    # overlap 1 x 1 x 1 = 1; union 8 + 8 - 1 = 15
    assert aabb_iou([0, 0, 0], [2, 2, 2], [1, 1, 1], [3, 3, 3]) == pytest.approx(1 / 15)
    assert aabb_iou([0, 0, 0], [1, 1, 1], [1, 0, 0], [2, 1, 1]) == 0.0  # touching
    assert aabb_iou([0, 0, 0], [1, 1, 1], [5, 5, 5], [6, 6, 6]) == 0.0
    assert aabb_iou([0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]) == 0.0  # no volume at all


# ------------------------------------------------------------------------------------------------
# The main hand-made case


def test_main_case_recalls_exact() -> None:
    pred, gt = main_case()
    result = evaluate(pred, gt)

    # Objects: chair rank 2 (tie), table rank 1, lamp unmatched (miss), cup rank 1.
    assert result.object_recall == {1: 2 / 4, 5: 3 / 4, 10: 3 / 4}

    # Predicates (5 triplets):
    #   (1,2,close by)     link 10->20, rank 1
    #   (1,2,smaller than) link 10->20, rank 2   (a two-predicate pair: only one is in the top 1)
    #   (2,1,bigger than)  link 20->10 whose top is "none": "none" 0.8 beats it -> rank 2
    #   (3,2,standing on)  lamp unmatched -> miss
    #   (4,2,standing on)  no link 30->20 -> miss
    assert result.predicate_recall == {1: 1 / 5, 3: 3 / 5, 5: 3 / 5}

    # Relations, link 10->20: subject {chair .6, stool .6, table .1} x object {table .9, desk .05}
    # x predicates {close by .7, smaller than .2} ("none" is not a candidate):
    #   chair-table-close by   = .6*.9*.7 = .378, tied by stool-table-close by        -> rank 2
    #   chair-table-smaller    = .6*.9*.2 = .108, beaten/tied by .378, .378, .108      -> rank 4
    # link 20->10: subject {table .9, desk .05} x object {chair .6, stool .6, table .1}
    # x {bigger than .15, close by .05}:
    #   table-chair-bigger than = .081, tied by table-stool-bigger than               -> rank 2
    # the lamp and cup triplets miss.  Ranks 2, 4, 2, -, -
    assert result.relation_recall == {1: 0 / 5, 50: 3 / 5, 100: 3 / 5}

    assert result.num_gt_objects == 4
    assert result.num_matched_objects == 3
    assert result.num_gt_triplets == 5
    assert result.num_gt_pairs == 4
    assert result.num_evaluated_links == 2  # 10->20 and 20->10
    assert result.num_pred_nodes == 3
    assert result.num_pred_links == 2
    assert result.num_ignored_objects == 0
    assert result.num_ignored_triplets == 0
    assert result.mean_iou == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert [(m.gt_id, m.node_id) for m in result.matches] == [(1, 10), (2, 20), (4, 30)]
    assert result.matching == "iou" and result.gt_format == "objects"


def test_predicate_recall_by_predicate_and_its_mean() -> None:
    # The main case's predicate ranks: close by 1, smaller than 2, bigger than 2, standing on miss, miss.
    result = evaluate(*main_case())
    assert result.predicate_by_predicate == {
        "bigger than": (1, {1: 0.0, 3: 1.0, 5: 1.0}),
        "close by": (1, {1: 1.0, 3: 1.0, 5: 1.0}),
        "smaller than": (1, {1: 0.0, 3: 1.0, 5: 1.0}),
        "standing on": (2, {1: 0.0, 3: 0.0, 5: 0.0}),
    }
    assert result.mean_predicate_recall == {1: 1 / 4, 3: 3 / 4, 5: 3 / 4}  # each predicate counts once
    data = result.to_json()["recall"]
    assert data["predicate_mean"] == {"1": 0.25, "3": 0.75, "5": 0.75}
    assert data["predicate_by_predicate"]["standing on"] == {"triplets": 2, "recall": {"1": 0.0, "3": 0.0, "5": 0.0}}
    text = result.to_markdown()
    assert "| Predicate, mean over predicates R@1 / R@3 / R@5 | 25.00 / 75.00 / 75.00 |" in text
    assert "| predicate | GT triplets | Predicate R@1 / R@3 / R@5 (%) | Reference R@1 / R@3 (%) |" in text
    assert "| standing on | 2 | 0.00 / 0.00 / 0.00 | 0.00 / 0.00 |" in text
    other = evaluate(*main_case(), protocol="3dssg")  # other protocols rank differently: no breakdown
    assert other.predicate_by_predicate is None and "predicate_mean" not in other.to_json()["recall"]
    assert "| predicate | GT triplets | Reference R@1 / R@3 (%) |" in other.to_markdown()


def test_triplet_rank_ties_within_float_rounding_count_against_us() -> None:
    # subject {a .1, b .3} x object {c .2} x predicates {p .3, q .1}
    # GT (a, c, p) = (.1*.2)*.3 = 0.006000000000000001; (b, c, q) = (.3*.2)*.1 = 0.006 is the same
    # number up to rounding, so it counts as a tie; (b, c, p) = .018 beats it; (a, c, q) = .002 does not.
    # rank = 1 + 2 = 3 -> a miss at R@1, a hit at R@50.
    gt = gt_objects([(1, "a", CHAIR), (2, "c", TABLE)], [[1, 2, "p"]])
    pred = prediction(
        [node(1, CHAIR, [["b", 0.3], ["a", 0.1]]), node(2, TABLE, [["c", 0.2]])],
        [link(1, 2, [["p", 0.3], ["q", 0.1]])],
    )
    result = evaluate(pred, gt)
    assert result.relation_recall == {1: 0.0, 50: 1.0, 100: 1.0}
    # predicate p is the top predicate of its link: rank 1
    assert result.predicate_recall == {1: 1.0, 3: 1.0, 5: 1.0}
    # object a is rank 2 (b .3 is above it), c rank 1
    assert result.object_recall == {1: 1 / 2, 5: 1.0, 10: 1.0}


def test_triplet_ranking_with_exact_ties_and_missing_labels() -> None:
    # Pair (1, 2) with GT labels (chair, table):
    #   subject {chair .5, stool .5} x object {table .8, desk .2} x {on .5, near .5, none .9}
    #   chair-table-on = .2; tied by stool-table-on, chair-table-near, stool-table-near -> rank 4
    # Pair (2, 1): both labels are listed, but the GT predicate "under" is absent from the link -> miss
    gt = gt_objects([(1, "chair", CHAIR), (2, "table", TABLE)], [[1, 2, "on"], [2, 1, "under"]])
    pred = prediction(
        [node(1, CHAIR, [["chair", 0.5], ["stool", 0.5]]), node(2, TABLE, [["table", 0.8], ["desk", 0.2]])],
        [link(1, 2, [["none", 0.9], ["on", 0.5], ["near", 0.5]]), link(2, 1, [["near", 0.9]])],
    )
    result = evaluate(pred, gt)
    assert result.relation_recall == {1: 0.0, 50: 1 / 2, 100: 1 / 2}
    # predicates: "on" is behind none .9 and tied with near .5 -> rank 3; "under" absent -> miss
    assert result.predicate_recall == {1: 0.0, 3: 1 / 2, 5: 1 / 2}


def test_gt_label_missing_from_label_scores_is_a_miss() -> None:
    gt = gt_objects([(1, "chair", CHAIR), (2, "table", TABLE)], [[1, 2, "close by"]])
    pred = prediction(
        [node(1, CHAIR, [["sofa", 0.9]]), node(2, TABLE, [["table", 0.9]])],
        [link(1, 2, [["close by", 0.9]])],
    )
    result = evaluate(pred, gt)
    assert result.object_recall == {1: 1 / 2, 5: 1 / 2, 10: 1 / 2}  # chair absent from node 1's list
    assert result.predicate_recall == {1: 1.0, 3: 1.0, 5: 1.0}  # predicates do not look at labels
    assert result.relation_recall == {1: 0.0, 50: 0.0, 100: 0.0}  # chair absent -> triplet miss


# ------------------------------------------------------------------------------------------------
# Matching


def test_matching_is_one_to_one() -> None:
    # Two nodes overlap the chair: node 1 exactly (IoU 1), node 2 the lower half (IoU 0.5).
    gt = gt_objects([(1, "chair", CHAIR)], [])
    pred = prediction([node(1, CHAIR, [["chair", 1.0]]), node(2, box([0, 0, 0], [1, 1, 0.5]), [["chair", 1.0]])])
    result = evaluate(pred, gt)
    assert [(m.gt_id, m.node_id, m.iou) for m in result.matches] == [(1, 1, 1.0)]
    assert result.num_matched_objects == 1
    assert result.object_recall == {1: 1.0, 5: 1.0, 10: 1.0}


def test_matching_maximises_total_iou_not_greedy() -> None:
    # Along x (y, z in [0, 1]): GT 1 = [0, 4], GT 2 = [2, 6]; node A = [-2, 5], node B = [-1, 2].
    # IoU(A, 1) = 4/7, IoU(A, 2) = 3/8, IoU(B, 1) = 2/5, IoU(B, 2) = 0.
    # Greedy would take A-1 (4/7) and leave B unmatched; the assignment takes A-2 + B-1 = 0.775.
    gt = gt_objects([(1, "a", box([0, 0, 0], [4, 1, 1])), (2, "b", box([2, 0, 0], [6, 1, 1]))], [])
    pred = prediction(
        [node(7, box([-2, 0, 0], [5, 1, 1]), [["b", 1.0]]), node(8, box([-1, 0, 0], [2, 1, 1]), [["a", 1.0]])]
    )
    result = evaluate(pred, gt)
    assert [(m.gt_id, m.node_id) for m in result.matches] == [(1, 8), (2, 7)]
    assert result.mean_iou == pytest.approx((2 / 5 + 3 / 8) / 2)
    assert result.object_recall == {1: 1.0, 5: 1.0, 10: 1.0}


def test_min_iou_threshold() -> None:
    gt = gt_objects([(1, "chair", CHAIR)], [])
    pred = prediction([node(1, box([0, 0, 0], [1, 1, 0.5]), [["chair", 1.0]])])  # IoU exactly 0.5
    assert evaluate(pred, gt, min_iou=0.5).num_matched_objects == 1  # >= min_iou matches
    unmatched = evaluate(pred, gt, min_iou=0.6)
    assert unmatched.num_matched_objects == 0
    assert unmatched.object_recall == {1: 0.0, 5: 0.0, 10: 0.0}
    assert unmatched.mean_iou is None
    # default 0.1: a box 0.05 high inside the unit chair box has IoU 0.05, not a match
    thin = prediction([node(1, box([0, 0, 0], [1, 1, 0.05]), [["chair", 1.0]])])
    assert evaluate(thin, gt).num_matched_objects == 0
    assert evaluate(thin, gt, min_iou=0.05).num_matched_objects == 1


def test_ignore_labels_removes_objects_and_triplets_from_denominators() -> None:
    floor = box([-5, -5, -0.1], [5, 5, 0])
    gt = gt_objects([(1, "Floor", floor), (2, "chair", CHAIR)], [[2, 1, "standing on"], [2, 1, "supported by"]])
    # The floor is predicted too, but with the wrong label; the chair is right. No links.
    pred = prediction([node(1, CHAIR, [["chair", 0.9]]), node(2, floor, [["rug", 0.9]])])

    full = evaluate(pred, gt)
    # objects: chair hit, floor miss -> 1/2; triplets: 2, both without a link -> 0
    assert full.object_recall == {1: 1 / 2, 5: 1 / 2, 10: 1 / 2}
    assert full.predicate_recall == {1: 0.0, 3: 0.0, 5: 0.0}
    assert (full.num_gt_objects, full.num_gt_triplets, full.num_matched_objects) == (2, 2, 2)

    ignored = evaluate(pred, gt, ignore_labels=[" FLOOR", "ceiling"])
    # objects: only the chair -> 1/1; triplets: none left -> no recall (None), not 0
    assert ignored.object_recall == {1: 1.0, 5: 1.0, 10: 1.0}
    assert ignored.predicate_recall == {k: None for k in PREDICATE_KS}
    assert ignored.relation_recall == {k: None for k in RELATION_KS}
    assert (ignored.num_gt_objects, ignored.num_gt_triplets, ignored.num_matched_objects) == (1, 0, 1)
    assert (ignored.num_ignored_objects, ignored.num_ignored_triplets) == (1, 2)
    assert ignored.ignore_labels == ("ceiling", "floor")
    assert "n/a" in ignored.to_markdown()
    assert ignored.to_json()["recall"]["predicate"] == {"1": None, "3": None, "5": None}


def test_ignored_objects_still_take_part_in_matching() -> None:
    # GT wall [0,2]x[0,1]x[0,1] and a picture [0,1]x[0,1]x[0,1] inside its box; one node on the wall's box
    # (IoU 1 with the wall, 0.5 with the picture). Ignoring the wall must not hand that node to the picture.
    gt = gt_objects([(1, "wall", box([0, 0, 0], [2, 1, 1])), (2, "picture", box([0, 0, 0], [1, 1, 1]))], [])
    pred = prediction([node(5, box([0, 0, 0], [2, 1, 1]), [["picture", 0.6], ["wall", 0.4]])])
    result = evaluate(pred, gt, ignore_labels=["wall"])
    assert result.matches == ()
    assert (result.num_gt_objects, result.num_matched_objects, result.num_ignored_objects) == (1, 0, 1)
    assert result.object_recall == {1: 0.0, 5: 0.0, 10: 0.0}  # the picture is unmatched
    assert result.mean_iou is None


def test_node_map_overrides_iou_matching_for_objects_format() -> None:
    pred, gt = main_case()
    # send node 30 (the cup's box) to the lamp instead: the lamp is now matched, the cup is not
    result = evaluate(pred, gt, node_map={10: 1, 20: 2, 30: 3})
    assert result.matching == "node_map"
    assert [(m.gt_id, m.node_id) for m in result.matches] == [(1, 10), (2, 20), (3, 30)]
    # objects: chair rank 2, table rank 1, lamp: node 30 has no "lamp" -> miss, cup unmatched -> miss
    assert result.object_recall == {1: 1 / 4, 5: 2 / 4, 10: 2 / 4}
    assert result.matches[2].iou == 0.0


# ------------------------------------------------------------------------------------------------
# 3DSSG ground truth (format B)


def threedssg_gt() -> dict[str, Any]:
    return {
        "scans": [
            {
                "scan": "scan-a",
                "objects": {"1": "chair", "2": "table", "3": "floor"},
                "relationships": [[1, 2, 14, "close by"], [1, 3, 1, "standing on"], [2, 3, 1, "standing on"]],
            },
            {"scan": "scan-b", "objects": {"1": "sofa"}, "relationships": []},
        ]
    }


def threedssg_pred() -> dict[str, Any]:
    return prediction(
        [
            node(10, None, [["chair", 0.8], ["sofa", 0.2]]),
            node(20, box([0, 0, 0], [1, 1, 1]), [["desk", 0.5], ["table", 0.4]]),
        ],
        [link(10, 20, [["close by", 0.5], ["none", 0.5]])],
    )


def test_3dssg_format_with_node_map_and_scan() -> None:
    node_map = {"10": 1, "20": 2}  # as read from a JSON file: string keys
    result = evaluate(threedssg_pred(), threedssg_gt(), node_map=node_map, scan="scan-a")
    # objects: chair rank 1, table rank 2 (desk .5 above it), floor unmapped -> miss
    assert result.object_recall == {1: 1 / 3, 5: 2 / 3, 10: 2 / 3}
    # predicates: (1,2,close by) ties with "none" .5 -> rank 2; the two floor triplets miss
    assert result.predicate_recall == {1: 0.0, 3: 1 / 3, 5: 1 / 3}
    # relations: {chair .8, sofa .2} x {desk .5, table .4} x {close by .5}:
    #   chair-table-close by = .16, beaten by chair-desk-close by = .2 -> rank 2
    assert result.relation_recall == {1: 0.0, 50: 1 / 3, 100: 1 / 3}
    assert result.gt_format == "3dssg" and result.scan == "scan-a" and result.matching == "node_map"
    assert result.mean_iou is None
    assert (result.num_gt_objects, result.num_matched_objects, result.num_gt_triplets, result.num_evaluated_links) == (
        3,
        2,
        3,
        1,
    )

    no_floor = evaluate(threedssg_pred(), threedssg_gt(), node_map=node_map, scan="scan-a", ignore_labels=["floor"])
    assert no_floor.object_recall == {1: 1 / 2, 5: 1.0, 10: 1.0}
    assert no_floor.predicate_recall == {1: 0.0, 3: 1.0, 5: 1.0}
    assert no_floor.relation_recall == {1: 0.0, 50: 1.0, 100: 1.0}


def test_3dssg_single_scan_is_the_default() -> None:
    gt = {"scans": [threedssg_gt()["scans"][0]]}
    result = evaluate(threedssg_pred(), gt, node_map={10: 1, 20: 2})
    assert result.scan == "scan-a"
    assert result.object_recall == {1: 1 / 3, 5: 2 / 3, 10: 2 / 3}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"node_map": {10: 1}}, "2 scans"),  # several scans, none chosen
        ({"node_map": {10: 1}, "scan": "nope"}, "nope"),
        ({"scan": "scan-a"}, "node map"),  # no geometry: a node map is required
        ({"scan": "scan-a", "node_map": {10: 9}}, "GT object 9"),
        ({"scan": "scan-a", "node_map": {99: 1}}, "prediction node 99"),
        ({"scan": "scan-a", "node_map": {10: 1, 20: 1}}, "same GT object"),
        ({"scan": "scan-a", "node_map": {"ten": 1}}, "integer"),
    ],
)
def test_3dssg_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        evaluate(threedssg_pred(), threedssg_gt(), **kwargs)


# ------------------------------------------------------------------------------------------------
# Perfect predictions


def test_perfect_prediction_scores_one_everywhere() -> None:
    # single-predicate pairs only: every GT label and predicate is the unique top-1
    gt = gt_objects(
        [(1, "chair", CHAIR), (2, "table", TABLE), (3, "lamp", LAMP), (4, "cup", CUP)],
        [[1, 2, "close by"], [2, 1, "bigger than"], [3, 2, "close by"], [4, 2, "standing on"]],
    )
    result = evaluate(perfect_prediction(gt), gt)
    assert result.object_recall == {k: 1.0 for k in OBJECT_KS}
    assert result.predicate_recall == {k: 1.0 for k in PREDICATE_KS}
    assert result.relation_recall == {k: 1.0 for k in RELATION_KS}
    assert result.mean_iou == 1.0
    assert result.num_evaluated_links == 4


def test_perfect_prediction_on_a_synthetic_scene() -> None:
    """A real synthetic ground truth has pairs with up to 4 predicates.

    Tied at 1.0, the k GT predicates of a pair all get rank k (ties against us): a perfect prediction
    scores 1.0 wherever k allows, and at R@1 exactly the share of triplets whose pair has one predicate.
    """
    from relationfield.synth.layout import build_scene
    from relationfield.synth.relations import derive_relations

    scene = build_scene("living-room", np.random.default_rng(0))
    gt = {
        "objects": [
            {"id": o.id, "label": o.label, "aabb": box(o.aabb.min, o.aabb.max), "structural": o.structural}
            for o in scene.objects
        ],
        "relationships": [[s, o, p] for s, o, p in derive_relations(scene.objects)],
    }
    per_pair = Counter((s, o) for s, o, _ in gt["relationships"])
    per_triplet = [per_pair[(s, o)] for s, o, _ in gt["relationships"]]
    n = len(per_triplet)

    result = evaluate(perfect_prediction(gt), gt)
    assert result.object_recall == {k: 1.0 for k in OBJECT_KS}
    assert result.predicate_recall == {k: sum(c <= k for c in per_triplet) / n for k in PREDICATE_KS}
    assert result.relation_recall == {k: sum(c <= k for c in per_triplet) / n for k in RELATION_KS}
    assert result.predicate_recall[5] == 1.0 and result.relation_recall[50] == 1.0
    assert all(m.iou == 1.0 for m in result.matches) and result.num_matched_objects == len(gt["objects"])

    structural = sum(o["structural"] for o in gt["objects"])
    no_structure = evaluate(perfect_prediction(gt), gt, ignore_labels=["floor", "wall", "ceiling"])
    assert no_structure.num_ignored_objects == structural > 0
    assert no_structure.num_gt_objects == len(gt["objects"]) - structural
    assert no_structure.object_recall == {k: 1.0 for k in OBJECT_KS}


# ------------------------------------------------------------------------------------------------
# Reports


def test_to_markdown_and_to_json() -> None:
    pred, gt = main_case()
    result = evaluate(pred, gt)
    text = result.to_markdown()
    for needle in (
        "Object R@1 / R@5 / R@10",
        "Predicate R@1 / R@3 / R@5",
        "Relation (triplet) R@1 / R@50 / R@100",
        "Mean IoU",
        "gt objects",
        "matched objects",
        "gt triplets",
        "evaluated links",
    ):
        assert needle in text
    assert "| 50.00 / 75.00 / 75.00 |" in text  # object recall in %
    assert "| 20.00 / 60.00 / 60.00 |" in text  # predicate recall
    data = json.loads(json.dumps(result.to_json()))
    assert data["recall"]["object"] == {"1": 0.5, "5": 0.75, "10": 0.75}
    assert data["recall"]["relation"] == {"1": 0.0, "50": 0.6, "100": 0.6}
    assert data["counts"]["gt_objects"] == 4 and data["counts"]["evaluated_links"] == 2
    assert data["settings"]["min_iou"] == 0.1 and data["settings"]["ignore_labels"] == []


# ------------------------------------------------------------------------------------------------
# Files and errors


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_evaluate_files_writes_outputs(tmp_path: Path) -> None:
    pred, gt = main_case()
    out = tmp_path / "out" / "eval"
    result = evaluate_files(
        write_json(tmp_path / "pred.json", pred), write_json(tmp_path / "gt.json", gt), output_dir=out
    )
    assert isinstance(result, EvalResult)
    assert json.loads((out / "eval.json").read_text()) == json.loads(json.dumps(result.to_json()))
    assert (out / "eval.md").read_text() == result.to_markdown()


def test_evaluate_files_3dssg_with_node_map_file(tmp_path: Path) -> None:
    result = evaluate_files(
        write_json(tmp_path / "pred.json", threedssg_pred()),
        write_json(tmp_path / "relationships.json", threedssg_gt()),
        node_map_path=write_json(tmp_path / "map.json", {"10": 1, "20": 2}),
        scan="scan-a",
    )
    assert result.object_recall == {1: 1 / 3, 5: 2 / 3, 10: 2 / 3}
    with pytest.raises(UserError, match="node map"):
        evaluate_files(tmp_path / "pred.json", tmp_path / "relationships.json", scan="scan-a")
    with pytest.raises(UserError, match="JSON object"):
        evaluate_files(
            tmp_path / "pred.json",
            tmp_path / "relationships.json",
            scan="scan-a",
            node_map_path=write_json(tmp_path / "bad_map.json", [[10, 1]]),
        )


def test_file_errors(tmp_path: Path) -> None:
    pred, gt = main_case()
    pred_path, gt_path = write_json(tmp_path / "pred.json", pred), write_json(tmp_path / "gt.json", gt)
    with pytest.raises(UserError, match="prediction file not found"):
        evaluate_files(tmp_path / "missing.json", gt_path)
    with pytest.raises(UserError, match="ground-truth file not found"):
        evaluate_files(pred_path, tmp_path / "missing.json")
    with pytest.raises(UserError, match="not a file"):
        evaluate_files(tmp_path, gt_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": [', encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        evaluate_files(broken, gt_path)
    with pytest.raises(UserError, match="node map file not found"):
        evaluate_files(pred_path, gt_path, node_map_path=tmp_path / "missing-map.json")
    with pytest.raises(UserError, match="swap"):
        evaluate_files(gt_path, pred_path)  # arguments the wrong way round


def _with(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**data, **changes}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, g: (_with(p, format="other"), g), "format"),
        (lambda p, g: (_with(p, version=2), g), "version"),
        (lambda p, g: (_with(p, multigraph=True), g), "multigraph"),
        (lambda p, g: ([p], g), "JSON object"),
        (lambda p, g: (_with(p, nodes=[{"id": 1}]), g), "label_scores"),
        (lambda p, g: (_with(p, nodes=p["nodes"] + [p["nodes"][0]]), g), "appears twice"),
        (lambda p, g: (_with(p, links=[link(10, 99, [["on", 1.0]])]), g), "node 99"),
        (lambda p, g: (_with(p, links=p["links"] + [p["links"][0]]), g), "two links"),
        (lambda p, g: (_with(p, links=[link(10, 20, [["on", float("nan")]])]), g), "finite"),
        (lambda p, g: (_with(p, links=[link(10, 20, [["on", -0.5]])]), g), "non-negative"),
        (lambda p, g: (_with(p, links=[{"source": 10, "target": 20, "predicate_scores": [["on"]]}]), g), "pair"),
        (lambda p, g: (_with(p, nodes=[node(10, box([1, 0, 0], [0, 1, 1]), [["chair", 1.0]])]), g), "min > max"),
        (lambda p, g: (p, {"things": []}), "unrecognised ground truth"),
        (lambda p, g: (p, _with(g, relationships=[[1, 9, "on"]])), "object 9"),
        (lambda p, g: (p, _with(g, relationships=[[1, 2]])), "subject_id"),
        (lambda p, g: (p, _with(g, objects=g["objects"] + [g["objects"][0]])), "appears twice"),
    ],
)
def test_bad_input_raises_user_error(mutate: Any, message: str) -> None:
    pred, gt = mutate(*main_case())
    with pytest.raises(UserError, match=message):
        evaluate(pred, gt)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_iou": 0.0}, "min_iou"),
        ({"min_iou": 1.5}, "min_iou"),
        ({"ignore_labels": "floor"}, "list of labels"),
        ({"ignore_labels": [3]}, "ignored label"),
        ({"scan": "scan-a"}, "3DSSG"),
    ],
)
def test_bad_options_raise_user_error(kwargs: dict[str, Any], message: str) -> None:
    pred, gt = main_case()
    with pytest.raises(UserError, match=message):
        evaluate(pred, gt, **kwargs)


def test_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, relationfield.evaluation; print(any(m in sys.modules for m in ('torch', 'nerfstudio')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_planar_nodes_match_thin_ground_truth_slabs_after_padding():
    """A wall seen as surface points has a box of ~zero thickness; padding to min_extent lets it match."""
    from relationfield.evaluation import evaluate, pad_box

    gt = {
        "objects": [{"id": 1, "label": "wall", "aabb": {"min": [0.0, 0.0, 0.0], "max": [4.0, 0.1, 2.5]}}],
        "relationships": [],
    }
    pred = {
        "format": "relationfield-scene-graph",
        "version": 1,
        "directed": True,
        "multigraph": False,
        "nodes": [
            {
                "id": 7,
                "label": "wall",
                "label_scores": [["wall", 0.9]],
                "centroid": [2.0, 0.1, 1.25],
                "aabb": {"min": [0.0, 0.1, 0.0], "max": [4.0, 0.1, 2.5]},
                "point_count": 100,
            }
        ],
        "links": [],
    }
    assert evaluate(pred, gt, min_extent=0.0).object_recall[1] == 0.0
    assert evaluate(pred, gt, min_extent=0.1).object_recall[1] == 1.0
    lo, hi = pad_box([0, 0, 0], [1, 0, 0.02], 0.1)
    assert lo == (0.0, -0.05, -0.04) and hi == (1.0, 0.05, 0.06)
