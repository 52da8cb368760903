"""Convert a ScanNet++ scene's DSLR capture and 3D annotations into a capture with ground truth.

Reads the scene folder of the ScanNet++ release (the toolkit's ``common/scene_release.py`` paths)::

    dslr/nerfstudio/transforms_undistorted.json + dslr/resized_undistorted_images/ (or undistorted_images/)
        preferred: pinhole images and intrinsics made by the toolkit's ``dslr/undistort.py``
    dslr/nerfstudio/transforms.json + dslr/resized_images/
        otherwise: OPENCV_FISHEYE images (k1..k4), undistorted here the way ``dslr/undistort.py`` does
    scans/mesh_aligned_0.05.ply (or mesh_aligned_0.05_semantic.ply, same vertices)
    scans/segments.json (segIndices: a segment per vertex), scans/segments_anno.json (segGroups: objectId, label,
        segments)

The transforms' ``transform_matrix`` are camera-to-world in nerfstudio's OpenGL convention (nerfstudio's own
ScanNet++ dataparser uses them as such), in the mesh's world frame, which the capture keeps. Both ``frames`` and
``test_frames`` are converted. ScanNet++'s DSLR has no depth: depth is ray cast from the mesh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from relationfield.convert.capture import AnnotatedMesh, CaptureWriter, ConvertedFrame, check_frame_options
from relationfield.convert.common import (
    ID_OFFSET,
    ConvertSummary,
    annotated_mesh,
    as_pose,
    check_scene,
    labelled_objects,
    lazy_frames,
    pick_frames,
    read_image,
    read_json,
    read_polygon_mesh,
    summarize,
    write_frames,
)
from relationfield.errors import UserError

TRANSFORMS = "dslr/nerfstudio/transforms.json"
UNDISTORTED_TRANSFORMS = "dslr/nerfstudio/transforms_undistorted.json"
IMAGES = "dslr/resized_images"
UNDISTORTED_IMAGES = ("dslr/resized_undistorted_images", "dslr/undistorted_images")
MESHES = ("scans/mesh_aligned_0.05.ply", "scans/mesh_aligned_0.05_semantic.ply")
SEGMENTS = "scans/segments.json"
ANNOTATIONS = "scans/segments_anno.json"
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "PERSPECTIVE")
FISHEYE = "OPENCV_FISHEYE"


@dataclass(frozen=True)
class Camera:
    """The DSLR camera of a transforms file."""

    model: str
    """``OPENCV_FISHEYE`` or a pinhole model."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    intrinsics: tuple[float, float, float, float]
    """``(fx, fy, cx, cy)``, pixel centres at +0.5 (nerfstudio/COLMAP)."""
    distortion: tuple[float, float, float, float]
    """Fisheye ``(k1, k2, k3, k4)``; zeros for a pinhole."""


@dataclass(frozen=True)
class Entry:
    """One frame of a transforms file."""

    file_path: str
    """Image path relative to the image folder (``DSC00001.JPG``)."""
    pose: np.ndarray
    """``[4, 4]`` camera-to-world, OpenGL convention."""


def find_source(scene: Path) -> tuple[Path, Path, bool]:
    """The transforms file and image folder to read, and whether they are the toolkit's undistorted ones."""
    undistorted = scene / UNDISTORTED_TRANSFORMS
    folders = [scene / name for name in UNDISTORTED_IMAGES if (scene / name).is_dir()]
    if undistorted.is_file() and folders:
        return undistorted, folders[0], True
    transforms, images = scene / TRANSFORMS, scene / IMAGES
    if not transforms.is_file():
        raise UserError(f"{scene} is not a ScanNet++ scene: neither {transforms} nor {undistorted} exists.")
    if not images.is_dir():
        raise UserError(f"ScanNet++ image folder {images} does not exist.")
    return transforms, images, False


def read_camera(transforms: dict[str, Any], path: Path) -> Camera:
    """The shared camera of a nerfstudio transforms file; per-frame intrinsics are refused."""
    missing = [key for key in ("fl_x", "fl_y", "cx", "cy", "w", "h") if key not in transforms]
    if missing:
        raise UserError(f"{path} lacks the shared camera keys {', '.join(missing)} (per-frame cameras: unsupported).")
    model = str(transforms.get("camera_model", "PINHOLE")).upper()
    try:
        intrinsics = tuple(float(transforms[key]) for key in ("fl_x", "fl_y", "cx", "cy"))
        distortion = tuple(float(transforms.get(key, 0.0)) for key in ("k1", "k2", "k3", "k4"))
        tangential = tuple(float(transforms.get(key, 0.0)) for key in ("p1", "p2"))
        width, height = int(transforms["w"]), int(transforms["h"])
    except (TypeError, ValueError):
        raise UserError(f"{path}: the camera keys (fl_x, fl_y, cx, cy, w, h, k1..k4) must be numbers.") from None
    if model not in (FISHEYE, *PINHOLE_MODELS):
        raise UserError(f"{path}: camera model {model} is not supported (OPENCV_FISHEYE or PINHOLE).")
    if model != FISHEYE and any(distortion + tangential):
        raise UserError(f"{path}: a {model} camera with distortion is not supported (ScanNet++ DSLR is fisheye).")
    if width < 1 or height < 1 or min(intrinsics[:2]) <= 0 or not np.isfinite(intrinsics).all():
        raise UserError(f"{path}: the camera (fl_x, fl_y, w, h) must be positive and finite.")
    return Camera(model, width, height, intrinsics, distortion if model == FISHEYE else (0.0,) * 4)


def read_entries(transforms: dict[str, Any], path: Path, images: Path) -> tuple[list[Entry], list[str]]:
    """The frames and test frames sorted by file name, and notes (test frames whose images are absent are dropped)."""
    notes: list[str] = []
    frames = transforms.get("frames")
    tests = transforms.get("test_frames", [])
    if not isinstance(frames, list) or not isinstance(tests, list):
        raise UserError(f"{path}: 'frames' (and 'test_frames') must be lists of frames.")
    first_test = tests[0] if tests and isinstance(tests[0], dict) else {}
    if "file_path" in first_test and not (images / str(first_test["file_path"])).is_file():
        # the toolkit does the same: hidden test images of benchmark scenes are not released
        notes.append(f"{len(tests)} test frames without images in {images} were left out")
        tests = []
    entries = []
    for index, frame in enumerate(frames + tests):
        where = f"{path}, frame {index}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise UserError(f"{where}: each frame needs file_path and transform_matrix.")
        entries.append(Entry(str(frame["file_path"]), as_pose(frame["transform_matrix"], where)))
    entries.sort(key=lambda entry: entry.file_path)
    stems = [Path(entry.file_path).stem for entry in entries]
    if len(set(stems)) != len(stems):
        raise UserError(f"{path}: two frames share an image name.")
    return entries, notes


class Undistorter:
    """Maps OPENCV_FISHEYE images to a pinhole camera as ScanNet++'s ``dslr/undistort.py`` does (balance 0)."""

    def __init__(self, camera: Camera) -> None:
        fx, fy, cx, cy = camera.intrinsics
        matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        coefficients = np.array(camera.distortion, dtype=np.float64)
        size = (camera.width, camera.height)
        new = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(matrix, coefficients, size, np.eye(3), balance=0.0)
        # cv2 puts pixel centres at integers, the transforms at +0.5: shift both cameras for the maps
        half = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
        self.map_x, self.map_y = cv2.fisheye.initUndistortRectifyMap(
            matrix - half, coefficients, np.eye(3), new - half, size, cv2.CV_32FC1
        )
        self.intrinsics = (float(new[0, 0]), float(new[1, 1]), float(new[0, 2]), float(new[1, 2]))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The undistorted ``[H, W, 3]`` image (black where the fisheye saw nothing)."""
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def read_annotations(scene: Path) -> tuple[AnnotatedMesh, dict[int, str], list[str]]:
    """The scan mesh with a capture object id per face, the labels of those ids, and notes."""
    meshes = [scene / name for name in MESHES if (scene / name).is_file()]
    if not meshes:
        raise UserError(f"ScanNet++ mesh {scene / MESHES[0]} does not exist (needed for depth and ground truth).")
    vertices, triangles, _, _ = read_polygon_mesh(meshes[0], sides=3)
    segments_path, anno_path = scene / SEGMENTS, scene / ANNOTATIONS
    if not segments_path.exists() and not anno_path.exists():
        note = f"no {SEGMENTS} and {ANNOTATIONS}: the ground truth has no objects and there are no instance maps"
        return annotated_mesh(vertices, triangles, np.zeros(len(triangles))), {}, [note]
    segments = read_json(segments_path, "ScanNet++ segments")
    seg_indices = segments.get("segIndices") if isinstance(segments, dict) else None
    if not isinstance(seg_indices, list) or len(seg_indices) != len(vertices):
        raise UserError(f"{segments_path}: segIndices must list one segment per vertex of {meshes[0]}.")
    vertex_objects, labels = vertex_object_ids(np.asarray(seg_indices, dtype=np.int64), anno_path)
    return annotated_mesh(vertices, triangles, face_majority(vertex_objects, triangles)), labels, []


def vertex_object_ids(seg_indices: np.ndarray, anno_path: Path) -> tuple[np.ndarray, dict[int, str]]:
    """Capture object id per vertex (a vertex in several objects gets the smallest, as the toolkit) and labels."""
    annotations = read_json(anno_path, "ScanNet++ annotations")
    groups = annotations.get("segGroups") if isinstance(annotations, dict) else None
    if not isinstance(groups, list):
        raise UserError(f"{anno_path}: expected {{'segGroups': [...]}}.")
    masks, labels = [], {}
    for index, group in enumerate(groups):
        try:
            source_id = int(group.get("objectId", group.get("id")))
            label = str(group["label"])
            segments = np.asarray(group["segments"], dtype=np.int64).reshape(-1)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UserError(f"{anno_path}, segGroups[{index}]: needs objectId (int), label and segments.") from None
        if source_id < 0 or source_id + ID_OFFSET in labels:
            raise UserError(f"{anno_path}, segGroups[{index}]: objectId {source_id} is negative or repeated.")
        labels[source_id + ID_OFFSET] = label
        masks.append((source_id + ID_OFFSET, np.flatnonzero(np.isin(seg_indices, segments))))
    objects = np.zeros(len(seg_indices), dtype=np.int64)
    for object_id, members in sorted(masks, key=lambda item: -len(item[1])):
        objects[members] = object_id  # larger objects first: smaller ones overwrite shared vertices
    return objects, labels


def face_majority(vertex_objects: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Each triangle's object: the id two of its vertices share, else its first vertex's."""
    a, b, c = (vertex_objects[triangles[:, k]] for k in range(3))
    return np.where((a == b) | (a == c), a, np.where(b == c, b, a))


@dataclass(frozen=True)
class Source:
    """The DSLR frames to convert."""

    transforms_path: Path
    """The transforms file read."""
    images: Path
    """Its image folder."""
    undistorted: bool
    """Whether these are the toolkit's undistorted images."""
    camera: Camera
    """The camera of the images."""
    entries: list[Entry]
    """The frames, sorted by file name."""
    notes: list[str]
    """Remarks for the summary."""


def read_source(scene: Path) -> Source:
    """The transforms, camera and frames of a scene's DSLR capture (undistorted ones preferred)."""
    transforms_path, images, undistorted = find_source(scene)
    transforms = read_json(transforms_path, "ScanNet++ transforms")
    if not isinstance(transforms, dict):
        raise UserError(f"{transforms_path}: expected a JSON object.")
    camera = read_camera(transforms, transforms_path)
    entries, notes = read_entries(transforms, transforms_path, images)
    if camera.model == FISHEYE:
        notes.append("undistorted the OPENCV_FISHEYE images to a pinhole camera (cv2.fisheye, balance 0)")
    return Source(transforms_path, images, undistorted, camera, entries, notes)


def _meta(scene: Path, source: Source) -> dict[str, Any]:
    images = "toolkit undistorted" if source.undistorted else "pinhole"
    return {
        "converter": "relationfield.convert.scannetpp",
        "dataset": "scannetpp",
        "scene": scene.name,
        "units": "metres",
        "id_offset": ID_OFFSET,
        "depth": "ray cast from the scan mesh",
        "images": "undistorted by relationfield" if source.camera.model == FISHEYE else images,
        "transforms": source.transforms_path.name,
    }


def convert_scannetpp(
    scene: Path,
    output: Path,
    stride: int = 1,
    max_frames: int | None = None,
    downscale: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> ConvertSummary:
    """Convert a ScanNet++ scene folder's DSLR frames, mesh and annotations into a capture at ``output``.

    Uses the toolkit's undistorted images when present, else undistorts the fisheye images like
    ``dslr/undistort.py`` (cv2.fisheye, balance 0). Depth and instance maps are ray cast from the scan mesh
    (the DSLR has no depth). Every ``stride``-th frame with a finite pose is kept, at most ``max_frames``, images
    shrunk ``downscale`` times. Objects get id ``objectId + 1`` (0 means none) with ``source_id`` = objectId.
    Raises UserError for missing or malformed files, bad arguments and an existing capture without ``overwrite``.
    """
    start = time.perf_counter()
    check_frame_options(stride, max_frames, downscale)
    scene, output = check_scene(scene, output)
    source = read_source(scene)
    camera = source.camera
    indices, invalid = pick_frames([entry.pose for entry in source.entries], stride, max_frames)
    if not indices:
        raise UserError(f"{source.transforms_path}: no frame with a valid pose was selected.")
    annotated, labels, mesh_notes = read_annotations(scene)
    objects = labelled_objects(annotated, labels)
    undistort = Undistorter(camera) if camera.model == FISHEYE else None
    intrinsics = undistort.intrinsics if undistort else camera.intrinsics

    def load(index: int) -> ConvertedFrame:
        entry = source.entries[index]
        image = read_image(source.images / entry.file_path, (camera.width, camera.height))
        image = undistort(image) if undistort else image
        return ConvertedFrame(Path(entry.file_path).stem, image, intrinsics, entry.pose, convention="opengl")

    writer = CaptureWriter(output, overwrite)
    frames = lazy_frames(indices, load, downscale)
    caster = annotated
    loop = write_frames(writer, frames, len(indices), caster, True, bool(labels), progress, f"ScanNet++ {scene.name}")
    writer.finish(objects, [], _meta(scene, source), mesh=annotated if labels else None)
    notes = source.notes + mesh_notes
    return summarize(output, "scannetpp", loop, invalid, objects, (bool(labels), "mesh"), start, notes)
