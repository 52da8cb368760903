"""3RScan (+ 3DSSG) -> capture conversion, on a tiny scan written in the dataset's own on-disk format.

The fixture is rendered here, independently of the converter: boxes with an ``objectId`` per vertex in an ascii
``labels.instances.annotated.v2.ply``, and frames taken by upright cameras turned sideways the way 3RScan stores them
(3DSSG turns them back with ``np.rot90(image, 3)``, 3RScan's renderer with ``cv::ROTATE_90_CLOCKWISE``).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from plyfile import PlyData, PlyElement

from relationfield.convert.rscan import convert_3rscan
from relationfield.errors import UserError

SCAN_ID = "0cac7578-8d6f-2d13-8c2d-bfa7a04f8af3"
COLOR_SIZE, DEPTH_SIZE = (64, 48), (32, 24)  # stored (sideways) width x height, like 3RScan's 960x540 and 224x172
COLOR_K = (50.0, 54.0, 33.0, 22.5)  # fx != fy and an off-centre principal point: the rotation must move them right
DEPTH_K = tuple(v * 0.5 for v in COLOR_K)
BOXES = {  # objectId: (label, min, max); 9 has no semseg label
    1: ("floor", (-3.0, -3.0, -0.1), (3.0, 3.0, 0.0)),
    2: ("table", (0.2, -0.4, 0.0), (1.0, 0.4, 0.7)),
    3: ("chair", (-0.9, -0.3, 0.0), (-0.4, 0.2, 0.5)),
    9: ("unlabelled", (1.5, 1.0, 0.0), (1.8, 1.3, 0.3)),
}
COLOURS = {0: (30, 30, 30), 1: (200, 200, 200), 2: (220, 40, 40), 3: (40, 200, 60), 9: (40, 60, 220)}
EYES = [(2.5, -1.5, 1.6), (-2.2, -2.0, 1.4), (0.3, 2.6, 1.8), (2.0, 2.0, 1.5)]
NAN_FRAME = 1
TABLE_TOP = np.array([0.6, 0.0, 0.7])
# The upright camera (what the person saw) in the stored camera's axes: the phone was held sideways.
STORED_FROM_UPRIGHT = np.array([[0.0, -1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
RELATIONS = [[2, 1, 14, "standing on"], [3, 1, 14, "standing on"], [3, 2, 7, "close by"], [7, 2, 20, "hanging on"]]


def _look_at(eye, target=(0.2, 0.0, 0.3)) -> np.ndarray:
    """Upright camera-to-world, OpenCV axes (x right, y down, z forward), world +z up."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, np.cross(forward, right), forward, eye
    return pose


def _stored_pose(index: int) -> np.ndarray:
    return _look_at(EYES[index]) @ STORED_FROM_UPRIGHT


def _scene() -> tuple[trimesh.Trimesh, np.ndarray]:
    boxes = [trimesh.creation.box(bounds=np.array([lo, hi])) for _, lo, hi in BOXES.values()]
    ids = np.concatenate([np.full(len(box.faces), ident) for ident, box in zip(BOXES, boxes)])
    return trimesh.util.concatenate(boxes), ids


def _render(mesh, face_ids, pose, intrinsics, size) -> tuple[np.ndarray, np.ndarray]:
    """Object ids and z-depth (metres) through each pixel centre of a pinhole camera (OpenCV axes)."""
    (fx, fy, cx, cy), (width, height) = intrinsics, size
    v, u = np.mgrid[0:height, 0:width] + 0.5
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3) @ pose[:3, :3].T
    origins = np.broadcast_to(pose[:3, 3], rays.shape)
    hits, ray, face = mesh.ray.intersects_location(origins, rays, multiple_hits=False)
    ids, depth = np.zeros(width * height, np.int64), np.zeros(width * height)
    ids[ray], depth[ray] = face_ids[face], (hits - pose[:3, 3]) @ pose[:3, 2]
    return ids.reshape(height, width), depth.reshape(height, width)


def _write_pgm(path: Path, millimetres: np.ndarray) -> None:
    height, width = millimetres.shape
    path.write_bytes(b"P5\n%d %d\n65535\n" % (width, height) + millimetres.astype(">u2").tobytes())


def _matrix_text(values) -> str:
    return " ".join(f"{v:.12g}" for v in np.asarray(values).ravel())


def _info_text(color_k=COLOR_K, depth_k=DEPTH_K, drop: str = "") -> str:
    k = lambda fx, fy, cx, cy: _matrix_text([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # noqa: E731
    lines = [
        "m_versionNumber = 4",
        "m_sensorName = tangoDevice (calibrated)",
        f"m_colorWidth = {COLOR_SIZE[0]}",
        f"m_colorHeight = {COLOR_SIZE[1]}",
        f"m_depthWidth = {DEPTH_SIZE[0]}",
        f"m_depthHeight = {DEPTH_SIZE[1]}",
        "m_depthShift = 1000",
        f"m_calibrationColorIntrinsic = {k(*color_k)}",
        f"m_calibrationColorExtrinsic = {_matrix_text(np.eye(4))}",
        f"m_calibrationDepthIntrinsic = {k(*depth_k)}",
        f"m_calibrationDepthExtrinsic = {_matrix_text(np.eye(4))}",
        f"m_frames.size = {len(EYES)}",
    ]
    return "\n".join(line for line in lines if not (drop and line.startswith(drop))) + "\n"


def _write_ply(path: Path, object_ids: bool = True) -> None:
    vertices, faces, offset = [], [], 0
    properties = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    properties += [("objectId", "u2")] if object_ids else []
    for ident, (_, lo, hi) in BOXES.items():
        box = trimesh.creation.box(bounds=np.array([lo, hi]))
        for x, y, z in box.vertices:
            vertices.append((x, y, z, *COLOURS[ident], ident)[: len(properties)])
        faces += [(list(face + offset),) for face in box.faces]
        offset += len(box.vertices)
    face_array = np.empty(len(faces), dtype=[("vertex_indices", "O")])
    face_array[:] = faces
    elements = [
        PlyElement.describe(np.array(vertices, dtype=properties), "vertex"),
        PlyElement.describe(face_array, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"}),
    ]
    PlyData(elements, text=True).write(str(path))


def _write_sequence(folder: Path) -> dict[str, np.ndarray]:
    """Frames in 3RScan's stored convention; returns the rendered stored ids and depth (mm) of each valid frame."""
    folder.mkdir(parents=True)
    (folder / "_info.txt").write_text(_info_text())
    mesh, face_ids = _scene()
    rendered = {}
    for index in range(len(EYES)):
        pose = _stored_pose(index)
        ids, _ = _render(mesh, face_ids, pose, COLOR_K, COLOR_SIZE)
        _, depth = _render(mesh, face_ids, pose, DEPTH_K, DEPTH_SIZE)
        colour = np.array([COLOURS[i] for i in ids.ravel()], dtype=np.uint8).reshape(*ids.shape, 3)
        Image.fromarray(colour).save(folder / f"frame-{index:06d}.color.jpg", quality=95)
        millimetres = np.round(depth * 1000).astype(np.uint16)
        _write_pgm(folder / f"frame-{index:06d}.depth.pgm", millimetres)
        rows = np.full((4, 4), np.nan) if index == NAN_FRAME else pose
        (folder / f"frame-{index:06d}.pose.txt").write_text("\n".join(_matrix_text(row) for row in rows) + "\n")
        rendered[f"ids{index}"], rendered[f"depth{index}"] = ids, millimetres
    return rendered


def _write_scan(scan: Path) -> dict[str, np.ndarray]:
    rendered = _write_sequence(scan / "sequence")
    groups = [{"id": i, "objectId": i, "label": BOXES[i][0], "segments": [i]} for i in (1, 2, 3)]
    groups.append({"id": 7, "objectId": 7, "label": "lamp", "segments": []})  # annotated, but not in the mesh
    (scan / "semseg.v2.json").write_text(json.dumps({"scan_id": scan.name, "segGroups": groups}))
    _write_ply(scan / "labels.instances.annotated.v2.ply")
    return rendered


def _write_relationships(path: Path, scan_id: str = SCAN_ID) -> Path:
    entries = [
        {"scan": "a-different-scan", "objects": {"1": "wall"}, "relationships": [[1, 1, 1, "attached to"]]},
        {
            "scan": scan_id,
            "objects": {"1": "floor", "2": "table", "3": "chair", "7": "lamp"},
            "relationships": RELATIONS,
        },
    ]
    path.write_text(json.dumps({"scans": entries}))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("3rscan")
    scan = root / SCAN_ID
    rendered = _write_scan(scan)
    return scan, _write_relationships(root / "relationships.json"), rendered


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    scan, relationships, _ = dataset
    output = tmp_path_factory.mktemp("capture")
    return output, convert_3rscan(scan, output, relationships, progress=False)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _transforms(output: Path) -> dict:
    return json.loads((output / "transforms.json").read_text())


def _frame(transforms: dict, index: int) -> dict:
    return next(f for f in transforms["frames"] if f["file_path"] == f"images/frame_{index:06d}.png")


def _project_stored(point: np.ndarray, index: int) -> np.ndarray:
    fx, fy, cx, cy = COLOR_K
    x, y, z, _ = np.linalg.inv(_stored_pose(index)) @ [*point, 1.0]
    return np.array([fx * x / z + cx, fy * y / z + cy])


def _project_capture(point: np.ndarray, transforms: dict, frame: dict) -> np.ndarray:
    """nerfstudio's convention: OpenGL camera-to-world (looking down -z, y up), pixel v growing downwards."""
    x, y, z, _ = np.linalg.inv(np.array(frame["transform_matrix"])) @ [*point, 1.0]
    return np.array([transforms["fl_x"] * x / -z + transforms["cx"], transforms["fl_y"] * -y / -z + transforms["cy"]])


def test_frames_are_turned_upright_with_their_cameras(dataset, converted):
    scan, _, _ = dataset
    output, _ = converted
    transforms = _transforms(output)
    fx, fy, cx, cy = COLOR_K
    width, height = COLOR_SIZE
    assert (transforms["w"], transforms["h"]) == (height, width)  # portrait: the stored images are sideways
    assert [transforms[k] for k in ("fl_x", "fl_y", "cx", "cy")] == pytest.approx([fy, fx, height - cy, cx])
    for index in (0, 2, 3):
        frame = _frame(transforms, index)
        with Image.open(scan / "sequence" / f"frame-{index:06d}.color.jpg") as image:
            stored = np.asarray(image.convert("RGB"))
        image = _png(output / frame["file_path"])
        np.testing.assert_array_equal(image, np.rot90(stored, 3))  # 3DSSG's rotation of 3RScan colour images
        u, v = _project_stored(TABLE_TOP, index)
        assert 0 < u < width and 0 < v < height
        projected = _project_capture(TABLE_TOP, transforms, frame)
        np.testing.assert_allclose(projected, [height - v, u], atol=1e-5)
        np.testing.assert_array_equal(image[int(projected[1]), int(projected[0])], stored[int(v), int(u)])
        # The upright camera's up (OpenGL +y) points up in 3RScan's +z-up world; the world frame is kept as is.
        pose = np.array(frame["transform_matrix"])
        assert pose[2, 1] > 0.5
        np.testing.assert_allclose(pose[:3, 3], EYES[index], atol=1e-6)


def test_instance_maps_and_depth_agree_with_the_mesh(dataset, converted):
    _, _, rendered = dataset
    output, _ = converted
    transforms = _transforms(output)
    for index in (0, 2, 3):
        frame = _frame(transforms, index)
        instances = _png(output / "ground_truth" / "instances" / f"frame_{index:06d}.png")
        assert instances.shape == (COLOR_SIZE[0], COLOR_SIZE[1])
        expected = np.rot90(np.where(rendered[f"ids{index}"] == 9, 0, rendered[f"ids{index}"]), 3)
        assert np.mean(instances != expected) < 0.01
        u, v = _project_capture(TABLE_TOP, transforms, frame)
        assert instances[int(v), int(u)] == 2  # the table's id at the table top's pixel
        assert set(np.unique(instances)) <= {0, 1, 2, 3}  # object 9 has no label: background
        depth = _png(output / frame["depth_file_path"])
        np.testing.assert_array_equal(depth, np.rot90(rendered[f"depth{index}"], 3))


def test_ground_truth_objects_boxes_and_relationships(dataset, converted):
    _, relationships, _ = dataset
    output, summary = converted
    graph = json.loads((output / "ground_truth" / "scene_graph.json").read_text())
    assert [(o["id"], o["label"]) for o in graph["objects"]] == [(1, "floor"), (2, "table"), (3, "chair")]
    for obj in graph["objects"]:
        _, lo, hi = BOXES[obj["id"]]
        np.testing.assert_allclose([obj["aabb"]["min"], obj["aabb"]["max"]], [lo, hi], atol=1e-6)
    assert graph["relationships"] == [[2, 1, "standing on"], [3, 1, "standing on"], [3, 2, "close by"]]
    meta = graph["meta"]
    assert (meta["dataset"], meta["scan"], meta["units"]) == ("3RScan", SCAN_ID, "metres")
    assert meta["source"] == {
        "sequence": "sequence/",
        "semseg": "semseg.v2.json",
        "mesh": "labels.instances.annotated.v2.ply",
        "relationships": str(relationships),
    }
    assert meta["dropped"] == {"objects": 1, "relationships": 1}  # the lamp (7) and its relation
    assert (summary.objects, summary.relationships, summary.dropped_objects, summary.dropped_relationships) == (
        3,
        3,
        1,
        1,
    )


def test_invalid_poses_are_skipped_and_counted(converted):
    output, summary = converted
    assert (summary.output, summary.frames, summary.skipped) == (output, 3, 1)
    stems = [frame["file_path"] for frame in _transforms(output)["frames"]]
    assert stems == ["images/frame_000000.png", "images/frame_000002.png", "images/frame_000003.png"]
    graph = json.loads((output / "ground_truth" / "scene_graph.json").read_text())
    assert graph["meta"]["frames"]["skipped_invalid_pose"] == 1


def test_stride_max_frames_downscale_and_no_relationships(dataset, tmp_path):
    scan, relationships, _ = dataset
    summary = convert_3rscan(scan, tmp_path / "a", stride=2, progress=False)  # frames 0 and 2: no invalid pose
    assert (summary.frames, summary.skipped, summary.relationships) == (2, 0, 0)
    summary = convert_3rscan(scan, tmp_path / "b", relationships.parent, max_frames=2, downscale=2, progress=False)
    assert (summary.frames, summary.skipped, summary.relationships) == (2, 1, 3)  # relationships.json by folder
    transforms = _transforms(tmp_path / "b")
    assert [f["file_path"] for f in transforms["frames"]] == ["images/frame_000000.png", "images/frame_000003.png"]
    fx, fy, cx, cy = COLOR_K
    assert (transforms["w"], transforms["h"]) == (COLOR_SIZE[1] // 2, COLOR_SIZE[0] // 2)
    assert [transforms[k] for k in ("fl_x", "fl_y", "cx", "cy")] == pytest.approx(
        [fy / 2, fx / 2, (COLOR_SIZE[1] - cy) / 2, cx / 2]
    )
    frame = transforms["frames"][0]
    assert _png(tmp_path / "b" / frame["file_path"]).shape == (32, 24, 3)
    assert _png(tmp_path / "b" / frame["depth_file_path"]).shape == (16, 12)
    instances = _png(tmp_path / "b" / "ground_truth" / "instances" / "frame_000000.png")
    u, v = _project_capture(TABLE_TOP, transforms, frame)
    assert instances.shape == (32, 24) and instances[int(v), int(u)] == 2


@pytest.mark.parametrize("prefix", ["", "sequence/"])
def test_zip_and_folder_give_identical_captures(dataset, converted, tmp_path, prefix):
    scan, relationships, _ = dataset
    zipped = tmp_path / SCAN_ID
    zipped.mkdir()
    for name in ("semseg.v2.json", "labels.instances.annotated.v2.ply"):
        shutil.copy(scan / name, zipped / name)
    with zipfile.ZipFile(zipped / "sequence.zip", "w") as archive:
        for path in sorted((scan / "sequence").iterdir()):
            archive.write(path, prefix + path.name)
    output, summary = converted
    zip_summary = convert_3rscan(zipped, tmp_path / "capture", relationships, progress=False)
    assert (zip_summary.frames, zip_summary.skipped, zip_summary.objects) == (summary.frames, 1, summary.objects)
    files = sorted(p.relative_to(output) for p in output.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tmp_path / "capture") for p in (tmp_path / "capture").rglob("*") if p.is_file()
    )
    for name in files:
        a, b = (output / name).read_bytes(), (tmp_path / "capture" / name).read_bytes()
        if name.name == "scene_graph.json":
            a, b = json.loads(a), json.loads(b)
            assert (a["meta"]["source"].pop("sequence"), b["meta"]["source"].pop("sequence")) == (
                "sequence/",
                "sequence.zip",
            )
        assert a == b, name


def _info(scan: Path, text: str) -> None:
    (scan / "sequence" / "_info.txt").write_text(text)


BROKEN = {
    "no sequence": (lambda s: shutil.rmtree(s / "sequence"), "has no RGB-D sequence"),
    "no info": (lambda s: (s / "sequence" / "_info.txt").unlink(), "has no _info.txt"),
    "missing key": (lambda s: _info(s, _info_text(drop="m_depthShift")), r"_info.txt lacks m_depthShift"),
    "short intrinsics": (
        lambda s: _info(s, _info_text().replace(f"= {COLOR_K[0]:g} 0 {COLOR_K[2]:g} 0 0", "= 50 0 33")),
        r"m_calibrationColorIntrinsic must be 16 numbers",
    ),
    "bad image": (
        lambda s: (s / "sequence" / "frame-000000.color.jpg").write_bytes(b"no jpeg"),
        "frame-000000.color.jpg",
    ),
    "rotated image": (
        lambda s: Image.new("RGB", COLOR_SIZE[::-1]).save(s / "sequence" / "frame-000002.color.jpg"),
        "frame-000002.color.jpg is 48x64 pixels",
    ),
    "bad depth": (
        lambda s: (s / "sequence" / "frame-000003.depth.pgm").write_bytes(b"P5\n32"),
        "frame-000003.depth.pgm",
    ),
    "missing pose": (lambda s: (s / "sequence" / "frame-000002.pose.txt").unlink(), "frame-000002.pose.txt is missing"),
    "pose not 4x4": (
        lambda s: (s / "sequence" / "frame-000000.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n"),
        "frame-000000.pose.txt must hold a 4x4 matrix",
    ),
    "all poses invalid": (lambda s: _info(s, _info_text().replace("m_frames.size = 4", "m_frames.size = 2")), None),
    "ply without objectId": (
        lambda s: _write_ply(s / "labels.instances.annotated.v2.ply", object_ids=False),
        "labels.instances.annotated.v2.ply has no objectId",
    ),
    "no semseg": (lambda s: (s / "semseg.v2.json").unlink(), "semseg.v2.json is missing"),
    "bad zip": (
        lambda s: (shutil.rmtree(s / "sequence"), (s / "sequence.zip").write_bytes(b"no zip")),
        "sequence.zip is not a readable zip",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_malformed_scans_raise_user_errors(dataset, tmp_path, case):
    scan, relationships, _ = dataset
    broken = tmp_path / SCAN_ID
    shutil.copytree(scan, broken)
    if case == "all poses invalid":  # frames 0 and 1 only, and frame 0's pose is infinite too
        (broken / "sequence" / "frame-000000.pose.txt").write_text("inf 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    damage, message = BROKEN[case]
    damage(broken)
    with pytest.raises(UserError, match=message or "All 2 selected frames .* have invalid"):
        convert_3rscan(broken, tmp_path / "capture", relationships, progress=False)


def test_scan_missing_from_relationships_json(dataset, tmp_path):
    scan, _, _ = dataset
    other = _write_relationships(tmp_path / "relationships.json", scan_id="another-scan")
    with pytest.raises(UserError, match=f"Scan {SCAN_ID} is not in .*relationships.json"):
        convert_3rscan(scan, tmp_path / "capture", other, progress=False)
    with pytest.raises(UserError, match="nowhere is missing \\(3DSSG's relationships.json\\)"):
        convert_3rscan(scan, tmp_path / "capture", tmp_path / "nowhere", progress=False)


@pytest.mark.parametrize(
    "arguments",
    [{"stride": 0}, {"stride": 1.5}, {"stride": True}, {"max_frames": 0}, {"downscale": -2}, {"downscale": 99}],
)
def test_bad_arguments(dataset, tmp_path, arguments):
    scan, _, _ = dataset
    with pytest.raises(UserError, match=f"{next(iter(arguments))}|downscale"):
        convert_3rscan(scan, tmp_path / "capture", progress=False, **arguments)


def test_existing_capture_needs_overwrite(dataset, converted):
    scan, _, _ = dataset
    output, _ = converted
    with pytest.raises(UserError, match="overwrite"):
        convert_3rscan(scan, output, progress=False)
    with pytest.raises(UserError, match="not a directory"):
        convert_3rscan(scan / "nothing", output, progress=False)
