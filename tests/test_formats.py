"""Labelled exports and other tools' formats: the labelled points.ply, objects/<id>_<label>.ply, labels.txt,
ConceptGraphs' and 3DSSG's files, and a query's points (hand-made graphs; the trained run where marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
import tyro
from plyfile import PlyData

from relationfield.errors import UserError
from relationfield.evaluation import evaluate
from relationfield.evaluation.ground_truth import read_ground_truth
from relationfield.scene_graph import (
    SceneGraph,
    SceneLink,
    SceneNode,
    is_relation,
    label_table,
    node_colors,
    object_file_name,
    parse_conceptgraphs,
    parse_threedssg,
    predicate_table,
    write_ply,
    write_query_points,
    write_scene_graph,
)
from relationfield.vocab import predicate_vocab

# --------------------------------------------------------------------------- hand-made graphs


def node(node_id: int, label: str, centre: tuple[float, float, float], half: float = 0.25) -> SceneNode:
    low = tuple(c - half for c in centre)
    high = tuple(c + half for c in centre)
    return SceneNode(node_id, label, [(label, 0.75), ("other", 0.125)], centre, low, high, 50)


def link(source: int, target: int, predicate: str, score: float, none: float = 0.0625) -> SceneLink:
    return SceneLink(source, target, predicate, score, [(predicate, score), ("none", none)])


def room() -> SceneGraph:
    """A chair and a table, a cup standing on the table, a kitchen cabinet with no points; the pair
    chair -> cup is scored but "none" wins there."""
    nodes = [
        node(1, "chair", (0.0, 0.0, 0.45)),
        node(2, "table", (1.0, 0.0, 0.4), half=0.4),
        node(3, "cup", (1.0, 0.0, 0.85), half=0.05),
        node(7, "kitchen cabinet", (3.0, 0.0, 0.5)),
    ]
    links = [
        link(3, 2, "standing on", 0.875),
        link(1, 2, "close by", 0.5),
        link(2, 1, "close by", 0.4375),
        link(7, 2, "attached to", 0.3),
        link(1, 3, "left", 0.25, none=0.625),
    ]
    return SceneGraph(nodes=nodes, links=links, metadata={"source": "test"})


def room_points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around the chair, table and cup, and some in no node (the cabinet has none)."""
    rng = np.random.default_rng(seed)
    point_node = rng.choice([-1, 1, 2, 3], size=400)
    centres = {-1: (0.0, 2.0, 0.0), 1: (0.0, 0.0, 0.45), 2: (1.0, 0.0, 0.4), 3: (1.0, 0.0, 0.85)}
    points = np.array([centres[int(i)] for i in point_node]) + rng.normal(scale=0.02, size=(400, 3))
    return points, point_node


def export(tmp_path: Path, **options) -> dict[str, Path]:
    points, point_node = room_points()
    return write_scene_graph(room(), tmp_path / "room", points, point_node, **options)


def ply_header(path: Path) -> str:
    data = path.read_bytes()
    return data[: data.index(b"end_header")].decode("ascii")


# --------------------------------------------------------------------------- points.ply and objects/


def test_points_ply_has_node_label_and_colour_for_trimesh(tmp_path: Path) -> None:
    paths = export(tmp_path, per_object=True)
    points, point_node = room_points()
    cloud = trimesh.load(str(paths["ply"]))
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_allclose(cloud.vertices, points, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], node_colors(point_node))
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_array_equal(raw["node"], point_node)
    # label: the index into the sorted label list, named in labels.txt and in the header's comments
    names = paths["labels"].read_text().splitlines()
    assert names == label_table(room()) == ["chair", "cup", "kitchen cabinet", "table"]
    labels = {n.id: n.label for n in room().nodes}
    expected = [names.index(labels[int(i)]) if i >= 0 else -1 for i in point_node]
    np.testing.assert_array_equal(raw["label"], expected)
    header = ply_header(paths["ply"])
    assert "format binary_little_endian 1.0" in header
    for line in ("property float x", "property uchar red", "property int node", "property int label"):
        assert line in header
    comments = PlyData.read(str(paths["ply"])).comments
    assert [c for c in comments if c.startswith("label ")] == [f"label {i} {n}" for i, n in enumerate(names)]


def test_points_ply_reads_in_open3d(tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d", exc_type=ImportError)  # its wheel needs libusb, not always there
    paths = export(tmp_path, per_object=True)
    points, point_node = room_points()
    cloud = o3d.io.read_point_cloud(str(paths["ply"]))
    np.testing.assert_allclose(np.asarray(cloud.points), points, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, node_colors(point_node), atol=0.5)
    tensor = o3d.t.io.read_point_cloud(str(paths["ply"]))
    np.testing.assert_array_equal(tensor.point["node"].numpy().ravel(), point_node)


def test_one_ply_per_object_with_its_points(tmp_path: Path) -> None:
    paths = export(tmp_path, per_object=True)
    points, point_node = room_points()
    files = sorted(p.name for p in paths["objects"].iterdir())
    assert files == ["1_chair.ply", "2_table.ply", "3_cup.ply"]  # the cabinet has no points, so no file
    names = label_table(room())
    for graph_node in room().nodes[:3]:
        cloud = trimesh.load(str(paths["objects"] / object_file_name(graph_node)))
        mask = point_node == graph_node.id
        np.testing.assert_allclose(cloud.vertices, points[mask], atol=1e-6)
        np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], node_colors(point_node[mask]))
        raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
        assert set(raw["node"].tolist()) == {graph_node.id}
        assert set(raw["label"].tolist()) == {names.index(graph_node.label)}
    assert paths["json"].parent == paths["objects"].parent


def test_objects_of_an_earlier_export_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "room"
    (out / "objects").mkdir(parents=True)
    (out / "objects" / "9_sofa.ply").write_bytes(b"old")
    (out / "objects" / "notes.txt").write_text("mine")
    export(tmp_path, per_object=True)
    assert sorted(p.name for p in (out / "objects").iterdir()) == [
        "1_chair.ply",
        "2_table.ply",
        "3_cup.ply",
        "notes.txt",
    ]


def test_object_file_names_are_safe() -> None:
    assert object_file_name(node(7, "kitchen cabinet", (0, 0, 0))) == "7_kitchen_cabinet.ply"
    assert object_file_name(node(4, "TV / monitor (big)", (0, 0, 0))) == "4_TV_monitor_big.ply"
    assert object_file_name(node(5, "../..", (0, 0, 0))) == "5_object.ply"


def test_per_object_files_are_opt_in(tmp_path: Path) -> None:
    paths = export(tmp_path)
    assert set(paths) == {"json", "png", "ply"}
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == [
        "points.ply",
        "scene_graph.json",
        "scene_graph.png",
    ]


def test_extra_ply_properties_are_checked(tmp_path: Path) -> None:
    points, colors = np.zeros((3, 3)), np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError, match="reserved"):
        write_ply(tmp_path / "a.ply", points, colors, properties={"node": np.zeros(3, int)})
    with pytest.raises(ValueError, match="finite"):
        write_ply(tmp_path / "a.ply", points, colors, properties={"relevancy": np.array([0.1, np.nan, 0.2])})
    with pytest.raises(ValueError, match="matching 3"):
        write_ply(tmp_path / "a.ply", points, colors, properties={"label": np.zeros(2, int)})
    assert not (tmp_path / "a.ply").exists()


def test_query_points_carry_their_relevancy(tmp_path: Path) -> None:
    points, point_node = room_points()
    relevancy = np.linspace(0.5, 1.0, len(points))
    path = write_query_points(tmp_path / "q.ply", points, relevancy, point_node, 0.5, ["query: chair"])
    cloud = trimesh.load(str(path))
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_allclose(raw["relevancy"], relevancy, atol=1e-6)
    np.testing.assert_array_equal(raw["node"], point_node)
    assert "property float relevancy" in ply_header(path) and "query: chair" in PlyData.read(str(path)).comments
    colors = np.asarray(cloud.colors)[:, :3].astype(int)
    assert not np.array_equal(colors[0], colors[-1])  # coloured by relevancy


# --------------------------------------------------------------------------- ConceptGraphs


def read_json_files(folder: Path) -> dict[str, object]:
    return {p.name: json.loads(p.read_text()) for p in folder.iterdir() if p.suffix == ".json"}


def test_conceptgraphs_files_have_the_documented_fields(tmp_path: Path) -> None:
    paths = export(tmp_path, formats=["conceptgraphs"])
    files = read_json_files(paths["conceptgraphs"])
    assert sorted(files) == ["edge_json_relationfield.json", "obj_json_relationfield.json", "scene_graph.json"]
    parsed = parse_conceptgraphs(files)
    scene = files["scene_graph.json"]
    assert [set(o) for o in scene] == [
        {"id", "bbox_extent", "bbox_center", "possible_tags", "object_tag", "caption"}
    ] * 4
    table = next(o for o in scene if o["id"] == 2)
    assert table["object_tag"] == "table" and table["possible_tags"] == ["table", "other"]
    np.testing.assert_allclose(table["bbox_center"], [1.0, 0.0, 0.4])
    np.testing.assert_allclose(table["bbox_extent"], [0.8, 0.8, 0.8])
    cup = next(o for o in scene if o["id"] == 3)
    assert cup["caption"] == "cup #3, standing on table #2"
    objects = files["obj_json_relationfield.json"]
    assert list(objects) == ["object_1", "object_2", "object_3", "object_4"]
    assert set(objects["object_1"]) == {
        "id",
        "object_tag",
        "object_caption",
        "bbox_extent",
        "bbox_center",
        "bbox_volume",
    }
    np.testing.assert_allclose(objects["object_2"]["bbox_volume"], 0.8**3)
    edges = files["edge_json_relationfield.json"]
    assert list(edges) == ["edge_0", "edge_1", "edge_2", "edge_3"]  # chair -> cup: "none" wins, no edge
    assert edges["edge_0"] == {
        "edge_id": 0,
        "edge_description": "cup standing on table",
        "num_detections": 1,
        "object_1_id": 3,
        "object_1_tag": "cup",
        "object_2_id": 2,
        "object_2_tag": "table",
        "relationship": "standing on",
        "score": 0.875,
    }
    assert len(parsed.edge_json) == 4


def test_conceptgraphs_validation_names_the_problem(tmp_path: Path) -> None:
    files = read_json_files(export(tmp_path, formats=["conceptgraphs"])["conceptgraphs"])
    extra = json.loads(json.dumps(files))
    extra["scene_graph.json"][0]["colour"] = "red"
    with pytest.raises(UserError, match="colour"):
        parse_conceptgraphs(extra)
    dangling = json.loads(json.dumps(files))
    dangling["edge_json_relationfield.json"]["edge_0"]["object_2_id"] = 99
    with pytest.raises(UserError, match="object 99"):
        parse_conceptgraphs(dangling)
    with pytest.raises(UserError, match="missing"):
        parse_conceptgraphs({"scene_graph.json": []})


# --------------------------------------------------------------------------- 3DSSG


def read_3dssg(folder: Path) -> dict[str, object]:
    return {**read_json_files(folder), "relationships.txt": (folder / "relationships.txt").read_text()}


def test_3dssg_files_have_the_documented_fields(tmp_path: Path) -> None:
    paths = export(tmp_path, formats=["3dssg"])
    files = read_3dssg(paths["3dssg"])
    parse_threedssg(files)
    (scan,) = files["objects.json"]["scans"]
    assert scan["scan"] == "room"  # the export's folder
    assert scan["objects"][0] == {
        "id": "1",
        "label": "chair",
        "ply_color": scan["objects"][0]["ply_color"],
        "affordances": [],
        "attributes": {},
    }
    red, green, blue = node_colors([1])[0]
    assert scan["objects"][0]["ply_color"] == f"#{red:02x}{green:02x}{blue:02x}"
    (relations,) = files["relationships.json"]["scans"]
    assert relations["objects"] == {"1": "chair", "2": "table", "3": "cup", "7": "kitchen cabinet"}
    # 3DSSG's indices (its README: 14 attached to, 15 standing on), "none" at 0; chair -> cup is no relation
    assert relations["relationships"] == [
        [3, 2, 15, "standing on"],
        [1, 2, 6, "close by"],
        [2, 1, 6, "close by"],
        [7, 2, 14, "attached to"],
    ]
    lines = files["relationships.txt"].splitlines()
    assert lines == ["none", *predicate_vocab()] == predicate_table() and len(lines) == 27


def test_an_export_evaluated_against_its_own_3dssg_files_is_perfect(tmp_path: Path) -> None:
    paths = export(tmp_path, formats=["3dssg"])
    gt = json.loads((paths["3dssg"] / "relationships.json").read_text())
    truth = read_ground_truth(gt, None)
    assert truth.format == "3dssg" and len(truth.triplets) == 4
    pred = json.loads(paths["json"].read_text())
    result = evaluate(pred, gt, node_map={n.id: n.id for n in room().nodes})
    for table in (result.object_recall, result.predicate_recall, result.relation_recall):
        assert set(table.values()) == {1.0}, table
    assert result.num_gt_triplets == 4 and result.num_matched_objects == 4


def test_3dssg_indices_follow_the_export_vocabulary(tmp_path: Path) -> None:
    paths = export(tmp_path, formats=["3dssg"], predicates=["attached to", "close by", "standing on", "left"])
    files = read_3dssg(paths["3dssg"])
    assert files["relationships.txt"].splitlines() == ["none", "attached to", "close by", "standing on", "left"]
    assert files["relationships.json"]["scans"][0]["relationships"][0] == [3, 2, 3, "standing on"]
    with pytest.raises(ValueError, match="standing on"):
        export(tmp_path / "other", formats=["3dssg"], predicates=["close by", "attached to"])
    assert not (tmp_path / "other").exists()  # checked before anything is written


def test_3dssg_validation_names_the_problem(tmp_path: Path) -> None:
    files = read_3dssg(export(tmp_path, formats=["3dssg"])["3dssg"])
    wrong = json.loads(json.dumps({k: v for k, v in files.items() if k.endswith(".json")}))
    wrong["relationships.json"]["scans"][0]["relationships"][0][2] = 16
    with pytest.raises(UserError, match="predicate index 16"):
        parse_threedssg({**wrong, "relationships.txt": files["relationships.txt"]})
    wrong["objects.json"]["scans"][0]["objects"][0]["id"] = 1
    with pytest.raises(UserError, match="string"):
        parse_threedssg({**wrong, "relationships.txt": files["relationships.txt"]})


def test_which_links_are_relations() -> None:
    assert is_relation(link(1, 2, "left", 0.5, none=0.25))
    assert not is_relation(link(1, 2, "left", 0.25, none=0.5))
    assert not is_relation(link(1, 2, "left", 0.5, none=0.5))  # a tie is no relation
    assert is_relation(SceneLink(1, 2, "left", 0.1, [("left", 0.1)]))


def test_unknown_format_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export formats"):
        export(tmp_path, formats=["scannet"])
    assert not (tmp_path / "room").exists()


def test_format_flag_repeats_or_lists() -> None:
    from relationfield.commands.export import ExportSceneGraph

    base = ["--load-config", "run.yml", "--output-dir", "out"]
    repeated = tyro.cli(ExportSceneGraph, args=[*base, "--format", "conceptgraphs", "--format", "3dssg"])
    listed = tyro.cli(ExportSceneGraph, args=[*base, "--format", "conceptgraphs", "3dssg"])
    assert repeated.format == (("conceptgraphs",), ("3dssg",)) and listed.format == (("conceptgraphs", "3dssg"),)
    assert tyro.cli(ExportSceneGraph, args=base).format == ()


# --------------------------------------------------------------------------- the trained run


def run_cli(*args: str) -> None:
    from relationfield.cli import entrypoint

    entrypoint(list(args))


@pytest.fixture(scope="module")
def labelled_export(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labelled")
    run_cli(
        "export", "scene-graph", "--load-config", str(trained_run), "--output-dir", str(out), "--max-views", "10",
        "--format", "conceptgraphs", "3dssg",
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_export_of_the_run_writes_every_labelled_file(labelled_export: Path) -> None:
    graph = json.loads((labelled_export / "scene_graph.json").read_text())
    cloud = trimesh.load(str(labelled_export / "points.ply"))
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    names = (labelled_export / "labels.txt").read_text().splitlines()
    labels = {n["id"]: n["label"] for n in graph["nodes"]}
    for node_id in np.unique(raw["node"][raw["node"] >= 0]):
        (label_index,) = np.unique(raw["label"][raw["node"] == node_id])
        assert names[label_index] == labels[int(node_id)]
        file = (
            labelled_export
            / "objects"
            / object_file_name(SceneNode(int(node_id), labels[int(node_id)], [], (0, 0, 0), (0, 0, 0), (0, 0, 0), 0))
        )
        part = trimesh.load(str(file))
        assert len(part.vertices) == int((raw["node"] == node_id).sum())
    assert len(list((labelled_export / "objects").iterdir())) == len(np.unique(raw["node"][raw["node"] >= 0]))
    parse_conceptgraphs(read_json_files(labelled_export / "conceptgraphs"))
    parse_threedssg(read_3dssg(labelled_export / "3dssg"))


@pytest.mark.slow
def test_export_of_the_run_recalls_its_own_3dssg_relations(labelled_export: Path) -> None:
    pred = json.loads((labelled_export / "scene_graph.json").read_text())
    gt = json.loads((labelled_export / "3dssg" / "relationships.json").read_text())
    result = evaluate(pred, gt, node_map={n["id"]: n["id"] for n in pred["nodes"]})
    assert result.num_gt_triplets > 0
    # ties aside (none in a trained field's softmax scores), every relation is its pair's top predicate
    assert result.predicate_recall[1] == 1.0 and result.object_recall[1] == 1.0
    assert result.relation_recall[100] == 1.0


def query_cloud(path: Path) -> tuple[trimesh.PointCloud, dict[str, np.ndarray]]:
    cloud = trimesh.load(str(path))
    return cloud, cloud.metadata["_ply_raw"]["vertex"]["data"]


@pytest.mark.slow
def test_pointcloud_of_an_object_query(trained_run, labelled_export: Path, tmp_path: Path) -> None:
    run_cli(
        "export", "pointcloud", "--load-config", str(trained_run), "--output-dir", str(tmp_path), "--query", "table"
    )
    cloud, raw = query_cloud(tmp_path / "query_points.ply")
    assert len(cloud.vertices) > 0 and (raw["relevancy"] > 0.5).all() and (raw["relevancy"] <= 1.0).all()
    graph = json.loads((labelled_export / "scene_graph.json").read_text())
    scene = trimesh.load(str(labelled_export / "points.ply")).metadata["_ply_raw"]["vertex"]["data"]["node"]
    assert set(raw["node"].tolist()) <= set(scene.tolist())  # the export was reused: its points and node ids
    assert len(cloud.vertices) < len(scene)
    # a short-trained field lights up more than tables, but tables far more than their share of the scene
    tables = [n["id"] for n in graph["nodes"] if n["label"] == "table"]
    assert tables and np.isin(raw["node"], tables).mean() > 2 * np.isin(scene, tables).mean()


@pytest.mark.slow
def test_pointcloud_of_relation_and_referring_queries(trained_run, labelled_export: Path, tmp_path: Path) -> None:
    base = ["export", "pointcloud", "--load-config", str(trained_run), "--output-dir", str(tmp_path)]
    run_cli(
        *base, "--relation", "standing on", "--reference", "floor", "--threshold", "0.3", "--output", "on_floor.ply"
    )
    _, raw = query_cloud(tmp_path / "on_floor.ply")
    assert (raw["relevancy"] > 0.3).all()
    comments = PlyData.read(str(tmp_path / "on_floor.ply")).comments
    reference = int(next(c for c in comments if c.startswith("reference: node ")).split()[-1])
    assert reference not in set(raw["node"].tolist())  # the reference's own points are not its answer
    run_cli(*base, "--query", "cup standing on table", "--output", "cup.ply")
    _, raw = query_cloud(tmp_path / "cup.ply")
    (answer,) = np.unique(raw["node"])  # one instance, all its points
    comments = PlyData.read(str(tmp_path / "cup.ply")).comments
    assert f"answer: node {answer}" in comments and "kind: referring" in comments
