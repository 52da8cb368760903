"""Instances from surface points: HDBSCAN on clustering features, split into connected parts, merged back.

1. HDBSCAN on the points' clustering features (a subsample in a few PCA dimensions; the rest join the
   nearest cluster), and a second pass over what it called noise (small objects).
2. Clusters split into spatially connected parts; tiny parts dropped.
3. Touching parts whose features agree merged back.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import Tensor

from relationfield.extraction.config import ExtractionConfig

__all__ = [
    "box_gap",
    "cluster_instances",
    "clustering_features",
    "merge_parts",
    "node_boxes",
    "recluster_noise",
    "reduce_dims",
    "split_connected",
    "unit",
]


def clustering_features(instance: Tensor, semantic: Tensor, semantic_dims: int = 16) -> Tensor:
    """Instance features joined with the semantic features' main components (both halves unit-norm).

    Instance features separate objects that share a label (two identical chairs); semantic features
    separate touching objects of different kinds (a cup on a table) even when the instance head is
    still young. The semantic part is reduced with PCA so both halves weigh the same.
    """
    if len(semantic) < 2:
        return F.normalize(instance, dim=-1)
    centred = semantic.float() - semantic.float().mean(0)
    q = min(semantic_dims, centred.shape[1], len(centred) - 1)
    _, _, v = torch.pca_lowrank(centred, q=q, center=False)
    reduced = F.normalize(centred @ v, dim=-1)
    return torch.cat([F.normalize(instance.float(), dim=-1), reduced], dim=-1) / 2**0.5


def reduce_dims(features: Tensor, dims: int) -> np.ndarray:
    """The ``dims`` main components of ``features`` (PCA), as float64 numpy for HDBSCAN's trees.

    Few dimensions keep HDBSCAN's space-partitioning trees fast and make its densities meaningful; the
    instance and semantic features of a trained field vary along few directions anyway.
    """
    centred = features.double() - features.double().mean(0)
    dims = max(1, min(dims, centred.shape[1], len(centred)))
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:dims].T).cpu().numpy()


def cluster_instances(features: Tensor, config: ExtractionConfig) -> np.ndarray:
    """HDBSCAN cluster id per point (-1 = noise) from (unit-norm) clustering features.

    HDBSCAN runs on up to ``cluster_points`` points (a random subsample beyond) in ``cluster_dims`` PCA
    dimensions; every point left out takes the label of its nearest subsampled neighbour in that space. A
    second pass clusters what the first called noise and keeps the clusters that are unlike every
    first-pass cluster (:func:`recluster_noise`).
    """
    n = len(features)
    if n == 0:
        return np.zeros(0, dtype=int)
    reduced = reduce_dims(features, config.cluster_dims)
    labels = _hdbscan_labels(reduced, np.arange(n), config.min_cluster_size, config.min_samples, config)
    if config.noise_min_cluster_size > 0 and (labels >= 0).any():
        labels = recluster_noise(reduced, features.numpy(), labels, config)
    return labels


def _hdbscan_labels(
    reduced: np.ndarray, members: np.ndarray, min_size: int, min_samples: int, config: ExtractionConfig
) -> np.ndarray:
    """HDBSCAN labels of ``reduced[members]`` (subsampled to ``cluster_points``; the rest take their nearest
    sampled neighbour's label)."""
    import hdbscan  # imported when clustering: it imports scikit-learn (seconds)

    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(members, size=min(len(members), config.cluster_points), replace=False))
    if len(sample) <= min_size:
        return np.full(len(members), -1)
    sub_labels = hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=min_samples).fit_predict(reduced[sample])
    if (sub_labels < 0).all():
        return np.full(len(members), -1)
    if len(sample) == len(members):
        return sub_labels
    _, nearest = cKDTree(reduced[sample]).query(reduced[members], k=1)
    return sub_labels[nearest]


def recluster_noise(
    reduced: np.ndarray, features: np.ndarray, labels: np.ndarray, config: ExtractionConfig, depth: int = 2
) -> np.ndarray:
    """Cluster the noise points again; clusters unlike every existing one become new clusters.

    Small objects have too few points in the first pass's subsample to form a cluster, so their points
    end up as noise, where they are dense again. A noise cluster can also gather the seams and fringes of
    the whole room around a small object (seen on a trained run: one cluster of 5,201 points held a
    40-point cup); its mean is then like a known cluster's and the object would be lost, so a cluster like
    a known one and much larger than the minimum size is clustered once more, up to ``depth`` times.
    """
    noise = np.nonzero(labels < 0)[0]
    size = config.noise_min_cluster_size
    if len(noise) <= size:
        return labels
    known = [c for c in np.unique(labels) if c >= 0]
    means = unit(np.stack([features[labels == c].mean(0) for c in known]))
    out = labels.copy()
    pending = [(noise, depth)]
    while pending:
        members, left = pending.pop()
        sub = _hdbscan_labels(reduced, members, size, size, config)
        for c in np.unique(sub[sub >= 0]):
            part = members[sub == c]
            if float((means @ unit(features[part].mean(0))).max()) < config.new_object_similarity:
                out[part] = int(out.max()) + 1
            elif left > 0 and len(part) > 4 * size:
                pending.append((part, left - 1))
    return out


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length."""
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def split_connected(points: np.ndarray, labels: np.ndarray, voxel: float, min_points: int) -> np.ndarray:
    """Split every cluster into spatially connected parts (26-connected voxels); drop small parts."""
    out = np.full(len(points), -1)
    next_id = 0
    for cluster in np.unique(labels):
        if cluster < 0:
            continue
        idx = np.nonzero(labels == cluster)[0]
        cells = np.floor((points[idx] - points[idx].min(0)) / voxel).astype(int)
        grid = np.zeros(cells.max(0) + 1, dtype=bool)
        grid[tuple(cells.T)] = True
        components, _ = ndimage.label(grid, structure=np.ones((3, 3, 3)))
        part = components[tuple(cells.T)]
        for value in np.unique(part):
            members = idx[part == value]
            if len(members) >= min_points:
                out[members] = next_id
                next_id += 1
    return out


def node_boxes(points: np.ndarray, labels: np.ndarray, ids: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Axis-aligned box (min corner, max corner) of the points of each node in ``ids``."""
    boxes = {}
    for i in ids:
        members = points[labels == i]
        boxes[int(i)] = (members.min(0), members.max(0))
    return boxes


def box_gap(a_min: np.ndarray, a_max: np.ndarray, b_min: np.ndarray, b_max: np.ndarray) -> float:
    """Distance between two axis-aligned boxes (0 when they touch or overlap)."""
    gap = np.maximum(0.0, np.maximum(a_min - b_max, b_min - a_max))
    return float(np.linalg.norm(gap))


def merge_parts(
    points: np.ndarray, labels: np.ndarray, features: np.ndarray, config: ExtractionConfig, voxel: float
) -> np.ndarray:
    """Merge touching parts whose mean clustering features agree (and parts that agree with a merged one)."""
    ids = [int(i) for i in np.unique(labels) if i >= 0]
    if len(ids) < 2:
        return labels
    means = unit(np.stack([features[labels == i].mean(0) for i in ids]))
    boxes = list(node_boxes(points, labels, ids).values())
    similarity = means @ means.T
    joined = [
        (a, b)
        for a in range(len(ids))
        for b in range(a + 1, len(ids))
        if similarity[a, b] >= config.merge_similarity and box_gap(*boxes[a], *boxes[b]) <= 2 * voxel
    ]
    group = np.full(max(ids) + 1, -1)
    group[ids] = _groups(len(ids), joined)
    return np.where(labels >= 0, group[np.maximum(labels, 0)], -1)


def _groups(count: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Group id (0, 1, ...) of each of ``count`` parts: the connected components of the graph of ``pairs``.

    Groups are numbered in the order of their last part, which keeps the node ids that the union-find
    this replaces gave (for all but unusual merge orders).
    """
    edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    found, component = connected_components(graph, directed=False)
    last = np.zeros(found, dtype=np.int64)
    np.maximum.at(last, component, np.arange(count))
    return np.argsort(np.argsort(last))[component]
