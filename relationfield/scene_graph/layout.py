"""Labels of the scene-graph picture: their sizes, non-overlapping places near their anchors, their drawing.

Boxes are axis-aligned, ``(x_min, y_min, x_max, y_max)`` in the plot's data units (metres). Each label is
given candidate centres with costs (:func:`around`, :func:`inside`, :func:`along`); :class:`LabelPlacer` takes
the cheapest candidate that stays in bounds and overlaps no box placed before it (a greedy placement).
Texts are measured (:class:`TextSizes`) and drawn (:func:`draw_texts`) with matplotlib, imported by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase

__all__ = [
    "FONT",
    "LABEL_GID",
    "LabelPlacer",
    "TextSizes",
    "along",
    "around",
    "draw_texts",
    "inside",
    "place_object_labels",
]

FONT = {"object": 7.5, "note": 6.5, "wall": 6.5, "edge": 6.3, "title": 10.0, "subtitle": 7.5, "legend": 7.0}
"""Font size (points) of each kind of text."""

LABEL_GID = "scene-graph-label"
"""The gid of every label drawn by :func:`draw_texts` (objects, notes, walls, relations): none overlaps another."""

_PAD = {"object": 0.25, "note": 0.12, "wall": 0.15, "edge": 0.12}  # text box padding, in font sizes

# Distances from the anchor of the candidate rings, in label heights.
_RINGS = (0.0, 0.4, 0.9, 1.5, 2.2, 3.0, 4.0, 5.5, 7.5, 10.0, 13.0, 17.0, 22.0, 30.0)
_ANGLES = 16
_INSIDE_STEPS = 5  # candidates per axis inside a footprint
_INSIDE_COST = 0.5  # a label on its own object costs this share of its distance
_DOT_COST = 4.0  # covering another object's centroid costs this many label heights
_AWAY_COST = 3.0  # per unit that a label comes too near a related label
_ALONG = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82)
_ACROSS = (0.0, 0.7, -0.7, 1.4, -1.4, 2.2, -2.2)  # offsets from a line, in label heights


class LabelPlacer:
    """Places boxes one at a time, each clear of the bounds' edges and of every box placed before it."""

    def __init__(self, bounds: Sequence[float], gap: float, dots: np.ndarray | None = None, apart: float = 0.0) -> None:
        self._bounds = np.asarray(bounds, dtype=np.float64)
        self._gap = float(gap)
        self.apart = float(apart)  # wanted distance between the labels of related objects
        self._dots = np.zeros((0, 2)) if dots is None else np.asarray(dots, dtype=np.float64).reshape(-1, 2)
        self._boxes = np.zeros((0, 4))

    @property
    def boxes(self) -> np.ndarray:
        """[n, 4] the boxes placed (or reserved) so far, in order."""
        return self._boxes.copy()

    def reserve(self, box: Sequence[float]) -> None:
        """Keep later labels off ``box``."""
        self._boxes = np.vstack([self._boxes, np.asarray(box, dtype=np.float64).reshape(1, 4)])

    def place(
        self,
        centres: np.ndarray,
        costs: np.ndarray,
        size: Sequence[float],
        own_dot: int = -1,
        required: bool = True,
        keep_away: tuple[Sequence[np.ndarray], float] = ((), 0.0),
    ) -> np.ndarray | None:
        """The box ([4]) at the cheapest free candidate centre, reserved.

        Covering dots other than ``own_dot`` adds to a candidate's cost, as does coming nearer than
        ``keep_away[1]`` to a box of ``keep_away[0]``. Without a free candidate: the least overlapping one if
        ``required``, else None (nothing reserved).
        """
        half = np.asarray(size, dtype=np.float64) / 2.0
        boxes = np.concatenate([centres - half, centres + half], axis=1)
        low, high = self._bounds[:2], self._bounds[2:]
        inside_bounds = np.all(boxes[:, :2] >= low, axis=1) & np.all(boxes[:, 2:] <= high, axis=1)
        overlap = self._overlap(boxes)
        total = costs + _DOT_COST * half[1] * 2.0 * self._covered_dots(boxes, own_dot)
        others, distance = keep_away
        if len(others) and distance > 0.0:
            total = total + _AWAY_COST * np.clip(distance - _distances(boxes, np.array(others)), 0.0, None).sum(axis=1)
        free = inside_bounds & (overlap <= 0.0)
        if free.any():
            choice = int(np.argmin(np.where(free, total, np.inf)))
        elif required:
            # Crowded beyond the picture's size: the candidate that overlaps least, in bounds if any is.
            choice = int(np.argmin(overlap + np.where(inside_bounds, 0.0, overlap.max() + 1.0)))
        else:
            return None
        self.reserve(boxes[choice])
        return boxes[choice]

    def _overlap(self, boxes: np.ndarray) -> np.ndarray:
        """[k] summed overlap area (gap included) of each candidate box with the placed boxes."""
        if not len(self._boxes):
            return np.zeros(len(boxes))
        placed = self._boxes[None, :, :]
        grown = boxes[:, None, :] + np.array([-1.0, -1.0, 1.0, 1.0]) * self._gap
        width = np.minimum(grown[..., 2], placed[..., 2]) - np.maximum(grown[..., 0], placed[..., 0])
        height = np.minimum(grown[..., 3], placed[..., 3]) - np.maximum(grown[..., 1], placed[..., 1])
        return (np.clip(width, 0.0, None) * np.clip(height, 0.0, None)).sum(axis=1)

    def _covered_dots(self, boxes: np.ndarray, own_dot: int) -> np.ndarray:
        """[k] how many dots (other than ``own_dot``) each candidate box covers."""
        if not len(self._dots):
            return np.zeros(len(boxes))
        dots = self._dots[None, :, :]
        covered = np.all(dots >= boxes[:, None, :2], axis=-1) & np.all(dots <= boxes[:, None, 2:], axis=-1)
        if 0 <= own_dot < covered.shape[1]:
            covered[:, own_dot] = False
        return covered.sum(axis=1).astype(np.float64)


def _distances(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """[k, m] gaps between boxes [k, 4] and boxes [m, 4] (0 where they overlap)."""
    dx = np.maximum(others[None, :, 0] - boxes[:, None, 2], boxes[:, None, 0] - others[None, :, 2])
    dy = np.maximum(others[None, :, 1] - boxes[:, None, 3], boxes[:, None, 1] - others[None, :, 3])
    return np.hypot(np.clip(dx, 0.0, None), np.clip(dy, 0.0, None))


def around(anchor: Sequence[float], size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate centres ([k, 2]) and costs ([k]): centred on ``anchor``, then rings of boxes whose nearest
    side is further and further from it; the cost is the distance from the anchor."""
    anchor = np.asarray(anchor, dtype=np.float64)
    half = np.asarray(size, dtype=np.float64) / 2.0
    angles = np.linspace(0.0, 2.0 * np.pi, _ANGLES, endpoint=False)
    direction = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # On the unit square's outline, so that a box's side (not its corner) faces the anchor.
    direction /= np.abs(direction).max(axis=1, keepdims=True)
    rings = [anchor + direction * (half + ring * 2.0 * half[1]) for ring in _RINGS]
    centres = np.vstack([anchor[None, :], *rings])
    return centres, np.linalg.norm(centres - anchor, axis=1)


def inside(footprint: Sequence[float], anchor: Sequence[float], size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Candidates on a grid over ``footprint`` (an object's own area) where the box fits inside it, at a
    fraction of their distance from ``anchor``; none for footprints smaller than the box."""
    box = np.asarray(footprint, dtype=np.float64)
    half = np.asarray(size, dtype=np.float64) / 2.0
    low, high = box[:2] + half, box[2:] - half
    if np.any(high < low):
        return np.zeros((0, 2)), np.zeros(0)
    xs = np.linspace(low[0], high[0], _INSIDE_STEPS)
    ys = np.linspace(low[1], high[1], _INSIDE_STEPS)
    centres = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return centres, _INSIDE_COST * np.linalg.norm(centres - np.asarray(anchor, dtype=np.float64), axis=1)


def along(path: np.ndarray, size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Candidates on and beside a path ([m, 2] points, evenly spaced in its parameter), middle first."""
    path = np.asarray(path, dtype=np.float64)
    height = float(size[1])
    centres, costs = [], []
    for fraction in _ALONG:
        at = fraction * (len(path) - 1)
        index = min(int(at), len(path) - 2)
        point = path[index] + (at - index) * (path[index + 1] - path[index])
        tangent = path[index + 1] - path[index]
        normal = np.array([-tangent[1], tangent[0]]) / max(float(np.linalg.norm(tangent)), 1e-12)
        for offset in _ACROSS:
            centres.append(point + normal * offset * height)
            costs.append(abs(fraction - 0.5) * 4.0 * height + abs(offset) * height)
    # Short paths crowded by their own ends: anywhere near the middle, at a higher cost.
    ring, ring_costs = around(path[len(path) // 2], size)
    return np.vstack([np.array(centres), ring[: 1 + 4 * _ANGLES]]), np.concatenate(
        [costs, ring_costs[: 1 + 4 * _ANGLES] + 4.0 * height]
    )


def place_object_labels(
    placer: LabelPlacer,
    anchors: np.ndarray,
    footprints: Sequence[np.ndarray],
    sizes: Sequence[np.ndarray],
    related: Sequence[Sequence[int]],
    walls: Sequence[Sequence[np.ndarray]],
) -> list[np.ndarray]:
    """The box of each object's label: near its anchor or on its footprint, and away from the labels of the
    objects it relates to and from the walls it relates to, so that the arrows between show.

    The smallest objects are placed first: they have the least room, a big one can take its label anywhere
    on itself.
    """
    boxes: list[np.ndarray] = [np.zeros(4)] * len(anchors)
    placed = np.zeros(len(anchors), dtype=bool)
    apart = placer.apart
    order = sorted(range(len(anchors)), key=lambda i: (float(np.prod(footprints[i][2:] - footprints[i][:2])), i))
    for i in order:
        centres, costs = around(anchors[i], sizes[i])
        inner, inner_costs = inside(footprints[i], anchors[i], sizes[i])
        away = [boxes[j] for j in related[i] if placed[j]] + list(walls[i])
        boxes[i] = placer.place(
            np.vstack([centres, inner]), np.concatenate([costs, inner_costs]), sizes[i], i, keep_away=(away, apart)
        )
        placed[i] = True
    return boxes


class TextSizes:
    """Sizes (inches, box padding included) of texts as ``renderer`` draws them, measured once each."""

    def __init__(self, renderer: RendererBase) -> None:
        self._renderer = renderer
        self._sizes: dict[tuple[str, str], np.ndarray] = {}
        self._lines: dict[str, float] = {}

    def __call__(self, text: str, kind: str) -> np.ndarray:
        """[2] width and height of ``text`` of this kind."""
        key = (text, kind)
        if key not in self._sizes:
            from matplotlib.font_manager import FontProperties

            font = FontProperties(size=FONT[kind])
            width, height, _ = self._renderer.get_text_width_height_descent(text, font, ismath=False)
            if kind not in self._lines:  # a line is never lower than "lp" (matplotlib's rule too)
                self._lines[kind] = self._renderer.get_text_width_height_descent("lp", font, ismath=False)[1]
            pad = 2.0 * _PAD.get(kind, 0.0) * FONT[kind] / 72.0
            self._sizes[key] = np.array([width, max(height, self._lines[kind])]) / self._renderer.dpi + pad
        return self._sizes[key]


def draw_texts(
    axes: Axes, block: np.ndarray, lines: Sequence[tuple[str, str, Any, Any]], heights: Sequence[float]
) -> None:
    """Texts (text, kind, colour, box edge colour) one under another in white boxes, filling ``block`` from its
    top in shares of its height as ``heights``."""
    share = np.asarray(heights, dtype=np.float64)
    share = share / share.sum() * float(block[3] - block[1])
    top, middle = float(block[3]), (block[0] + block[2]) / 2.0
    for (text, kind, color, edge), step, before in zip(lines, share, np.cumsum(share) - share):
        box = {"boxstyle": f"round,pad={_PAD[kind]}", "facecolor": "white", "edgecolor": edge, "alpha": 0.92}
        box["linewidth"] = 0.8
        y = top - before - step / 2.0
        axes.text(middle, y, text, ha="center", va="center", fontsize=FONT[kind], color=color, zorder=4, bbox=box,
                  gid=LABEL_GID)  # fmt: skip
