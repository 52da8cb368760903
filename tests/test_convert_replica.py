"""Replica conversion: a tiny sequence in NICE-SLAM's layout (results/frame*.jpg, results/depth*.png, traj.txt) with
a Replica semantic mesh (habitat/mesh_semantic.ply quads with object_id, info_semantic.json) converted into a
capture, checked against NICE-SLAM's camera conventions and the mesh."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from camera_fixtures import look_at
from PIL import Image
from plyfile import PlyData, PlyElement

from relationfield.convert.capture import AnnotatedMesh, ConvertedFrame
from relationfield.convert.common import ConvertSummary, read_polygon_mesh
from relationfield.convert.replica import convert_replica
from relationfield.errors import UserError

# NICE-SLAM configs/Replica/replica.yaml
W, H, FX, FY, CX, CY, SCALE = 1200, 680, 600.0, 600.0, 599.5, 339.5, 6553.5
# (object_id, class_name or None when info_semantic.json does not list it, min corner, max corner)
BOXES = [
    (0, "floor", (-4.0, -5.0, -0.1), (4.0, 4.0, 0.0)),
    (5, "table", (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0)),
    (7, "chair", (0.9, 0.3, 0.0), (1.4, 0.8, 0.5)),
    (9, None, (-1.6, 0.2, 0.0), (-1.1, 0.7, 0.8)),
]
EYES = [(0.0, -4.0, 0.5), (2.5, -3.0, 1.6), (-2.0, -3.0, 1.2), (1.0, -3.0, 1.0)]
TARGET = np.array([0.0, 0.0, 0.5])
POINT = np.array([0.5, -0.5, 1.0])
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
# corner indices (x, y, z bits) of each box side, as a quad
QUADS = np.array([[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]])


def opencv_pose(eye) -> np.ndarray:
    """A traj.txt pose: camera-to-world with OpenCV axes (NICE-SLAM flips its y and z columns on load)."""
    return look_at(eye, TARGET) @ OPENGL_TO_OPENCV


def quad_mesh(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, quads and each quad's object_id of the boxes (Replica's semantic meshes are quad meshes)."""
    vertices, quads, ids = [], [], []
    for object_id, _, low, high in BOXES:
        bounds = np.array([low, high])
        # corner k = 4 x + 2 y + z, each bit picking the low or high side
        corners = np.array([bounds[[k >> 2 & 1, k >> 1 & 1, k & 1], [0, 1, 2]] for k in range(8)])
        quads.append(QUADS + 8 * len(vertices))
        vertices.append(corners + [0.0, 0.0, shift])
        ids.append(np.full(6, object_id))
    return np.concatenate(vertices), np.concatenate(quads), np.concatenate(ids)


def triangles(quads: np.ndarray) -> np.ndarray:
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def write_semantic_mesh(folder: Path, shift: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vertices, quads, ids = quad_mesh(shift)
    vertex = np.zeros(len(vertices), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = vertices.T
    face = np.zeros(len(quads), dtype=[("vertex_indices", "i4", (4,)), ("object_id", "i4")])
    face["vertex_indices"], face["object_id"] = quads, ids
    path = folder / "mesh_semantic.ply"
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))
    objects = [{"id": i, "class_id": n, "class_name": name} for n, (i, name, _, _) in enumerate(BOXES) if name]
    (folder / "info_semantic.json").write_text(json.dumps({"classes": [], "objects": objects, "id_to_label": []}))
    return path


def nice_slam_pixel(pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """NICE-SLAM's projection: pixel indices are the coordinates (centres at integers)."""
    x, y, z = (np.linalg.inv(pose) @ np.append(point, 1.0))[:3]
    return np.array([FX * x / z + CX, FY * y / z + CY])


def source_frame(pose: np.ndarray, mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a red blob at POINT's pixel, and the depth PNG ray cast from ``mesh`` (z-depth)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    blob = nice_slam_pixel(pose, POINT)
    red = np.exp(-((u - blob[0]) ** 2 + (v - blob[1]) ** 2) / (2 * 3.0**2))
    rgb = (np.stack([red, np.zeros_like(red), np.full_like(red, 0.2)], -1) * 255).astype(np.uint8)
    directions = np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], -1).reshape(-1, 3) @ pose[:3, :3].T
    depth = np.zeros(H * W)
    _, rays, where = mesh.ray.intersects_id(
        np.broadcast_to(pose[:3, 3], directions.shape), directions, multiple_hits=False, return_locations=True
    )
    depth[rays] = (where - pose[:3, 3]) @ pose[:3, 2]
    return rgb, np.round(depth.reshape(H, W) * SCALE).astype(np.uint16)


def write_scene(root: Path) -> Path:
    """A NICE-SLAM Replica sequence of four frames (the last with a NaN pose) and its semantic mesh."""
    scene = root / "room0"
    (scene / "results").mkdir(parents=True)
    vertices, quads, _ = quad_mesh()
    mesh = trimesh.Trimesh(vertices, triangles(quads), process=False)
    lines = []
    for index, eye in enumerate(EYES):
        pose = opencv_pose(eye)
        rgb, depth = source_frame(pose, mesh)
        Image.fromarray(rgb).save(scene / "results" / f"frame{index:06d}.jpg", quality=95, subsampling=0)
        Image.fromarray(depth).save(scene / "results" / f"depth{index:06d}.png")
        if index == 3:
            pose[1, 1] = np.nan
        lines.append(" ".join(f"{value:.10g}" for value in pose.ravel()))
    (scene / "traj.txt").write_text("\n".join(lines) + "\n")
    write_semantic_mesh(scene / "habitat")
    return scene


def read_capture(output: Path) -> tuple[dict, dict, dict[str, dict]]:
    transforms = json.loads((output / "transforms.json").read_text())
    graph = json.loads((output / "ground_truth" / "scene_graph.json").read_text())
    return transforms, graph, {Path(f["file_path"]).stem: f for f in transforms["frames"]}


def red_centroid(image: np.ndarray) -> np.ndarray:
    """Pixel-index coordinates of the red blob's centre."""
    red = image[..., 0].astype(np.float64)
    weight = np.where(red > 0.3 * red.max(), red, 0.0)
    v, u = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weight * u).sum(), (weight * v).sum()]) / weight.sum()


def capture_pixel(transforms: dict, pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Continuous pixel (centres at +0.5) of ``point`` through the capture's OpenGL pose and intrinsics."""
    x, y, z = (np.linalg.inv(pose @ OPENGL_TO_OPENCV) @ np.append(point, 1.0))[:3]
    return np.array([transforms["fl_x"] * x / z + transforms["cx"], transforms["fl_y"] * y / z + transforms["cy"]])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("replica"))


@pytest.fixture(scope="module")
def converted(pristine, tmp_path_factory) -> tuple[Path, ConvertSummary]:
    output = tmp_path_factory.mktemp("converted") / "capture"
    return output, convert_replica(pristine, output, progress=False)


def copy_scene(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / pristine.name)
    return tmp_path / pristine.name


def test_summary_and_intrinsics(converted):
    output, summary = converted
    transforms, graph, frames = read_capture(output)
    assert (summary.frames, summary.skipped, summary.objects, summary.relationships) == (3, 1, 3, 0)
    assert summary.dataset == "replica" and summary.depth_source == "sensor" and summary.instance_maps
    assert not summary.notes  # the mesh lines up with the trajectory
    assert sorted(frames) == ["frame000000", "frame000001", "frame000002"]
    # NICE-SLAM's cx = 599.5 with pixel centres at integers is 600 with centres at +0.5
    assert [transforms[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")] == [600.0, 600.0, 600.0, 340.0, W, H]
    assert graph["relationships"] == [] and graph["meta"]["png_depth_scale"] == SCALE


def test_a_point_projects_to_the_same_pixel_as_in_nice_slam(pristine, converted):
    output, _ = converted
    transforms, _, frames = read_capture(output)
    lines = (pristine / "traj.txt").read_text().splitlines()
    for index, stem in enumerate(sorted(frames)):
        source = np.array([float(v) for v in lines[index].split()]).reshape(4, 4)
        ours = np.asarray(frames[stem]["transform_matrix"])
        assert np.allclose(ours, source @ OPENGL_TO_OPENCV)
        # the same pixel, in each convention's coordinates
        assert np.allclose(capture_pixel(transforms, ours, POINT), nice_slam_pixel(source, POINT) + 0.5)
        image = np.asarray(Image.open(output / frames[stem]["file_path"]).convert("RGB"))
        assert np.abs(red_centroid(image) + 0.5 - capture_pixel(transforms, ours, POINT)).max() < 0.2


def test_depth_is_converted_from_the_png_depth_scale(pristine, converted):
    output, _ = converted
    _, _, frames = read_capture(output)
    for stem, frame in frames.items():
        ours = np.asarray(Image.open(output / frame["depth_file_path"])).astype(np.float64)
        source = np.asarray(Image.open(pristine / "results" / f"depth{stem[5:]}.png")).astype(np.float64)
        assert np.abs(ours - np.round(source / SCALE * 1000)).max() == 0
        assert ours.max() > 3000


def test_instance_maps_match_the_semantic_mesh(converted):
    output, _ = converted
    transforms, _, frames = read_capture(output)
    vertices, quads, ids = quad_mesh()
    faces = np.where(np.isin(ids, [0, 5, 7]), ids + 1, 0)  # object 9 is not in info_semantic.json
    mesh = AnnotatedMesh(trimesh.Trimesh(vertices, triangles(quads), process=False), np.concatenate([faces, faces]))
    intrinsics = tuple(transforms[k] for k in ("fl_x", "fl_y", "cx", "cy"))
    for stem, frame in frames.items():
        pose = np.asarray(frame["transform_matrix"])
        view = ConvertedFrame(stem, np.zeros((H, W, 3), np.uint8), intrinsics, pose, convention="opengl")
        written = np.asarray(Image.open(output / "ground_truth" / "instances" / f"{stem}.png"))
        assert (written == mesh.instance_map(view, H, W)).mean() > 0.999
        assert 10 not in written and {1, 6}.issubset(set(np.unique(written)))
    centre = np.asarray(Image.open(output / "ground_truth" / "instances" / "frame000000.png"))[H // 2, W // 2]
    assert centre == 6  # the first camera looks at the table (object_id 5)


def test_ground_truth_from_the_semantic_mesh(converted):
    output, _ = converted
    _, graph, _ = read_capture(output)
    objects = {obj["id"]: obj for obj in graph["objects"]}
    assert sorted(objects) == [1, 6, 8]
    for object_id, name, low, high in BOXES[:3]:
        obj = objects[object_id + 1]
        assert (obj["label"], obj["source_id"]) == (name, object_id)
        assert np.allclose(obj["aabb"]["min"], low) and np.allclose(obj["aabb"]["max"], high)


def test_without_a_semantic_mesh_the_ground_truth_is_empty(pristine, tmp_path):
    scene = copy_scene(pristine, tmp_path)
    shutil.rmtree(scene / "habitat")
    summary = convert_replica(scene, tmp_path / "capture", downscale=4, progress=False)
    _, graph, frames = read_capture(tmp_path / "capture")
    assert graph["objects"] == [] and graph["relationships"] == [] and len(frames) == 3
    assert not summary.instance_maps and any("no semantic mesh" in note for note in summary.notes)
    assert not any((tmp_path / "capture" / "ground_truth" / "instances").iterdir())


def test_mesh_and_info_paths_and_a_misaligned_mesh(pristine, tmp_path):
    elsewhere = write_semantic_mesh(tmp_path / "semantic", shift=0.3)  # 30 cm up: the floor's depth changes
    info = tmp_path / "semantic" / "info_semantic.json"
    summary = convert_replica(pristine, tmp_path / "a", mesh=elsewhere, info=info, downscale=4, progress=False)
    assert summary.objects == 3
    assert any("may not be in the trajectory's world frame" in note for note in summary.notes)
    graph = json.loads((tmp_path / "a" / "ground_truth" / "scene_graph.json").read_text())
    assert graph["objects"][1]["aabb"]["min"][2] == pytest.approx(0.3)
    summary = convert_replica(pristine, tmp_path / "b", mesh=elsewhere, downscale=4, progress=False)
    assert summary.objects == 3  # info_semantic.json found next to the mesh


def test_stride_max_frames_and_downscale(pristine, tmp_path):
    summary = convert_replica(pristine, tmp_path / "a", stride=2, downscale=4, progress=False)
    assert (summary.frames, summary.skipped) == (2, 0)
    summary = convert_replica(pristine, tmp_path / "b", max_frames=2, downscale=4, progress=False)
    transforms, _, frames = read_capture(tmp_path / "b")
    assert summary.frames == 2 and sorted(frames) == ["frame000000", "frame000002"]
    assert [transforms[k] for k in ("fl_x", "cx", "cy", "w", "h")] == [150.0, 150.0, 85.0, W // 4, H // 4]
    for frame in frames.values():
        pose = np.asarray(frame["transform_matrix"])
        image = np.asarray(Image.open(tmp_path / "b" / frame["file_path"]).convert("RGB"))
        assert np.abs(red_centroid(image) + 0.5 - capture_pixel(transforms, pose, POINT)).max() < 0.2
        assert np.asarray(Image.open(tmp_path / "b" / frame["depth_file_path"])).shape == (H // 4, W // 4)


def test_polygons_of_mixed_sizes_are_fanned_into_triangles(tmp_path):
    vertex = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    face = np.empty(2, dtype=[("vertex_indices", object), ("object_id", "i4")])
    face["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([1, 2, 3, 4], "i4")]
    face["object_id"] = [3, 6]
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(tmp_path / "m.ply"))
    _, tris, source, props = read_polygon_mesh(tmp_path / "m.ply", sides=4, face_properties=("object_id",))
    assert tris.tolist() == [[0, 1, 2], [1, 2, 3], [1, 3, 4]] and source.tolist() == [0, 1, 1]
    assert props["object_id"][source].tolist() == [3, 6, 6]


def _rewrite_traj(scene: Path, edit) -> None:
    lines = (scene / "traj.txt").read_text().splitlines()
    (scene / "traj.txt").write_text("\n".join(edit(lines)) + "\n")


def drop_object_ids(path: Path) -> None:
    """The mesh without its faces' object_id (read into memory first: plyfile maps the file it reads)."""
    ply = PlyData.read(str(path))
    vertex = np.array(ply["vertex"].data)
    face = np.zeros(ply["face"].count, dtype=[("vertex_indices", "i4", (4,))])
    face["vertex_indices"] = np.stack(ply["face"]["vertex_indices"])
    del ply
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))


BROKEN = {
    "no results": (lambda s: shutil.rmtree(s / "results"), "results does not exist"),
    "no traj": (lambda s: (s / "traj.txt").unlink(), "traj.txt does not exist"),
    "missing depth": (lambda s: (s / "results" / "depth000001.png").unlink(), "depth000001.png does not exist"),
    "short traj": (lambda s: _rewrite_traj(s, lambda lines: lines[:2]), "2 poses for 4 frames"),
    "traj numbers": (lambda s: _rewrite_traj(s, lambda lines: [lines[0], "1 2 x", *lines[2:]]), "line 2"),
    "traj length": (lambda s: _rewrite_traj(s, lambda lines: [lines[0][:-4], *lines[1:]]), "not 16"),
    "image size": (lambda s: Image.new("RGB", (64, 48)).save(s / "results" / "frame000000.jpg"), "is 64x48"),
    "depth kind": (lambda s: Image.new("RGB", (W, H)).save(s / "results" / "depth000000.png"), "16-bit"),
    "no object_id": (lambda s: drop_object_ids(s / "habitat" / "mesh_semantic.ply"), "no object_id"),
    "no info": (lambda s: (s / "habitat" / "info_semantic.json").unlink(), "info_semantic.json does not exist"),
    "bad info": (
        lambda s: (s / "habitat" / "info_semantic.json").write_text(json.dumps({"objects": [{"id": "a"}]})),
        "objects[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inputs_raise_user_errors(pristine, tmp_path, case):
    scene = copy_scene(pristine, tmp_path)
    breaking, message = BROKEN[case]
    breaking(scene)
    with pytest.raises(UserError, match=re.escape(message)):
        convert_replica(scene, tmp_path / "capture", downscale=4, progress=False)


def test_bad_arguments_raise_user_errors(pristine, tmp_path):
    for options in ({"stride": 0}, {"max_frames": -1}, {"downscale": 2.0}, {"stride": "2"}):
        with pytest.raises(UserError, match="positive integer"):
            convert_replica(pristine, tmp_path / "capture", progress=False, **options)
    with pytest.raises(UserError, match="pass mesh too"):
        convert_replica(pristine, tmp_path / "capture", info=pristine / "habitat" / "info_semantic.json")
    with pytest.raises(UserError, match="does not exist"):
        convert_replica(pristine, tmp_path / "capture", mesh=tmp_path / "missing.ply")
    with pytest.raises(UserError, match="not a Replica sequence"):
        convert_replica(tmp_path, tmp_path / "capture")


def test_an_existing_capture_needs_overwrite(pristine, tmp_path):
    convert_replica(pristine, tmp_path / "capture", max_frames=1, downscale=8, progress=False)
    with pytest.raises(UserError, match="overwrite"):
        convert_replica(pristine, tmp_path / "capture", max_frames=1, downscale=8, progress=False)
    summary = convert_replica(pristine, tmp_path / "capture", max_frames=1, downscale=8, overwrite=True, progress=False)
    assert summary.frames == 1
