"""Converting one 3RScan scan, with its 3DSSG relationships, into a capture (the layout of ``convert.capture``).

Input: a scan folder ``SCAN/`` (named by its scan id) holding ``sequence/`` or ``sequence.zip`` (read in place),
``semseg.v2.json`` and ``labels.instances.annotated.v2.ply``; optionally 3DSSG's ``relationships.json``.

3RScan stores its colour and depth frames sideways (the phone was held in landscape): 3RScan's renderer turns what it
renders 90 degrees clockwise before saving it (``rio_renderer/src/renderer.cc``: ``cv::ROTATE_90_CLOCKWISE``) and
3DSSG turns the colour images the same way (``np.rot90(image, 3)``). This converter does the same to image and depth
and turns camera and intrinsics with them, so every 3D point lands on the same scene content: a stored pixel
``(u, v)`` of an image ``H`` pixels high moves to ``(H - v, u)``, ``(fx, fy, cx, cy)`` becomes
``(fy, fx, H - cy, cx)`` and the upright camera's x axis is the stored camera's -y (:data:`ROTATE_CAMERA`).
Intrinsics are taken in continuous pixel coordinates (a pixel's centre at +0.5), as 3RScan's renderer uses them.

The world frame is 3RScan's own (metres, +z up, no recentring). Frames whose pose holds inf/NaN (tracking failures)
are skipped and counted. Ground truth: the semseg objects that have vertices in the annotated mesh (boxes from those
vertices), the scan's 3DSSG relationships between them, and per-frame instance maps ray cast from that mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from relationfield.convert.capture import (
    AnnotatedMesh,
    CaptureSummary,
    CaptureWriter,
    ConvertedFrame,
    check_frame_options,
    scene_graph_objects,
    spread,
)
from relationfield.convert.rscan_files import (
    INFO_FILE,
    MESH_FILE,
    SEMSEG_FILE,
    Pinhole,
    Sequence,
    SequenceInfo,
    decode_color,
    decode_pgm,
    frame_file,
    parse_info,
    parse_pose,
    read_annotated_ply,
    read_relationships,
    read_semseg,
    relationships_path,
)
from relationfield.errors import UserError
from relationfield.progress import step_progress

__all__ = ["ROTATE_CAMERA", "ConvertSummary", "convert_3rscan", "upright_image", "upright_intrinsics", "upright_pose"]

ROTATE_CAMERA = np.array([[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""A stored frame's camera-to-world matrix (OpenCV axes) times this is the upright frame's: x' = -y, y' = x."""


@dataclass(frozen=True)
class ConvertSummary(CaptureSummary):
    """What :func:`convert_3rscan` wrote."""

    dropped_objects: int
    """semseg / 3DSSG objects left out because the annotated mesh has no vertex of theirs."""
    dropped_relationships: int
    """3DSSG relationships left out with those objects."""


@dataclass(frozen=True)
class _Truth:
    mesh: AnnotatedMesh
    objects: list[dict[str, Any]]
    relationships: list[list[Any]]
    dropped_objects: int
    dropped_relationships: int


def upright_image(array: np.ndarray) -> np.ndarray:
    """A stored (sideways) image or depth map turned 90 degrees clockwise, as 3RScan's and 3DSSG's code do."""
    return np.ascontiguousarray(np.rot90(array, k=-1))


def upright_intrinsics(intrinsics: Pinhole, stored_height: int) -> Pinhole:
    """The intrinsics of :func:`upright_image` of an image ``stored_height`` pixels high."""
    fx, fy, cx, cy = intrinsics
    return fy, fx, stored_height - cy, cx


def upright_pose(camera_to_world: np.ndarray) -> np.ndarray:
    """The camera-to-world matrix (OpenCV axes) of :func:`upright_image` of a stored frame."""
    return np.asarray(camera_to_world, dtype=np.float64) @ ROTATE_CAMERA


def convert_3rscan(
    scan: Path,
    output: Path,
    threedssg: Path | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    downscale: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    scan_id: str | None = None,
) -> ConvertSummary:
    """Convert the 3RScan scan folder ``scan`` (and its entry of 3DSSG's relationships.json ``threedssg``, a file or
    the folder holding it) into a capture in ``output``.

    Keeps every ``stride``-th frame, then at most ``max_frames`` of those with a valid pose (evenly spread), and
    shrinks images, depth and intrinsics by the integer ``downscale``. ``scan_id`` (default: the folder's name) picks
    the relationships.json entry. Raises :class:`UserError` for missing or malformed files and bad arguments.
    """
    check_frame_options(stride, max_frames, downscale)
    scan = Path(scan)
    if not scan.is_dir():
        raise UserError(f"{scan} is not a directory (expected a 3RScan scan folder).")
    scan_id = scan_id or scan.resolve().name
    with Sequence(scan) as sequence:
        info = parse_info(sequence.read_text(INFO_FILE), sequence.where(INFO_FILE))
        _check_downscale(info, downscale, sequence.where(INFO_FILE))
        frames, skipped = _select_frames(sequence, info, stride, max_frames)
        relationships = relationships_path(threedssg) if threedssg is not None else None
        truth = _ground_truth(scan, relationships, scan_id)
        writer = CaptureWriter(Path(output), overwrite=overwrite)
        with step_progress(progress, len(frames), f"converting 3RScan {scan_id}") as advance:
            for index, pose in frames:
                frame = _frame(sequence, info, index, pose, downscale)
                writer.add(frame, truth.mesh.instance_map(frame, *frame.image.shape[:2]))
                advance()
    frame_choice = {"stride": stride, "max_frames": max_frames, "downscale": downscale, "skipped_invalid_pose": skipped}
    meta = _meta(scan_id, sequence, relationships, frame_choice, truth)
    writer.finish(truth.objects, truth.relationships, meta, mesh=truth.mesh)
    return ConvertSummary(
        output=writer.output,
        frames=len(frames),
        skipped=skipped,
        objects=len(truth.objects),
        relationships=len(truth.relationships),
        dropped_objects=truth.dropped_objects,
        dropped_relationships=truth.dropped_relationships,
    )


def _meta(
    scan_id: str, sequence: Sequence, relationships: Path | None, frames: dict[str, Any], truth: _Truth
) -> dict[str, Any]:
    """The scene graph's meta: where it comes from (files named within the scan folder) and what was left out."""
    return {
        "dataset": "3RScan",
        "scan": scan_id,
        "units": "metres",
        "up_axis": "+z",
        "source": {
            "sequence": sequence.label,
            "semseg": SEMSEG_FILE,
            "mesh": MESH_FILE,
            "relationships": str(relationships) if relationships else None,
        },
        "image_rotation": "stored frames turned 90 degrees clockwise (upright)",
        "frames": frames,
        "dropped": {"objects": truth.dropped_objects, "relationships": truth.dropped_relationships},
    }


def _check_downscale(info: SequenceInfo, downscale: int, where: str) -> None:
    if min(info.color_size) // downscale < 1:
        raise UserError(f"downscale {downscale} leaves no pixel of the {info.color_size} images of {where}.")


def _select_frames(
    sequence: Sequence, info: SequenceInfo, stride: int, max_frames: int | None
) -> tuple[list[tuple[int, np.ndarray]], int]:
    """The frames to convert with their poses, and how many of the stride selection had an invalid pose."""
    indices = list(range(info.num_frames)) if info.num_frames is not None else sequence.color_frames()
    if not indices:
        raise UserError(f"{sequence.where(INFO_FILE)}: the sequence has no frames.")
    valid, skipped = [], 0
    for index in indices[::stride]:
        name = frame_file(index, "pose.txt")
        pose = parse_pose(sequence.read_text(name), sequence.where(name))
        if np.isfinite(pose).all():
            valid.append((index, pose))
        else:
            skipped += 1
    if not valid:
        raise UserError(f"All {skipped} selected frames of {sequence.where(INFO_FILE)} have invalid (inf/NaN) poses.")
    return spread(valid, max_frames), skipped


def _ground_truth(scan: Path, relationships: Path | None, scan_id: str) -> _Truth:
    """Objects with a mesh instance, their relationships and the mesh with an object per face."""
    labels = read_semseg(scan / SEMSEG_FILE)
    vertices, faces, vertex_objects = read_annotated_ply(scan / MESH_FILE)
    boxes = _vertex_boxes(vertices, vertex_objects)
    kept = {ident: label for ident, label in labels.items() if ident in boxes}
    graph_objects, triples = read_relationships(relationships, scan_id) if relationships else (set(), [])
    relations = [[s, o, p] for s, o, p in triples if s in kept and o in kept]
    corners = vertex_objects[faces]
    # A face belongs to the object of at least two of its corners (the first corner's when all three differ).
    face_objects = np.where(
        (corners[:, 1] == corners[:, 2]) & (corners[:, 0] != corners[:, 1]), corners[:, 1], corners[:, 0]
    )
    # Mesh ids semseg does not label are no ground-truth object: instance maps show them as background.
    face_objects = np.where(np.isin(face_objects, list(kept)), face_objects, 0).astype(np.int64)
    mesh = AnnotatedMesh(trimesh.Trimesh(vertices=vertices, faces=faces, process=False), face_objects)
    return _Truth(
        mesh=mesh,
        objects=scene_graph_objects(kept, boxes),
        relationships=relations,
        dropped_objects=len((set(labels) | graph_objects) - set(kept)),
        dropped_relationships=len(triples) - len(relations),
    )


def _vertex_boxes(vertices: np.ndarray, vertex_objects: np.ndarray) -> dict[int, tuple[list[float], list[float]]]:
    """``{object id: (min, max)}`` of the vertices carrying each object id."""
    boxes = {}
    for ident in np.unique(vertex_objects):
        if ident > 0:
            points = vertices[vertex_objects == ident]
            boxes[int(ident)] = (points.min(axis=0).tolist(), points.max(axis=0).tolist())
    return boxes


def _frame(sequence: Sequence, info: SequenceInfo, index: int, pose: np.ndarray, downscale: int) -> ConvertedFrame:
    """Frame ``index`` upright and shrunk: image, intrinsics, depth in metres and the OpenCV camera-to-world."""
    color_name, depth_name = frame_file(index, "color.jpg"), frame_file(index, "depth.pgm")
    image = decode_color(sequence.read(color_name), sequence.where(color_name))
    raw_depth = decode_pgm(sequence.read(depth_name), sequence.where(depth_name))
    _check_size(image, info.color_size, sequence.where(color_name))
    _check_size(raw_depth, info.depth_size, sequence.where(depth_name))
    intrinsics = _shrink_intrinsics(upright_intrinsics(info.color_intrinsics, info.color_size[1]), downscale)
    image = _shrink_image(upright_image(image), downscale)
    depth = upright_image(raw_depth.astype(np.float64) / info.depth_shift)
    depth_intrinsics = upright_intrinsics(info.depth_intrinsics, info.depth_size[1])
    size = (max(1, depth.shape[1] // downscale), max(1, depth.shape[0] // downscale))
    depth = _resample_depth(depth, depth_intrinsics, intrinsics, (image.shape[1], image.shape[0]), size)
    return ConvertedFrame(
        stem=f"frame_{index:06d}",
        image=image,
        intrinsics=intrinsics,
        camera_to_world=upright_pose(pose),
        depth=depth,
        convention="opencv",
    )


def _check_size(array: np.ndarray, size: tuple[int, int], where: str) -> None:
    if (array.shape[1], array.shape[0]) != size:
        raise UserError(
            f"{where} is {array.shape[1]}x{array.shape[0]} pixels; {INFO_FILE} says {size[0]}x{size[1]} "
            "(3RScan stores frames sideways: do not rotate them beforehand)."
        )


def _shrink_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks (dropping the last rows/columns that do not fill a block)."""
    if factor == 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: height * factor, : width * factor].reshape(height, factor, width, factor, -1)
    return np.round(blocks.astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)


def _shrink_intrinsics(intrinsics: Pinhole, factor: int) -> Pinhole:
    fx, fy, cx, cy = (value / factor for value in intrinsics)
    return fx, fy, cx, cy


def _resample_depth(
    depth: np.ndarray,
    depth_intrinsics: Pinhole,
    intrinsics: Pinhole,
    image_size: tuple[int, int],
    size: tuple[int, int],
) -> np.ndarray:
    """Depth (nearest sample) on a ``size`` grid spanning the image exactly, so that a reader that stretches the depth
    map over the image sees it aligned even where the depth camera's intrinsics are not the colour camera's scaled."""
    (width, height), (fx, fy, cx, cy) = size, intrinsics
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    x = (u * image_size[0] / width - cx) / fx
    y = (v * image_size[1] / height - cy) / fy
    dfx, dfy, dcx, dcy = depth_intrinsics
    column, row = np.floor(dfx * x + dcx).astype(np.int64), np.floor(dfy * y + dcy).astype(np.int64)
    inside = (column >= 0) & (column < depth.shape[1]) & (row >= 0) & (row < depth.shape[0])
    resampled = np.zeros((height, width), dtype=np.float64)
    resampled[inside] = depth[row[inside], column[inside]]
    return resampled
