"""Evaluate a predicted 3D scene graph against ground truth, 3DSSG-style (recall@k).

Pure Python / numpy / scipy: no torch, no nerfstudio. The exact protocol is documented in
``docs/EVALUATION.md``; in short:

* predicted nodes are matched one-to-one to ground-truth (GT) objects by axis-aligned box IoU
  (Hungarian assignment, pairs below ``min_iou`` dropped), or through a given node map;
* Object R@k (k = 1, 5, 10) over GT objects, Predicate R@k (k = 1, 3, 5) and Relation (triplet)
  R@k (k = 1, 50, 100) over GT triplets; every rank counts ties against the prediction.

Two ground-truth formats are understood: ``{"objects": [...], "relationships": [[s, o, "p"], ...]}``
(the synthetic captures' ``ground_truth/scene_graph.json``) and 3DSSG's ``relationships.json``
(``{"scans": [...]}``, no geometry, so a node map is required).

Public API::

    evaluate(pred, gt, *, min_iou=0.1, ignore_labels=(), node_map=None, scan=None) -> EvalResult
    evaluate_files(pred_path, gt_path, *, output_dir=None, min_iou=0.1, ignore_labels=(),
                   node_map_path=None, scan=None) -> EvalResult
    rank_with_ties(scores, name) -> int | None
    aabb_iou(a_min, a_max, b_min, b_max) -> float

Bad input raises :class:`relationfield.errors.UserError` with a message meant for a person.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from relationfield.errors import UserError
from relationfield.vocab import NONE_PREDICATE

PRED_FORMAT = "relationfield-scene-graph"
PRED_VERSION = 1
EVAL_FORMAT = "relationfield-eval"
EVAL_VERSION = 1

OBJECT_KS: tuple[int, ...] = (1, 5, 10)
PREDICATE_KS: tuple[int, ...] = (1, 3, 5)
RELATION_KS: tuple[int, ...] = (1, 50, 100)

DEFAULT_MIN_IOU = 0.1
DEFAULT_MIN_EXTENT = 0.1
"""Boxes are padded to at least this side length (metres) before IoU matching (see :func:`pad_box`)."""
#: Products of scores that differ by less than this relative amount count as ties (against us):
#: (a * b) * c and (c * b) * a may differ in the last bit although they are the same number.
TRIPLET_REL_TOL = 1e-9

GT_FORMAT_OBJECTS = "objects"
GT_FORMAT_3DSSG = "3dssg"
MATCHING_IOU = "iou"
MATCHING_NODE_MAP = "node_map"

Vec3 = tuple[float, float, float]
Box = tuple[Vec3, Vec3]
ScoreTable = dict[str, float]


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Match:
    """One matched pair: a GT object and the predicted node assigned to it."""

    gt_id: int
    node_id: int
    iou: float | None  # None when the GT has no geometry (3DSSG)


@dataclass(frozen=True)
class EvalResult:
    """Recalls (``k -> recall``; ``None`` when the denominator is 0) and the counts behind them."""

    object_recall: dict[int, float | None]
    predicate_recall: dict[int, float | None]
    relation_recall: dict[int, float | None]
    num_gt_objects: int
    num_matched_objects: int
    num_gt_triplets: int
    num_gt_pairs: int
    num_evaluated_links: int
    num_pred_nodes: int
    num_pred_links: int
    num_ignored_objects: int
    num_ignored_triplets: int
    mean_iou: float | None
    gt_format: str
    matching: str
    min_iou: float
    ignore_labels: tuple[str, ...]
    scan: str | None
    matches: tuple[Match, ...]

    def counts(self) -> dict[str, int]:
        """The counts, by name (the same names as in :meth:`to_json`)."""
        return {
            "gt_objects": self.num_gt_objects,
            "matched_objects": self.num_matched_objects,
            "gt_triplets": self.num_gt_triplets,
            "gt_pairs": self.num_gt_pairs,
            "evaluated_links": self.num_evaluated_links,
            "pred_nodes": self.num_pred_nodes,
            "pred_links": self.num_pred_links,
            "ignored_gt_objects": self.num_ignored_objects,
            "ignored_gt_triplets": self.num_ignored_triplets,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (recall keys are strings: ``{"1": 0.5, ...}``)."""
        return {
            "format": EVAL_FORMAT,
            "version": EVAL_VERSION,
            "settings": {
                "gt_format": self.gt_format,
                "matching": self.matching,
                "min_iou": self.min_iou,
                "ignore_labels": list(self.ignore_labels),
                "scan": self.scan,
            },
            "recall": {
                "object": _recall_to_json(self.object_recall),
                "predicate": _recall_to_json(self.predicate_recall),
                "relation": _recall_to_json(self.relation_recall),
            },
            "mean_iou": self.mean_iou,
            "counts": self.counts(),
            "matches": [{"gt_id": m.gt_id, "node_id": m.node_id, "iou": m.iou} for m in self.matches],
        }

    def to_markdown(self) -> str:
        """A small markdown report: one table of recalls (in %) and one of counts."""
        rows = [
            ("Object", self.object_recall),
            ("Predicate", self.predicate_recall),
            ("Relation (triplet)", self.relation_recall),
        ]
        lines = ["| metric | recall (%) |", "|---|---|"]
        for name, recall in rows:
            ks = " / ".join(f"R@{k}" for k in recall)
            values = " / ".join(_format_percent(v) for v in recall.values())
            lines.append(f"| {name} {ks} | {values} |")
        mean_iou = "n/a" if self.mean_iou is None else f"{self.mean_iou:.3f}"
        lines.append(f"| Mean IoU of matches | {mean_iou} |")
        lines += ["", "| count | value |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in self.counts().items()]
        ignored = ", ".join(self.ignore_labels) if self.ignore_labels else "none"
        lines += [
            "",
            f"Ground truth: {self.gt_format}{'' if self.scan is None else f' (scan {self.scan})'}; "
            f"matching: {self.matching}"
            f"{f' (min IoU {self.min_iou:g})' if self.matching == MATCHING_IOU else ''}; "
            f"ignored labels: {ignored}.",
        ]
        return "\n".join(lines) + "\n"


def _recall_to_json(recall: Mapping[int, float | None]) -> dict[str, float | None]:
    return {str(k): v for k, v in recall.items()}


def _format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


# ----------------------------------------------------------------------------------------------
# Small public helpers


def normalize_name(name: str) -> str:
    """The form labels and predicates are compared in: stripped, lower-case."""
    return name.strip().lower()


def rank_with_ties(scores: Sequence[tuple[str, float]], name: str) -> int | None:
    """Rank of ``name`` among ``scores``, ties counted against it; ``None`` when absent.

    ``rank = 1 + number of other names whose score is >= the score of name``. Names are compared
    after :func:`normalize_name`; a name listed twice keeps its highest score.
    """
    table = _score_table(scores, "scores")
    return _rank(table, normalize_name(name))


def aabb_iou(a_min: Sequence[float], a_max: Sequence[float], b_min: Sequence[float], b_max: Sequence[float]) -> float:
    """Intersection over union of two axis-aligned boxes (0.0 when the union has no volume)."""
    a_lo, a_hi = np.asarray(a_min, dtype=float), np.asarray(a_max, dtype=float)
    b_lo, b_hi = np.asarray(b_min, dtype=float), np.asarray(b_max, dtype=float)
    inter = float(np.prod(np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None)))
    union = float(np.prod(a_hi - a_lo)) + float(np.prod(b_hi - b_lo)) - inter
    return inter / union if union > 0.0 else 0.0


def _rank(table: Mapping[str, float], name: str) -> int | None:
    if name not in table:
        return None
    score = table[name]
    return 1 + sum(1 for other, value in table.items() if other != name and value >= score)


# ----------------------------------------------------------------------------------------------
# Parsing and validation


@dataclass(frozen=True)
class _PredNode:
    id: int
    label_scores: ScoreTable
    aabb: Box | None


@dataclass(frozen=True)
class _Prediction:
    nodes: dict[int, _PredNode]
    links: dict[tuple[int, int], ScoreTable]


@dataclass(frozen=True)
class _GtObject:
    id: int
    label: str
    aabb: Box | None


@dataclass(frozen=True)
class _GroundTruth:
    format: str
    objects: dict[int, _GtObject]
    triplets: tuple[tuple[int, int, str], ...]
    scan: str | None


def _expect_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _expect_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise UserError(f"{where} must be a JSON list, got {type(value).__name__}")
    return value


def _expect_key(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise UserError(f"{where} has no {key!r}")
    return mapping[key]


def _as_int(value: Any, where: str) -> int:
    """An integer id; int-like strings ("12", as in JSON object keys) are accepted."""
    if isinstance(value, bool):
        raise UserError(f"{where} must be an integer id, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise UserError(f"{where} must be an integer id, got {value!r}")


def _as_score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where} must be a number, got {value!r}")
    score = float(value)
    if not math.isfinite(score) or score < 0.0:
        raise UserError(
            f"{where} must be a finite, non-negative score (a probability), got {value!r}; "
            "relation ranking multiplies scores, which needs non-negative values"
        )
    return score


def _as_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where} must be a non-empty string, got {value!r}")
    return normalize_name(value)


def _as_vec3(value: Any, where: str) -> Vec3:
    items = _expect_list(value, where)
    if len(items) != 3:
        raise UserError(f"{where} must have 3 numbers, got {len(items)}")
    out: list[float] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(float(item)):
            raise UserError(f"{where} must hold finite numbers, got {value!r}")
        out.append(float(item))
    return (out[0], out[1], out[2])


def _as_aabb(value: Any, where: str) -> Box:
    box = _expect_dict(value, where)
    lo = _as_vec3(_expect_key(box, "min", where), f"{where}.min")
    hi = _as_vec3(_expect_key(box, "max", where), f"{where}.max")
    if any(a > b for a, b in zip(lo, hi)):
        raise UserError(f"{where} has min > max: min={list(lo)}, max={list(hi)}")
    return (lo, hi)


def _score_table(value: Any, where: str) -> ScoreTable:
    """``[[name, score], ...]`` -> ``{normalised name: highest score}``."""
    table: ScoreTable = {}
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise UserError(f"{where} must be a list of [name, score] pairs, got {type(value).__name__}")
    for i, pair in enumerate(value):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise UserError(f"{where}[{i}] must be a [name, score] pair, got {pair!r}")
        name = _as_name(pair[0], f"{where}[{i}][0]")
        score = _as_score(pair[1], f"{where}[{i}][1]")
        table[name] = max(score, table.get(name, score))
    return table


def _parse_prediction(pred: Any) -> _Prediction:
    """Validate our export format and index it: nodes by id, links by (source, target)."""
    data = _expect_dict(pred, "the prediction")
    fmt = data.get("format")
    if fmt != PRED_FORMAT:
        hint = (
            " (this looks like ground truth; swap the arguments?)" if "relationships" in data or "scans" in data else ""
        )
        raise UserError(f'the prediction must have "format": {PRED_FORMAT!r}, got {fmt!r}{hint}')
    if data.get("version") != PRED_VERSION:
        raise UserError(
            f"unsupported prediction version {data.get('version')!r}; this evaluator reads version {PRED_VERSION}"
        )
    if data.get("directed", True) is not True or data.get("multigraph", False) is not False:
        raise UserError(
            "the prediction must be a directed graph without parallel links (directed: true, multigraph: false)"
        )
    nodes: dict[int, _PredNode] = {}
    for i, raw in enumerate(_expect_list(_expect_key(data, "nodes", "the prediction"), "prediction nodes")):
        node = _parse_pred_node(raw, f"prediction nodes[{i}]")
        if node.id in nodes:
            raise UserError(f"prediction node id {node.id} appears twice")
        nodes[node.id] = node
    links: dict[tuple[int, int], ScoreTable] = {}
    for i, raw in enumerate(_expect_list(data.get("links", []), "prediction links")):
        key, table = _parse_pred_link(raw, f"prediction links[{i}]", nodes)
        if key in links:
            raise UserError(f"prediction has two links {key[0]} -> {key[1]} (multigraph is false)")
        links[key] = table
    return _Prediction(nodes=nodes, links=links)


def _parse_pred_node(raw: Any, where: str) -> _PredNode:
    node = _expect_dict(raw, where)
    node_id = _as_int(_expect_key(node, "id", where), f"{where}.id")
    scores = _score_table(_expect_key(node, "label_scores", where), f"{where}.label_scores")
    aabb = _as_aabb(node["aabb"], f"{where}.aabb") if node.get("aabb") is not None else None
    return _PredNode(id=node_id, label_scores=scores, aabb=aabb)


def _parse_pred_link(raw: Any, where: str, nodes: Mapping[int, _PredNode]) -> tuple[tuple[int, int], ScoreTable]:
    link = _expect_dict(raw, where)
    source = _as_int(_expect_key(link, "source", where), f"{where}.source")
    target = _as_int(_expect_key(link, "target", where), f"{where}.target")
    for end in (source, target):
        if end not in nodes:
            raise UserError(f"{where} refers to node {end}, which is not among the prediction's nodes")
    table = _score_table(_expect_key(link, "predicate_scores", where), f"{where}.predicate_scores")
    return (source, target), table


def _detect_gt_format(gt: Any) -> str:
    data = _expect_dict(gt, "the ground truth")
    if "scans" in data:
        return GT_FORMAT_3DSSG
    if "objects" in data and "relationships" in data:
        return GT_FORMAT_OBJECTS
    if data.get("format") == PRED_FORMAT:
        raise UserError("the ground truth is a relationfield prediction; swap the arguments?")
    raise UserError(
        'unrecognised ground truth: expected {"objects": [...], "relationships": [...]} '
        '(synthetic capture scene_graph.json) or {"scans": [...]} (3DSSG relationships.json)'
    )


def _parse_gt_objects_format(data: Mapping[str, Any]) -> _GroundTruth:
    """Format A: objects with aabbs and ``[subject, object, predicate]`` triples."""
    objects: dict[int, _GtObject] = {}
    for i, raw in enumerate(_expect_list(data["objects"], "ground truth objects")):
        where = f"ground truth objects[{i}]"
        obj = _expect_dict(raw, where)
        obj_id = _as_int(_expect_key(obj, "id", where), f"{where}.id")
        if obj_id in objects:
            raise UserError(f"ground truth object id {obj_id} appears twice")
        label = _as_name(_expect_key(obj, "label", where), f"{where}.label")
        aabb = _as_aabb(_expect_key(obj, "aabb", where), f"{where}.aabb")
        objects[obj_id] = _GtObject(id=obj_id, label=label, aabb=aabb)
    triplets = []
    for i, raw in enumerate(_expect_list(data["relationships"], "ground truth relationships")):
        where = f"ground truth relationships[{i}]"
        rel = _expect_list(raw, where)
        if len(rel) != 3:
            raise UserError(f"{where} must be [subject_id, object_id, predicate], got {rel!r}")
        triplets.append(
            (_as_int(rel[0], f"{where}[0]"), _as_int(rel[1], f"{where}[1]"), _as_name(rel[2], f"{where}[2]"))
        )
    return _GroundTruth(GT_FORMAT_OBJECTS, objects, _clean_triplets(triplets, objects, "ground truth"), scan=None)


def _select_scan(scans: list[Any], scan: str | None) -> dict[str, Any]:
    entries = [_expect_dict(s, f"ground truth scans[{i}]") for i, s in enumerate(scans)]
    ids = [str(entry.get("scan")) for entry in entries]
    if scan is None:
        if len(entries) != 1:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise UserError(f"the ground truth holds {len(entries)} scans ({shown}); choose one with a scan id")
        return entries[0]
    matching = [entry for entry, scan_id in zip(entries, ids) if scan_id == scan]
    if not matching:
        raise UserError(f"scan {scan!r} is not in the ground truth ({len(entries)} scans)")
    if len(matching) > 1:
        raise UserError(f"scan {scan!r} appears {len(matching)} times in the ground truth")
    return matching[0]


def _parse_gt_3dssg(data: Mapping[str, Any], scan: str | None) -> _GroundTruth:
    """Format B: 3DSSG relationships.json; one scan, labels only, ``[s, o, index, name]`` relations."""
    entry = _select_scan(_expect_list(data["scans"], "ground truth scans"), scan)
    scan_id = str(entry.get("scan"))
    where = f"scan {scan_id}"
    objects: dict[int, _GtObject] = {}
    for key, label in _expect_dict(_expect_key(entry, "objects", where), f"{where} objects").items():
        obj_id = _as_int(key, f"{where} object id")
        objects[obj_id] = _GtObject(id=obj_id, label=_as_name(label, f"{where} object {key} label"), aabb=None)
    triplets = []
    for i, raw in enumerate(_expect_list(_expect_key(entry, "relationships", where), f"{where} relationships")):
        rel = _expect_list(raw, f"{where} relationships[{i}]")
        if len(rel) != 4:
            raise UserError(f"{where} relationships[{i}] must be [s, o, predicate_index, predicate_name], got {rel!r}")
        name = _as_name(rel[3], f"{where} relationships[{i}][3]")
        triplets.append(
            (_as_int(rel[0], f"{where} relationships[{i}][0]"), _as_int(rel[1], f"{where} relationships[{i}][1]"), name)
        )
    return _GroundTruth(GT_FORMAT_3DSSG, objects, _clean_triplets(triplets, objects, where), scan=scan_id)


def _clean_triplets(
    triplets: Iterable[tuple[int, int, str]], objects: Mapping[int, _GtObject], where: str
) -> tuple[tuple[int, int, str], ...]:
    """Check the endpoints exist; drop duplicates and "none" (no relation is not evaluated)."""
    seen: dict[tuple[int, int, str], None] = {}
    for subject, obj, predicate in triplets:
        for end in (subject, obj):
            if end not in objects:
                raise UserError(f"{where}: a relationship refers to object {end}, which is not among its objects")
        if predicate != NONE_PREDICATE:
            seen.setdefault((subject, obj, predicate), None)
    return tuple(seen)


def _parse_ground_truth(gt: Any, scan: str | None) -> _GroundTruth:
    kind = _detect_gt_format(gt)
    if kind == GT_FORMAT_3DSSG:
        return _parse_gt_3dssg(gt, scan)
    if scan is not None:
        raise UserError('a scan id only applies to 3DSSG ground truth ({"scans": [...]})')
    return _parse_gt_objects_format(gt)


def _parse_node_map(node_map: Mapping[Any, Any], where: str = "the node map") -> dict[int, int]:
    """``{prediction node id: GT object id}``; string keys/values such as JSON's are accepted."""
    if not isinstance(node_map, Mapping):
        raise UserError(
            f"{where} must be a JSON object {{prediction node id: GT object id}}, got {type(node_map).__name__}"
        )
    return {
        _as_int(node, f"{where} key {node!r}"): _as_int(obj, f"{where} value for node {node!r}")
        for node, obj in node_map.items()
    }


# ----------------------------------------------------------------------------------------------
# Matching


def _match_by_iou(
    pred: _Prediction, objects: Sequence[_GtObject], min_iou: float, min_extent: float = 0.0
) -> list[Match]:
    """One-to-one node/object assignment maximising the summed IoU of pairs with IoU >= min_iou."""
    nodes = sorted(pred.nodes.values(), key=lambda n: n.id)
    missing = [n.id for n in nodes if n.aabb is None]
    if missing:
        raise UserError(f"prediction nodes {missing[:5]} have no aabb; IoU matching needs one (or give a node map)")
    if not nodes or not objects:
        return []
    iou = _iou_matrix(
        [pad_box(*n.aabb, min_extent) for n in nodes],
        [pad_box(*o.aabb, min_extent) for o in objects],  # type: ignore[misc]
    )
    eligible = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    matches = [
        Match(gt_id=objects[c].id, node_id=nodes[r].id, iou=float(iou[r, c]))
        for r, c in zip(rows, cols)
        if iou[r, c] >= min_iou
    ]
    return sorted(matches, key=lambda m: m.gt_id)


def pad_box(lo: Sequence[float], hi: Sequence[float], min_extent: float) -> Box:
    """The box grown symmetrically so that every side is at least ``min_extent`` long.

    Surface points of a wall or a floor give a box of almost no thickness, whose IoU with any solid
    box is close to zero however well it is placed; padding both sides to ``min_extent`` (default
    0.1 m) makes planar objects comparable while leaving objects larger than that untouched.
    """
    lo_arr, hi_arr = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    grow = np.maximum(0.0, min_extent - (hi_arr - lo_arr)) / 2.0
    return (tuple(lo_arr - grow), tuple(hi_arr + grow))  # type: ignore[return-value]


def _iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box in ``a`` (rows) with every box in ``b`` (columns)."""
    a_lo, a_hi = (np.array([box[i] for box in a], dtype=float) for i in (0, 1))
    b_lo, b_hi = (np.array([box[i] for box in b], dtype=float) for i in (0, 1))
    extent = np.minimum(a_hi[:, None], b_hi[None]) - np.maximum(a_lo[:, None], b_lo[None])
    inter = np.prod(np.clip(extent, 0.0, None), axis=-1)
    union = np.prod(a_hi - a_lo, axis=-1)[:, None] + np.prod(b_hi - b_lo, axis=-1)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)


def _match_by_map(pred: _Prediction, gt: _GroundTruth, node_map: Mapping[int, int]) -> list[Match]:
    """The given mapping, checked: known ids, at most one node per GT object."""
    seen: dict[int, int] = {}
    for node_id, gt_id in node_map.items():
        if node_id not in pred.nodes:
            raise UserError(f"the node map refers to prediction node {node_id}, which the prediction does not have")
        if gt_id not in gt.objects:
            raise UserError(f"the node map refers to GT object {gt_id}, which the ground truth does not have")
        if gt_id in seen:
            raise UserError(f"the node map sends nodes {seen[gt_id]} and {node_id} to the same GT object {gt_id}")
        seen[gt_id] = node_id
    matches = []
    for gt_id, node_id in sorted(seen.items()):
        node_box, gt_box = pred.nodes[node_id].aabb, gt.objects[gt_id].aabb
        iou = aabb_iou(*node_box, *gt_box) if node_box is not None and gt_box is not None else None
        matches.append(Match(gt_id=gt_id, node_id=node_id, iou=iou))
    return matches


# ----------------------------------------------------------------------------------------------
# Metrics


def _recall(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[int, float | None]:
    """Fraction of ranks that are not None and <= k, for each k; None when there are no ranks."""
    if not ranks:
        return {k: None for k in ks}
    return {k: sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}


def _object_ranks(objects: Sequence[_GtObject], pred: _Prediction, node_of: Mapping[int, int]) -> list[int | None]:
    ranks: list[int | None] = []
    for obj in objects:
        node_id = node_of.get(obj.id)
        ranks.append(None if node_id is None else _rank(pred.nodes[node_id].label_scores, obj.label))
    return ranks


def _link_of(
    pred: _Prediction, node_of: Mapping[int, int], subject: int, obj: int
) -> tuple[int, int, ScoreTable] | None:
    """The predicted link between the nodes matched to GT objects subject -> obj, if any."""
    source, target = node_of.get(subject), node_of.get(obj)
    if source is None or target is None or (source, target) not in pred.links:
        return None
    return source, target, pred.links[(source, target)]


def _triplet_rank(
    subjects: ScoreTable, objects: ScoreTable, predicates: ScoreTable, triplet: tuple[str, str, str]
) -> int | None:
    """Rank of (subject label, object label, predicate) among all combinations, by score product.

    "none" is not a candidate predicate; ties (within ``TRIPLET_REL_TOL``) count against us.
    """
    label_s, label_o, predicate = triplet
    candidates = {p: s for p, s in predicates.items() if p != NONE_PREDICATE}
    if label_s not in subjects or label_o not in objects or predicate not in candidates:
        return None
    s = np.fromiter(subjects.values(), dtype=float)
    o = np.fromiter(objects.values(), dtype=float)
    pair = np.outer(s, o).ravel()
    target = (subjects[label_s] * objects[label_o]) * candidates[predicate]
    threshold = target - TRIPLET_REL_TOL * abs(target)
    # Counts the GT triplet itself too, so the count is 1 + the number of others scoring >= it.
    return int(sum(np.count_nonzero(pair * p >= threshold) for p in candidates.values()))


@dataclass(frozen=True)
class _TripletRanks:
    predicate: list[int | None]
    relation: list[int | None]
    evaluated_links: int


def _triplet_ranks(
    triplets: Sequence[tuple[int, int, str]], gt: _GroundTruth, pred: _Prediction, node_of: Mapping[int, int]
) -> _TripletRanks:
    predicate_ranks: list[int | None] = []
    relation_ranks: list[int | None] = []
    links: set[tuple[int, int]] = set()
    for subject, obj, predicate in triplets:
        link = _link_of(pred, node_of, subject, obj)
        if link is None:
            predicate_ranks.append(None)
            relation_ranks.append(None)
            continue
        source, target, scores = link
        links.add((source, target))
        predicate_ranks.append(_rank(scores, predicate))
        labels = (gt.objects[subject].label, gt.objects[obj].label, predicate)
        relation_ranks.append(
            _triplet_rank(pred.nodes[source].label_scores, pred.nodes[target].label_scores, scores, labels)
        )
    return _TripletRanks(predicate_ranks, relation_ranks, len(links))


# ----------------------------------------------------------------------------------------------
# Entry points


def evaluate(
    pred: dict[str, Any],
    gt: dict[str, Any],
    *,
    min_iou: float = DEFAULT_MIN_IOU,
    min_extent: float = DEFAULT_MIN_EXTENT,
    ignore_labels: Sequence[str] = (),
    node_map: Mapping[int, int] | None = None,
    scan: str | None = None,
) -> EvalResult:
    """Evaluate a prediction (our export format) against ground truth (synthetic or 3DSSG).

    The ground-truth format is detected. With 3DSSG ground truth ``node_map`` (prediction node id ->
    GT object id) is required and ``scan`` picks the scan (needed when the file holds several).
    With synthetic ground truth the nodes are matched by aabb IoU (``min_iou``), unless a
    ``node_map`` is given, which is then used instead. GT objects whose label is in
    ``ignore_labels`` take part in the matching, then they and their triplets are left out of every
    count and denominator.
    """
    if isinstance(min_iou, bool) or not isinstance(min_iou, numbers.Real) or not 0.0 < float(min_iou) <= 1.0:
        raise UserError(f"min_iou must be a number in (0, 1], got {min_iou!r}")
    ignored = _ignore_set(ignore_labels)
    prediction = _parse_prediction(pred)
    truth = _parse_ground_truth(gt, scan)
    kept = [obj for _, obj in sorted(truth.objects.items()) if obj.label not in ignored]
    kept_ids = {obj.id for obj in kept}
    triplets = [t for t in truth.triplets if t[0] in kept_ids and t[1] in kept_ids]

    if node_map is not None:
        all_matches, matching = _match_by_map(prediction, truth, _parse_node_map(node_map)), MATCHING_NODE_MAP
    elif truth.format == GT_FORMAT_3DSSG:
        raise UserError("3DSSG ground truth has no geometry: give a node map (prediction node id -> GT object id)")
    else:
        objects = [obj for _, obj in sorted(truth.objects.items())]
        all_matches, matching = _match_by_iou(prediction, objects, float(min_iou), float(min_extent)), MATCHING_IOU
    # Ignored objects take part in the matching (a floor node pairs with the floor, not with a rug),
    # then their matches are dropped with them.
    matches = [m for m in all_matches if m.gt_id in kept_ids]
    node_of = {m.gt_id: m.node_id for m in matches}

    ranks = _triplet_ranks(triplets, truth, prediction, node_of)
    ious = [m.iou for m in matches if m.iou is not None]
    return EvalResult(
        object_recall=_recall(_object_ranks(kept, prediction, node_of), OBJECT_KS),
        predicate_recall=_recall(ranks.predicate, PREDICATE_KS),
        relation_recall=_recall(ranks.relation, RELATION_KS),
        num_gt_objects=len(kept),
        num_matched_objects=len(matches),
        num_gt_triplets=len(triplets),
        num_gt_pairs=len({(s, o) for s, o, _ in triplets}),
        num_evaluated_links=ranks.evaluated_links,
        num_pred_nodes=len(prediction.nodes),
        num_pred_links=len(prediction.links),
        num_ignored_objects=len(truth.objects) - len(kept),
        num_ignored_triplets=len(truth.triplets) - len(triplets),
        mean_iou=float(np.mean(ious)) if ious else None,
        gt_format=truth.format,
        matching=matching,
        min_iou=float(min_iou),
        ignore_labels=tuple(sorted(ignored)),
        scan=truth.scan,
        matches=tuple(matches),
    )


def _ignore_set(ignore_labels: Sequence[str]) -> set[str]:
    if isinstance(ignore_labels, str) or not isinstance(ignore_labels, Iterable):
        raise UserError(f"ignore_labels must be a list of labels, got {ignore_labels!r}")
    return {_as_name(label, "an ignored label") for label in ignore_labels}


def _read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning every failure into a UserError that names the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} is not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def evaluate_files(
    pred_path: Path,
    gt_path: Path,
    *,
    output_dir: Path | None = None,
    min_iou: float = DEFAULT_MIN_IOU,
    min_extent: float = DEFAULT_MIN_EXTENT,
    ignore_labels: Sequence[str] = (),
    node_map_path: Path | None = None,
    scan: str | None = None,
) -> EvalResult:
    """:func:`evaluate` on files; with ``output_dir``, also write ``eval.json`` and ``eval.md`` there."""
    pred = _read_json(Path(pred_path), "prediction file")
    gt = _read_json(Path(gt_path), "ground-truth file")
    node_map = None
    if node_map_path is not None:
        node_map = _parse_node_map(_read_json(Path(node_map_path), "node map file"), f"node map {node_map_path}")
    try:
        result = evaluate(
            pred, gt, min_iou=min_iou, min_extent=min_extent, ignore_labels=ignore_labels, node_map=node_map, scan=scan
        )
    except UserError as exc:
        raise UserError(f"evaluating {pred_path} against {gt_path}: {exc}") from exc
    if output_dir is not None:
        _write_outputs(Path(output_dir), result)
    return result


def _write_outputs(output_dir: Path, result: EvalResult) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "eval.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        (output_dir / "eval.md").write_text(result.to_markdown(), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the evaluation to {output_dir}: {exc}") from exc
