"""What the ScanNet++ and Replica converters share: options, file readers, polygon meshes, ray casting, the frame loop.

Pixel convention: a capture's intrinsics put pixel ``(i, j)``'s centre at ``(i + 0.5, j + 0.5)`` (nerfstudio and
COLMAP); OpenCV and NICE-SLAM put it at ``(i, j)``. The converters shift principal points by half a pixel where a
source uses the OpenCV convention.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image
from plyfile import PlyData, PlyParseError

from relationfield.convert.capture import (
    AnnotatedMesh,
    CaptureSummary,
    CaptureWriter,
    ConvertedFrame,
    scene_graph_objects,
    spread,
)
from relationfield.errors import UserError
from relationfield.progress import step_progress

ID_OFFSET = 1
"""Capture object id = dataset object id + ID_OFFSET: both datasets may use id 0, which a capture reserves for none."""
MAX_OBJECT_ID = int(np.iinfo(np.uint16).max)
"""Instance maps are 16-bit."""
DEPTH_AGREEMENT_METRES = 0.05
"""Median |mesh depth - sensor depth| above which a converter notes that the mesh may not line up with the poses."""


@dataclass(frozen=True)
class ConvertSummary(CaptureSummary):
    """What a ScanNet++ or Replica conversion wrote (these datasets have no relationships)."""

    dataset: str
    """``"scannetpp"`` or ``"replica"``."""
    instance_maps: bool
    """Whether ``ground_truth/instances`` holds a map per frame."""
    depth_source: str
    """``"sensor"`` (the dataset's depth maps) or ``"mesh"`` (ray cast from the scan's mesh)."""
    seconds: float
    """Wall time of the conversion."""
    notes: tuple[str, ...] = ()
    """Remarks for the user: undistortion, dropped test frames, missing ground truth, mesh misalignment."""


def check_scene(scene: Path, output: Path) -> tuple[Path, Path]:
    """The scene and output as paths; the scene must be a directory, the output a directory or nothing."""
    scene, output = Path(scene), Path(output)
    if not scene.is_dir():
        raise UserError(f"Scene folder {scene} does not exist or is not a directory.")
    if output.exists() and not output.is_dir():
        raise UserError(f"Output {output} exists and is not a directory.")
    return scene, output


def valid_pose(pose: np.ndarray) -> bool:
    """Whether a 4x4 camera-to-world matrix is finite with a non-degenerate rotation."""
    return bool(np.isfinite(pose).all() and abs(np.linalg.det(pose[:3, :3])) > 1e-6)


def as_pose(values: Any, where: str) -> np.ndarray:
    """A 4x4 float matrix from nested lists (or 16 numbers); UserError naming ``where`` otherwise."""
    try:
        pose = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: the pose is not a 4x4 matrix of numbers.") from None
    if pose.size != 16:
        raise UserError(f"{where}: the pose has {pose.size} numbers, not 16 (a 4x4 matrix).")
    return pose.reshape(4, 4)


def pick_frames(poses: Sequence[np.ndarray], stride: int, max_frames: int | None) -> tuple[list[int], int]:
    """Indices of every ``stride``-th frame with a valid pose, at most ``max_frames`` of them spread evenly (as the
    3RScan converter does), and how many of the stride selection had an invalid pose."""
    valid = [index for index in range(0, len(poses), stride) if valid_pose(poses[index])]
    invalid = len(range(0, len(poses), stride)) - len(valid)
    return spread(valid, max_frames), invalid


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed one raises UserError naming it."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{what} {path} is not valid JSON: {error}") from None


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of an image file, checked against ``size`` (width, height) when given."""
    if not path.is_file():
        raise UserError(f"Image {path} does not exist.")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as error:
        raise UserError(f"Image {path} cannot be read: {error}") from None
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        raise UserError(f"Image {path} is {rgb.shape[1]}x{rgb.shape[0]}, the camera says {size[0]}x{size[1]}.")
    return rgb


def output_size(width: int, height: int, downscale: int) -> tuple[int, int]:
    """(width, height) of a ``downscale`` times smaller image; UserError when that leaves no pixel."""
    size = (width // downscale, height // downscale)
    if min(size) < 1:
        raise UserError(f"downscale {downscale} leaves no pixel of a {width}x{height} image.")
    return size


def downscale_frame(frame: ConvertedFrame, downscale: int) -> ConvertedFrame:
    """The frame with its image (box filter) and depth (nearest) shrunk ``downscale`` times, intrinsics scaled."""
    if downscale == 1:
        return frame
    height, width = frame.image.shape[:2]
    new_w, new_h = output_size(width, height, downscale)
    image = np.asarray(Image.fromarray(frame.image).resize((new_w, new_h), Image.BOX), dtype=np.uint8)
    sx, sy = new_w / width, new_h / height
    fx, fy, cx, cy = frame.intrinsics
    depth = None if frame.depth is None else resize_nearest(frame.depth, new_h, new_w)
    return replace(frame, image=image, intrinsics=(fx * sx, fy * sy, cx * sx, cy * sy), depth=depth)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` sampled at the source pixel under each output pixel centre (no mixing of depths)."""
    rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.int64), array.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.int64), array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


def read_polygon_mesh(
    path: Path, sides: int, face_properties: Sequence[str] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``[V, 3]`` vertices, ``[T, 3]`` triangles (polygons fanned), each triangle's source face, and copies of the
    named face properties of a PLY mesh whose faces mostly have ``sides`` corners (read fast when all do)."""
    if not path.is_file():
        raise UserError(f"Mesh {path} does not exist.")
    fixed = {"face": {"vertex_indices": sides, "vertex_index": sides}}
    try:
        try:  # fixed-length faces are parsed by numpy, a hundred times faster than plyfile's general lists
            ply = PlyData.read(str(path), mmap="c", known_list_len=fixed)
        except PlyParseError:
            ply = PlyData.read(str(path), mmap=False)
        vertices = np.stack([np.array(ply["vertex"][axis], dtype=np.float64) for axis in "xyz"], axis=1)
        face = ply["face"]
    except (KeyError, ValueError, OSError, EOFError, PlyParseError) as error:
        raise UserError(f"Mesh {path} is not a PLY mesh with vertices (x, y, z) and faces: {error}") from None
    names = face.data.dtype.names or ()
    key = next((name for name in ("vertex_indices", "vertex_index") if name in names), None)
    missing = [name for name in face_properties if name not in names]
    if key is None or missing:
        raise UserError(f"Mesh {path}: its faces have no {'vertex_indices' if key is None else missing[0]} property.")
    triangles, source = fan_triangulate(face[key], path)
    properties = {name: np.array(face[name]) for name in face_properties}  # copies: the file may be mapped
    del ply, face
    if len(triangles) and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        raise UserError(f"Mesh {path} has faces that index missing vertices.")
    return vertices, triangles, source, properties


def fan_triangulate(polygons: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Triangles ``(v0, vk, vk+1)`` of each polygon (Replica's quads, ScanNet++'s triangles) and their polygon index."""
    if polygons.dtype != object:
        rows = [np.asarray(polygons, dtype=np.int64).reshape(len(polygons), -1)]
        groups = [np.arange(len(polygons))]
    else:
        lengths = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
        groups = [np.flatnonzero(lengths == n) for n in np.unique(lengths)]
        rows = [np.stack([np.asarray(polygons[i], dtype=np.int64) for i in g]) for g in groups]
    triangles, source = [], []
    for block, index in zip(rows, groups):
        if block.shape[1] < 3:
            raise UserError(f"Mesh {path} has faces with fewer than 3 vertices.")
        for k in range(1, block.shape[1] - 1):
            triangles.append(block[:, [0, k, k + 1]])
            source.append(index)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(triangles), np.concatenate(source)


def annotated_mesh(vertices: np.ndarray, triangles: np.ndarray, face_objects: np.ndarray) -> AnnotatedMesh:
    """An AnnotatedMesh with vertex and face order kept (``process=False``), so face ids stay aligned."""
    mesh = trimesh.Trimesh(vertices=vertices, faces=triangles, process=False)
    return AnnotatedMesh(mesh=mesh, face_objects=np.asarray(face_objects, dtype=np.int64))


def labelled_objects(annotated: AnnotatedMesh, labels: dict[int, str]) -> list[dict[str, Any]]:
    """Ground-truth objects (id, label, aabb, source_id) of the labelled objects on the mesh; drops unlabelled ids."""
    annotated.face_objects[~np.isin(annotated.face_objects, list(labels))] = 0
    too_big = [i for i in labels if i > MAX_OBJECT_ID]
    if too_big:
        raise UserError(f"Object ids up to {MAX_OBJECT_ID} fit a 16-bit instance map; got {max(too_big)}.")
    objects = scene_graph_objects(labels, annotated.aabbs())
    for obj in objects:
        obj["source_id"] = obj["id"] - ID_OFFSET
    return objects


@dataclass
class FrameLoopResult:
    """What :func:`write_frames` saw: frames written and the median mesh-vs-sensor depth gap per frame."""

    num_frames: int
    """Frames written."""
    depth_gaps: list[float]
    """Per frame compared, the median |mesh depth - sensor depth| in metres."""


def write_frames(
    writer: CaptureWriter,
    frames: Iterable[ConvertedFrame],
    total: int,
    caster: AnnotatedMesh | None,
    mesh_depth: bool,
    with_instances: bool,
    progress: bool,
    description: str,
) -> FrameLoopResult:
    """Write each frame; with a caster, its instance map (``with_instances``) and depth (``mesh_depth``) from the mesh.

    Without ``mesh_depth`` the caster's depth is compared with the frame's own (``depth_gaps``)."""
    result = FrameLoopResult(0, [])
    with step_progress(progress, total, description) as advance:
        for frame in frames:
            instances = None
            if caster is not None:
                height, width = frame.image.shape[:2]
                depth, ids = caster.cast(frame, height, width)
                instances = ids if with_instances else None
                if mesh_depth:
                    frame = replace(frame, depth=depth)
                elif frame.depth is not None:
                    result.depth_gaps.append(depth_gap(depth, frame.depth))
            writer.add(frame, instances)
            result.num_frames += 1
            advance()
    return result


def depth_gap(mesh_depth: np.ndarray, sensor_depth: np.ndarray) -> float:
    """Median absolute difference (metres) where both depths are valid; 0 when they share no pixel."""
    sensor = resize_nearest(np.asarray(sensor_depth, dtype=np.float64), *mesh_depth.shape)
    both = (mesh_depth > 0) & np.isfinite(sensor) & (sensor > 0)
    return float(np.median(np.abs(mesh_depth[both] - sensor[both]))) if both.any() else 0.0


def summarize(
    output: Path,
    dataset: str,
    loop: FrameLoopResult,
    invalid: int,
    objects: Sequence[dict[str, Any]],
    flags: tuple[bool, str],
    start: float,
    notes: Sequence[str],
) -> ConvertSummary:
    """The summary of a finished conversion; ``flags`` is (instance maps written, depth source)."""
    return ConvertSummary(
        output=output,
        dataset=dataset,
        frames=loop.num_frames,
        skipped=invalid,
        objects=len(objects),
        relationships=0,
        instance_maps=flags[0],
        depth_source=flags[1],
        seconds=time.perf_counter() - start,
        notes=tuple(notes),
    )


def lazy_frames(
    indices: Sequence[int], load: Callable[[int], ConvertedFrame], downscale: int
) -> Iterator[ConvertedFrame]:
    """Frames loaded one at a time (a scan does not fit in memory), downscaled."""
    for index in indices:
        yield downscale_frame(load(index), downscale)
