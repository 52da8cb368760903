"""Instance clustering of extraction on hand-made features (no field needed)."""

from __future__ import annotations

from typing import get_args, get_type_hints

import numpy as np
import pytest
import torch

from relationfield.extraction import (
    ExtractionConfig,
    cluster_instances,
    merge_parts,
    recluster_noise,
    reduce_dims,
    render_scale,
    split_connected,
)
from relationfield.extraction.config import SURFACE_SOURCES, SurfaceSource


def _blob(rng: np.random.Generator, centre: np.ndarray, count: int, spread: float = 0.02) -> np.ndarray:
    points = centre + spread * rng.standard_normal((count, len(centre)))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def _directions(rng: np.random.Generator, count: int, dims: int = 8) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((dims, dims)))[0][:count]  # orthonormal: cosine 0 between objects


def test_small_objects_missed_by_the_subsample_are_found_by_the_noise_pass():
    rng = np.random.default_rng(0)
    centres = _directions(rng, 5)
    big = [_blob(rng, c, 3000) for c in centres[:3]]
    # about 6 points each in a 2000-point subsample: below min_cluster_size
    small = [_blob(rng, c, 30) for c in centres[3:]]
    features = torch.from_numpy(np.concatenate(big + small)).float()
    truth = np.repeat(np.arange(5), [3000, 3000, 3000, 30, 30])
    base = ExtractionConfig(cluster_points=2000, cluster_dims=6, min_cluster_size=10, min_samples=10)

    def dominant(labels: np.ndarray, obj: int) -> int:
        ids, counts = np.unique(labels[truth == obj], return_counts=True)
        return int(ids[counts.argmax()])

    without = cluster_instances(features, ExtractionConfig(**{**vars(base), "noise_min_cluster_size": 0}))
    assert dominant(without, 3) < 0 and dominant(without, 4) < 0  # the first pass alone calls them noise

    labels = cluster_instances(features, base)
    ids = [dominant(labels, obj) for obj in range(5)]
    assert min(ids) >= 0 and len(set(ids)) == 5, ids  # five objects, five clusters
    for obj in (3, 4):
        assert (labels[truth == obj] == ids[obj]).mean() >= 0.9


def test_the_noise_pass_keeps_fringes_of_known_objects_as_noise():
    rng = np.random.default_rng(1)
    a, b, c = _directions(rng, 3)
    known = _blob(rng, a, 500)
    fringe = _blob(rng, a + 0.4 * b, 60, spread=0.01)  # cosine about 0.93 to object a: a seam, not an object
    new = _blob(rng, c, 60, spread=0.01)  # unlike anything known
    features = np.concatenate([known, fringe, new])
    labels = np.concatenate([np.zeros(500, int), np.full(120, -1)])
    config = ExtractionConfig(cluster_points=10000, noise_min_cluster_size=20)
    out = recluster_noise(reduce_dims(torch.from_numpy(features), 6), features, labels, config)
    assert (out[:500] == 0).all()
    assert (out[500:560] < 0).all()
    new_ids = np.unique(out[560:])
    assert len(new_ids) == 1 and new_ids[0] == 1


def test_a_large_noise_cluster_like_a_known_object_is_clustered_again(monkeypatch):
    """A noise cluster that holds a small object and the seams of the whole room (seen on a trained run:
    one second-pass cluster of 5,201 points held a 40-point cup): its mean is like a known object's, yet
    the small object is new."""
    from relationfield.extraction import clustering

    rng = np.random.default_rng(3)
    a, b = _directions(rng, 2)
    features = np.concatenate([_blob(rng, a, 500), _blob(rng, a + 0.2 * b, 600), _blob(rng, a + 1.5 * b, 40)])
    labels = np.concatenate([np.zeros(500, int), np.full(640, -1)])  # seams (cosine 0.98 to a), cup (0.55)
    real, calls = clustering._hdbscan_labels, []

    def joined_first(reduced, members, *args):  # the second pass puts all the noise into one cluster
        calls.append(len(members))
        return np.zeros(len(members), int) if len(calls) == 1 else real(reduced, members, *args)

    monkeypatch.setattr(clustering, "_hdbscan_labels", joined_first)
    config = ExtractionConfig(noise_min_cluster_size=20)
    reduced = reduce_dims(torch.from_numpy(features), 6)
    assert (recluster_noise(reduced, features, labels, config, depth=0)[500:] < 0).all()  # the cup is lost
    calls.clear()
    again = recluster_noise(reduced, features, labels, config)
    assert (again[:500] == 0).all() and (again[500:1100] < 0).all()  # the seams stay noise
    assert len(np.unique(again[-40:])) == 1 and again[-1] == 1  # the cup is an object of its own


def test_split_connected_separates_distant_parts_and_drops_tiny_ones():
    rng = np.random.default_rng(2)
    left = rng.uniform(0, 0.5, (200, 3))
    right = rng.uniform(0, 0.5, (200, 3)) + [2.0, 0, 0]
    speck = rng.uniform(0, 0.05, (3, 3)) + [5.0, 0, 0]
    points = np.concatenate([left, right, speck])
    out = split_connected(points, np.zeros(len(points), int), voxel=0.1, min_points=10)
    assert len(set(out[:200])) == 1 and len(set(out[200:400])) == 1 and out[0] != out[200]
    assert (out[400:] == -1).all()


def test_merge_parts_joins_touching_similar_parts_only():
    rng = np.random.default_rng(3)
    a, b = _directions(rng, 2)
    points = np.concatenate(
        [
            rng.uniform(0, 1, (100, 3)),
            rng.uniform(0, 1, (100, 3)) + [1.05, 0, 0],
            rng.uniform(0, 1, (100, 3)) + [2.1, 0, 0],
        ]
    )
    features = np.concatenate([_blob(rng, a, 100), _blob(rng, a, 100), _blob(rng, b, 100)])
    labels = np.repeat([0, 1, 2], 100)
    out = merge_parts(points, labels, features, ExtractionConfig(merge_similarity=0.9), voxel=0.05)
    assert len(set(out[:200])) == 1  # parts 0 and 1 touch and agree
    assert out[250] != out[0]  # part 2 touches part 1 but is a different object


def test_render_scale_shrinks_large_views_to_the_pixel_budget_and_never_enlarges():
    assert render_scale(1920 * 1080, 3072) * 1920 * render_scale(1920 * 1080, 3072) * 1080 == pytest.approx(3072)
    assert render_scale(64 * 48, 3072) == 1.0 and render_scale(32 * 24, 3072) == 1.0
    assert render_scale(1920 * 1080, 0) == 1.0


def test_export_command_defaults_are_the_extraction_defaults():
    from relationfield.commands.export import ExportPointcloud, ExportSceneGraph

    for command in (ExportSceneGraph, ExportPointcloud):
        for name in ("max_views", "view_pixels", "surface"):
            assert getattr(command, name) == getattr(ExtractionConfig, name), (command.__name__, name)
        assert get_args(get_type_hints(command)["surface"]) == SURFACE_SOURCES == get_args(SurfaceSource)
    assert ExportSceneGraph.max_distance == ExtractionConfig.max_distance
