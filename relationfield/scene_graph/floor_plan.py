"""The floor plan under the scene-graph picture: the room's outline, object footprints and metre axes.

Seen from above (world frame, +z up, metres): an object is its box's x-y extent (its footprint, a
translucent rectangle in its node colour) with a dot at its centroid. The room's own nodes
(:data:`relationfield.vocab.ROOM_STRUCTURE_LABELS`) are the outline, not objects: walls are dark bars,
floors the shaded area, ceilings a dashed line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from relationfield.scene_graph.graph import SceneNode
from relationfield.vocab import is_room_structure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Room", "box_exit", "footprint", "metre_axes", "nearest_point", "plan_bounds", "split_room"]

_MIN_SPAN = 1.5  # metres: a lone small object still gets a readable plan
_MAX_ASPECT = 2.5  # longer plans are padded on their short side
_FLOOR_COLOR = "#efeae0"
_CEILING_COLOR = "#8a8a8a"
_WALL_COLOR = "#9b9b9b"


@dataclass(frozen=True)
class Room:
    """The nodes of a graph by role: objects, and the room's walls and floor-or-ceiling surfaces."""

    objects: list[SceneNode]
    walls: list[SceneNode]
    surfaces: list[SceneNode]

    @property
    def structure(self) -> list[SceneNode]:
        """Walls and surfaces."""
        return [*self.walls, *self.surfaces]

    def draw(self, axes: Axes) -> None:
        """Floors shaded, ceilings dashed, walls as bars (at least a line wide, however thin)."""
        from matplotlib.patches import Rectangle

        for node in self.surfaces:
            x0, y0, x1, y1 = footprint(node)
            if "ceiling" in node.label.lower():
                style = {"fill": False, "edgecolor": _CEILING_COLOR, "linestyle": (0, (4, 3)), "linewidth": 0.9}
            else:
                style = {"facecolor": _FLOOR_COLOR, "edgecolor": "none"}
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, zorder=0.1, **style))
        for node in self.walls:
            x0, y0, x1, y1 = footprint(node)
            axes.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=_WALL_COLOR, edgecolor=_WALL_COLOR, zorder=0.3)
            )

    def draw_objects(self, axes: Axes, colors: np.ndarray) -> None:
        """Each object's footprint (translucent, in its colour) and centroid dot; ``colors`` [n, 3] in 0-1."""
        from matplotlib.patches import Rectangle

        for node, color in zip(self.objects, colors):
            x0, y0, x1, y1 = footprint(node)
            face, edge = (*color, 0.2), tuple(0.7 * color)
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=face, edgecolor=edge, lw=0.8, zorder=0.5))
            axes.plot(*node.centroid[:2], "o", ms=3.0, color=edge, zorder=0.6)

    def legend_handles(self) -> list[tuple[object, str]]:
        """(handle, text) legend entries for the parts of the outline it has and for the footprints."""
        from matplotlib.patches import Patch

        ceilings = ["ceiling" in node.label.lower() for node in self.surfaces]
        entries = [
            (bool(self.walls), Patch(facecolor=_WALL_COLOR), "wall"),
            (not all(ceilings), Patch(facecolor=_FLOOR_COLOR, edgecolor="#bbbbbb"), "floor"),
            (any(ceilings), Patch(fill=False, edgecolor=_CEILING_COLOR, linestyle="--"), "ceiling"),
            (
                bool(self.objects),
                Patch(facecolor=(0.4, 0.6, 0.9, 0.2), edgecolor=(0.28, 0.42, 0.63)),
                "object footprint",
            ),
        ]
        return [(handle, text) for present, handle, text in entries if present]


def split_room(nodes: Sequence[SceneNode]) -> Room:
    """Objects, walls (structural nodes named walls) and surfaces (the other structural nodes)."""
    objects, walls, surfaces = [], [], []
    for node in nodes:
        if not is_room_structure(node.label):
            objects.append(node)
        elif "wall" in node.label.lower():
            walls.append(node)
        else:
            surfaces.append(node)
    return Room(objects, walls, surfaces)


def footprint(node: SceneNode) -> np.ndarray:
    """``[x_min, y_min, x_max, y_max]`` of the node's box, in metres."""
    low, high = np.asarray(node.aabb_min, dtype=np.float64), np.asarray(node.aabb_max, dtype=np.float64)
    return np.array([min(low[0], high[0]), min(low[1], high[1]), max(low[0], high[0]), max(low[1], high[1])])


def plan_bounds(nodes: Sequence[SceneNode]) -> np.ndarray:
    """``[x_min, y_min, x_max, y_max]`` around every footprint and centroid, at least :data:`_MIN_SPAN`
    wide and padded to an aspect of at most :data:`_MAX_ASPECT`."""
    if not nodes:
        return np.array([-_MIN_SPAN, -_MIN_SPAN, _MIN_SPAN, _MIN_SPAN]) / 2.0
    boxes = np.array([footprint(node) for node in nodes])
    centroids = np.array([node.centroid[:2] for node in nodes], dtype=np.float64)
    low = np.minimum(boxes[:, :2].min(axis=0), centroids.min(axis=0))
    high = np.maximum(boxes[:, 2:].max(axis=0), centroids.max(axis=0))
    span = np.maximum(high - low, _MIN_SPAN)
    span = np.maximum(span, span.max() / _MAX_ASPECT)
    middle = (low + high) / 2.0
    return np.concatenate([middle - span / 2.0, middle + span / 2.0])


def nearest_point(box: Sequence[float], point: Sequence[float]) -> np.ndarray:
    """The point of ``box`` ([x_min, y_min, x_max, y_max]) nearest to ``point``."""
    box = np.asarray(box, dtype=np.float64)
    return np.clip(np.asarray(point, dtype=np.float64), box[:2], box[2:])


def box_exit(box: Sequence[float], toward: Sequence[float]) -> np.ndarray:
    """Where the ray from the centre of ``box`` toward ``toward`` leaves the box (the centre if it does not)."""
    box = np.asarray(box, dtype=np.float64)
    centre, half = (box[:2] + box[2:]) / 2.0, (box[2:] - box[:2]) / 2.0
    direction = np.asarray(toward, dtype=np.float64) - centre
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = np.where(np.abs(direction) > 1e-12, half / np.abs(direction), np.inf)
    return centre + direction * min(float(limits.min()), 1.0)


def metre_axes(axes: Axes, bounds: Sequence[float]) -> None:
    """Limits, whole-metre ticks (coarser on big plans), a light grid and the axis names."""
    from matplotlib.ticker import MultipleLocator

    x0, y0, x1, y1 = (float(v) for v in bounds)
    axes.set_xlim(x0, x1)
    axes.set_ylim(y0, y1)
    span = max(x1 - x0, y1 - y0)
    step = 0.5 if span < 3.0 else 1.0 if span < 12.0 else 2.0 if span < 25.0 else 5.0
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(MultipleLocator(step))
    axes.tick_params(labelsize=7, length=3, color="#888888", labelcolor="#555555")
    axes.grid(True, color="#dddddd", linewidth=0.5, zorder=0)
    axes.set_axisbelow(True)
    axes.set_xlabel("x (m)", fontsize=7.5, color="#555555", labelpad=2)
    axes.set_ylabel("y (m)", fontsize=7.5, color="#555555", labelpad=2)
    for spine in axes.spines.values():
        spine.set_color("#bbbbbb")
