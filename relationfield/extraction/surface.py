"""Surface points of a trained field: expected-depth points of rendered training views, one per voxel."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from relationfield.extraction.config import ExtractionConfig, Progress
from relationfield.query import FieldQuery

__all__ = ["render_scale", "surface_points", "voxel_dedup"]


@torch.no_grad()
def surface_points(query: FieldQuery, config: ExtractionConfig, progress: Progress) -> Tensor:
    """Deduplicated surface points (nerfstudio frame) from rendered training views."""
    model = query.model
    cameras = query.pipeline.datamanager.train_dataset.cameras
    count = len(cameras)
    views = np.unique(np.linspace(0, count - 1, min(config.max_views, count)).round().astype(int))
    points = []
    advance = progress("rendering surface points", len(views))
    with model.rendering(features=False):
        for view in views.tolist():
            camera = cameras[view : view + 1]  # indexing makes a copy, safe to rescale
            scale = render_scale(int(camera.width) * int(camera.height), config.view_pixels)
            if scale < 1.0:
                camera.rescale_output_resolution(scale)
            bundle = camera.generate_rays(camera_indices=0).to(query.device)
            outputs = model.get_outputs_for_camera_ray_bundle(bundle)
            keep = outputs["accumulation"][..., 0] > config.min_accumulation
            xyz = bundle.origins + bundle.directions * outputs["expected_depth"]
            points.append(xyz[keep].cpu())
            advance(1)
    if not points or sum(len(p) for p in points) == 0:
        return torch.zeros(0, 3)
    return voxel_dedup(torch.cat(points), config.voxels_per_side)


def render_scale(pixels: int, view_pixels: int) -> float:
    """Resolution factor that brings a view of ``pixels`` pixels down to about ``view_pixels`` (never up)."""
    if view_pixels <= 0 or pixels <= view_pixels:
        return 1.0
    return (view_pixels / pixels) ** 0.5


def voxel_dedup(points: Tensor, voxels_per_side: int) -> Tensor:
    """One point per occupied voxel (the mean of the points in it)."""
    low, high = points.min(0).values, points.max(0).values
    voxel = float((high - low).max()) / voxels_per_side or 1.0
    keys = torch.floor((points - low) / voxel).long()
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    count = torch.bincount(inverse).float()[:, None]
    return torch.zeros(len(count), 3).index_add_(0, inverse, points) / count
