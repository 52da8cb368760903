"""ScanNet++ conversion: a tiny scene in the release's on-disk format (fisheye DSLR frames, nerfstudio transforms,
mesh, segments and annotations) converted into a capture, checked against the source geometry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
from camera_fixtures import look_at
from PIL import Image
from plyfile import PlyData, PlyElement

from relationfield.convert.capture import AnnotatedMesh, ConvertedFrame
from relationfield.convert.common import ConvertSummary
from relationfield.convert.scannetpp import convert_scannetpp, vertex_object_ids
from relationfield.errors import UserError

WIDTH, HEIGHT = 160, 120
FISHEYE = {"fl_x": 75.0, "fl_y": 76.0, "cx": 80.5, "cy": 59.5, "k1": -0.04, "k2": 0.012, "k3": -0.003, "k4": 0.0}
# (objectId, label, min corner, max corner); objectId 0 exercises the capture's id offset
BOXES = [
    (0, "floor", (-4.0, -5.0, -0.1), (4.0, 4.0, 0.0)),
    (1, "table", (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0)),
    (2, "chair", (0.9, 0.3, 0.0), (1.4, 0.8, 0.5)),
]
EYES = {"DSC00001": (0.0, -4.0, 0.5), "DSC00002": (2.5, -3.0, 1.6), "DSC00003": (-2.0, -3.0, 1.2)}
TARGET = np.array([0.0, 0.0, 0.5])
POINT = np.array([0.5, -0.5, 1.0])  # the table's front top corner, seen by every camera
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def scene_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, triangles and the objectId of each vertex of the boxes."""
    vertices, faces, owners = [], [], []
    for object_id, _, low, high in BOXES:
        box = trimesh.creation.box(bounds=[low, high])
        faces.append(box.faces + sum(len(v) for v in vertices))
        vertices.append(box.vertices)
        owners.append(np.full(len(box.vertices), object_id))
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(owners)


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, vertex_extra: dict | None = None) -> None:
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    extra = vertex_extra or {}
    data = np.zeros(len(vertices), dtype=fields + [(name, "i4") for name in extra])
    data["x"], data["y"], data["z"] = vertices.T
    for name, values in extra.items():
        data[name] = values
    face = np.zeros(len(faces), dtype=[("vertex_indices", "i4", (faces.shape[1],))])
    face["vertex_indices"] = faces
    PlyData([PlyElement.describe(data, "vertex"), PlyElement.describe(face, "face")]).write(str(path))


def camera_matrix(camera: dict) -> np.ndarray:
    return np.array([[camera["fl_x"], 0, camera["cx"]], [0, camera["fl_y"], camera["cy"]], [0, 0, 1.0]])


def opencv_point(pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """``point`` in the OpenCV camera frame of an OpenGL camera-to-world ``pose``."""
    return (np.linalg.inv(pose @ OPENGL_TO_OPENCV) @ np.append(point, 1.0))[:3]


def pinhole_pixel(camera: dict, pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Continuous pixel (centres at +0.5) of ``point`` in a nerfstudio pinhole camera."""
    x, y, z = opencv_point(pose, point)
    return np.array([camera["fl_x"] * x / z + camera["cx"], camera["fl_y"] * y / z + camera["cy"]])


def draw(normalised: np.ndarray, blob: np.ndarray) -> np.ndarray:
    """Red: a blob at the normalised image point ``blob``; green: the straight line y = 0.25 + 0.1 x; blue flat."""
    x, y = normalised[..., 0], normalised[..., 1]
    red = np.exp(-((x - blob[0]) ** 2 + (y - blob[1]) ** 2) / (2 * 0.03**2))
    green = np.exp(-((y - 0.25 - 0.1 * x) ** 2) / (2 * 0.012**2))
    return np.clip(np.stack([red, green, np.full_like(x, 0.15)], -1) * 255, 0, 255).astype(np.uint8)


def fisheye_image(pose: np.ndarray) -> np.ndarray:
    """What the fisheye camera sees of the drawing (its pixels' rays, undistorted with cv2, half-pixel aware)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    shifted = camera_matrix(FISHEYE) - [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
    distortion = np.array([FISHEYE[k] for k in ("k1", "k2", "k3", "k4")])
    points = np.stack([u, v], -1).reshape(-1, 1, 2)
    normalised = cv2.fisheye.undistortPoints(points, shifted, distortion).reshape(HEIGHT, WIDTH, 2)
    x, y, z = opencv_point(pose, POINT)
    return draw(normalised, np.array([x / z, y / z]))


def pinhole_image(camera: dict, pose: np.ndarray) -> np.ndarray:
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64) + 0.5
    normalised = np.stack([(u - camera["cx"]) / camera["fl_x"], (v - camera["cy"]) / camera["fl_y"]], -1)
    x, y, z = opencv_point(pose, POINT)
    return draw(normalised, np.array([x / z, y / z]))


def write_scene(root: Path, undistorted: dict | None = None) -> Path:
    """A ScanNet++ scene folder; with ``undistorted`` (a pinhole camera) the toolkit's undistorted outputs too."""
    scene = root / "0a1b2c3d4e"
    (scene / "dslr" / "resized_images").mkdir(parents=True)
    (scene / "dslr" / "nerfstudio").mkdir()
    (scene / "scans").mkdir()
    frames = []
    for stem, eye in EYES.items():
        pose = look_at(eye, TARGET)
        Image.fromarray(fisheye_image(pose)).save(
            scene / "dslr" / "resized_images" / f"{stem}.JPG", quality=95, subsampling=0
        )
        frames.append({"file_path": f"{stem}.JPG", "transform_matrix": pose.tolist(), "mask_path": f"{stem}.png"})
    bad = look_at((1.0, -3.0, 1.0), TARGET)
    bad[0, 3] = np.nan
    Image.fromarray(fisheye_image(look_at((1.0, -3.0, 1.0), TARGET))).save(scene / "dslr/resized_images/DSC00004.JPG")
    frames.append({"file_path": "DSC00004.JPG", "transform_matrix": bad.tolist()})
    camera = {"camera_model": "OPENCV_FISHEYE", "w": WIDTH, "h": HEIGHT, **FISHEYE}
    # two train frames (one with a NaN pose) and two test frames, as the release splits them
    transforms = {**camera, "frames": [frames[0], frames[3]], "test_frames": frames[1:3]}
    (scene / "dslr" / "nerfstudio" / "transforms.json").write_text(json.dumps(transforms))
    vertices, faces, owners = scene_mesh()
    write_ply(scene / "scans" / "mesh_aligned_0.05.ply", vertices, faces)
    write_ply(scene / "scans" / "mesh_aligned_0.05_semantic.ply", vertices, faces, {"label": owners})
    (scene / "scans" / "segments.json").write_text(json.dumps({"segIndices": list(range(len(vertices)))}))
    groups = [
        {"id": i, "objectId": i, "label": label, "segments": np.flatnonzero(owners == i).tolist(), "obb": {}}
        for i, label, _, _ in BOXES
    ]
    (scene / "scans" / "segments_anno.json").write_text(json.dumps({"segGroups": groups}))
    if undistorted is not None:
        write_undistorted(scene, transforms, undistorted)
    return scene


def write_undistorted(scene: Path, transforms: dict, camera: dict) -> None:
    """The toolkit's dslr/undistort.py outputs: pinhole images and transforms_undistorted.json."""
    folder = scene / "dslr" / "resized_undistorted_images"
    folder.mkdir()
    for frame in transforms["frames"] + transforms["test_frames"]:
        pose = np.nan_to_num(np.asarray(frame["transform_matrix"]))
        Image.fromarray(pinhole_image(camera, pose)).save(folder / frame["file_path"], quality=95, subsampling=0)
    pinhole = {**transforms, **camera, "camera_model": "PINHOLE", "k1": 0.0, "k2": 0.0, "k3": 0.0, "k4": 0.0}
    (scene / "dslr" / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(pinhole))


def red_centroid(image: np.ndarray) -> np.ndarray:
    """Continuous pixel (centres at +0.5) of the red blob."""
    red = image[..., 0].astype(np.float64)
    weight = np.where(red > 0.3 * red.max(), red, 0.0)
    v, u = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    return np.array([(weight * u).sum(), (weight * v).sum()]) / weight.sum()


def line_residual(image: np.ndarray) -> float:
    """Largest distance (pixels) of the green line's per-column peaks from their best straight line."""
    green = image[..., 1].astype(np.float64)
    columns = [c for c in range(10, image.shape[1] - 10) if green[:, c].max() > 150]
    rows = []
    for c in columns:
        r = int(np.argmax(green[:, c]))
        window = green[max(r - 3, 0) : r + 4, c]
        rows.append(max(r - 3, 0) + (window * np.arange(len(window))).sum() / window.sum())
    fit = np.polyfit(columns, rows, 1)
    return float(np.abs(np.polyval(fit, columns) - np.asarray(rows)).max())


def read_capture(output: Path) -> tuple[dict, dict, dict[str, dict]]:
    transforms = json.loads((output / "transforms.json").read_text())
    graph = json.loads((output / "ground_truth" / "scene_graph.json").read_text())
    frames = {Path(frame["file_path"]).stem: frame for frame in transforms["frames"]}
    return transforms, graph, frames


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path, ConvertSummary]:
    root = tmp_path_factory.mktemp("scannetpp")
    scene = write_scene(root)
    summary = convert_scannetpp(scene, root / "capture", progress=False)
    return scene, root / "capture", summary


def test_summary_counts_frames_of_both_splits_and_skips_the_nan_pose(converted):
    _, output, summary = converted
    transforms, graph, frames = read_capture(output)
    assert (summary.frames, summary.skipped, summary.objects, summary.relationships) == (3, 1, 3, 0)
    assert summary.dataset == "scannetpp" and summary.depth_source == "mesh" and summary.instance_maps
    assert sorted(frames) == ["DSC00001", "DSC00002", "DSC00003"]
    assert any("undistorted" in note for note in summary.notes)
    assert graph["relationships"] == [] and graph["meta"]["dataset"] == "scannetpp"


def test_fisheye_frames_are_undistorted_to_a_pinhole_camera(converted):
    _, output, _ = converted
    transforms, _, frames = read_capture(output)
    assert transforms["camera_model"] == "OPENCV" and transforms["k1"] == 0.0
    assert (transforms["w"], transforms["h"]) == (WIDTH, HEIGHT)
    for stem, frame in frames.items():
        image = np.asarray(Image.open(output / frame["file_path"]).convert("RGB"))
        # the known 3D point lands where the capture's pose and pinhole intrinsics project it
        expected = pinhole_pixel(transforms, np.asarray(frame["transform_matrix"]), POINT)
        assert np.abs(red_centroid(image) - expected).max() < 0.3, stem
        assert line_residual(image) < 0.35, stem
    source = np.asarray(Image.open(converted[0] / "dslr" / "resized_images" / "DSC00001.JPG"))
    assert line_residual(source) > 1.5  # the fisheye bends the line: the check above is not vacuous


def test_poses_keep_the_opengl_camera_to_world_of_the_transforms(converted):
    scene, output, _ = converted
    source = json.loads((scene / "dslr" / "nerfstudio" / "transforms.json").read_text())
    _, _, frames = read_capture(output)
    for frame in source["frames"] + source["test_frames"]:
        stem = Path(frame["file_path"]).stem
        if stem in frames:
            assert np.allclose(frames[stem]["transform_matrix"], frame["transform_matrix"])


def test_depth_is_ray_cast_from_the_mesh(converted):
    _, output, _ = converted
    _, _, frames = read_capture(output)
    frame = frames["DSC00001"]
    depth = np.asarray(Image.open(output / frame["depth_file_path"]))
    ids = np.asarray(Image.open(output / "ground_truth" / "instances" / "DSC00001.png"))
    # the camera looks straight at the table's front face, 3.5 m away along its axis
    assert (ids == 2).sum() > 200
    assert np.abs(depth[ids == 2].astype(int) - 3500).max() <= 1
    assert (depth[ids == 0] == 0).all() and (depth[ids > 0] > 0).all()


def test_instance_maps_match_the_annotated_mesh(converted):
    _, output, _ = converted
    transforms, _, frames = read_capture(output)
    vertices, faces, owners = scene_mesh()
    mesh = AnnotatedMesh(trimesh.Trimesh(vertices, faces, process=False), owners[faces[:, 0]] + 1)
    intrinsics = tuple(transforms[k] for k in ("fl_x", "fl_y", "cx", "cy"))
    for stem, frame in frames.items():
        pose = np.asarray(frame["transform_matrix"])
        view = ConvertedFrame(stem, np.zeros((HEIGHT, WIDTH, 3), np.uint8), intrinsics, pose, convention="opengl")
        written = np.asarray(Image.open(output / "ground_truth" / "instances" / f"{stem}.png"))
        assert written.dtype == np.uint16
        assert (written == mesh.instance_map(view, HEIGHT, WIDTH)).mean() > 0.999
        assert set(np.unique(written)) == {0, 1, 2, 3}


def test_ground_truth_objects_have_labels_and_vertex_boxes(converted):
    _, output, _ = converted
    _, graph, _ = read_capture(output)
    objects = {obj["id"]: obj for obj in graph["objects"]}
    assert sorted(objects) == [1, 2, 3]
    for object_id, label, low, high in BOXES:
        obj = objects[object_id + 1]
        assert obj["label"] == label and obj["source_id"] == object_id
        assert np.allclose(obj["aabb"]["min"], low) and np.allclose(obj["aabb"]["max"], high)


def test_the_toolkit_undistorted_images_are_preferred(tmp_path):
    camera = {"fl_x": 60.0, "fl_y": 60.0, "cx": 80.0, "cy": 60.0, "w": WIDTH, "h": HEIGHT}
    scene = write_scene(tmp_path, undistorted=camera)
    summary = convert_scannetpp(scene, tmp_path / "capture", progress=False)
    transforms, graph, frames = read_capture(tmp_path / "capture")
    source = json.loads((scene / "dslr" / "nerfstudio" / "transforms_undistorted.json").read_text())
    assert [transforms[k] for k in ("fl_x", "fl_y", "cx", "cy")] == [60.0, 60.0, 80.0, 60.0]
    assert not any("undistorted the" in note for note in summary.notes)
    assert graph["meta"]["images"] == "toolkit undistorted"
    for frame in source["frames"] + source["test_frames"]:
        stem = Path(frame["file_path"]).stem
        if stem not in frames:
            continue
        pose = np.asarray(frames[stem]["transform_matrix"])
        # the same point projects to the same pixel through the source's and the capture's camera
        assert np.allclose(
            pinhole_pixel(source, np.asarray(frame["transform_matrix"]), POINT), pinhole_pixel(transforms, pose, POINT)
        )
        ours = np.asarray(Image.open(tmp_path / "capture" / frames[stem]["file_path"]))
        theirs = np.asarray(Image.open(scene / "dslr" / "resized_undistorted_images" / frame["file_path"]))
        assert np.array_equal(ours, theirs)


def test_stride_max_frames_and_downscale(tmp_path):
    scene = write_scene(tmp_path)
    summary = convert_scannetpp(scene, tmp_path / "a", stride=2, progress=False)
    assert (summary.frames, summary.skipped) == (2, 0)  # DSC00001 and DSC00003 of the sorted four
    assert sorted(read_capture(tmp_path / "a")[2]) == ["DSC00001", "DSC00003"]
    summary = convert_scannetpp(scene, tmp_path / "b", max_frames=2, downscale=2, progress=False)
    transforms, _, frames = read_capture(tmp_path / "b")
    assert summary.frames == 2 and (transforms["w"], transforms["h"]) == (WIDTH // 2, HEIGHT // 2)
    for frame in frames.values():
        image = np.asarray(Image.open(tmp_path / "b" / frame["file_path"]).convert("RGB"))
        assert image.shape == (HEIGHT // 2, WIDTH // 2, 3)
        expected = pinhole_pixel(transforms, np.asarray(frame["transform_matrix"]), POINT)
        assert np.abs(red_centroid(image) - expected).max() < 0.3
        assert np.asarray(Image.open(tmp_path / "b" / frame["depth_file_path"])).shape == (HEIGHT // 2, WIDTH // 2)


def test_missing_annotations_give_empty_ground_truth(tmp_path):
    scene = write_scene(tmp_path)
    (scene / "scans" / "segments.json").unlink()
    (scene / "scans" / "segments_anno.json").unlink()
    summary = convert_scannetpp(scene, tmp_path / "capture", progress=False)
    _, graph, _ = read_capture(tmp_path / "capture")
    assert graph["objects"] == [] and summary.objects == 0 and not summary.instance_maps
    assert not any((tmp_path / "capture" / "ground_truth" / "instances").iterdir())
    assert any((tmp_path / "capture" / "depth").iterdir())


def test_unreleased_test_images_leave_the_test_frames_out(tmp_path):
    scene = write_scene(tmp_path)
    for stem in ("DSC00002", "DSC00003"):  # benchmark scenes ship no test images
        (scene / "dslr" / "resized_images" / f"{stem}.JPG").unlink()
    summary = convert_scannetpp(scene, tmp_path / "capture", progress=False)
    assert (summary.frames, summary.skipped) == (1, 1)
    assert any("2 test frames" in note for note in summary.notes)


def test_a_vertex_in_two_objects_belongs_to_the_smaller(tmp_path):
    path = tmp_path / "segments_anno.json"
    groups = [
        {"objectId": 4, "label": "shelf", "segments": [0, 1, 2, 3]},
        {"objectId": 7, "label": "book", "segments": [2]},
    ]
    path.write_text(json.dumps({"segGroups": groups}))
    objects, labels = vertex_object_ids(np.array([0, 1, 2, 2, 3, 9]), path)  # segment per vertex
    assert objects.tolist() == [5, 5, 8, 8, 5, 0] and labels == {5: "shelf", 8: "book"}


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


BROKEN = {
    "no transforms": (lambda s: (s / "dslr/nerfstudio/transforms.json").unlink(), "transforms.json"),
    "bad json": (lambda s: (s / "dslr/nerfstudio/transforms.json").write_text("{"), "not valid JSON"),
    "missing image": (lambda s: (s / "dslr/resized_images/DSC00001.JPG").unlink(), "DSC00001.JPG"),
    "image size": (
        lambda s: Image.new("RGB", (50, 40)).save(s / "dslr/resized_images/DSC00001.JPG"),
        "DSC00001.JPG is 50x40",
    ),
    "camera model": (
        lambda s: _edit_json(s / "dslr/nerfstudio/transforms.json", lambda t: t.update(camera_model="FOV")),
        "not supported",
    ),
    "no intrinsics": (
        lambda s: _edit_json(s / "dslr/nerfstudio/transforms.json", lambda t: t.pop("fl_x")),
        "fl_x",
    ),
    "bad pose": (
        lambda s: _edit_json(
            s / "dslr/nerfstudio/transforms.json", lambda t: t["frames"][0].update(transform_matrix=[1, 2])
        ),
        "not 16",
    ),
    "no mesh": (
        lambda s: [(s / "scans" / n).unlink() for n in ("mesh_aligned_0.05.ply", "mesh_aligned_0.05_semantic.ply")],
        "mesh_aligned_0.05.ply",
    ),
    "segments": (
        lambda s: (s / "scans/segments.json").write_text(json.dumps({"segIndices": [0, 1]})),
        "one segment per vertex",
    ),
    "annotations": (
        lambda s: (s / "scans/segments_anno.json").write_text(json.dumps({"segGroups": [{"label": "x"}]})),
        "segGroups[0]",
    ),
    "only one annotation file": (lambda s: (s / "scans/segments_anno.json").unlink(), "segments_anno.json"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("pristine"))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inputs_raise_user_errors(pristine, tmp_path, case):
    scene = tmp_path / pristine.name
    shutil.copytree(pristine, scene)
    breaking, message = BROKEN[case]
    breaking(scene)
    with pytest.raises(UserError, match=re.escape(message)):
        convert_scannetpp(scene, tmp_path / "capture", progress=False)


@pytest.mark.parametrize(
    "options", [{"stride": 0}, {"stride": True}, {"max_frames": 0}, {"downscale": 1.5}, {"downscale": -2}]
)
def test_bad_arguments_raise_user_errors(pristine, tmp_path, options):
    with pytest.raises(UserError, match="positive integer"):
        convert_scannetpp(pristine, tmp_path / "capture", progress=False, **options)


def test_missing_scene_and_existing_capture(pristine, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        convert_scannetpp(tmp_path / "nowhere", tmp_path / "capture", progress=False)
    convert_scannetpp(pristine, tmp_path / "capture", max_frames=1, progress=False)
    with pytest.raises(UserError, match="overwrite"):
        convert_scannetpp(pristine, tmp_path / "capture", max_frames=1, progress=False)
    assert convert_scannetpp(pristine, tmp_path / "capture", max_frames=1, overwrite=True, progress=False).frames == 1
