"""Segmentation: the field's surface points split into instances (a node id per point)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from relationfield.extraction.clustering import cluster_instances, clustering_features, merge_parts, split_connected
from relationfield.extraction.config import ExtractionConfig, Progress, no_progress
from relationfield.extraction.stains import absorb_stains
from relationfield.extraction.surface import surface_points
from relationfield.query import FieldQuery

__all__ = ["Segmentation", "instance_point_cloud", "segment"]


@dataclass
class Segmentation:
    """Surface points split into instances (node id per point, -1 = none)."""

    points: Tensor
    """[N, 3] nerfstudio frame."""
    world: np.ndarray
    """[N, 3] the capture's world frame."""
    labels: np.ndarray
    """[N] node id per point, -1 for points in no node."""
    semantic: Tensor
    """[N, D] semantic features."""
    instance: Tensor
    """[N, D] instance features."""

    @property
    def node_ids(self) -> list[int]:
        """The node ids, ascending."""
        return [int(i) for i in np.unique(self.labels) if i >= 0]

    def node_points(self, node_id: int) -> Tensor:
        """[n, 3] points (nerfstudio frame) of one node."""
        return self.points[torch.from_numpy(self.labels == node_id)]


def segment(query: FieldQuery, config: ExtractionConfig, progress: Progress = no_progress) -> Segmentation:
    """Surface points of the field, clustered into instances."""
    points = surface_points(query, config, progress)
    world = query.to_world(points).numpy() if len(points) else np.zeros((0, 3))
    if len(points) < config.min_node_points:
        none = torch.zeros(len(points), 1)
        return Segmentation(points, world, np.full(len(points), -1), none, none)
    instance = query.instance(points).cpu()
    semantic = query.semantic(points).cpu()
    extent = float((world.max(0) - world.min(0)).max())
    voxel = 2.0 * extent / config.voxels_per_side
    with torch.random.fork_rng(devices=[]):  # pca_lowrank is randomised; keep the caller's RNG untouched
        torch.manual_seed(config.seed)
        joint = clustering_features(instance, semantic)
    labels = cluster_instances(joint, config)
    labels = split_connected(world, labels, voxel, config.min_node_points)
    labels = merge_parts(world, labels, joint.numpy(), config, voxel)
    labels = absorb_stains(world, labels, voxel, config.stain_voxels)
    return Segmentation(points, world, labels, semantic, instance)


def instance_point_cloud(
    query: FieldQuery, config: ExtractionConfig, progress: Progress = no_progress
) -> tuple[np.ndarray, np.ndarray]:
    """World-frame surface points and their instance ids (-1 = none)."""
    seg = segment(query, config, progress)
    return seg.world, seg.labels
