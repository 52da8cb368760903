"""Matching predicted nodes to ground-truth objects by point overlap (``relationfield eval --matching points``).

Boxes are a coarse stand-in for a scan's objects: a chair's box holds much of the table it is pushed under. A
converted scan has points on each annotated object (``ground_truth/points.ply``) and the export has its nodes'
surface points (``points.ply``); a node and an object overlap where their points are close. With ``a`` the node's
points whose nearest ground-truth point (within ``radius``) belongs to the object and ``b`` the object's points
whose nearest node point (within ``radius``) belongs to the node, their overlap is the Dice-like
``(a + b) / (|node| + |object|)``: 1 when the two point sets cover the same surface, whatever their densities
(each side is counted in its own points). Nodes and objects are then paired one to one by the Hungarian
assignment on the overlap, as box matching pairs them on IoU, keeping pairs with overlap >= ``min_overlap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from relationfield.errors import UserError
from relationfield.evaluation.matching import Match

MATCHING_POINTS = "points"
DEFAULT_RADIUS = 0.05
"""Points closer than this (metres) count as the same surface: a few depth-noise widths of an RGB-D scan."""


def overlap_matrix(
    node_points: np.ndarray,
    node_of_point: np.ndarray,
    object_points: np.ndarray,
    object_of_point: np.ndarray,
    node_ids: Sequence[int],
    object_ids: Sequence[int],
    radius: float = DEFAULT_RADIUS,
) -> np.ndarray:
    """``[len(node_ids), len(object_ids)]`` overlap of every node with every object (see the module)."""
    node_row = {int(n): i for i, n in enumerate(node_ids)}
    object_col = {int(o): j for j, o in enumerate(object_ids)}
    rows = np.array([node_row.get(int(n), -1) for n in node_of_point], dtype=np.int64)
    cols = np.array([object_col.get(int(o), -1) for o in object_of_point], dtype=np.int64)
    counts = np.zeros((len(node_ids), len(object_ids)))
    if len(node_points) and len(object_points):
        # a: each node point votes for the object of its nearest ground-truth point; b: the other way round.
        for source, source_index, target, target_index, transpose in (
            (node_points, rows, object_points, cols, False),
            (object_points, cols, node_points, rows, True),
        ):
            distance, nearest = cKDTree(target).query(source, distance_upper_bound=radius)
            hit = np.isfinite(distance)
            pairs = np.stack([source_index[hit], target_index[nearest[hit]]], axis=1)
            pairs = pairs[(pairs >= 0).all(axis=1)]
            if transpose:
                pairs = pairs[:, ::-1]
            np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1.0)
    sizes_n = np.bincount(rows[rows >= 0], minlength=len(node_ids)).astype(float)
    sizes_o = np.bincount(cols[cols >= 0], minlength=len(object_ids)).astype(float)
    total = sizes_n[:, None] + sizes_o[None, :]
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def match_by_points(
    node_ids: Sequence[int],
    object_ids: Sequence[int],
    points: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    min_overlap: float,
    radius: float = DEFAULT_RADIUS,
) -> list[Match]:
    """One-to-one node/object pairs maximising the summed point overlap, pairs below ``min_overlap`` dropped.

    ``points`` is ``(node points [N, 3], node id of each [N], object points [M, 3], object id of each [M])``;
    ``Match.iou`` holds the pair's overlap.
    """
    node_points, node_of_point, object_points, object_of_point = (np.asarray(a) for a in points)
    if not len(object_points):
        raise UserError("the ground-truth points are empty: point matching needs points on the objects")
    if not len(node_ids) or not len(object_ids):
        return []
    overlap = overlap_matrix(node_points, node_of_point, object_points, object_of_point, node_ids, object_ids, radius)
    rows, cols = linear_sum_assignment(np.where(overlap >= min_overlap, overlap, 0.0), maximize=True)
    matches = [
        Match(gt_id=int(object_ids[c]), node_id=int(node_ids[r]), iou=float(overlap[r, c]))
        for r, c in zip(rows, cols)
        if overlap[r, c] >= min_overlap
    ]
    return sorted(matches, key=lambda m: m.gt_id)
