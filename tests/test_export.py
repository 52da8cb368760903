"""Scene-graph export, evaluation and queries on the shared short-trained run, and their error paths."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml

from relationfield.cli import entrypoint
from relationfield.errors import UserError
from relationfield.scene_graph import read_ply

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> None:
    entrypoint(list(args))


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    run_cli("export", "scene-graph", "--load-config", str(trained_run), "--output-dir", str(out), "--max-views", "10")
    return out


def room_box(capture: Path):
    gt = json.loads((capture / "ground_truth" / "scene_graph.json").read_text())
    mins = np.array([o["aabb"]["min"] for o in gt["objects"]])
    maxs = np.array([o["aabb"]["max"] for o in gt["objects"]])
    return mins.min(0), maxs.max(0)


def test_export_writes_a_valid_graph_in_the_capture_frame(exported, synth_capture):
    data = json.loads((exported / "scene_graph.json").read_text())
    assert data["format"] == "relationfield-scene-graph" and data["version"] == 1
    graph = nx.node_link_graph(data, edges="links")
    assert graph.is_directed() and graph.number_of_nodes() >= 5
    low, high = room_box(synth_capture)
    # The cloud is in the capture's metric frame: its bulk fills the room. Left in the dataparser's
    # normalised frame it would span about a third of it.
    points, node_ids = read_ply(exported / "points.ply")
    bulk_low, bulk_high = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
    assert (bulk_low >= low - 0.15).all() and (bulk_high <= high + 0.15).all(), (bulk_low, bulk_high)
    assert ((bulk_high - bulk_low) >= 0.6 * (high - low)).all(), (bulk_low, bulk_high, low, high)
    assert node_ids is not None and set(np.unique(node_ids[node_ids >= 0])) <= {n["id"] for n in data["nodes"]}
    for node in data["nodes"]:
        # a short-trained field puts some depth just behind the thin walls, so a wall's centroid may sit
        # a little outside the room
        centroid = np.array(node["centroid"])
        assert (centroid >= low - 0.25).all() and (centroid <= high + 0.25).all(), node
        assert node["label_scores"][0][0] == node["label"]
    for link in data["links"]:
        names = [name for name, _ in link["predicate_scores"]]
        assert "none" in names and link["predicate"] in names
    assert (exported / "scene_graph.png").stat().st_size > 1000
    assert (exported / "points.ply").stat().st_size > 1000


def test_eval_of_the_export_reports_every_metric(exported, synth_capture, capsys):
    run_cli(
        "eval",
        "--pred",
        str(exported / "scene_graph.json"),
        "--gt",
        str(synth_capture / "ground_truth" / "scene_graph.json"),
    )
    table = capsys.readouterr().out
    for metric in ("Object R@1", "Predicate R@1", "Relation"):
        assert metric in table
    result = json.loads((exported / "eval.json").read_text())
    assert result["counts"]["gt_objects"] > 10
    # a short CPU run still finds and names some objects: well above chance (1 / 160 classes)
    assert result["recall"]["object"]["5"] >= 0.1


def test_object_and_relation_queries(trained_run, tmp_path, capsys):
    run_cli("query", "--load-config", str(trained_run), "table", "--top", "3", "--image", str(tmp_path / "q.png"))
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("'table'"))
    assert " table #" in lines[header + 1] and (tmp_path / "q.png").is_file()  # the best instance is a table
    # the old spelling of a relation query: the predicate as text, the reference by flag
    run_cli("query", "--load-config", str(trained_run), "standing on", "--reference", "floor", "--top", "3")
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("'standing on floor'"))
    assert lines[header + 1].startswith("references: floor #")
    assert len(lines) >= header + 5 and "relation" in lines[header + 2]


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_export_error_paths(trained_run, tmp_path, capsys):
    assert "does not exist" in _fails(
        capsys, "export", "scene-graph", "--load-config", str(tmp_path / "no.yml"), "--output-dir", str(tmp_path)
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    err = _fails(
        capsys,
        "export",
        "scene-graph",
        "--load-config",
        str(trained_run),
        "--output-dir",
        str(tmp_path),
        "--object-vocab",
        str(empty),
    )
    assert "is empty" in err
    # a run of another method
    other = tmp_path / "other" / "config.yml"
    other.parent.mkdir()
    config = yaml.load(trained_run.read_text(), Loader=yaml.Loader)
    config.method_name = "nerfacto"
    other.write_text(yaml.dump(config))
    assert "must be one of" in _fails(
        capsys, "export", "scene-graph", "--load-config", str(other), "--output-dir", str(tmp_path)
    )


def test_run_without_its_label_store_is_a_clear_error(trained_run, tmp_path):
    from relationfield.query import FieldQuery

    config = yaml.load(trained_run.read_text(), Loader=yaml.Loader)
    config.pipeline.datamanager.labels_dir = tmp_path / "gone"
    moved = trained_run.parent / "config_without_labels.yml"
    moved.write_text(yaml.dump(config))
    try:
        with pytest.raises(UserError, match="label store"):
            FieldQuery.load(moved)
    finally:
        moved.unlink()


def test_no_objects_found_writes_an_empty_valid_graph(trained_run, tmp_path):
    from relationfield.extraction import ExtractionConfig, extract_scene_graph
    from relationfield.query import FieldQuery
    from relationfield.scene_graph import SceneGraph, write_scene_graph

    query = FieldQuery.load(trained_run)
    result = extract_scene_graph(
        query, ["chair"], ["standing on"], ExtractionConfig(max_views=2, min_node_points=10**9)
    )
    assert result.graph.nodes == [] and result.graph.links == []
    write_scene_graph(result.graph, tmp_path)
    assert SceneGraph.from_json(json.loads((tmp_path / "scene_graph.json").read_text())).nodes == []


def test_eval_cli_error_paths(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "error" in _fails(capsys, "eval", "--pred", str(bad), "--gt", str(bad))
    assert "error" in _fails(capsys, "eval", "--pred", str(tmp_path / "missing.json"), "--gt", str(bad))


def test_world_frame_round_trip(trained_run):
    import torch

    from relationfield.query import FieldQuery

    query = FieldQuery.load(trained_run)
    points = torch.randn(50, 3)
    assert torch.allclose(query.to_world(query.to_model(points)), points, atol=1e-4)
    # camera centres map back to the capture's transforms.json positions
    capture = Path(query.pipeline.datamanager.config.dataparser.data)
    frames = json.loads((capture / "transforms.json").read_text())["frames"]
    names = [Path(p).name for p in query.pipeline.datamanager.train_dataset.image_filenames]
    by_name = {Path(f["file_path"]).name: np.array(f["transform_matrix"])[:3, 3] for f in frames}
    centres = query.pipeline.datamanager.train_dataset.cameras.camera_to_worlds[:, :3, 3]
    world = query.to_world(centres).numpy()
    expected = np.stack([by_name[n] for n in names])
    assert np.allclose(world, expected, atol=1e-3)


def test_surface_points_from_depth_maps_match_the_rendered_surface(trained_run):
    """The lite run is trained with depth supervision, so ``auto`` reads the capture's depth maps instead of
    rendering; both sources find the same surfaces, and the depth one needs no rendering."""
    import torch

    from relationfield.extraction import ExtractionConfig, no_progress, surface_points
    from relationfield.extraction.surface import use_depth_maps
    from relationfield.query import FieldQuery

    query = FieldQuery.load(trained_run)
    assert use_depth_maps(query.pipeline.datamanager.train_dataset, "auto")
    rendered_views: list[int] = []
    original = query.model.get_outputs_for_camera_ray_bundle

    def counted(bundle):
        rendered_views.append(1)
        return original(bundle)

    query.model.get_outputs_for_camera_ray_bundle = counted
    labelled = {}
    for source in ("depth", "rendered"):
        stages: list[str] = []

        def progress(name: str, total: int, seen: list[str] = stages):
            seen.append(name)
            return no_progress(name, total)

        labelled[source] = surface_points(query, ExtractionConfig(max_views=8, surface=source), progress)
        assert stages == ["reading surface points from depth" if source == "depth" else "rendering surface points"]
    assert len(rendered_views) == 8  # only the rendered source rendered
    depth, rendered = labelled["depth"], labelled["rendered"]
    assert len(depth) > 1000 and len(rendered) > 1000
    # the same room: most points of each source lie within 2% of the room's diagonal of the other's
    radius = 0.02 * float((rendered.max(0).values - rendered.min(0).values).norm())
    near = torch.cdist(depth[::7], rendered).min(dim=1).values
    back = torch.cdist(rendered[::7], depth).min(dim=1).values
    assert (near < radius).float().mean() > 0.8 and (back < radius).float().mean() > 0.8, (near.median(), back.median())


def test_surface_source_errors_and_choices():
    from types import SimpleNamespace

    from relationfield.extraction.surface import use_depth_maps

    with_depth = SimpleNamespace(has_depth=True, load_depth=True)
    untrained = SimpleNamespace(has_depth=True, load_depth=False)
    without = SimpleNamespace(has_depth=False, load_depth=False)
    assert use_depth_maps(with_depth, "auto") and not use_depth_maps(untrained, "auto")
    assert use_depth_maps(untrained, "depth") and not use_depth_maps(with_depth, "rendered")
    assert not use_depth_maps(without, "auto")
    with pytest.raises(UserError, match="depth maps"):
        use_depth_maps(without, "depth")
