"""Matching predicted nodes to ground-truth objects: by box IoU (Hungarian assignment) or by a node map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, TypeAdapter
from scipy.optimize import linear_sum_assignment

from relationfield.errors import UserError
from relationfield.evaluation.ground_truth import GroundTruth, GtObject
from relationfield.evaluation.prediction import Prediction
from relationfield.evaluation.schema import Box, Locate, Location, NodeId, validate

DEFAULT_MIN_IOU = 0.1
DEFAULT_MIN_EXTENT = 0.1
"""Boxes are padded to at least this side length (metres) before IoU matching (see :func:`pad_box`)."""

MATCHING_IOU = "iou"
MATCHING_NODE_MAP = "node_map"


@dataclass(frozen=True)
class Match:
    """One matched pair: a GT object and the predicted node assigned to it."""

    gt_id: int
    node_id: int
    iou: float | None  # None when the GT has no geometry (3DSSG)


def aabb_iou(a_min: Sequence[float], a_max: Sequence[float], b_min: Sequence[float], b_max: Sequence[float]) -> float:
    """Intersection over union of two axis-aligned boxes (0.0 when the union has no volume)."""
    a_lo, a_hi = np.asarray(a_min, dtype=float), np.asarray(a_max, dtype=float)
    b_lo, b_hi = np.asarray(b_min, dtype=float), np.asarray(b_max, dtype=float)
    inter = float(np.prod(np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None)))
    union = float(np.prod(a_hi - a_lo)) + float(np.prod(b_hi - b_lo)) - inter
    return inter / union if union > 0.0 else 0.0


def pad_box(lo: Sequence[float], hi: Sequence[float], min_extent: float) -> Box:
    """The box grown symmetrically so that every side is at least ``min_extent`` long.

    Surface points of a wall or a floor give a box of almost no thickness, whose IoU with any solid
    box is close to zero however well it is placed; padding both sides to ``min_extent`` (default
    0.1 m) makes planar objects comparable while leaving objects larger than that untouched.
    """
    lo_arr, hi_arr = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    grow = np.maximum(0.0, min_extent - (hi_arr - lo_arr)) / 2.0
    return (tuple(lo_arr - grow), tuple(hi_arr + grow))  # type: ignore[return-value]


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box in ``a`` (rows) with every box in ``b`` (columns)."""
    a_lo, a_hi = (np.array([box[i] for box in a], dtype=float) for i in (0, 1))
    b_lo, b_hi = (np.array([box[i] for box in b], dtype=float) for i in (0, 1))
    extent = np.minimum(a_hi[:, None], b_hi[None]) - np.maximum(a_lo[:, None], b_lo[None])
    inter = np.prod(np.clip(extent, 0.0, None), axis=-1)
    union = np.prod(a_hi - a_lo, axis=-1)[:, None] + np.prod(b_hi - b_lo, axis=-1)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)


def match_by_iou(pred: Prediction, objects: Sequence[GtObject], min_iou: float, min_extent: float = 0.0) -> list[Match]:
    """One-to-one node/object assignment maximising the summed IoU of pairs with IoU >= min_iou."""
    nodes = sorted(pred.nodes.values(), key=lambda n: n.id)
    missing = [n.id for n in nodes if n.aabb is None]
    if missing:
        raise UserError(f"prediction nodes {missing[:5]} have no aabb; IoU matching needs one (or give a node map)")
    if not nodes or not objects:
        return []
    iou = iou_matrix(
        [pad_box(*n.aabb.box, min_extent) for n in nodes],  # type: ignore[union-attr]
        [pad_box(*o.aabb.box, min_extent) for o in objects],  # type: ignore[union-attr]
    )
    eligible = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    matches = [
        Match(gt_id=objects[c].id, node_id=nodes[r].id, iou=float(iou[r, c]))
        for r, c in zip(rows, cols)
        if iou[r, c] >= min_iou
    ]
    return sorted(matches, key=lambda m: m.gt_id)


def _as_mapping(value: Any) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON object {{prediction node id: GT object id}}, got {type(value).__name__}")
    return dict(value)


_NODE_MAP = TypeAdapter(Annotated[dict[NodeId, NodeId], BeforeValidator(_as_mapping)])


def _node_map_locator(where: str) -> Locate:
    def locate(loc: Location) -> str:
        if not loc:
            return where
        # pydantic marks a failing key with "[key]" after it; a bare key means its value failed.
        return f"{where} key {loc[0]!r}" if loc[-1] == "[key]" else f"{where} value for node {loc[0]!r}"

    return locate


def read_node_map(node_map: Any, where: str = "the node map") -> dict[int, int]:
    """``{prediction node id: GT object id}``; string keys/values such as JSON's are accepted."""
    return validate(_NODE_MAP, node_map, _node_map_locator(where))


def match_by_map(pred: Prediction, gt: GroundTruth, node_map: Mapping[int, int]) -> list[Match]:
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
        iou = aabb_iou(*node_box.box, *gt_box.box) if node_box is not None and gt_box is not None else None
        matches.append(Match(gt_id=gt_id, node_id=node_id, iou=iou))
    return matches
