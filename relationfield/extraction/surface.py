"""Surface points of a trained run: training views' depth, from the capture's depth maps or rendered by the
field, back-projected and kept one per voxel."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from relationfield.errors import UserError
from relationfield.extraction.config import ExtractionConfig, Progress
from relationfield.query import FieldQuery

__all__ = ["render_scale", "surface_points", "use_depth_maps", "voxel_dedup"]


@torch.no_grad()
def surface_points(query: FieldQuery, config: ExtractionConfig, progress: Progress) -> Tensor:
    """Deduplicated surface points (nerfstudio frame) of evenly spread training views: back-projected from the
    capture's depth maps or from the field's rendered depth (``config.surface``)."""
    dataset = query.pipeline.datamanager.train_dataset
    cameras = dataset.cameras
    count = len(cameras)
    views = np.unique(np.linspace(0, count - 1, min(config.max_views, count)).round().astype(int))
    from_depth = use_depth_maps(dataset, config.surface)
    points = []
    advance = progress("reading surface points from depth" if from_depth else "rendering surface points", len(views))
    with query.model.rendering(features=False):
        for view in views.tolist():
            camera = cameras[view : view + 1]  # indexing makes a copy, safe to rescale
            if from_depth:
                points.append(_depth_points(camera, dataset.depth_map(view)))
            else:
                points.append(_rendered_points(query, camera, config))
            advance(1)
    if not points or sum(len(p) for p in points) == 0:
        return torch.zeros(0, 3)
    return voxel_dedup(torch.cat(points), config.voxels_per_side)


def use_depth_maps(dataset, surface: str) -> bool:
    """Whether ``surface`` ("auto", "rendered", "depth") means the capture's depth maps for this dataset.

    Raises:
        UserError: ``depth`` for a capture without depth maps.
    """
    has_depth = bool(getattr(dataset, "has_depth", False))
    if surface == "depth" and not has_depth:
        raise UserError("--surface depth needs depth maps, and this run's capture has no depth_file_path")
    if surface == "auto":
        return has_depth and bool(getattr(dataset, "load_depth", False))  # trained to match them
    return surface == "depth"


def _depth_points(camera, depth: Tensor) -> Tensor:
    """The points a depth map sees; depth is along the camera axis, as nerfstudio's depth losses take it."""
    bundle = camera.generate_rays(camera_indices=0)
    distance = depth.to(bundle.origins) * bundle.metadata["directions_norm"]
    keep = depth[..., 0] > 0
    return (bundle.origins + bundle.directions * distance)[keep].cpu()


def _rendered_points(query: FieldQuery, camera, config: ExtractionConfig) -> Tensor:
    """Expected-depth points of one rendered view where the field is opaque."""
    scale = render_scale(int(camera.width) * int(camera.height), config.view_pixels)
    if scale < 1.0:
        camera.rescale_output_resolution(scale)
    bundle = camera.generate_rays(camera_indices=0).to(query.device)
    outputs = query.model.get_outputs_for_camera_ray_bundle(bundle)
    keep = outputs["accumulation"][..., 0] > config.min_accumulation
    return (bundle.origins + bundle.directions * outputs["expected_depth"])[keep].cpu()


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
