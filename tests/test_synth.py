"""Tests of the procedural scene generator (relationfield.synth): API, determinism, the on-disk
contract, ground-truth relations against geometry, bad input, and loading through nerfstudio."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from relationfield.errors import UserError
from relationfield.synth import LAYOUTS, SynthSummary, generate_capture
from relationfield.synth.scene import Scene, SceneObject
from relationfield.vocab import OBJECT_VOCAB

FRAMES, WIDTH, HEIGHT = 24, 96, 72
REQUIRED_PREDICATES = {
    "standing on",
    "lying on",
    "hanging on",
    "attached to",
    "supported by",
    "inside",
    "close by",
    "bigger than",
    "smaller than",
    "higher than",
    "lower than",
    "same as",
}
SUPPORT_PREDICATES = {"standing on", "lying on", "supported by"}
WALL_PREDICATES = {"hanging on", "attached to"}
STRUCTURAL = {"floor", "wall", "ceiling"}


def _vocabulary() -> set[str]:
    return {line.strip() for line in OBJECT_VOCAB.read_text(encoding="utf-8").splitlines() if line.strip()}


def _graph(capture: Path) -> dict[str, Any]:
    return json.loads((capture / "ground_truth" / "scene_graph.json").read_text(encoding="utf-8"))


def _transforms(capture: Path) -> dict[str, Any]:
    return json.loads((capture / "transforms.json").read_text(encoding="utf-8"))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _boxes(graph: dict[str, Any]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {o["id"]: (np.asarray(o["aabb"]["min"]), np.asarray(o["aabb"]["max"])) for o in graph["objects"]}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], dict[str, Any]]:
    """Scene graphs of both layouts for seeds 0..4 (tiny renders: the ground truth does not depend on them)."""
    out = {}
    root = tmp_path_factory.mktemp("graphs")
    for layout in LAYOUTS:
        for seed in range(5):
            capture = root / f"{layout}-{seed}"
            generate_capture(capture, seed=seed, num_frames=3, resolution=(16, 16), layout=layout, progress=False)
            out[(layout, seed)] = _graph(capture)
    return out


# --------------------------------------------------------------------------- API


def test_public_api() -> None:
    assert LAYOUTS[0] == "living-room" and len(LAYOUTS) >= 2 and "office" in LAYOUTS
    assert dataclasses.is_dataclass(SynthSummary)
    assert [f.name for f in dataclasses.fields(SynthSummary)] == [
        "output",
        "num_frames",
        "num_objects",
        "num_relationships",
        "seconds",
    ]
    summary = SynthSummary(Path("x"), 3, 10, 20, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.num_frames = 4  # type: ignore[misc]


def test_import_is_light() -> None:
    code = (
        "import sys, relationfield.synth; "
        "heavy = [m for m in ('torch', 'nerfstudio') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_summary_and_progress_bar(tmp_path: Path) -> None:
    summary = generate_capture(tmp_path / "cap", seed=3, num_frames=3, resolution=(32, 24), progress=True)
    graph = _graph(tmp_path / "cap")
    assert summary.output == tmp_path / "cap"
    assert summary.num_frames == 3
    assert summary.num_objects == len(graph["objects"])
    assert summary.num_relationships == len(graph["relationships"])
    assert summary.seconds > 0


# --------------------------------------------------------------------------- determinism


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(synth_capture: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_capture(again, seed=0, num_frames=FRAMES, resolution=(WIDTH, HEIGHT), progress=False)
    first, second = _files(synth_capture), _files(again)
    assert first.keys() == second.keys()
    assert len(first) == 3 * FRAMES + 2
    different = [name for name in first if first[name] != second[name]]
    assert not different


def test_ground_truth_does_not_depend_on_rendering(synth_capture: Path, graphs: dict) -> None:
    assert _graph(synth_capture) == graphs[("living-room", 0)]


def test_other_seeds_change_the_layout(graphs: dict) -> None:
    for layout in LAYOUTS:
        rooms = {json.dumps(graphs[(layout, s)]["meta"]["room"]) for s in range(5)}
        assert len(rooms) == 5
        counts = {
            json.dumps(sorted(Counter(o["label"] for o in graphs[(layout, s)]["objects"]).items())) for s in range(5)
        }
        assert len(counts) >= 2, "object counts should vary with the seed"
        for s in range(1, 5):
            a, b = graphs[(layout, 0)], graphs[(layout, s)]
            assert [o["aabb"] for o in a["objects"]] != [o["aabb"] for o in b["objects"]]


# --------------------------------------------------------------------------- on-disk contract


def test_transforms_json(synth_capture: Path) -> None:
    tf = _transforms(synth_capture)
    assert tf["camera_model"] in ("OPENCV", "PINHOLE")
    assert (tf["w"], tf["h"]) == (WIDTH, HEIGHT)
    assert tf["cx"] == WIDTH / 2 and tf["cy"] == HEIGHT / 2
    hfov = 2 * np.degrees(np.arctan(WIDTH / 2 / tf["fl_x"]))
    assert 55 < hfov < 75 and tf["fl_x"] == tf["fl_y"]
    assert len(tf["frames"]) == FRAMES
    room = _graph(synth_capture)["meta"]["room"]
    for i, frame in enumerate(tf["frames"]):
        stem = f"frame_{i:05d}"
        assert frame["file_path"] == f"images/{stem}.png"
        assert frame["depth_file_path"] == f"depth/{stem}.png"
        pose = np.asarray(frame["transform_matrix"])
        assert pose.shape == (4, 4)
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(pose[:3, :3]) > 0
        assert abs(pose[0, 3]) < room["width"] / 2 and abs(pose[1, 3]) < room["depth"] / 2
        assert 0 < pose[2, 3] < room["height"]
        assert abs(pose[2, 0]) < 1e-6, "cameras are not rolled: their x axis is horizontal"


def test_images_depth_and_instances(synth_capture: Path) -> None:
    tf = _transforms(synth_capture)
    graph = _graph(synth_capture)
    ids = {o["id"] for o in graph["objects"]}
    seen: Counter[int] = Counter()
    for frame in tf["frames"]:
        stem = Path(frame["file_path"]).stem
        with Image.open(synth_capture / frame["file_path"]) as rgb:
            assert rgb.mode == "RGB" and rgb.size == (WIDTH, HEIGHT)
            assert np.asarray(rgb).std() > 5
        with Image.open(synth_capture / frame["depth_file_path"]) as depth_image:
            assert depth_image.mode == "I;16" and depth_image.size == (WIDTH, HEIGHT)
            depth = np.asarray(depth_image)
        with Image.open(synth_capture / "ground_truth" / "instances" / f"{stem}.png") as instance_image:
            assert instance_image.mode == "I;16" and instance_image.size == (WIDTH, HEIGHT)
            instances = np.asarray(instance_image)
        assert depth.dtype == np.uint16 and instances.dtype == np.uint16
        assert np.all(depth[instances > 0] > 0), "depth must be positive wherever an object is hit"
        assert np.all(depth[instances == 0] == 0)
        assert depth.max() < 15000, "depths are millimetres inside a room"
        present = set(np.unique(instances).tolist()) - {0}
        assert present <= ids
        seen.update(present)
    assert set(seen) == ids, "every object of the scene graph appears in the instance maps"
    rarely = {i: n for i, n in seen.items() if n < 3}
    assert not rarely, f"objects seen in fewer than 3 frames: {rarely}"


def test_depth_and_poses_agree_with_the_boxes(synth_capture: Path) -> None:
    """Unprojecting a depth pixel with the pose (OpenGL convention) lands in that pixel's object's aabb."""
    tf = _transforms(synth_capture)
    boxes = _boxes(_graph(synth_capture))
    rng = np.random.default_rng(0)
    for frame in tf["frames"]:
        depth = _png(synth_capture / frame["depth_file_path"]).astype(np.float64) / 1000.0
        instances = _png(synth_capture / "ground_truth" / "instances" / Path(frame["file_path"]).name)
        pose = np.asarray(frame["transform_matrix"])
        v, u = rng.integers(0, HEIGHT, 200), rng.integers(0, WIDTH, 200)
        d = depth[v, u]
        cam = np.stack([(u + 0.5 - tf["cx"]) / tf["fl_x"] * d, -(v + 0.5 - tf["cy"]) / tf["fl_y"] * d, -d], axis=1)
        world = cam @ pose[:3, :3].T + pose[:3, 3]
        for point, object_id in zip(world, instances[v, u]):
            lo, hi = boxes[int(object_id)]
            assert np.all(point >= lo - 0.01) and np.all(point <= hi + 0.01), (object_id, point, lo, hi)


def test_scene_graph_format(synth_capture: Path) -> None:
    graph = _graph(synth_capture)
    vocabulary = _vocabulary()
    ids = [o["id"] for o in graph["objects"]]
    assert ids == list(range(1, len(ids) + 1))
    for obj in graph["objects"]:
        assert obj["label"] in vocabulary
        lo, hi = np.asarray(obj["aabb"]["min"]), np.asarray(obj["aabb"]["max"])
        assert lo.shape == hi.shape == (3,) and np.all(lo < hi)
    for subject, obj, predicate in graph["relationships"]:
        assert subject in ids and obj in ids and subject != obj and isinstance(predicate, str)
    assert len({tuple(r) for r in graph["relationships"]}) == len(graph["relationships"])
    assert graph["meta"]["seed"] == 0 and graph["meta"]["layout"] == "living-room"


def test_sixteen_bit_png_round_trip(tmp_path: Path) -> None:
    from relationfield.synth.capture import _write_png16

    array = (np.arange(72 * 96, dtype=np.int64).reshape(72, 96) * 9 % 65536).astype(np.uint16)
    _write_png16(tmp_path / "a.png", array)
    assert np.array_equal(_png(tmp_path / "a.png"), array)
    cv2 = pytest.importorskip("cv2")
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_ANYDEPTH), array)


# --------------------------------------------------------------------------- scene content


def test_scene_content(graphs: dict) -> None:
    vocabulary = _vocabulary()
    for (layout, seed), graph in graphs.items():
        labels = Counter(o["label"] for o in graph["objects"])
        assert labels["floor"] == 1 and labels["wall"] == 4, (layout, seed)
        things = [o for o in graph["objects"] if o["label"] not in STRUCTURAL]
        assert len(things) >= 10, (layout, seed)
        assert set(labels) <= vocabulary
        chairs = Counter(o["model"] for o in things if o["label"] == "chair")
        assert max(chairs.values()) >= 2, "at least two identical chairs"
        floor = next(o for o in graph["objects"] if o["label"] == "floor")
        assert floor["aabb"]["max"][2] == 0.0, "the floor's top is at z = 0"


def test_more_seeds_fit_both_layouts() -> None:
    from relationfield.synth.layout import build_scene

    for layout in LAYOUTS:
        for seed in range(5, 25):
            scene = build_scene(layout, np.random.default_rng(seed))
            assert sum(not o.structural for o in scene.objects) >= 10, (layout, seed)


# --------------------------------------------------------------------------- relations vs geometry


def test_living_room_has_every_predicate(graphs: dict) -> None:
    for seed in range(5):
        predicates = {p for _, _, p in graphs[("living-room", seed)]["relationships"]}
        missing = REQUIRED_PREDICATES - predicates
        assert not missing, (seed, missing)


def test_relations_agree_with_boxes(graphs: dict) -> None:
    tol = 0.021
    for key, graph in graphs.items():
        boxes = _boxes(graph)
        labels = {o["id"]: o["label"] for o in graph["objects"]}
        models = {o["id"]: o["model"] for o in graph["objects"]}
        by_predicate: dict[str, set[tuple[int, int]]] = {}
        for s, o, p in graph["relationships"]:
            by_predicate.setdefault(p, set()).add((s, o))
        for p, pairs in by_predicate.items():
            for s, o in pairs:
                assert labels[s] not in STRUCTURAL, (key, p, labels[s])
                if labels[o] in STRUCTURAL:
                    assert p in SUPPORT_PREDICATES | WALL_PREDICATES, (key, p)
        get = by_predicate.get
        for s, o in get("standing on", set()) | get("lying on", set()):
            assert (s, o) in get("supported by", set())
        for s, o in get("supported by", set()):
            (slo, shi), (olo, ohi) = boxes[s], boxes[o]
            assert olo[2] - tol <= slo[2] <= ohi[2] + tol, (key, labels[s], labels[o])
            overlap = np.minimum(shi[:2], ohi[:2]) - np.maximum(slo[:2], olo[:2])
            assert np.all(overlap > 0), (key, labels[s], labels[o])
            if labels[o] == "floor":
                assert abs(slo[2]) <= tol
        for s, o in get("standing on", set()):
            assert (s, o) not in get("lying on", set())
        for s, o in get("hanging on", set()) | get("attached to", set()):
            assert labels[o] == "wall" and boxes[s][0][2] >= 0.0
        for s, o in get("inside", set()):
            (slo, shi), (olo, ohi) = boxes[s], boxes[o]
            assert np.all(slo >= olo - tol) and np.all(shi <= ohi + tol)
        for s, o in get("higher than", set()):
            assert boxes[s][0][2] >= boxes[o][1][2] - 0.006, (key, labels[s], labels[o])
        assert get("lower than", set()) == {(o, s) for s, o in get("higher than", set())}
        assert get("smaller than", set()) == {(o, s) for s, o in get("bigger than", set())}
        for s, o in get("bigger than", set()):
            assert np.prod(boxes[s][1] - boxes[s][0]) > np.prod(boxes[o][1] - boxes[o][0])
        same = get("same as", set())
        assert same == {(o, s) for s, o in same}
        for s, o in same:
            assert labels[s] == labels[o] and models[s] == models[o]
            assert np.allclose(boxes[s][1] - boxes[s][0], boxes[o][1] - boxes[o][0], atol=1e-6) or np.allclose(
                (boxes[s][1] - boxes[s][0])[[1, 0, 2]], boxes[o][1] - boxes[o][0], atol=1e-6
            )
        close = get("close by", set())
        assert close == {(o, s) for s, o in close}
        assert not close & get("supported by", set())


def test_support_is_real_contact() -> None:
    """Below the bottom of every supported object there is material of its support (mesh ray cast)."""
    import trimesh

    from relationfield.synth.layout import build_scene
    from relationfield.synth.relations import derive_relations

    for layout in LAYOUTS:
        for seed in range(3):
            scene = build_scene(layout, np.random.default_rng(seed))
            for s, o, p in derive_relations(scene.objects):
                if p != "supported by":
                    continue
                subject, support = scene.by_id(s), scene.by_id(o)
                mesh = trimesh.util.concatenate([part.mesh() for part in support.parts])
                lo = np.maximum(subject.aabb.min, support.aabb.min)[:2]
                hi = np.minimum(subject.aabb.max, support.aabb.max)[:2]
                xs, ys = np.meshgrid(np.linspace(lo[0], hi[0], 7)[1:-1], np.linspace(lo[1], hi[1], 7)[1:-1])
                origins = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, subject.aabb.min[2] + 0.01)], axis=1)
                directions = np.tile([0.0, 0.0, -1.0], (len(origins), 1))
                locations, _, _ = mesh.ray.intersects_location(origins, directions, multiple_hits=False)
                assert len(locations) and np.max(locations[:, 2]) >= subject.aabb.min[2] - 0.03, (
                    layout,
                    seed,
                    subject.label,
                    support.label,
                )


def test_required_relations_mean_what_they_say(graphs: dict) -> None:
    """Spot checks of the scene semantics in the living room."""
    for seed in range(5):
        graph = graphs[("living-room", seed)]
        labels = {o["id"]: o["label"] for o in graph["objects"]}
        named = {(labels[s], labels[o], p) for s, o, p in graph["relationships"]}
        for triple in [
            ("pillow", "sofa", "lying on"),
            ("picture", "wall", "hanging on"),
            ("shelf", "wall", "attached to"),
            ("book", "shelf", "inside"),
            ("book", "shelf", "standing on"),
            ("cup", "table", "standing on"),
            ("lamp", "table", "standing on"),
            ("book", "table", "lying on"),
            ("chair", "floor", "standing on"),
            ("chair", "chair", "same as"),
            ("chair", "table", "close by"),
            ("picture", "sofa", "higher than"),
            ("sofa", "pillow", "bigger than"),
        ]:
            assert triple in named, (seed, triple)


def _layout_scene(layout: str, seed: int) -> Scene:
    """The scene generate_capture draws for ``seed`` (its first spawned generator), without rendering."""
    from relationfield.synth.layout import build_scene

    layout_seq, _ = np.random.SeedSequence(seed).spawn(2)
    return build_scene(layout, np.random.default_rng(layout_seq))


def _objects_digest(scene: Scene) -> str:
    rows = [[o.label, [round(float(v), 4) for v in (*o.aabb.min, *o.aabb.max)]] for o in scene.objects]
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


# Labels and aabbs of the living room as generated before the office twins were added: the demo's default
# scene and every measured figure depend on it, so office changes must not move it.
LIVING_ROOM_DIGESTS = {
    0: "77864e858b8d8eb659b0a5f1b21219e455b831858d59d930fc324a4a5e5d0d4b",
    1: "8d7eaa0579bfe616a81dc713d75b11c2c60493177df32adb0ca640fcffab0a4f",
    2: "6f3fcccfd2c2149ef7f08576ad97e8a86756a2c1588d71899858ecf219374152",
}


def test_living_room_is_unchanged() -> None:
    for seed, digest in LIVING_ROOM_DIGESTS.items():
        assert _objects_digest(_layout_scene("living-room", seed)) == digest, seed


def _twins(scene: Scene, label: str) -> tuple[list[SceneObject], dict[int, set[tuple[str, str]]]]:
    """The objects labelled ``label`` and, per id, its (predicate, support label) support relations."""
    from relationfield.synth.relations import derive_relations

    objects = [o for o in scene.objects if o.label == label]
    ids = {o.id for o in objects}
    supports: dict[int, set[tuple[str, str]]] = {i: set() for i in ids}
    for s, o, p in derive_relations(scene.objects):
        if s in ids and p in ("standing on", "supported by"):
            supports[s].add((p, scene.by_id(o).label))
    return objects, supports


def _identical(objects: list[SceneObject]) -> bool:
    first = objects[0]
    return all(o.model == first.model and np.allclose(o.aabb.extents, first.aabb.extents) for o in objects)


@pytest.mark.parametrize("seed", range(4))
def test_office_has_twins_told_apart_by_relations(seed: int) -> None:
    """Two identical cups (on the desk, on the cabinet) and two identical boxes (one stacked on the other)."""
    scene = _layout_scene("office", seed)
    assert _objects_digest(scene) == _objects_digest(_layout_scene("office", seed)), "deterministic per seed"
    cups, cup_supports = _twins(scene, "cup")
    assert len(cups) == 2 and _identical(cups)
    assert {frozenset(found) for found in cup_supports.values()} == {
        frozenset({("standing on", "desk"), ("supported by", "desk")}),
        frozenset({("standing on", "cabinet"), ("supported by", "cabinet")}),
    }
    boxes, box_supports = _twins(scene, "box")
    assert len(boxes) == 2 and _identical(boxes)
    bottom, top = sorted(boxes, key=lambda o: o.aabb.min[2])
    assert box_supports[bottom.id] == {("standing on", "floor"), ("supported by", "floor")}
    assert box_supports[top.id] == {("standing on", "box"), ("supported by", "box")}
    assert top.aabb.min[2] == pytest.approx(bottom.aabb.max[2])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "kitchen"}, "living-room"),
        ({"num_frames": 2}, "at least 3"),
        ({"resolution": (8, 100)}, "between 16"),
        ({"resolution": (100,)}, "pair"),
        ({"resolution": "256x192"}, "pair"),
        ({"resolution": (64.0, 48)}, "pair"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        generate_capture(tmp_path / "cap", progress=False, **kwargs)
    assert not (tmp_path / "cap").exists()


def test_output_must_be_empty_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    generate_capture(out, seed=1, num_frames=5, resolution=(32, 24), progress=False)
    with pytest.raises(UserError, match="overwrite"):
        generate_capture(out, seed=1, num_frames=3, resolution=(32, 24), progress=False)
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    generate_capture(out, seed=1, num_frames=3, resolution=(32, 24), overwrite=True, progress=False)
    assert len(list((out / "images").iterdir())) == 3
    assert len(list((out / "ground_truth" / "instances").iterdir())) == 3
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
    afile = tmp_path / "file"
    afile.write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match="not a directory"):
        generate_capture(afile, num_frames=3, resolution=(32, 24), progress=False, overwrite=True)


def test_falls_back_without_embree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trimesh

    generate_capture(tmp_path / "embree", seed=2, num_frames=3, resolution=(24, 16), progress=False)
    monkeypatch.setattr(trimesh.ray, "has_embree", False)
    with pytest.warns(RuntimeWarning, match="embree"):
        generate_capture(tmp_path / "plain", seed=2, num_frames=3, resolution=(24, 16), progress=False)
    assert _graph(tmp_path / "embree") == _graph(tmp_path / "plain")
    a = _png(tmp_path / "embree" / "ground_truth" / "instances" / "frame_00000.png")
    b = _png(tmp_path / "plain" / "ground_truth" / "instances" / "frame_00000.png")
    assert np.mean(a == b) > 0.95


# --------------------------------------------------------------------------- nerfstudio


def test_loads_with_nerfstudio_dataparser(synth_capture: Path) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    train = NerfstudioDataParserConfig(data=synth_capture).setup().get_dataparser_outputs("train")
    val = NerfstudioDataParserConfig(data=synth_capture).setup().get_dataparser_outputs("val")
    assert len(train.image_filenames) + len(val.image_filenames) == FRAMES
    everything = NerfstudioDataParserConfig(data=synth_capture, eval_mode="all").setup()
    outputs = everything.get_dataparser_outputs("train")
    cameras = outputs.cameras
    assert len(cameras) == FRAMES
    assert int(cameras.width[0]) == WIDTH and int(cameras.height[0]) == HEIGHT
    assert len(outputs.metadata["depth_filenames"]) == FRAMES
    assert all(Path(p).is_file() for p in outputs.metadata["depth_filenames"])
