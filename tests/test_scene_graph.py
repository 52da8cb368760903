"""Tests of the scene-graph data model and its files (JSON, PNG, PLY); offline, no torch needed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
import trimesh
from PIL import Image
from plyfile import PlyData

from relationfield.errors import UserError
from relationfield.scene_graph import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SceneGraph,
    SceneLink,
    SceneNode,
    draw_scene_graph,
    node_colors,
    read_scene_graph,
    write_ply,
    write_scene_graph,
)

MAX_PNG_BYTES = 2 * 1024 * 1024
LABELS = ["chair", "table", "sofa", "lamp", "cup", "book", "shelf", "kitchen cabinet", "tv", "pillow"]
PREDICATES = ["standing on", "attached to", "lying on", "close by", "bigger than", "same as", "part of", "behind"]


# --------------------------------------------------------------------------- helpers


def node(node_id: int, label: str, centroid: tuple, half: float = 0.25, points: int = 100) -> SceneNode:
    """A node with a cube box around its centroid."""
    lo = tuple(c - half for c in centroid)
    hi = tuple(c + half for c in centroid)
    return SceneNode(node_id, label, [(label, 0.75), ("other", 0.125)], centroid, lo, hi, points)


def link(source: int, target: int, predicate: str, score: float) -> SceneLink:
    return SceneLink(source, target, predicate, score, [(predicate, score), ("none", 0.0625)])


def three_node_graph() -> SceneGraph:
    """A chair next to a table with a cup standing on it; chair and table linked both ways."""
    nodes = [
        node(1, "chair", (0.0, 0.0, 0.45)),
        node(2, "table", (0.75, 0.0, 0.375), half=0.375),
        node(3, "cup", (0.75, 0.0, 0.8125), half=0.0625, points=12),
    ]
    links = [
        link(3, 2, "standing on", 0.875),
        link(1, 2, "close by", 0.5),
        link(2, 1, "close by", 0.4375),
    ]
    return SceneGraph(nodes=nodes, links=links, metadata={"source": "test", "seconds": 1.5})


def random_graph(num_nodes: int, num_links: int, seed: int = 0) -> SceneGraph:
    """Random nodes in a 8 m room and random distinct directed links."""
    rng = np.random.default_rng(seed)
    nodes = [
        node(i, LABELS[i % len(LABELS)], tuple(float(v) for v in rng.uniform([-4, -4, 0], [4, 4, 2])))
        for i in range(num_nodes)
    ]
    pairs = [(a, b) for a in range(num_nodes) for b in range(num_nodes) if a != b]
    chosen = rng.choice(len(pairs), size=num_links, replace=False)
    links = [
        link(pairs[i][0], pairs[i][1], PREDICATES[int(i) % len(PREDICATES)], float(rng.uniform(0.1, 1.0)))
        for i in chosen
    ]
    return SceneGraph(nodes=nodes, links=links)


def assert_png(path: Path, max_bytes: int = MAX_PNG_BYTES) -> Image.Image:
    assert path.is_file()
    assert 0 < path.stat().st_size < max_bytes
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        width, height = image.size
        assert 200 <= width <= 4000 and 150 <= height <= 4000
        return image


def round_trip(graph: SceneGraph) -> SceneGraph:
    return SceneGraph.from_json(json.loads(json.dumps(graph.to_json())))


# --------------------------------------------------------------------------- JSON


def test_to_json_layout_is_exact() -> None:
    data = three_node_graph().to_json()
    assert list(data) == ["format", "version", "directed", "multigraph", "graph", "nodes", "links"]
    assert data["format"] == FORMAT_NAME and data["version"] == FORMAT_VERSION == 1
    assert data["directed"] is True and data["multigraph"] is False
    assert data["graph"] == {"source": "test", "seconds": 1.5}
    assert data["nodes"][0] == {
        "id": 1,
        "label": "chair",
        "label_scores": [["chair", 0.75], ["other", 0.125]],
        "centroid": [0.0, 0.0, 0.45],
        "aabb": {"min": [-0.25, -0.25, 0.2], "max": [0.25, 0.25, 0.7]},
        "point_count": 100,
    }
    assert data["links"][0] == {
        "source": 3,
        "target": 2,
        "predicate": "standing on",
        "score": 0.875,
        "predicate_scores": [["standing on", 0.875], ["none", 0.0625]],
    }


def test_to_json_writes_plain_python_numbers() -> None:
    graph = SceneGraph(
        nodes=[
            SceneNode(
                np.int64(4),
                "lamp",
                [("lamp", np.float32(0.5))],
                tuple(np.float32([1, 2, 3])),
                tuple(np.zeros(3)),
                tuple(np.ones(3) * 4),
                np.int32(7),
            )  # fmt: skip
        ],
        metadata={"n": np.int64(3), "scale": np.float32(0.5), "path": Path("/x"), "shape": np.zeros(2)},
    )
    text = json.dumps(graph.to_json())  # numpy types would raise here
    data = json.loads(text)
    assert data["graph"] == {"n": 3, "scale": 0.5, "path": "/x", "shape": [0.0, 0.0]}
    assert data["nodes"][0]["centroid"] == [1.0, 2.0, 3.0]
    assert type(data["nodes"][0]["point_count"]) is int


@pytest.mark.parametrize(
    "graph", [SceneGraph(), three_node_graph(), random_graph(20, 40, seed=3)], ids=["empty", "3", "20"]
)
def test_json_round_trip(graph: SceneGraph) -> None:
    again = round_trip(graph)
    assert again == graph
    assert again.to_json() == graph.to_json()


def test_round_trip_keeps_unrounded_floats() -> None:
    graph = three_node_graph()
    graph.nodes[0].centroid = (0.1 + 0.2, float(np.float32(0.3)), 1 / 3)
    graph.links[0].score = 2 / 3
    assert round_trip(graph) == graph


def test_networkx_reads_the_json() -> None:
    graph = three_node_graph()
    data = json.loads(json.dumps(graph.to_json()))
    loaded = nx.node_link_graph(data, edges="links")
    assert isinstance(loaded, nx.DiGraph) and not loaded.is_multigraph()
    assert sorted(loaded.nodes) == [1, 2, 3]
    assert sorted(loaded.edges) == [(1, 2), (2, 1), (3, 2)]
    assert loaded.nodes[3]["label"] == "cup"
    assert loaded.nodes[3]["point_count"] == 12
    assert loaded.nodes[2]["aabb"] == {"min": [0.375, -0.375, 0.0], "max": [1.125, 0.375, 0.75]}
    assert loaded.edges[3, 2]["predicate"] == "standing on"
    assert loaded.edges[3, 2]["score"] == 0.875
    assert loaded.edges[3, 2]["predicate_scores"][0] == ["standing on", 0.875]
    assert loaded.graph == {"source": "test", "seconds": 1.5}


def test_to_networkx_matches_node_link_graph() -> None:
    graph = random_graph(15, 30, seed=1)
    direct = graph.to_networkx()
    assert isinstance(direct, nx.DiGraph)
    assert direct.number_of_nodes() == 15 and direct.number_of_edges() == 30
    reference = nx.node_link_graph(graph.to_json(), edges="links")
    assert dict(direct.nodes(data=True)) == dict(reference.nodes(data=True))
    assert sorted(direct.edges(data="predicate")) == sorted(reference.edges(data="predicate"))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


BROKEN = {
    "wrong format": (_set("format", "networkx"), "format"),
    "no format": (_drop("format"), "format"),
    "newer version": (_set("version", 2), "version 2"),
    "no version": (_drop("version"), "version"),
    "no nodes": (_drop("nodes"), "nodes"),
    "nodes not a list": (_set("nodes", {}), "nodes"),
    "undirected": (_set("directed", False), "directed"),
    "node without centroid": (lambda d: d["nodes"][1].pop("centroid"), "nodes[1]"),
    "node without aabb max": (lambda d: d["nodes"][0]["aabb"].pop("max"), "nodes[0].aabb"),
    "short centroid": (lambda d: d["nodes"][0].__setitem__("centroid", [1, 2]), "centroid"),
    "string id": (lambda d: d["nodes"][0].__setitem__("id", "1"), "nodes[0].id"),
    "duplicate id": (lambda d: d["nodes"][1].__setitem__("id", 1), "node id 1"),
    "bad score pair": (lambda d: d["nodes"][0].__setitem__("label_scores", [["chair"]]), "label_scores"),
    "link without predicate": (lambda d: d["links"][2].pop("predicate"), "links[2]"),
    "link to missing node": (lambda d: d["links"][1].__setitem__("target", 99), "99"),
    "link from missing node": (lambda d: d["links"][0].__setitem__("source", 42), "42"),
    "self link": (lambda d: d["links"][0].__setitem__("target", 3), "itself"),
    "repeated link": (lambda d: d["links"].append(copy.deepcopy(d["links"][1])), "1 -> 2"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_from_json_rejects_broken_data(name: str) -> None:
    damage, mention = BROKEN[name]
    data = json.loads(json.dumps(three_node_graph().to_json()))
    damage(data)
    with pytest.raises(UserError, match="invalid scene graph") as caught:
        SceneGraph.from_json(data)
    assert mention in str(caught.value)


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(UserError, match="JSON object"):
        SceneGraph.from_json([1, 2])


def test_read_scene_graph(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_scene_graph(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_scene_graph(broken)
    paths = write_scene_graph(three_node_graph(), tmp_path / "out")
    assert read_scene_graph(paths["json"]) == three_node_graph()


def test_module_import_is_light() -> None:
    code = (
        "import sys, relationfield.scene_graph\n"
        "heavy = [m for m in ('torch', 'nerfstudio', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- files


def test_write_scene_graph_writes_three_files(tmp_path: Path) -> None:
    graph = three_node_graph()
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 3))
    point_node = rng.choice([-1, 1, 2, 3], size=200)
    out = tmp_path / "new" / "dir"
    paths = write_scene_graph(graph, out, points, point_node)
    assert paths == {"json": out / "scene_graph.json", "png": out / "scene_graph.png", "ply": out / "points.ply"}
    assert SceneGraph.from_json(json.loads(paths["json"].read_text())) == graph
    assert_png(paths["png"])
    vertex = PlyData.read(str(paths["ply"]))["vertex"]
    np.testing.assert_array_equal(vertex["node"], point_node)
    colors = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    np.testing.assert_array_equal(colors, node_colors(point_node))
    assert sorted(p.name for p in out.iterdir()) == ["points.ply", "scene_graph.json", "scene_graph.png"]


def test_write_scene_graph_without_points_and_overwrite(tmp_path: Path) -> None:
    write_scene_graph(random_graph(5, 6), tmp_path)
    paths = write_scene_graph(three_node_graph(), tmp_path)
    assert set(paths) == {"json", "png"}
    assert read_scene_graph(paths["json"]) == three_node_graph()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_write_scene_graph_checks_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in the graph"):
        write_scene_graph(three_node_graph(), tmp_path, np.zeros((2, 3)), np.array([1, 7]))
    with pytest.raises(ValueError, match="points"):
        write_scene_graph(three_node_graph(), tmp_path, point_node=np.array([1]))
    bad = three_node_graph()
    bad.links.append(link(1, 5, "left", 0.5))
    with pytest.raises(UserError, match="5"):
        write_scene_graph(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- PNG


def test_png_of_empty_graph(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    draw_scene_graph(SceneGraph(), path)
    assert_png(path)


def test_png_of_three_nodes(tmp_path: Path) -> None:
    path = tmp_path / "three.png"
    draw_scene_graph(three_node_graph(), path, title="a chair, a table and a cup")
    image = assert_png(path)
    assert max(image.size) < 1500


def test_png_of_large_graph_is_fast_and_small(tmp_path: Path) -> None:
    graph = random_graph(120, 300, seed=7)
    path = tmp_path / "large.png"
    start = time.perf_counter()
    draw_scene_graph(graph, path)
    seconds = time.perf_counter() - start
    assert seconds < 30.0, f"drawing took {seconds:.1f} s"
    image = assert_png(path)
    assert max(image.size) >= 1000  # sized to the number of nodes


def test_png_is_deterministic(tmp_path: Path) -> None:
    graph = random_graph(12, 20, seed=2)
    draw_scene_graph(graph, tmp_path / "a.png")
    draw_scene_graph(graph, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_png_with_coincident_nodes(tmp_path: Path) -> None:
    """Objects at the same floor position (stacked) and a lone pair still draw."""
    stacked = SceneGraph(nodes=[node(i, "book", (1.0, 1.0, 0.1 * i)) for i in range(6)])
    stacked.links = [link(i + 1, i, "lying on", 0.9) for i in range(5)]
    draw_scene_graph(stacked, tmp_path / "stacked.png")
    assert_png(tmp_path / "stacked.png")
    pair = SceneGraph(
        nodes=[node(0, "a", (0.0, 0.0, 0.0)), node(1, "b", (0.0, 0.0, 0.0))], links=[link(0, 1, "x", 0.5)]
    )
    draw_scene_graph(pair, tmp_path / "pair.png")
    assert_png(tmp_path / "pair.png")


# --------------------------------------------------------------------------- PLY and colours


def test_ply_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(500, 3)).astype(np.float32)
    ids = rng.integers(-1, 6, size=500)
    colors = node_colors(ids)
    path = tmp_path / "sub" / "points.ply"
    write_ply(path, points, colors, ids)

    ply = PlyData.read(str(path))
    assert ply.byte_order == "<" and not ply.text
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue", "node"]
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1), points)
    np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1), colors)
    np.testing.assert_array_equal(vertex["node"], ids)

    cloud = trimesh.load(str(path))
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_array_equal(np.asarray(cloud.vertices, dtype=np.float32), points)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], colors)
    np.testing.assert_array_equal(cloud.metadata["_ply_raw"]["vertex"]["data"]["node"], ids)


def test_ply_without_node_ids_and_float_colors(tmp_path: Path) -> None:
    points = np.arange(12, dtype=np.float64).reshape(4, 3)
    path = tmp_path / "plain.ply"
    write_ply(path, points, np.full((4, 3), 0.5), None)
    vertex = PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert vertex["red"].tolist() == [128] * 4
    empty = tmp_path / "empty.ply"
    write_ply(empty, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64))
    assert len(PlyData.read(str(empty))["vertex"].data) == 0


@pytest.mark.parametrize(
    "points, colors, ids, message",
    [
        (np.zeros((3, 2)), np.zeros((3, 3), np.uint8), None, "points"),
        (np.zeros((3, 3)), np.zeros((2, 3), np.uint8), None, "colors"),
        (np.zeros((3, 3)), np.full((3, 3), 300), None, "0..255"),
        (np.zeros((3, 3)), np.zeros((3, 3), np.uint8), np.zeros(2, np.int64), "node ids"),
        (np.full((3, 3), np.nan), np.zeros((3, 3), np.uint8), None, "finite"),
    ],
)
def test_write_ply_rejects_bad_arrays(tmp_path: Path, points, colors, ids, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_ply(tmp_path / "bad.ply", points, colors, ids)
    assert not (tmp_path / "bad.ply").exists()


def test_node_colors_distinct_and_deterministic() -> None:
    colors = node_colors(list(range(50)))
    assert colors.shape == (50, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors.tolist()}) == 50
    distance = np.abs(colors[:, None, :].astype(int) - colors[None, :, :].astype(int)).sum(axis=-1)
    np.fill_diagonal(distance, 999)
    assert distance.min() >= 20  # visibly different, not just different
    np.testing.assert_array_equal(colors, node_colors(np.arange(50)))
    np.testing.assert_array_equal(node_colors([7, 3, 7]), colors[[7, 3, 7]])
    grey = node_colors([-1, -1])
    assert (grey == grey[0]).all() and grey[0, 0] == grey[0, 1] == grey[0, 2]
    assert not any((colors == grey[0]).all(axis=1))
    assert node_colors([]).shape == (0, 3)
