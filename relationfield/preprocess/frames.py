"""Choosing which frames of a capture the (costly) preprocessing stages look at.

Segmenting every frame with SAM and asking a vision model about each one costs time and money, and
neighbouring frames of a video capture show nearly the same thing. :func:`select_frames` keeps a
subset that is spread over the capture: first every ``stride``-th frame, then, when more than
``max_frames`` remain, a farthest-point sample under a pose distance that combines where the camera
is and where it looks.

Poses are the ``transform_matrix`` of nerfstudio's ``transforms.json``: camera-to-world, OpenGL
convention, so a camera looks along its local ``-z`` axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def select_frames(
    frames: Sequence[Mapping[str, Any]],
    max_frames: int | None,
    stride: int = 1,
    angle_weight: float = 1.0,
) -> list[int]:
    """Indices of the frames to process, sorted ascending.

    Args:
        frames: the ``frames`` of ``transforms.json`` (dicts with a 4x4 ``transform_matrix``; the
            poses are only read when the farthest-point sample is needed).
        max_frames: keep at most this many frames (``None``: no limit).
        stride: keep every ``stride``-th frame (``0, stride, 2 * stride, ...``) before sampling.
        angle_weight: weight of the viewing-direction term of the pose distance (see
            :func:`pose_distances`).

    Returns:
        Indices into ``frames``. When the stride leaves at most ``max_frames`` frames they are all
        kept; otherwise the sample starts from the first strided frame and repeatedly adds the frame
        farthest from those already chosen (ties go to the earliest frame), so the result is
        deterministic.

    Raises:
        ValueError: ``stride`` or ``max_frames`` is below 1, or a pose needed for sampling is
            missing or malformed.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")
    candidates = list(range(0, len(frames), int(stride)))
    if max_frames is None or len(candidates) <= max_frames:
        return candidates
    poses = np.stack([camera_pose(frames[index], index) for index in candidates])
    chosen = farthest_point_sample(pose_distances(poses, angle_weight), int(max_frames))
    return sorted(candidates[position] for position in chosen)


def camera_pose(frame: Mapping[str, Any], index: int = 0) -> np.ndarray:
    """The camera-to-world matrix of ``frame`` as a float64 ``[4, 4]`` array.

    A ``[3, 4]`` matrix is accepted and completed with ``[0, 0, 0, 1]``.

    Raises:
        ValueError: the frame has no ``transform_matrix``, or it is not a finite 3x4 / 4x4 matrix.
    """
    if "transform_matrix" not in frame:
        raise ValueError(f"frame {index} has no transform_matrix")
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"frame {index}: transform_matrix is not a numeric matrix") from None
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"frame {index}: transform_matrix must be a finite 4x4 matrix, got shape {matrix.shape}")
    return matrix


def pose_distances(poses: np.ndarray, angle_weight: float = 1.0) -> np.ndarray:
    """Pairwise distances between camera poses, ``[N, N]``.

    ``d(i, j) = |c_i - c_j| / extent + angle_weight * angle(v_i, v_j) / pi`` where ``c`` are the
    camera centres, ``extent`` is the diagonal of their bounding box (so the position term is at most
    1 and does not depend on the scene's units) and ``v`` are the viewing directions (``-z`` of the
    camera). When all cameras sit at one point only the angle counts.

    Args:
        poses: camera-to-world matrices ``[N, 4, 4]`` (OpenGL convention).
        angle_weight: weight of the direction term (``0`` compares positions only).
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must have shape [N, 4, 4], got {poses.shape}")
    if angle_weight < 0:
        raise ValueError(f"angle_weight must be >= 0, got {angle_weight}")
    centres = poses[:, :3, 3]
    extent = float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0))) if len(poses) else 0.0
    position = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    position = position / extent if extent > 1e-12 else np.zeros_like(position)
    directions = -poses[:, :3, 2]
    directions = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
    angle = np.arccos(np.clip(directions @ directions.T, -1.0, 1.0)) / np.pi
    return position + angle_weight * angle


def farthest_point_sample(distances: np.ndarray, count: int, start: int = 0) -> list[int]:
    """Greedy farthest-point sample of ``count`` items under the ``[N, N]`` distance matrix.

    Starts from ``start`` and then adds, one at a time, the item whose distance to its nearest chosen
    item is largest (the earliest such item on ties). Returns the items in the order chosen.
    """
    distances = np.asarray(distances, dtype=np.float64)
    num = distances.shape[0]
    if distances.shape != (num, num):
        raise ValueError(f"distances must be a square matrix, got {distances.shape}")
    if not 0 <= start < num:
        raise ValueError(f"start must index one of the {num} items, got {start}")
    count = min(int(count), num)
    chosen = [int(start)]
    nearest = distances[start].copy()
    nearest[start] = -np.inf
    while len(chosen) < count:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, distances[pick])
        nearest[chosen] = -np.inf
    return chosen
