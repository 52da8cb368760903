"""``scene_graph.png``: the drawing of a scene graph over its floor plan, and which of its links are drawn.

Objects sit at their top-down (x, y) positions on metre axes (:mod:`relationfield.scene_graph.floor_plan`),
with "label #id" labels placed clear of each other (:mod:`relationfield.scene_graph.layout`; a leader line
joins a label moved off its object). Relations are arrows between labels, coloured by predicate family
(:func:`relationfield.vocab.predicate_family`), to the wall itself for a wall, and written under the label
for a floor or ceiling. Comparison and proximity relations are hidden unless asked for. matplotlib is
imported by the functions that draw (Agg canvas, no display), so that the package imports with numpy alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.scene_graph.colors import family_color, node_colors
from relationfield.scene_graph.floor_plan import (
    Room,
    box_exit,
    footprint,
    metre_axes,
    nearest_point,
    plan_bounds,
    split_room,
)
from relationfield.scene_graph.graph import SceneGraph, SceneLink, SceneNode
from relationfield.scene_graph.layout import (
    FONT,
    LabelPlacer,
    TextSizes,
    along,
    around,
    draw_texts,
    place_object_labels,
)
from relationfield.vocab import NONE_PREDICATE, predicate_family

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_FAMILIES", "MAX_DRAWN_LINKS", "draw_scene_graph", "drawn_links", "render_scene_graph"]

DEFAULT_FAMILIES: tuple[str, ...] = ("support", "attachment", "containment", "similarity", "other")
"""Predicate families drawn when no predicates are named; comparison and proximity relations hold for
nearly every pair and would hide the others."""

MAX_DRAWN_LINKS = 150
"""At most this many links (the highest-scoring) are drawn."""

_FAMILY_ORDER = (*DEFAULT_FAMILIES[:-1], "proximity", "comparison", "other")
_STYLE: dict[str, dict[str, Any]] = {
    "support": {"linewidth": 1.8},
    "attachment": {"linewidth": 1.4},
    "containment": {"linewidth": 1.4},
    "similarity": {"linewidth": 1.1, "linestyle": (0, (4, 2))},
    "proximity": {"linewidth": 0.9},
    "comparison": {"linewidth": 0.8, "linestyle": (0, (1, 1.5))},
    "other": {"linewidth": 1.1},
}
_GAP = 0.05  # inches kept free between labels
_APART = 0.42  # inches wanted between the labels of two related objects, so the arrow between shows
_FILL = 0.18  # share of the plot the labels may cover; the plot grows until they fit
_PLOT_INCHES = (7.0, 16.0)  # least and most inches of the plot's longer side
_MARGIN = 0.45  # inches of plot beyond the room, for labels of objects at the walls
_DPI = 150.0
_MAX_PIXELS = 2900  # longest side of the PNG
_MAX_CHARS = {"object": 28, "note": 40, "edge": 20}
_CURVE = 0.25  # arc3 rad of each of two opposite arrows with different predicates


def draw_scene_graph(
    graph: SceneGraph, path: Path, predicates: Collection[str] | None = None, *, title: str | None = None
) -> None:
    """Draw ``graph`` to a PNG over its floor plan (see the module doc); ``predicates``: the predicate texts
    to draw (None: those of :data:`DEFAULT_FAMILIES`). Needs no display (Agg canvas)."""
    figure = render_scene_graph(graph, predicates, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=figure.dpi)


def drawn_links(
    links: Sequence[SceneLink], predicates: Collection[str] | None = None
) -> tuple[list[SceneLink], list[str]]:
    """The links worth drawing, highest score first (one per ordered pair), and notes about the others.

    Left out: links whose predicate is "none" or scores below "none"; those whose predicate is not in
    ``predicates`` (None: not of a family in :data:`DEFAULT_FAMILIES`); all but the :data:`MAX_DRAWN_LINKS`
    highest-scoring others.
    """
    wanted = None if predicates is None else {_normal(p) for p in predicates}
    related = [link for link in links if _normal(link.predicate) != NONE_PREDICATE and not link.none_wins()]
    shown, hidden = [], Counter()
    for link in sorted(related, key=lambda link: -float(link.score)):
        family = predicate_family(link.predicate)
        if (family in DEFAULT_FAMILIES) if wanted is None else (_normal(link.predicate) in wanted):
            shown.append(link)
        else:
            hidden[family] += 1
    best: dict[tuple[int, int], SceneLink] = {}
    for link in shown:
        best.setdefault((link.source, link.target), link)
    shown = list(best.values())
    notes = []
    if hidden:
        families = sorted(hidden, key=lambda family: (-hidden[family], family))
        notes.append("not drawn: " + ", ".join(f"{hidden[family]} {family}" for family in families))
    if len(links) > len(related):
        unrelated = len(links) - len(related)
        notes.append(f'{unrelated} pair{"s" if unrelated != 1 else ""} where "none" scores highest')
    if len(shown) > MAX_DRAWN_LINKS:
        notes.append(f"only the {MAX_DRAWN_LINKS} highest-scoring of {len(shown)} relations")
        shown = shown[:MAX_DRAWN_LINKS]
    return shown, notes


def render_scene_graph(
    graph: SceneGraph, predicates: Collection[str] | None = None, *, title: str | None = None
) -> Figure:
    """The picture as a matplotlib Figure on an Agg canvas, its dpi the one to save it at (the PNG's long
    side stays under :data:`_MAX_PIXELS`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    graph.validate()
    figure = Figure(dpi=100.0)
    FigureCanvasAgg(figure)
    links, notes = drawn_links(graph.links, predicates)
    scene = _Scene.build(graph, links, TextSizes(figure.canvas.get_renderer()))
    room = scene.room
    heading = title or (
        f"scene graph: {len(room.objects)} object{'s' if len(room.objects) != 1 else ''}"
        + (f" (+ {len(room.structure)} walls, floors, ceilings)" if room.structure else "")
        + f", {scene.drawn} of {len(graph.links)} relations drawn"
    )
    if scene.structural:
        notes.append(f"{scene.structural} between walls, floors and ceilings")
    if not graph.nodes:
        figure.set_size_inches(5.0, 3.0)
        figure.text(0.5, 0.92, "\n".join([heading, *notes]), ha="center", va="top", fontsize=FONT["subtitle"])
        figure.text(0.5, 0.45, "no objects found", ha="center", va="center", fontsize=14, color="#555555")
        return figure
    axes, scale = _lay_out_figure(figure, scene, _legend_entries(graph.links, links, room), (heading, notes))
    placer, boxes = _place_labels(scene, scale)
    _draw_objects(axes, scene, boxes)
    _draw_relations(axes, scene, boxes, placer, scale)
    return figure


@dataclass
class _Scene:
    """What the picture shows: the room, the object labels and notes, the arrows to draw."""

    room: Room
    names: list[str]
    notes: list[list[tuple[str, str]]]  # per object: (text, family) lines under its label
    arrows: list[tuple[int, int, list[SceneLink]]]  # object index -> object index, the pair's links
    wall_arrows: list[tuple[int, SceneNode, SceneLink, bool]]  # object, wall, link, whether from the object
    drawn: int = 0
    structural: int = 0
    wall_names: list[str] = field(default_factory=list)
    sizes: TextSizes | None = None

    @classmethod
    def build(cls, graph: SceneGraph, links: Sequence[SceneLink], sizes: TextSizes) -> _Scene:
        """Sort the drawn links by what they join: two objects, an object and a wall or floor, the room."""
        room = split_room(graph.nodes)
        index = {node.id: i for i, node in enumerate(room.objects)}
        structure = {node.id: node for node in room.structure}
        walls = {node.id for node in room.walls}
        scene = cls(room, [_short(node.display_name, "object") for node in room.objects], [], [], [], sizes=sizes)
        scene.notes = [[] for _ in room.objects]
        scene.wall_names = [node.display_name for node in room.walls]
        # "floor" rather than "floor #24" where the room has one floor.
        labels = Counter(node.label for node in room.surfaces)
        surface_names = {node.id: node.display_name if labels[node.label] > 1 else node.label for node in room.surfaces}
        pairs: dict[tuple[int, int], list[SceneLink]] = {}
        for link in links:
            source, target = index.get(link.source), index.get(link.target)
            family = predicate_family(link.predicate)
            if source is not None and target is not None:
                pairs.setdefault((min(source, target), max(source, target)), []).append(link)
            elif source is None and target is None:
                scene.structural += 1
                continue
            elif link.target in walls or link.source in walls:
                wall = structure[link.target if source is not None else link.source]
                scene.wall_arrows.append((source if source is not None else target, wall, link, source is not None))
            else:
                surface = surface_names[link.target if source is not None else link.source]
                text = f"{link.predicate} {surface}" if source is not None else f"{surface} {link.predicate} it"
                scene.notes[source if source is not None else target].append((_short(text, "note"), family))
            scene.drawn += 1
        scene.arrows = [(index[pair[0].source], index[pair[0].target], pair) for pair in pairs.values()]
        return scene

    def lines(self, i: int) -> list[tuple[str, str, Any, Any]]:
        """The texts of object ``i``'s label block: its name, then its notes (text, kind, colour, box edge)."""
        edge = tuple(0.65 * node_colors([self.room.objects[i].id])[0] / 255.0)
        notes = [(text, "note", family_color(family), "none") for text, family in self.notes[i]]
        return [(self.names[i], "object", "#111111", edge), *notes]

    def block(self, i: int) -> tuple[np.ndarray, list[float]]:
        """[2] the size (inches) of object ``i``'s label block, and the height of each of its lines."""
        assert self.sizes is not None
        sizes = [self.sizes(text, kind) for text, kind, _, _ in self.lines(i)]
        return np.array([max(s[0] for s in sizes), sum(s[1] for s in sizes)]), [float(s[1]) for s in sizes]


def _normal(predicate: str) -> str:
    """A predicate compared without case or extra spaces."""
    return " ".join(predicate.lower().split())


def _short(text: str, kind: str) -> str:
    """``text`` cut to the length allowed for ``kind``, with an ellipsis if it was cut."""
    limit = _MAX_CHARS[kind]
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _lay_out_figure(
    figure: Figure, scene: _Scene, legend: list[tuple[Any, str]], heading: tuple[str, list[str]]
) -> tuple[Axes, float]:
    """Size the figure to the plan (inches per metre chosen so that the labels fit), add the metre axes, the
    title and the legend; returns the axes and the scale (inches per metre)."""
    assert scene.sizes is not None
    bounds = plan_bounds([*scene.room.objects, *scene.room.structure])
    span = bounds[2:] - bounds[:2]
    area = sum(float(np.prod(scene.block(i)[0] + _GAP)) for i in range(len(scene.names)))
    area += 0.5 * (len(scene.arrows) + len(scene.wall_arrows)) * 0.6 * 0.15  # half the relations get a label
    scale = max(_PLOT_INCHES[0] / span.max(), float(np.sqrt(area / _FILL / np.prod(span))))
    scale = min(scale, _PLOT_INCHES[1] / span.max())
    plot = (span + 2.0 * _MARGIN / scale) * scale
    width = max(float(plot[0]) + 0.85, 6.5)
    entry = max(float(scene.sizes(text, "legend")[0]) for _, text in legend) + 0.5
    columns = max(1, min(len(legend), int((width - 0.3) // entry)))
    bottom = 0.62 + 0.19 * -(-len(legend) // columns)
    height = float(plot[1]) + 0.42 + 0.17 * len(heading[1]) + bottom
    figure.set_size_inches(width, height)
    left = 0.55 + (width - 0.85 - float(plot[0])) / 2.0
    axes = figure.add_axes((left / width, bottom / height, float(plot[0]) / width, float(plot[1]) / height))
    metre_axes(axes, bounds + np.array([-1.0, -1.0, 1.0, 1.0]) * _MARGIN / scale)
    figure.text(0.5, 1.0 - 0.1 / height, heading[0], ha="center", va="top", fontsize=FONT["title"])
    subtitle = "\n".join(heading[1])
    figure.text(0.5, 1.0 - 0.36 / height, subtitle, ha="center", va="top", fontsize=FONT["subtitle"], color="#555")
    handles, labels = zip(*legend)
    figure.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.05 / height), ncol=columns, frameon=False,
        fontsize=FONT["legend"], handlelength=2.4, columnspacing=1.2, borderaxespad=0.0,
    )  # fmt: skip
    figure.set_dpi(min(_DPI, _MAX_PIXELS / max(width, height)))
    return axes, scale


def _legend_entries(links: Sequence[SceneLink], drawn: Sequence[SceneLink], room: Room) -> list[tuple[Any, str]]:
    """(handle, text) per predicate family with relations (drawn: its predicates; else how many are hidden),
    then the room's entries."""
    from matplotlib.lines import Line2D

    related = [link for link in links if _normal(link.predicate) != NONE_PREDICATE and not link.none_wins()]
    totals = Counter(predicate_family(link.predicate) for link in related)
    shown: dict[str, Counter[str]] = {family: Counter() for family in _FAMILY_ORDER}
    for link in drawn:
        shown[predicate_family(link.predicate)][link.predicate] += 1
    entries: list[tuple[Any, str]] = []
    for family in (family for family in _FAMILY_ORDER if totals[family]):
        count = sum(shown[family].values())
        names = _short(", ".join(name for name, _ in shown[family].most_common(4)), "note")
        text = f"{family} ({count}): {names}" if count else f"{family}: {totals[family]} hidden"
        entries.append((Line2D([], [], color=family_color(family), **_STYLE[family]), text))
    return entries + room.legend_handles() or [(Line2D([], []), "")]


def _place_labels(scene: _Scene, scale: float) -> tuple[LabelPlacer, list[np.ndarray]]:
    """Place object labels (:func:`place_object_labels`), then wall labels; returns the placer and each
    label's box (objects, then walls), in metres."""
    assert scene.sizes is not None
    objects = scene.room.objects
    dots = np.array([node.centroid[:2] for node in objects], dtype=np.float64).reshape(-1, 2)
    bounds = plan_bounds([*objects, *scene.room.structure]) + np.array([-1.0, -1.0, 1.0, 1.0]) * _MARGIN / scale
    placer = LabelPlacer(bounds, _GAP / scale, dots, _APART / scale)
    related: list[list[int]] = [[] for _ in objects]
    for source, target, _ in scene.arrows:
        related[source].append(target)
        related[target].append(source)
    walls: list[list[np.ndarray]] = [[] for _ in objects]
    for obj, wall, _, _ in scene.wall_arrows:
        walls[obj].append(footprint(wall))
    blocks = [scene.block(i)[0] / scale for i in range(len(objects))]
    boxes = place_object_labels(placer, dots, [footprint(node) for node in objects], blocks, related, walls)
    for wall, name in zip(scene.room.walls, scene.wall_names):
        size = scene.sizes(name, "wall") / scale
        box = footprint(wall)
        boxes.append(placer.place(*around((box[:2] + box[2:]) / 2.0, size), size))
    return placer, boxes


def _draw_objects(axes: Axes, scene: _Scene, boxes: Sequence[np.ndarray]) -> None:
    """Room, footprints, object labels with their notes and leader lines, wall labels."""
    objects = scene.room.objects
    colors = node_colors([node.id for node in objects]).astype(np.float64) / 255.0
    scene.room.draw(axes)
    scene.room.draw_objects(axes, colors)
    for i, (node, color) in enumerate(zip(objects, colors)):
        dot = np.asarray(node.centroid[:2], dtype=np.float64)
        start = nearest_point(boxes[i], dot)
        if np.any(start != dot):
            axes.plot([start[0], dot[0]], [start[1], dot[1]], color=tuple(0.7 * color), lw=0.6, zorder=0.7)
        draw_texts(axes, boxes[i], scene.lines(i), scene.block(i)[1])
    for box, name in zip(boxes[len(objects) :], scene.wall_names):
        draw_texts(axes, box, [(name, "wall", "#333333", "#999999")], [1.0])


def _draw_relations(axes: Axes, scene: _Scene, boxes: Sequence[np.ndarray], placer: LabelPlacer, scale: float) -> None:
    """Arrows between object labels and from labels to walls, each with its predicate where it fits."""
    assert scene.sizes is not None
    paths: list[tuple[np.ndarray, str, str]] = []
    for source, target, links in scene.arrows:
        reverse = [link for link in links if scene.room.objects[source].id != link.source]
        forward = [link for link in links if link not in reverse]
        if forward and reverse and _normal(forward[0].predicate) == _normal(reverse[0].predicate):
            paths.append(_arrow(axes, boxes[source], boxes[target], forward[0], 0.0, both=True))
            continue
        for link in links:
            ends = (source, target) if link in forward else (target, source)
            rad = _CURVE if forward and reverse else 0.0
            paths.append(_arrow(axes, boxes[ends[0]], boxes[ends[1]], link, rad, both=False))
    for obj, wall, link, outgoing in scene.wall_arrows:
        point = _wall_point(footprint(wall), scene.room.objects[obj].centroid[:2], boxes[obj])
        wall_box = np.concatenate([point, point])
        ends = (boxes[obj], wall_box) if outgoing else (wall_box, boxes[obj])
        paths.append(_arrow(axes, *ends, link, 0.0, both=False))
    for path, text, family in paths:
        size = scene.sizes(text, "edge") / scale
        box = placer.place(*along(path, size), size, required=False)
        if box is not None:
            draw_texts(axes, box, [(text, "edge", family_color(family), "none")], [1.0])


def _wall_point(wall: np.ndarray, centroid: Sequence[float], label: np.ndarray) -> np.ndarray:
    """Where an arrow meets a wall: its point nearest to the object, moved to the wall's face toward the
    label if the object is in the wall (pictures, shelves), so that the arrow does not end on the object."""
    point = nearest_point(wall, centroid)
    if np.any(point != np.asarray(centroid, dtype=np.float64)):
        return point
    thin = int(np.argmin(wall[2:] - wall[:2]))
    middle = (label[thin] + label[thin + 2]) / 2.0
    point[thin] = wall[thin] if abs(middle - wall[thin]) < abs(middle - wall[thin + 2]) else wall[thin + 2]
    return point


def _arrow(
    axes: Axes, start_box: np.ndarray, end_box: np.ndarray, link: SceneLink, rad: float, both: bool
) -> tuple[np.ndarray, str, str]:
    """Draw one arrow between two boxes (clipped at their edges); returns its path, text and family."""
    from matplotlib.patches import FancyArrowPatch

    family = predicate_family(link.predicate)
    centre_a, centre_b = (start_box[:2] + start_box[2:]) / 2.0, (end_box[:2] + end_box[2:]) / 2.0
    chord = centre_b - centre_a
    control = (centre_a + centre_b) / 2.0 + rad * np.array([chord[1], -chord[0]])
    start, end = box_exit(start_box, control), box_exit(end_box, control)
    chord = end - start
    control = (start + end) / 2.0 + rad * np.array([chord[1], -chord[0]])
    heads = "-" if both and family == "similarity" else "<|-|>" if both else "-|>"
    style = {"color": family_color(family), "alpha": 0.9, **_STYLE[family]}
    axes.add_patch(
        FancyArrowPatch(tuple(start), tuple(end), arrowstyle=heads, connectionstyle=f"arc3,rad={rad}",
                        mutation_scale=9.0, shrinkA=0.0, shrinkB=0.0, zorder=2, **style)
    )  # fmt: skip
    t = np.linspace(0.0, 1.0, 9)[:, None]
    path = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    return path, _short(link.predicate, "edge"), family
