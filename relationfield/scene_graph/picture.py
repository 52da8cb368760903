"""``scene_graph.png``: the drawing of a scene graph, and which of its links are drawn.

Nodes are "label #id" boxes placed by their floor-plane (x, y) positions (:mod:`relationfield.scene_graph.layout`),
links arrows with the predicate at their middle. matplotlib is imported by the functions that draw (Agg canvas,
no display), so that the package imports with numpy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.scene_graph.colors import node_colors
from relationfield.scene_graph.graph import SceneGraph, SceneLink, SceneNode
from relationfield.scene_graph.layout import layout
from relationfield.vocab import NONE_PREDICATE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_DRAWN_LINKS", "draw_scene_graph", "drawn_links"]

MAX_DRAWN_LINKS = 150
"""At most this many links (the highest-scoring) are drawn."""

# Drawing parameters: sizes in inches unless named otherwise.
_NODE_FONT = 8.0
_EDGE_FONT = 6.0
_TITLE_FONT = 10.0
_NODE_PAD = 0.3  # box padding, in units of the node font size
_MARGIN = 0.3
_TITLE_HEIGHT = 0.6
_MAX_PIXELS = 3000  # longest side of the PNG
_MAX_DPI = 100.0
_MIN_DPI = 10.0
_MAX_NODE_CHARS = 28
_MAX_EDGE_CHARS = 20
_ARROW: dict[str, Any] = {
    "arrowstyle": "-|>",
    "mutation_scale": 9,
    "linewidth": 0.7,
    "color": "#4a4a4a",
    "alpha": 0.85,
    "shrinkA": 1.0,
    "shrinkB": 1.0,
    "zorder": 1,
}
_EDGE_TEXT: dict[str, Any] = {
    "color": "#202060",
    "bbox": {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
}
_CURVE = 0.15  # arc3 rad of links that have a reverse link (at least)
_MAX_CURVE = 0.6
_LABEL_SEPARATION = (
    0.2  # wanted distance between the labels of two opposite links (each is rad * length / 2 off the chord)
)


def draw_scene_graph(graph: SceneGraph, path: Path, title: str | None = None) -> None:
    """Draw ``graph`` to a PNG: "label #id" boxes placed by their floor-plane (x, y) positions, directed
    links as arrows with the predicate at their middle.

    Links where "none" outscores the predicate are left out, as are all but the
    :data:`MAX_DRAWN_LINKS` highest-scoring others; the title says so. Needs no display (Agg canvas).
    """
    graph.validate()
    figure, dpi = _render(graph, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=dpi)


def _render(graph: SceneGraph, title: str | None) -> tuple[Figure, float]:
    """The figure (on an Agg canvas) and the dpi to save it at."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    links, notes = drawn_links(graph.links)
    heading = title or f"scene graph: {len(graph.nodes)} objects, {len(graph.links)} links"
    heading = "\n".join([heading, *notes])
    figure = Figure(dpi=_MAX_DPI)
    FigureCanvasAgg(figure)
    if not graph.nodes:
        _draw_empty(figure, heading)
        return figure, _MAX_DPI
    names = [_shorten(node.display_name, _MAX_NODE_CHARS) for node in graph.nodes]
    sizes = _box_sizes(figure, names)
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    pairs = [(index[link.source], index[link.target]) for link in links]
    centers = layout(graph.nodes, pairs, sizes)
    axes, width, height = _place_axes(figure, centers, sizes, heading)
    _draw_links(axes, links, pairs, centers, sizes)
    _draw_nodes(axes, graph.nodes, names, centers)
    dpi = max(_MIN_DPI, min(_MAX_DPI, _MAX_PIXELS / max(width, height)))
    return figure, dpi


def drawn_links(links: Sequence[SceneLink]) -> tuple[list[SceneLink], list[str]]:
    """The links worth drawing, highest score first, and notes (for a title) about the others.

    Links where "none" outscores the predicate are left out, as are all but the :data:`MAX_DRAWN_LINKS`
    highest-scoring others.
    """
    related = [link for link in links if link.predicate != NONE_PREDICATE and not link.none_wins()]
    notes = []
    hidden = len(links) - len(related)
    if hidden:
        notes.append(f'{hidden} pairs where "none" scores highest are not drawn')
    related.sort(key=lambda link: -float(link.score))
    if len(related) > MAX_DRAWN_LINKS:
        notes.append(f"showing the {MAX_DRAWN_LINKS} highest-scoring of {len(related)} relations")
        related = related[:MAX_DRAWN_LINKS]
    return related, notes


def _draw_empty(figure: Figure, heading: str) -> None:
    """A small figure saying that there is nothing to draw."""
    figure.set_size_inches(5.0, 3.0)
    figure.text(0.5, 0.9, heading, ha="center", va="top", fontsize=_TITLE_FONT)
    figure.text(0.5, 0.45, "no objects found", ha="center", va="center", fontsize=14, color="#555555")


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis if it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _box_sizes(figure: Figure, names: Sequence[str]) -> np.ndarray:
    """[n, 2] width and height (inches) of the node boxes, padding included."""
    from matplotlib.font_manager import FontProperties

    renderer = figure.canvas.get_renderer()
    font = FontProperties(size=_NODE_FONT)
    pad = 2.0 * _NODE_PAD * _NODE_FONT / 72.0
    sizes = []
    for name in names:
        width, height, _ = renderer.get_text_width_height_descent(name, font, ismath=False)
        sizes.append((width / figure.dpi + pad, height / figure.dpi + pad))
    return np.array(sizes, dtype=np.float64)


def _place_axes(figure: Figure, centers: np.ndarray, sizes: np.ndarray, heading: str) -> tuple[Axes, float, float]:
    """Size the figure to the layout (1 data unit = 1 inch), add borderless axes and the title."""
    low = (centers - sizes / 2.0).min(axis=0) - _MARGIN
    high = (centers + sizes / 2.0).max(axis=0) + _MARGIN
    span = high - low
    title_height = _TITLE_HEIGHT + 0.18 * heading.count("\n")
    width, height = float(max(span[0], 4.0)), float(span[1]) + title_height
    figure.set_size_inches(width, height)
    axes = figure.add_axes((0.0, 0.0, 1.0, float(span[1]) / height))
    middle = (low[0] + high[0]) / 2.0
    axes.set_xlim(middle - width / 2.0, middle + width / 2.0)
    axes.set_ylim(low[1], high[1])
    axes.set_axis_off()
    figure.text(0.5, 1.0 - 0.15 / height, heading, ha="center", va="top", fontsize=_TITLE_FONT)
    return axes, width, height


def _draw_nodes(axes: Axes, nodes: Sequence[SceneNode], names: Sequence[str], centers: np.ndarray) -> None:
    """Node boxes in light versions of the node colours, framed in the colour itself."""
    colors = node_colors([node.id for node in nodes]) / 255.0
    for name, color, (x, y) in zip(names, colors, centers):
        box = {"boxstyle": f"round,pad={_NODE_PAD}", "facecolor": tuple(0.45 * color + 0.55)}
        box["edgecolor"] = tuple(0.8 * color)
        axes.text(x, y, name, ha="center", va="center", fontsize=_NODE_FONT, zorder=3, bbox=box)


def _draw_links(
    axes: Axes, links: Sequence[SceneLink], pairs: Sequence[tuple[int, int]], centers: np.ndarray, sizes: np.ndarray
) -> None:
    """Arrows from box edge to box edge (curved where both directions exist), predicates at their middles."""
    from matplotlib.patches import FancyArrowPatch

    both_ways = set(pairs)
    for link, (source, target) in zip(links, pairs):
        start = _box_exit(centers[source], centers[target], sizes[source])
        end = _box_exit(centers[target], centers[source], sizes[target])
        rad = _curvature(start, end) if (target, source) in both_ways else 0.0
        axes.add_patch(FancyArrowPatch(tuple(start), tuple(end), connectionstyle=f"arc3,rad={rad}", **_ARROW))
        x, y = _arc_middle(start, end, rad)
        text = _shorten(link.predicate, _MAX_EDGE_CHARS)
        axes.text(x, y, text, ha="center", va="center", fontsize=_EDGE_FONT, zorder=2, **_EDGE_TEXT)


def _curvature(start: np.ndarray, end: np.ndarray) -> float:
    """arc3 ``rad`` for one of two opposite links: enough bend to keep their two labels apart."""
    length = float(np.linalg.norm(end - start))
    return min(_MAX_CURVE, max(_CURVE, _LABEL_SEPARATION / max(length, 1e-6)))


def _box_exit(center: np.ndarray, toward: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Where the segment from ``center`` to ``toward`` leaves the box of ``size`` around ``center``."""
    direction = toward - center
    half = size / 2.0
    with np.errstate(divide="ignore"):
        limits = np.where(np.abs(direction) > 1e-12, half / np.abs(direction), np.inf)
    fraction = float(limits.min())
    return center + direction * min(fraction, 0.5)


def _arc_middle(start: np.ndarray, end: np.ndarray, rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's arc3 quadratic Bezier curve from ``start`` to ``end``."""
    dx, dy = end - start
    middle = (start + end) / 2.0
    return float(middle[0] + 0.5 * rad * dy), float(middle[1] - 0.5 * rad * dx)
