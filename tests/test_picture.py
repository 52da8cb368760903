"""Tests of the scene-graph picture (``scene_graph.png``): floor plan, label placement, predicate families."""

from __future__ import annotations

import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from PIL import Image

from relationfield.scene_graph import SceneGraph, SceneLink, SceneNode, draw_scene_graph, drawn_links
from relationfield.scene_graph.layout import LABEL_GID, LabelPlacer, around
from relationfield.scene_graph.picture import DEFAULT_FAMILIES, MAX_DRAWN_LINKS, render_scene_graph
from relationfield.vocab import OTHER_FAMILY, PREDICATE_FAMILIES, predicate_family, predicate_vocab

LABELS = ["chair", "table", "sofa", "lamp", "cup", "book", "shelf", "kitchen cabinet", "tv", "pillow"]
# One predicate of each family (and one no family knows).
FAMILY_PREDICATES = {
    "support": "standing on",
    "attachment": "attached to",
    "containment": "inside",
    "similarity": "same as",
    "proximity": "close by",
    "comparison": "bigger than",
    "other": "glued next to",
}


def box_node(node_id: int, label: str, low: tuple, high: tuple) -> SceneNode:
    centroid = tuple((a + b) / 2.0 for a, b in zip(low, high))
    return SceneNode(node_id, label, [(label, 0.9)], centroid, low, high, 100)


def cube(node_id: int, label: str, centre: tuple, half: float = 0.2) -> SceneNode:
    return box_node(node_id, label, tuple(c - half for c in centre), tuple(c + half for c in centre))


def link(source: int, target: int, predicate: str, score: float = 0.8, none: float = 0.05) -> SceneLink:
    return SceneLink(source, target, predicate, score, [(predicate, score), ("none", none)])


def room_graph() -> SceneGraph:
    """A 6 x 4 m room (floor, ceiling, four walls) with a table, a cup and a lamp on it, two stacked boxes,
    a picture on a wall and two alike chairs."""
    nodes = [
        box_node(0, "floor", (-3.0, -2.0, -0.05), (3.0, 2.0, 0.0)),
        box_node(1, "ceiling", (-3.0, -2.0, 2.7), (3.0, 2.0, 2.75)),
        box_node(2, "wall", (-3.1, -2.0, 0.0), (-3.0, 2.0, 2.7)),
        box_node(3, "wall", (3.0, -2.0, 0.0), (3.1, 2.0, 2.7)),
        box_node(4, "wall", (-3.0, 2.0, 0.0), (3.0, 2.1, 2.7)),
        box_node(5, "wall", (-3.0, -2.1, 0.0), (3.0, -2.0, 2.7)),
        box_node(6, "table", (-0.6, -0.4, 0.0), (0.6, 0.4, 0.75)),
        cube(7, "cup", (0.2, 0.1, 0.8), 0.05),
        cube(8, "lamp", (-0.3, 0.0, 0.9), 0.12),
        cube(9, "box", (2.0, 1.0, 0.2)),
        cube(10, "box", (2.0, 1.0, 0.6)),
        box_node(11, "picture", (-3.0, 0.5, 1.2), (-2.95, 1.1, 1.8)),
        cube(12, "chair", (-1.0, -1.0, 0.45), 0.25),
        cube(13, "chair", (1.0, -1.0, 0.45), 0.25),
    ]
    links = [
        link(7, 6, "standing on", 0.9),
        link(8, 6, "standing on", 0.85),
        link(10, 9, "standing on", 0.8),
        link(6, 0, "standing on", 0.7),
        link(9, 0, "supported by", 0.7),
        link(11, 2, "hanging on", 0.9),
        link(12, 13, "same as", 0.9),
        link(13, 12, "same as", 0.9),
        link(6, 7, "bigger than", 0.95),
        link(12, 6, "close by", 0.6),
        link(13, 6, "front", 0.6),
        link(2, 0, "attached to", 0.5),
        link(9, 10, "lower than", 0.2, none=0.9),  # "none" wins: never drawn
    ]
    return SceneGraph(nodes=nodes, links=links)


def random_room(num_nodes: int, num_links: int, seed: int = 0) -> SceneGraph:
    """Random objects in an 8 m room and random links of every family."""
    rng = np.random.default_rng(seed)
    nodes = [
        cube(i, LABELS[i % len(LABELS)], tuple(float(v) for v in rng.uniform([-4, -4, 0], [4, 4, 2])), 0.25)
        for i in range(num_nodes)
    ]
    pairs = [(a, b) for a in range(num_nodes) for b in range(num_nodes) if a != b]
    chosen = rng.choice(len(pairs), size=num_links, replace=False)
    predicates = list(FAMILY_PREDICATES.values())
    links = [link(*pairs[i], predicates[int(i) % len(predicates)], float(rng.uniform(0.1, 1.0))) for i in chosen]
    return SceneGraph(nodes=nodes, links=links)


def label_texts(figure: Figure) -> list:
    return [text for text in figure.findobj(lambda artist: artist.get_gid() == LABEL_GID)]


def label_boxes(figure: Figure) -> list:
    """Window extents (pixels) of every placed label's box, after drawing."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [text.get_bbox_patch().get_window_extent(renderer) for text in label_texts(figure)]


def overlapping(boxes: list) -> list[tuple[int, int]]:
    """Pairs of boxes that overlap by more than half a pixel each way."""
    found = []
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        width = min(a.x1, b.x1) - max(a.x0, b.x0)
        height = min(a.y1, b.y1) - max(a.y0, b.y0)
        if width > 0.5 and height > 0.5:
            found.append((i, j))
    return found


def drawn_texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in label_texts(figure)]


def arrows(figure: Figure) -> list[FancyArrowPatch]:
    return [patch for patch in figure.axes[0].patches if isinstance(patch, FancyArrowPatch)]


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# --------------------------------------------------------------------------- predicate families


def test_every_shipped_predicate_has_a_family() -> None:
    vocab = predicate_vocab()
    assert len(vocab) == 26
    assert {p: predicate_family(p) for p in vocab if predicate_family(p) == OTHER_FAMILY} == {}
    assert set(predicate_family(p) for p in vocab) == set(PREDICATE_FAMILIES)


def test_predicate_family_examples() -> None:
    assert predicate_family("standing on") == "support"
    assert predicate_family("  Supported   By ") == "support"
    assert predicate_family("hanging on") == "attachment"
    assert predicate_family("standing in") == "containment"
    assert predicate_family("next to") == "proximity"
    assert predicate_family("smaller than") == "comparison"
    assert predicate_family("same symmetry as") == "similarity"
    assert predicate_family("glued next to") == OTHER_FAMILY
    families = [family for predicates in PREDICATE_FAMILIES.values() for family in predicates]
    assert len(families) == len(set(families)), "a predicate is in two families"


# --------------------------------------------------------------------------- which links are drawn


def test_drawn_links_hides_comparison_and_proximity_by_default() -> None:
    graph = room_graph()
    links, notes = drawn_links(graph.links)
    predicates = {link.predicate for link in links}
    assert predicates == {"standing on", "supported by", "hanging on", "same as", "attached to"}
    assert all(predicate_family(p) in DEFAULT_FAMILIES for p in predicates)
    assert [float(link.score) for link in links] == sorted((float(link.score) for link in links), reverse=True)
    assert any("2 proximity" in note and "1 comparison" in note for note in notes)
    assert any('1 pair where "none" scores highest' in note for note in notes)


def test_drawn_links_draws_exactly_the_predicates_asked_for() -> None:
    graph = room_graph()
    links, _ = drawn_links(graph.links, ["bigger than", "Close By", "lower than", "none"])
    assert sorted(link.predicate for link in links) == ["bigger than", "close by"]  # "none" wins for lower than
    assert drawn_links(graph.links, [])[0] == []


def test_drawn_links_keeps_one_link_per_ordered_pair_and_the_cap() -> None:
    links = [link(1, 2, "standing on", 0.5), link(1, 2, "lying on", 0.75), link(2, 1, "same as", 0.25)]
    shown, _ = drawn_links(links)
    assert [(s.source, s.target, s.predicate) for s in shown] == [(1, 2, "lying on"), (2, 1, "same as")]
    many = [link(i, i + 1, "standing on", 1.0 - i / 1000) for i in range(MAX_DRAWN_LINKS + 20)]
    shown, notes = drawn_links(many)
    assert len(shown) == MAX_DRAWN_LINKS and any(str(MAX_DRAWN_LINKS) in note for note in notes)


# --------------------------------------------------------------------------- the picture


def test_picture_of_a_room(tmp_path: Path) -> None:
    figure = render_scene_graph(room_graph())
    texts = drawn_texts(figure)
    objects = ["table #6", "cup #7", "lamp #8", "box #9", "box #10", "picture #11", "chair #12", "chair #13"]
    assert set(objects) <= set(texts)
    assert not [t for t in texts if t.startswith(("floor #", "ceiling #"))]  # the outline, not objects
    assert sum(t.startswith("wall #") for t in texts) == 4
    # Relations with the floor are written under their objects; the others are arrows.
    assert texts.count("standing on floor") == 1 and texts.count("supported by floor") == 1
    assert len(arrows(figure)) == 5  # cup, lamp and box standing on, picture to the wall, the chairs alike
    assert "bigger than" not in texts and "close by" not in texts and "front" not in texts
    title = " ".join(text.get_text() for text in figure.texts)
    assert "8 objects" in title and "8 of 13 relations drawn" in title
    assert "2 proximity" in title and "1 comparison" in title
    assert "1 between walls, floors and ceilings" in title
    assert not overlapping(label_boxes(figure))


def test_hidden_families_are_drawn_when_asked() -> None:
    figure = render_scene_graph(room_graph(), ["bigger than", "close by", "front"])
    texts = drawn_texts(figure)
    assert {"bigger than", "close by", "front"} <= set(texts)
    assert "standing on" not in texts and not any("floor" in text for text in texts)
    assert len(arrows(figure)) == 3
    assert not overlapping(label_boxes(figure))


def test_png_of_empty_and_one_node_graphs(tmp_path: Path) -> None:
    draw_scene_graph(SceneGraph(), tmp_path / "empty.png")
    width, height = png_size(tmp_path / "empty.png")
    assert 200 <= min(width, height) and max(width, height) <= 3000
    draw_scene_graph(SceneGraph(nodes=[cube(3, "chair", (1.0, 2.0, 0.4))]), tmp_path / "one.png")
    width, height = png_size(tmp_path / "one.png")
    assert 400 <= min(width, height) and max(width, height) <= 3000
    structure_only = SceneGraph(nodes=[box_node(0, "floor", (0, 0, 0), (4, 3, 0.01))])
    draw_scene_graph(structure_only, tmp_path / "floor.png")
    assert max(png_size(tmp_path / "floor.png")) <= 3000


def test_png_of_100_objects_is_fast_bounded_and_labels_do_not_overlap(tmp_path: Path) -> None:
    graph = random_room(100, 300, seed=3)
    render_scene_graph(random_room(3, 2))  # matplotlib's imports and fonts are loaded once, not timed
    start = time.perf_counter()
    draw_scene_graph(graph, tmp_path / "large.png")
    seconds = time.perf_counter() - start
    assert seconds < 5.0, f"drawing took {seconds:.1f} s"
    width, height = png_size(tmp_path / "large.png")
    assert 1000 <= max(width, height) <= 3000
    figure = render_scene_graph(graph)
    assert sum(text.endswith(f"#{i}") for text in drawn_texts(figure) for i in range(100)) >= 100
    assert not overlapping(label_boxes(figure))


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_of_crowded_objects_do_not_overlap(seed: int) -> None:
    """Thirty objects in a 2 m square, some at the same floor position (stacked)."""
    rng = np.random.default_rng(seed)
    nodes = [
        cube(i, LABELS[i % 10], (float(rng.uniform(0, 2)), float(rng.uniform(0, 2)), 0.1 * i), 0.1) for i in range(24)
    ]
    nodes += [cube(24 + i, "book", (1.0, 1.0, 0.1 * i), 0.05) for i in range(6)]
    links = [link(24 + i + 1, 24 + i, "lying on") for i in range(5)] + [link(i, i + 1, "part of") for i in range(20)]
    figure = render_scene_graph(SceneGraph(nodes=nodes, links=links))
    assert len(label_texts(figure)) >= 30
    assert not overlapping(label_boxes(figure))


def test_label_placer_avoids_placed_boxes() -> None:
    placer = LabelPlacer((-10.0, -10.0, 10.0, 10.0), gap=0.0)
    first = placer.place(*around((0.0, 0.0), (1.0, 0.5)), (1.0, 0.5))
    second = placer.place(*around((0.0, 0.0), (1.0, 0.5)), (1.0, 0.5))
    np.testing.assert_allclose(first, [-0.5, -0.25, 0.5, 0.25])
    assert second[0] >= first[2] or second[2] <= first[0] or second[1] >= first[3] or second[3] <= first[1]
    full = LabelPlacer((0.0, 0.0, 1.0, 0.5), gap=0.0)
    full.reserve((0.0, 0.0, 1.0, 0.5))
    assert full.place(*around((0.5, 0.25), (1.0, 0.5)), (1.0, 0.5), required=False) is None
