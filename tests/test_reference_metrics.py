"""Reference R@k and none precision on hand-made graphs (expected values worked out in the comments)."""

from __future__ import annotations

from typing import Any

import pytest
from test_metrics import box, gt_objects, link, node, prediction

from relationfield.errors import UserError
from relationfield.evaluation import evaluate
from relationfield.evaluation.prediction import read_prediction
from relationfield.evaluation.reference import SUPPORT_PREDICATES, reference_rank

LABELS = {0: "floor", 1: "desk", 2: "cabinet", 3: "monitor", 4: "book", 5: "pillow"}


def scene() -> tuple[dict[str, Any], dict[str, Any], dict[int, int]]:
    """GT objects 0-5 (5 has no node); node i is matched to object i through a node map."""
    objects = [(i, label, box([i, 0, 0], [i + 0.5, 1, 1])) for i, label in LABELS.items()]
    gt = gt_objects(
        objects,
        [
            [3, 1, "standing on"],  # the monitor on the desk
            [1, 0, "standing on"],  # the desk on the floor
            [2, 0, "standing on"],  # the cabinet on the floor: no link 2 -> 0 is predicted
            [4, 1, "close by"],  # the book near the desk and near the cabinet: two true references
            [4, 2, "close by"],
            [5, 1, "lying on"],  # the pillow has no node
        ],
    )
    nodes = [node(i, box([i, 0, 0], [i + 0.5, 1, 1]), [[label, 1.0]]) for i, label in LABELS.items() if i != 5]
    links = [
        # monitor: the cabinet ties with the desk (ties count against us), the floor is lower, 3 -> 4 is missing
        link(3, 1, [["standing on", 0.5], ["none", 0.2]]),
        link(3, 2, [["standing on", 0.5], ["none", 0.3]]),
        link(3, 0, [["standing on", 0.2], ["none", 0.1]]),
        # desk: 1 -> 2 does not list "standing on": it counts with its lowest score 0.65 >= 0.6
        link(1, 0, [["standing on", 0.6], ["none", 0.1]]),
        link(1, 2, [["close by", 0.7], ["none", 0.65]]),
        link(1, 3, [["standing on", 0.1], ["none", 0.8]]),
        # book: for 4 -> 1 the monitor (0.4) beats 0.3 and the cabinet, a true reference, does not compete
        link(4, 1, [["close by", 0.3], ["none", 0.2]]),
        link(4, 2, [["close by", 0.9], ["none", 0.05]]),
        link(4, 3, [["close by", 0.4], ["none", 0.6]]),
        link(2, 1, [["close by", 0.5], ["none", 0.5]]),  # a tie is not a win for "none"
    ]
    return prediction(nodes, links), gt, {i: i for i in LABELS if i != 5}


def test_reference_ranks_ties_true_references_missing_links_and_unlisted_predicates() -> None:
    pred, gt, node_map = scene()
    result = evaluate(pred, gt, node_map=node_map)
    ref = result.reference
    # standing on: monitor 2 (tie with the cabinet), desk 2 (1 -> 2 counts with 0.65), cabinet None (no link)
    # close by: 4 -> 1 rank 2 (the monitor), 4 -> 2 rank 1; lying on: the pillow is unmatched (None)
    assert ref.ranks == {"standing on": [2, 2, None], "close by": [2, 1], "lying on": [None]}
    assert ref.recall() == {1: 1 / 6, 3: 4 / 6}
    assert ref.support_recall == {1: 0 / 4, 3: 2 / 4}
    assert ref.per_predicate()["close by"] == (2, {1: 1 / 2, 3: 2 / 2})


def test_none_precision_counts_missing_links_as_none_and_skips_structural_objects() -> None:
    pred, gt, node_map = scene()
    ref = evaluate(pred, gt, node_map=node_map).reference
    # Unrelated ordered pairs among the matched non-structural objects 1-4: 12 - 3 related = 9.
    # "none" wins on 1->3, 4->3 and the missing 1->4, 2->3, 2->4, 3->4; not on 1->2, 3->2 or 2->1 (a tie).
    assert (ref.none_hits, ref.unrelated_pairs) == (6, 9)
    assert ref.none_precision == 6 / 9
    # With the floor counted: 6 more pairs (0 -> 1..4, 3 -> 0, 4 -> 0); only 3 -> 0 says something else.
    counted = evaluate(pred, gt, node_map=node_map, structural_labels=[]).reference
    assert (counted.none_hits, counted.unrelated_pairs) == (11, 15)


def test_a_reference_blind_field_passes_predicate_recall_and_fails_reference_recall() -> None:
    """The field's weakness in one graph: "standing on" for the monitor, whatever the reference."""
    objects = [(i, label, box([i, 0, 0], [i + 0.5, 1, 1])) for i, label in LABELS.items() if i < 4]
    gt = gt_objects(objects, [[3, 1, "standing on"]])
    nodes = [node(i, box([i, 0, 0], [i + 0.5, 1, 1]), [[LABELS[i], 1.0]]) for i in range(4)]
    blind = [link(3, t, [["standing on", 0.9], ["none", 0.1]]) for t in (0, 1, 2)]
    result = evaluate(prediction(nodes, blind), gt)
    assert result.predicate_recall[1] == 1.0
    assert result.reference.recall() == {1: 0.0, 3: 1.0}  # three nodes tie: rank 3
    # Unrelated pairs among desk, cabinet, monitor: 5; 3 -> 2 claims "standing on", the 4 missing links are "none".
    assert result.reference.none_precision == 4 / 5
    aware = blind[:1] + [link(3, 1, [["standing on", 0.9], ["none", 0.1]]), link(3, 2, [["none", 0.8]])]
    aware[0] = link(3, 0, [["standing on", 0.2], ["none", 0.7]])
    result = evaluate(prediction(nodes, aware), gt)
    assert result.reference.recall() == {1: 1.0, 3: 1.0}
    assert result.reference.none_precision == 1.0


def test_reference_rank_direct() -> None:
    pred, _, _ = scene()
    graph = read_prediction(pred)
    assert reference_rank(graph, 4, 1, "close by") == 3  # the cabinet competes when not excluded
    assert reference_rank(graph, 4, 1, "close by", excluded=[2]) == 2
    assert reference_rank(graph, 4, 1, "lying on") is None  # not listed on the true link
    assert reference_rank(graph, 3, 4, "standing on") is None  # no link


def test_reported_in_json_and_markdown() -> None:
    pred, gt, node_map = scene()
    result = evaluate(pred, gt, node_map=node_map)
    data = result.to_json()
    assert data["reference"]["recall"] == {"1": 1 / 6, "3": 4 / 6}
    assert data["reference"]["support_recall"] == {"1": 0.0, "3": 0.5}
    assert data["reference"]["per_predicate"]["standing on"] == {"triplets": 3, "recall": {"1": 0.0, "3": 2 / 3}}
    assert set(data["reference"]["support_predicates"]) == SUPPORT_PREDICATES
    assert data["none_precision"] == 6 / 9
    assert data["counts"]["gt_unrelated_pairs"] == 9
    text = result.to_markdown()
    assert "| Reference R@1 / R@3 | 16.67 / 66.67 |" in text
    assert "| Reference, support predicates R@1 / R@3 | 0.00 / 50.00 |" in text
    assert "| None precision (unrelated pairs) | 66.67 |" in text
    # "close by" ranks first on both true links, yet one of them is not the subject's best reference
    assert "| close by | 2 | 100.00 / 100.00 / 100.00 | 50.00 / 100.00 |" in text


def test_no_triples_and_no_unrelated_pairs_are_not_applicable() -> None:
    objects = [(0, "floor", box([0, 0, 0], [1, 1, 1]))]
    result = evaluate(prediction([node(0, box([0, 0, 0], [1, 1, 1]), [["floor", 1.0]])]), gt_objects(objects, []))
    assert result.reference.recall() == {1: None, 3: None}
    assert result.reference.none_precision is None
    assert "| None precision (unrelated pairs) | n/a |" in result.to_markdown()


def test_bad_structural_labels() -> None:
    pred, gt, node_map = scene()
    with pytest.raises(UserError, match="structural_labels must be a list"):
        evaluate(pred, gt, node_map=node_map, structural_labels="floor")
    with pytest.raises(UserError, match="structural label"):
        evaluate(pred, gt, node_map=node_map, structural_labels=[3])


def test_eval_command_defaults_to_the_same_structural_labels() -> None:
    import dataclasses

    from relationfield.commands.evaluate import Eval
    from relationfield.evaluation.reference import STRUCTURAL_LABELS

    default = {f.name: f.default for f in dataclasses.fields(Eval)}["structural_labels"]
    assert default == STRUCTURAL_LABELS
