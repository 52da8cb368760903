"""Frame selection (relationfield.preprocess.frames): stride, max_frames and pose coverage."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from relationfield.preprocess.frames import farthest_point_sample, pose_distances, select_frames


def look_at(position: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """Camera-to-world matrix (OpenGL: the camera looks along -z, +y up) at ``position`` facing ``target``."""
    position, target = np.asarray(position, float), np.asarray(target, float)
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, position
    return pose


def frames_of(poses: Sequence[np.ndarray]) -> list[dict[str, object]]:
    """transforms.json-style frames of ``poses``."""
    return [{"file_path": f"images/frame_{i:05d}.png", "transform_matrix": p.tolist()} for i, p in enumerate(poses)]


def orbit(count: int, radius: float = 3.0, start: float = 0.0, end: float = 2 * math.pi) -> list[np.ndarray]:
    """Cameras on a horizontal circle looking at the origin."""
    angles = np.linspace(start, end, count, endpoint=False)
    return [look_at([radius * math.cos(a), radius * math.sin(a), 1.5], [0.0, 0.0, 0.5]) for a in angles]


def clustered_trajectory() -> list[dict]:
    """A capture that lingers: 45 frames within a 20-degree arc, then 15 frames around the rest of the room."""
    lingering = orbit(45, start=0.0, end=math.radians(20))
    rest = orbit(15, start=math.radians(30), end=2 * math.pi)
    return frames_of(lingering + rest)


def nearest_selected(frames: Sequence[dict], selected: Sequence[int], views: Sequence[np.ndarray]) -> np.ndarray:
    """Pose distance from each of ``views`` to its nearest selected frame."""
    poses = np.stack([np.asarray(f["transform_matrix"]) for f in frames] + list(views))
    distances = pose_distances(poses)[len(frames) :, list(selected)]
    return distances.min(axis=1)


def test_no_limit_keeps_every_frame_and_stride_applies():
    frames = frames_of(orbit(10))
    assert select_frames(frames, None) == list(range(10))
    assert select_frames(frames, None, stride=3) == [0, 3, 6, 9]
    assert select_frames(frames, 100) == list(range(10))
    assert select_frames(frames, 4, stride=3) == [0, 3, 6, 9]  # the stride leaves exactly max_frames
    assert select_frames([], 5) == []


def test_poses_are_only_needed_when_sampling():
    frames = [{"file_path": f"images/{i}.png"} for i in range(5)]
    assert select_frames(frames, None, stride=2) == [0, 2, 4]
    with pytest.raises(ValueError, match="transform_matrix"):
        select_frames(frames, 2)


@pytest.mark.parametrize("stride", [0, -1, 1.5, True])
def test_bad_stride_raises(stride):
    with pytest.raises(ValueError, match="stride"):
        select_frames(frames_of(orbit(4)), None, stride=stride)


@pytest.mark.parametrize("max_frames", [0, -3, 2.0])
def test_bad_max_frames_raises(max_frames):
    with pytest.raises(ValueError, match="max_frames"):
        select_frames(frames_of(orbit(4)), max_frames)


def test_malformed_pose_raises():
    frames = frames_of(orbit(4))
    frames[2]["transform_matrix"] = [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="frame 2"):
        select_frames(frames, 2)
    frames[2]["transform_matrix"] = np.full((4, 4), np.nan).tolist()
    with pytest.raises(ValueError, match="frame 2"):
        select_frames(frames, 2)


def test_sample_is_deterministic_sorted_and_starts_at_first_frame():
    frames = clustered_trajectory()
    first = select_frames(frames, 8, stride=2)
    assert first == select_frames(frames, 8, stride=2)
    assert first == sorted(set(first)) and len(first) == 8
    assert first[0] == 0
    assert all(index % 2 == 0 for index in first)
    assert select_frames(frames, 1) == [0]


def test_three_by_four_matrices_are_accepted():
    frames = frames_of(orbit(12))
    short = [{**f, "transform_matrix": f["transform_matrix"][:3]} for f in frames]
    assert select_frames(short, 4) == select_frames(frames, 4)


def test_sample_covers_a_clustered_trajectory_better_than_first_or_uniform():
    frames = clustered_trajectory()
    poses = [np.asarray(f["transform_matrix"]) for f in frames]
    room = orbit(72)  # views evenly spread around the room: what the selection should cover
    count = 10
    chosen = select_frames(frames, count)
    first_n = list(range(count))
    uniform = sorted({int(i) for i in np.linspace(0, len(frames) - 1, count).round()})
    for baseline in (first_n, uniform):
        assert nearest_selected(frames, chosen, room).mean() < 0.5 * nearest_selected(frames, baseline, room).mean()
        assert nearest_selected(frames, chosen, poses).max() < 0.5 * nearest_selected(frames, baseline, poses).max()
    # every frame of the capture is closer to the sample than to the first N frames, on average
    assert nearest_selected(frames, chosen, poses).mean() < 0.5 * nearest_selected(frames, first_n, poses).mean()
    # most of the sample lies outside the lingering arc (frames 0..44)
    assert sum(index >= 45 for index in chosen) >= count // 2


def test_viewing_direction_counts_when_cameras_do_not_move():
    # a panorama: one position, 36 headings 10 degrees apart
    headings = np.radians(np.arange(0, 360, 10))
    frames = frames_of([look_at([0.0, 0.0, 1.5], [math.cos(h), math.sin(h), 1.5]) for h in headings])
    chosen = select_frames(frames, 4)
    assert chosen == [0, 9, 18, 27]  # 90 degrees apart


def test_position_counts_for_parallel_cameras():
    # a dolly shot: 20 cameras on a line, all looking the same way
    frames = frames_of([look_at([x, 0.0, 1.5], [x, 5.0, 1.5]) for x in np.linspace(0.0, 4.0, 21)])
    assert select_frames(frames, 3) == [0, 10, 20]


def test_farthest_point_sample_validates_input():
    with pytest.raises(ValueError):
        farthest_point_sample(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError):
        farthest_point_sample(np.zeros((2, 2)), 1, start=5)
    assert farthest_point_sample(np.zeros((3, 3)), 10) == [0, 1, 2]
