"""Which masks of different frames show the same object, from the capture's depth maps and poses.

Each mask's pixels (eroded by one pixel, so that a bleeding boundary does not reach the background) are
back-projected with the frame's depth and camera and voxelised. Two masks show the same object when their
voxel sets overlap with an intersection over union of at least ``min_iou``. The test is pairwise, with no
tracks chained through it: a mask that merged a cup into its table matches the table's masks (the cup adds
few voxels) but not the cup's (whose voxels are a small part of it), and a part mask (a chair's seat)
matches the whole chair's masks without joining the seat to the back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

VOXELS_PER_DIAGONAL = 75.0
"""Default voxel edge: the labelled scene's diagonal divided by this (about 10 cm in a 7 m room)."""

MIN_IOU = 0.2
"""Default least voxel intersection over union of two masks of the same object."""

MAX_POINTS = 1000
"""About this many back-projected pixels at most per mask (an even grid): enough for its voxels."""

EXTENT_FRAMES = 16
"""Frames the default voxel size is measured on."""


@dataclass(frozen=True)
class FrameGeometry:
    """What back-projection needs of one frame."""

    depth: np.ndarray
    """``[H, W]`` depth along the camera axis, in world units (0 or not finite: no depth)."""
    intrinsics: tuple[float, float, float, float]
    """``(fx, fy, cx, cy)`` in pixels of ``depth``."""
    camera_to_world: np.ndarray
    """``[3, 4]`` camera-to-world matrix, OpenGL axes (x right, y up, the camera looking along -z), as
    nerfstudio's cameras give it."""


def mask_points(segments: np.ndarray, num_masks: int, geometry: FrameGeometry) -> list[np.ndarray]:
    """World points ``[n_k, 3]`` of masks ``1..num_masks`` of a segment map (any resolution against the depth)."""
    seg_h, seg_w = segments.shape
    depth = np.asarray(geometry.depth, dtype=np.float64)
    dep_h, dep_w = depth.shape
    fx, fy, cx, cy = geometry.intrinsics
    c2w = np.asarray(geometry.camera_to_world, dtype=np.float64)
    points: list[np.ndarray] = []
    boxes = ndimage.find_objects(segments.astype(np.int64), max_label=num_masks)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            points.append(np.zeros((0, 3)))
            continue
        inside = np.pad(segments[box] == k, 1)
        core = ndimage.binary_erosion(inside)
        ys, xs = np.nonzero(core if core.sum() >= 4 else inside)
        ys, xs = ys - 1 + box[0].start, xs - 1 + box[1].start
        if len(ys) > MAX_POINTS:
            # Every stride-th row and column: an even grid over the mask (voxels span several pixels).
            stride = int(np.ceil(np.sqrt(len(ys) / MAX_POINTS)))
            keep = (ys % stride == 0) & (xs % stride == 0)
            ys, xs = ys[keep], xs[keep]
        # Pixel centres of the segment map in the depth map's pixels.
        u = (xs + 0.5) * dep_w / seg_w
        v = (ys + 0.5) * dep_h / seg_h
        d = depth[np.minimum(v.astype(np.int64), dep_h - 1), np.minimum(u.astype(np.int64), dep_w - 1)]
        ok = np.isfinite(d) & (d > 0)
        u, v, d = u[ok], v[ok], d[ok]
        camera = np.stack([(u - cx) / fx * d, -(v - cy) / fy * d, -d], axis=-1)
        points.append(camera @ c2w[:, :3].T + c2w[:, 3])
    return points


def same_object(
    segments: Sequence[np.ndarray | None],
    mask_counts: Sequence[int],
    geometry: Callable[[int], FrameGeometry | None],
    voxel_size: float | None = None,
    min_iou: float = MIN_IOU,
) -> sparse.csr_matrix:
    """``[M, M]`` boolean: global masks (frame by frame, as a label store numbers them) of the same object.

    Args:
        segments: each frame's segment map (None: no labels).
        mask_counts: each frame's number of masks.
        geometry: the geometry of frame ``f`` (None: no depth or pose), called at most twice per frame, so
            that depth maps are read one at a time.
        voxel_size: voxel edge in world units; default the labelled scene's diagonal divided by
            ``VOXELS_PER_DIAGONAL`` (measured on at most ``EXTENT_FRAMES`` frames spread over the capture).
        min_iou: least voxel intersection over union of two masks of the same object.

    Masks of frames without segments or geometry match only themselves, and masks of one frame never match
    each other (a frame's masks are different objects or different parts).
    """
    offsets = np.concatenate([[0], np.cumsum(mask_counts)]).astype(np.int64)
    num_masks = int(offsets[-1])
    frames = [f for f, seg in enumerate(segments) if seg is not None and mask_counts[f] > 0]
    voxel = voxel_size if voxel_size is not None else _default_voxel_size(segments, frames, geometry)
    rows, cols = [], []
    for frame in frames if voxel is not None else []:
        found = geometry(frame)
        if found is None:
            continue
        for k, pts in enumerate(mask_points(segments[frame], int(mask_counts[frame]), found)):
            keys = np.unique(_voxel_keys(pts, voxel))
            rows.append(np.full(len(keys), offsets[frame] + k, dtype=np.int64))
            cols.append(keys)
    identity = sparse.identity(num_masks, dtype=bool, format="csr")
    if not rows or not sum(len(r) for r in rows):
        return identity
    row = np.concatenate(rows)
    _, col = np.unique(np.concatenate(cols), return_inverse=True)
    incidence = sparse.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=(num_masks, col.max() + 1))
    sizes = np.asarray(incidence.sum(axis=1)).ravel()
    shared = (incidence @ incidence.T).tocoo()
    union = sizes[shared.row] + sizes[shared.col] - shared.data
    frame_of = np.repeat(np.arange(len(mask_counts)), mask_counts)
    keep = (shared.data >= min_iou * np.maximum(union, 1)) & (frame_of[shared.row] != frame_of[shared.col])
    matches = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (shared.row[keep], shared.col[keep])), shape=(num_masks, num_masks)
    )
    return (matches + identity).astype(bool).tocsr()


def _default_voxel_size(
    segments: Sequence[np.ndarray | None], frames: list[int], geometry: Callable[[int], FrameGeometry | None]
) -> float | None:
    """The labelled points' extent (the diagonal between their 1st and 99th percentiles, over up to
    ``EXTENT_FRAMES`` evenly spread frames) divided by ``VOXELS_PER_DIAGONAL``."""
    picked = sorted({frames[int(i)] for i in np.linspace(0, len(frames) - 1, EXTENT_FRAMES)}) if frames else []
    clouds = []
    for frame in picked:
        found = geometry(frame)
        if found is not None:
            clouds.extend(mask_points(segments[frame], int(segments[frame].max()), found))
    points = np.concatenate(clouds) if clouds else np.zeros((0, 3))
    if len(points) < 2:
        return None
    diagonal = float(np.linalg.norm(np.percentile(points, 99, axis=0) - np.percentile(points, 1, axis=0)))
    return diagonal / VOXELS_PER_DIAGONAL if diagonal > 0 else None


def _voxel_keys(points: np.ndarray, voxel: float) -> np.ndarray:
    """One int64 key per point: its voxel's integer coordinates packed into 21 bits each."""
    cells = np.floor(points / voxel).astype(np.int64) + (1 << 20)
    cells = np.clip(cells, 0, (1 << 21) - 1)
    return (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]
