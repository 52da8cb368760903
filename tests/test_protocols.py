"""The evaluation protocols (``relationfield``, ``open3dsg``, ``3dssg``) on hand-made graphs.

Every expected recall is worked out in the comments from the peers' written rules:

* Open3DSG, boschresearch/Open3DSG ``open3dsg/scripts/eval.py``: ``topk_object`` (position in
  ``torch.sort``: ties by order), ``topk_ratio_pred`` (``torch.where(confs == score)[0][0] + 1``: ties in
  the prediction's favour; a GT "none" pair whose ``norm(predicate_min_dist) > 0.5`` is rank 1),
  ``topk_relationship`` (every (s, o, p) product, "none" included; a "none" pair ranks its best
  ``conf_matrix[:, :, none]``), recalls per subgraph then ``np.nanmean`` (``trainer.on_test_epoch_end``),
  and every unrelated ordered pair of a subgraph a "none" triple (``data/preprocess_3rscan.py``);
* 3DSSG, ShunChengWu/3DSSG ``ssg/utils/util_eva.py``: ``evaluate_topk_recall_predicate`` and
  ``evaluate_topk_recall`` (position in ``torch.sort``, then ``math.ceil(index / len(gt_rels))``),
  "none" no class with multi-label predicates, ranks pooled over all triples.

Recalls are ``hits / total`` (and means of those), so ``== 10 / 13`` is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_metrics import box, gt_objects, link, node, prediction, threedssg_gt, threedssg_pred, write_json

from relationfield.errors import UserError
from relationfield.evaluation import evaluate, evaluate_files
from relationfield.evaluation.protocols import (
    PROTOCOLS,
    TIES_AGAINST,
    TIES_FAVOUR,
    TIES_INDEX,
    box_gap,
    divide_rank,
    get_rules,
    tie_rank,
)

CHAIR = box([0, 0, 0], [1, 1, 1])
TABLE = box([1.2, 0, 0], [2.2, 1, 1])  # 0.2 m from the chair: a near pair
LAMP = box([5, 0, 0], [5.5, 0.5, 2])  # 2.8 m from the table, 4 m from the chair: far
CUP = box([1.5, 0.2, 1.0], [1.7, 0.4, 1.2])  # on the table (gap 0); exactly 0.5 m from the chair


def scene() -> tuple[dict[str, Any], dict[str, Any]]:
    """4 objects, 4 GT triples (one pair with two predicates), 9 unrelated ordered pairs."""
    gt = gt_objects(
        [(1, "chair", CHAIR), (2, "table", TABLE), (3, "lamp", LAMP), (4, "cup", CUP)],
        [
            [1, 2, "close by"],  # a pair with two predicates
            [1, 2, "standing on"],
            [2, 1, "bigger than"],  # its link's top predicate is "none"
            [4, 2, "standing on"],
        ],
    )
    pred = prediction(
        [
            node(1, CHAIR, [["chair", 0.6], ["stool", 0.6], ["table", 0.1]]),  # tie, GT label listed first
            node(2, TABLE, [["table", 0.9], ["desk", 0.1]]),
            node(3, LAMP, [["light", 0.5], ["lamp", 0.5]]),  # tie, GT label listed second
            node(4, CUP, [["cup", 0.8], ["mug", 0.2]]),
        ],
        [
            link(1, 2, [["close by", 0.5], ["standing on", 0.5], ["none", 0.3]]),
            link(2, 1, [["none", 0.8], ["bigger than", 0.15], ["close by", 0.05]]),
            link(4, 2, [["standing on", 0.9], ["none", 0.1]]),
            link(2, 4, [["none", 0.6], ["close by", 0.6]]),  # unrelated, near: "none" ties for first
            link(4, 1, [["close by", 0.7], ["none", 0.2]]),  # unrelated, 0.5 m: "none" second
        ],
    )
    return pred, gt


# ------------------------------------------------------------------------------------------------
# Rules one by one


def test_tie_rules_and_multi_predicate_division() -> None:
    table = {"a": 0.5, "b": 0.5, "c": 0.9}
    assert tie_rank(table, "a", TIES_AGAINST) == 3  # c above, b ties: both count against a
    assert tie_rank(table, "a", TIES_FAVOUR) == 2  # Open3DSG: only c is strictly above
    assert tie_rank(table, "a", TIES_INDEX) == 2  # stable sort: c, a, b
    assert tie_rank(table, "b", TIES_INDEX) == 3  # a is listed before b
    assert tie_rank(table, "z", TIES_FAVOUR) is None
    # 3DSSG: math.ceil(index / len(gt_rels))
    assert [divide_rank(r, 2) for r in (1, 2, 3, 4, None)] == [1, 1, 2, 2, None]
    assert divide_rank(3, 3) == 1


def test_box_gap_is_the_distance_between_boxes() -> None:
    assert box_gap((CHAIR["min"], CHAIR["max"]), (TABLE["min"], TABLE["max"])) == pytest.approx(0.2)
    assert box_gap((TABLE["min"], TABLE["max"]), (CUP["min"], CUP["max"])) == 0.0  # touching
    assert box_gap((CHAIR["min"], CHAIR["max"]), (CUP["min"], CUP["max"])) == 0.5
    assert box_gap(((0, 0, 0), (1, 1, 1)), ((4, 5, 1), (5, 6, 2))) == 5.0  # (3, 4, 0) apart


def test_unknown_protocol_is_a_user_error(tmp_path: Path) -> None:
    pred, gt = scene()
    with pytest.raises(UserError, match="relationfield, open3dsg, 3dssg"):
        evaluate(pred, gt, protocol="vlsat")
    with pytest.raises(UserError, match="unknown evaluation protocol"):
        evaluate(pred, gt, protocol=3)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown evaluation protocol"):
        # fails before the (missing) files are read
        evaluate_files(tmp_path / "missing.json", tmp_path / "missing.json", protocol="sgfn")
    assert [get_rules(p).name for p in PROTOCOLS] == ["relationfield", "open3dsg", "3dssg"]
    assert get_rules(" Open3DSG ").name == "open3dsg"


# ------------------------------------------------------------------------------------------------
# One scene under the three protocols


def test_relationfield_protocol_is_the_default() -> None:
    pred, gt = scene()
    default, named = evaluate(pred, gt), evaluate(pred, gt, protocol="relationfield")
    assert default.to_json() == named.to_json()
    # Objects (ties against us): chair 2 (stool ties), table 1, lamp 2 (light ties), cup 1.
    assert default.object_recall == {1: 2 / 4, 5: 1.0, 10: 1.0}
    # Predicates: close by 2 and standing on 2 (tied with each other), bigger than 2 ("none" .8 above), cup 1.
    assert default.predicate_recall == {1: 1 / 4, 3: 1.0, 5: 1.0}
    # Triplets, "none" no candidate, ties against us:
    #   (chair, table, close by) = .54 * .5 = .27, tied by stool-table-close by and both standing on -> 4
    #   (chair, table, standing on) likewise -> 4
    #   (table, chair, bigger than) = .54 * .15 = .081, tied by table-stool-bigger than -> 2
    #   (cup, table, standing on) = .72 * .9 -> 1
    assert default.relation_recall == {1: 1 / 4, 50: 1.0, 100: 1.0}
    assert default.protocol == "relationfield"
    assert "gt_none_triplets" not in default.counts() and "subgraphs" not in default.counts()


def test_open3dsg_protocol_on_the_whole_scan() -> None:
    pred, gt = scene()
    result = evaluate(pred, gt, protocol="open3dsg")
    # Objects (topk_object: position in the sort, ties by list order): chair 1, table 1, lamp 2, cup 1.
    assert result.object_recall == {1: 3 / 4, 5: 1.0, 10: 1.0}
    # Predicates (topk_ratio_pred, ties in our favour, "none" competes):
    #   related: close by 1 and standing on 1 (tied at .5), bigger than 2 ("none" .8 above), cup 1
    #   unrelated (9 "none" triples): the 6 pairs with the lamp are over 0.5 m apart -> 1 each, no link needed;
    #   chair -> cup is exactly 0.5 m (not > 0.5) and has no link -> a miss; cup -> chair: "none" .2 under
    #   close by .7 -> 2; table -> cup: "none" ties with close by -> 1
    #   13 ranks: 1, 1, 2, 1, six 1s, miss, 2, 1
    assert result.predicate_recall == {1: 10 / 13, 3: 12 / 13, 5: 12 / 13}
    # Triplets (topk_relationship: "none" a candidate, ties in our favour):
    #   (chair, table, close by) .27: nothing strictly above -> 1; (chair, table, standing on) -> 1
    #   (table, chair, bigger than) .081: table-chair-none and table-stool-none (.432) above -> 3
    #   (cup, table, standing on) -> 1
    #   "none" triples rank the best (any, any, none) product: no link -> a miss (the 6 lamp pairs and
    #   chair -> cup); cup -> chair: best .48 * .2 = .096 under cup-chair/cup-stool-close by .336 -> 3;
    #   table -> cup: best .72 * .6 = .432, tied by table-cup-close by -> 1
    #   13 ranks: 1, 1, 3, 1, seven misses, 3, 1
    assert result.relation_recall == {1: 4 / 13, 50: 6 / 13, 100: 6 / 13}
    assert (result.num_none_triplets, result.num_subgraphs) == (9, 1)
    # 5 links served a triple: the 3 related ones and the 2 unrelated ones
    assert result.num_evaluated_links == 5
    assert result.counts()["gt_none_triplets"] == 9 and result.counts()["subgraphs"] == 1


def test_3dssg_protocol_divides_ranks_by_the_pair_predicate_count() -> None:
    pred, gt = scene()
    result = evaluate(pred, gt, protocol="3dssg")
    # Objects (evaluate_topk_recall_single_prediction: sort position, ties by list order): 1, 1, 2, 1.
    assert result.object_recall == {1: 3 / 4, 5: 1.0, 10: 1.0}
    # Predicates ("none" no class; sort position; then ceil(index / number of GT predicates of the pair)):
    #   close by 1 -> ceil(1/2) = 1; standing on 2 (close by listed first) -> ceil(2/2) = 1
    #   bigger than: without "none" it is first -> 1; cup -> 1
    assert result.predicate_recall == {1: 1.0, 3: 1.0, 5: 1.0}
    # Triplets (evaluate_topk_recall: the GT cell's sort position, ties by flat index (s * n_o + o) * n_p + p):
    #   (chair, table, close by) flat 0 -> 1 -> ceil(1/2) = 1; (chair, table, standing on) flat 1, after the
    #   tied close by -> 2 -> ceil(2/2) = 1; (table, chair, bigger than) flat 0 -> 1; cup -> 1
    assert result.relation_recall == {1: 1.0, 50: 1.0, 100: 1.0}
    assert result.num_none_triplets is None and result.num_subgraphs is None


def test_3dssg_division_on_a_pair_with_two_predicates() -> None:
    gt = gt_objects([(1, "chair", CHAIR), (2, "table", TABLE)], [[1, 2, "p"], [1, 2, "q"]])
    pred = prediction(
        [node(1, CHAIR, [["chair", 1.0]]), node(2, TABLE, [["table", 1.0]])],
        [link(1, 2, [["x", 0.9], ["p", 0.5], ["q", 0.4], ["none", 0.95]])],
    )
    # 3dssg ("none" no class): p 2 -> ceil(2/2) = 1, q 3 -> ceil(3/2) = 2
    assert evaluate(pred, gt, protocol="3dssg").predicate_recall == {1: 1 / 2, 3: 1.0, 5: 1.0}
    # relationfield: none .95 and x .9 above p -> 3; q -> 4 (p above it too)
    assert evaluate(pred, gt).predicate_recall == {1: 0.0, 3: 1 / 2, 5: 1.0}


# ------------------------------------------------------------------------------------------------
# Subgraphs


def test_open3dsg_recalls_are_averaged_over_subgraphs() -> None:
    pred, gt = scene()
    # Subgraph a = {chair, table, cup} (3 objects), b = {chair, lamp} (2): the chair is in both, as
    # objects may be in several 3DSSG splits.
    result = evaluate(pred, gt, protocol="open3dsg", splits={"a": [1, 2, 4], "b": [1, 3]})
    # a: objects 1, 1, 1 -> 1.0; b: chair 1, lamp 2 -> R@1 1/2
    assert result.object_recall == {1: (1.0 + 1 / 2) / 2, 5: 1.0, 10: 1.0}
    # a: related 1, 1, 2, 1; unrelated chair -> cup miss, table -> cup 1, cup -> chair 2  (7 ranks)
    # b: chair <-> lamp are 4 m apart -> 1, 1
    assert result.predicate_recall == {1: (4 / 7 + 1.0) / 2, 3: (6 / 7 + 1.0) / 2, 5: (6 / 7 + 1.0) / 2}
    # a: related 1, 1, 3, 1; unrelated miss, 1, 3; b: no link between chair and lamp -> 2 misses
    assert result.relation_recall == {1: (4 / 7 + 0.0) / 2, 50: (6 / 7 + 0.0) / 2, 100: (6 / 7 + 0.0) / 2}
    assert (result.num_none_triplets, result.num_subgraphs) == (5, 2)
    # pooled over the same ranks the numbers would differ: objects 4 / 5 at R@1
    assert result.object_recall[1] != 4 / 5


def test_far_pairs_are_hits_only_when_both_ends_are_matched() -> None:
    gt = gt_objects([(1, "chair", CHAIR), (3, "lamp", LAMP)], [])
    both = prediction([node(1, CHAIR, [["chair", 1.0]]), node(3, LAMP, [["lamp", 1.0]])])
    one = prediction([node(1, CHAIR, [["chair", 1.0]])])
    # 2 "none" triples, 4 m apart: predicate hits without any link; no link -> triplet misses
    assert evaluate(both, gt, protocol="open3dsg").predicate_recall == {1: 1.0, 3: 1.0, 5: 1.0}
    assert evaluate(both, gt, protocol="open3dsg").relation_recall == {1: 0.0, 50: 0.0, 100: 0.0}
    # the lamp has no node: nothing predicted the pair
    assert evaluate(one, gt, protocol="open3dsg").predicate_recall == {1: 0.0, 3: 0.0, 5: 0.0}
    # without "none" triples there is nothing to rank
    assert evaluate(both, gt).predicate_recall == {1: None, 3: None, 5: None}


def test_3dssg_split_file_with_3dssg_ground_truth() -> None:
    splits = {
        "scans": [
            {"scan": "scan-a", "split": 0, "objects": {"1": "chair", "2": "table"}, "relationships": []},
            {"scan": "scan-a", "split": 1, "objects": {"2": "table", "3": "floor"}, "relationships": []},
            {"scan": "scan-b", "split": 0, "objects": {"1": "sofa"}, "relationships": []},  # another scan
        ]
    }
    result = evaluate(
        threedssg_pred(), threedssg_gt(), node_map={10: 1, 20: 2}, scan="scan-a", protocol="open3dsg", splits=splits
    )
    # split 0 {chair, table}: objects chair 1, table 2 (desk .5 above) -> R@1 1/2, R@5 1
    #   (1, 2, close by): "none" .5 ties with it, in our favour -> 1; (2, 1) unrelated: no geometry on node 10,
    #   so no distance rule, and no link 20 -> 10 -> a miss
    #   triplet (chair, table, close by) .16: chair-desk-close by and chair-desk-none (.2) above -> 3
    # split 1 {table, floor}: the floor is unmatched: table 2, floor miss; (2, 3, standing on) and the
    #   "none" triple (3, 2) miss
    assert result.object_recall == {1: (1 / 2 + 0.0) / 2, 5: (1.0 + 1 / 2) / 2, 10: (1.0 + 1 / 2) / 2}
    assert result.predicate_recall == {1: (1 / 2 + 0.0) / 2, 3: (1 / 2 + 0.0) / 2, 5: (1 / 2 + 0.0) / 2}
    assert result.relation_recall == {1: 0.0, 50: (1 / 2 + 0.0) / 2, 100: (1 / 2 + 0.0) / 2}
    assert result.num_subgraphs == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"protocol": "relationfield", "splits": {"a": [1]}}, "only apply"),
        ({"protocol": "3dssg", "splits": {"a": [1]}}, "only apply"),
        ({"protocol": "open3dsg", "splits": {"a": [1, 9]}}, "GT objects \\[9\\]"),
        ({"protocol": "open3dsg", "splits": {}}, "no subgraph"),
        ({"protocol": "open3dsg", "splits": [[1, 2]]}, "JSON object"),
        ({"protocol": "open3dsg", "splits": {"a": ["x"]}}, "integer"),
        (
            {"protocol": "open3dsg", "splits": {"scans": [{"scan": "s", "split": 0, "objects": {"1": "a"}}] * 2}},
            "twice",
        ),
    ],
)
def test_bad_splits_raise_user_error(kwargs: dict[str, Any], message: str) -> None:
    pred, gt = scene()
    with pytest.raises(UserError, match=message):
        evaluate(pred, gt, **kwargs)


# ------------------------------------------------------------------------------------------------
# Report and command line


def test_report_records_the_protocol(tmp_path: Path) -> None:
    pred, gt = scene()
    result = evaluate_files(
        write_json(tmp_path / "pred.json", pred),
        write_json(tmp_path / "gt.json", gt),
        output_dir=tmp_path / "out",
        protocol="3dssg",
    )
    data = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert data["settings"]["protocol"] == "3dssg" and data["recall"]["predicate"] == {"1": 1.0, "3": 1.0, "5": 1.0}
    assert "Protocol: 3dssg (3DSSG util_eva.py" in (tmp_path / "out" / "eval.md").read_text()
    assert result.to_json() == data
    default = evaluate(pred, gt)
    assert default.to_json()["settings"]["protocol"] == "relationfield"
    assert "Protocol: relationfield (ties count against the prediction" in default.to_markdown()


def test_cli_protocol_flag_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relationfield.cli import entrypoint

    pred, gt = scene()
    pred_path, gt_path = write_json(tmp_path / "pred.json", pred), write_json(tmp_path / "gt.json", gt)
    splits = write_json(tmp_path / "splits.json", {"a": [1, 2, 4], "b": [1, 3]})
    out = tmp_path / "eval"
    args = ["eval", "--pred", str(pred_path), "--gt", str(gt_path), "--output-dir", str(out)]
    entrypoint([*args, "--protocol", "open3dsg", "--splits", str(splits)])
    data = json.loads((out / "eval.json").read_text())
    assert data["settings"]["protocol"] == "open3dsg"
    assert data["recall"]["object"]["1"] == (1.0 + 1 / 2) / 2  # as in the subgraph test above
    assert data["counts"]["subgraphs"] == 2 and data["counts"]["gt_none_triplets"] == 5
    assert "Protocol: open3dsg" in capsys.readouterr().out

    entrypoint([*args, "--protocol", "3dssg"])
    assert json.loads((out / "eval.json").read_text())["recall"]["relation"] == {"1": 1.0, "50": 1.0, "100": 1.0}

    entrypoint(args)  # the default
    assert json.loads((out / "eval.json").read_text())["recall"]["relation"]["1"] == 1 / 4

    with pytest.raises(SystemExit) as failed:  # a user error: one line on stderr, exit status 2
        entrypoint([*args, "--splits", str(splits)])
    assert failed.value.code == 2 and "only apply" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # tyro refuses a protocol outside the three
        entrypoint([*args, "--protocol", "vlsat"])
