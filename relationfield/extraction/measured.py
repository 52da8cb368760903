"""Measured predicates: proximity, size and height comparisons read from the nodes' boxes, not only learned.

A vision model seldom volunteers "bigger than" or "close by" (on the demo's typical labels the field finds 4 of
the 24 "close by" triples), and when it does it guesses from one view; the reconstruction measures them.
3DSSG's comparative relationships are geometric by definition too. For each scored pair the export computes a
soft truth value of each of these predicates from the two nodes' boxes and mixes it into the field's score:
``p(s, o) <- (1 - w) p_field(s, o) + w p_measured(s, o)``.

The rules are the synthetic ground truth's definitions (README, "Ground truth"), in world units:

* ``close by``: box gap at most ``close_by_gap``, and neither box rests on the other (or a part of it) nor
  lies within it (support and containment are other predicates);
* ``bigger than`` / ``smaller than``: box gap at most ``comparison_gap`` and box volume ratio at least
  ``volume_ratio``;
* ``higher than`` / ``lower than``: box gap at most ``comparison_gap`` and the subject's bottom at or above
  the object's top.

Each threshold is a logistic step as wide as ``measure_tolerance`` (lengths measured on surface points are
that far off), and as wide as :data:`LOG_RATIO_WIDTH` for volume ratios. Room structure (floor, walls,
ceiling) is compared with nothing. Only predicates in the vocabulary are touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from relationfield.extraction.clustering import box_gap
from relationfield.extraction.config import ExtractionConfig
from relationfield.scene_graph import SceneNode
from relationfield.vocab import is_room_structure

__all__ = ["MEASURED_PREDICATES", "Box", "fuse_measured", "measure_pair"]

MEASURED_PREDICATES: tuple[str, ...] = ("close by", "bigger than", "smaller than", "higher than", "lower than")
"""The predicates measured from boxes (3DSSG names)."""

CONTACT_TOLERANCES = 3.0
"""A box whose bottom is at most this many ``measure_tolerance`` above another's top (over it) rests on it."""

FOOTPRINT_SHARE = 0.5
"""A box rests on another only if at least this share of its footprint lies over the other's."""

LOG_RATIO_WIDTH = 0.1
"""Width of the volume-ratio step in natural log units (a 10% error in a volume ratio)."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in world units, +z up."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, node: SceneNode) -> Box:
        return cls(np.asarray(node.aabb_min, dtype=float), np.asarray(node.aabb_max, dtype=float))

    @property
    def volume(self) -> float:
        return float(np.prod(np.clip(self.high - self.low, 0.0, None)))


def _step(margin: float, width: float) -> float:
    """Soft ``margin >= 0``: 0.5 at the threshold, about 0.88 one ``width`` past it."""
    return float(1.0 / (1.0 + np.exp(-np.clip(margin / max(width, 1e-9), -50.0, 50.0))))


def _rests_on(top: Box, base: Box, tolerance: float) -> bool:
    """``top`` stands on ``base`` or on a part of it: most of its footprint over ``base``'s, its bottom above
    ``base``'s bottom and at most a little above ``base``'s top. A desk's box reaches above its desktop when
    it has a raised shelf, and surface points miss occluded contacts (a box on a box: its lowest visible points
    were 4 cm above its bottom), hence :data:`CONTACT_TOLERANCES` tolerances of slack."""
    slack = CONTACT_TOLERANCES * tolerance
    overlap = np.clip(np.minimum(top.high[:2], base.high[:2]) - np.maximum(top.low[:2], base.low[:2]), 0.0, None)
    footprint = float(np.prod(np.clip(top.high[:2] - top.low[:2], 1e-9, None)))
    lifted = base.low[2] + slack < top.low[2] <= base.high[2] + slack
    return lifted and float(np.prod(overlap)) >= FOOTPRINT_SHARE * footprint


def _within(inner: Box, outer: Box, tolerance: float) -> bool:
    return bool((inner.low >= outer.low - tolerance).all() and (inner.high <= outer.high + tolerance).all())


def measure_pair(a: Box, b: Box, config: ExtractionConfig) -> dict[str, float]:
    """Soft truth of each :data:`MEASURED_PREDICATES` for "a <predicate> b"."""
    tol = config.measure_tolerance
    gap = box_gap(a.low, a.high, b.low, b.high)
    near = _step(config.comparison_gap - gap, tol)
    contact = _rests_on(a, b, tol) or _rests_on(b, a, tol) or _within(a, b, tol) or _within(b, a, tol)
    log_ratio = float(np.log(max(a.volume, 1e-12) / max(b.volume, 1e-12)))
    threshold = float(np.log(config.volume_ratio))
    return {
        "close by": 0.0 if contact else _step(config.close_by_gap - gap, tol),
        "bigger than": near * _step(log_ratio - threshold, LOG_RATIO_WIDTH),
        "smaller than": near * _step(-log_ratio - threshold, LOG_RATIO_WIDTH),
        # "At or above" with the tolerance as slack: a cup's lowest surface points sit a little above the table.
        "higher than": near * _step(a.low[2] - b.high[2] + tol, tol / 2),
        "lower than": near * _step(b.low[2] - a.high[2] + tol, tol / 2),
    }


def fuse_measured(
    rows: Mapping[tuple[int, int], Tensor],
    texts: Sequence[str],
    nodes: Sequence[SceneNode],
    config: ExtractionConfig,
) -> dict[tuple[int, int], Tensor]:
    """Each pair's predicate scores (columns ``texts``; keys index ``nodes``) with the measured predicates mixed
    in with weight ``config.measured_weight``; unchanged when it is 0 or no measured predicate is in ``texts``."""
    index = {text: i for i, text in enumerate(texts)}
    columns = [(name, index[name]) for name in MEASURED_PREDICATES if name in index]
    weight = config.measured_weight
    if weight <= 0 or not columns:
        return dict(rows)
    boxes = [Box.of(node) for node in nodes]
    structure = [is_room_structure(node.label) for node in nodes]
    fused = {}
    for (a, b), row in rows.items():
        measured = {} if structure[a] or structure[b] else measure_pair(boxes[a], boxes[b], config)
        mixed = row.clone()
        for name, column in columns:
            mixed[column] = (1 - weight) * row[column] + weight * measured.get(name, 0.0)
        fused[(a, b)] = mixed
    return fused
