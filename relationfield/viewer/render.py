"""Tensor helpers behind the viewer's outputs and picks: colour maps, relevancy at surface points, ray picks.

None of them needs a viser server; the panel (:mod:`relationfield.viewer.panel`) calls them. The relevancy
images themselves (colour map, compositing, relevancy at surface points) live in
:mod:`relationfield.relevancy_image`, shared with ``relationfield render``; they are re-exported here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor, nn

from relationfield.relevancy_image import (
    MIN_ACCUMULATION,
    composite_relevancy,
    relevancy_colors,
    surface_relevancy,
)

__all__ = [
    "CLICK_PIXEL_AREA",
    "MIN_ACCUMULATION",
    "cluster_at",
    "composite_relevancy",
    "evaluating",
    "instance_colors",
    "relevancy_colors",
    "surface_point",
    "surface_relevancy",
    "viser_scale",
]

CLICK_PIXEL_AREA = 1e-6
"""Pixel area given to a clicked ray (Nerfacto's field does not depend on it)."""


def viser_scale() -> float:
    """Viser scene units per nerfstudio unit (the viewer draws the scene scaled up by this)."""
    # lazy: nerfstudio's viewer module imports every model (splatfacto, ...); the model imports this package
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    return float(VISER_NERFSTUDIO_SCALE_RATIO)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Evaluation mode for the duration (the viewer also runs while training), restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def instance_colors(features: Tensor, seed: int = 0) -> Tensor:
    """[..., D] instance features -> [..., 3] colours by a fixed random orthonormal projection.

    The projection depends only on D and ``seed``, so an object keeps its colour across views and frames
    (nerfstudio's own PCA colouring of many-channel outputs changes with every render).
    """
    dim = features.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 3, generator=generator))
    projected = F.normalize(features.float(), dim=-1) @ basis.to(features.device) * math.sqrt(dim / 3.0)
    return (0.5 + 0.5 * projected.clamp(-1, 1)).float()


def surface_point(model: nn.Module, origin: Tensor, direction: Tensor) -> Tensor | None:
    """The expected-depth point ([3], nerfstudio frame) of one ray, or None when the ray hits no surface."""
    device = model.device  # type: ignore[attr-defined]
    origins = origin.to(device=device, dtype=torch.float32).reshape(1, 3)
    directions = F.normalize(direction.to(device=device, dtype=torch.float32).reshape(1, 3), dim=-1)
    bundle = RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((1, 1), CLICK_PIXEL_AREA, device=device),
        camera_indices=torch.zeros((1, 1), dtype=torch.long, device=device),
    )
    with evaluating(model), model.rendering(features=False):  # type: ignore[attr-defined,operator]
        outputs = model(bundle)
    if float(outputs["accumulation"].reshape(-1)[0]) < MIN_ACCUMULATION:
        return None
    return (origins + directions * outputs["expected_depth"].reshape(1, 1))[0]


def cluster_at(points: Tensor, labels: np.ndarray, point: Tensor, voxels_per_side: int) -> Tensor | None:
    """Points of the instance cluster nearest to ``point``, or None when it is in none.

    ``point`` is in no cluster when its nearest point is noise (label -1) or further than three voxels of the
    extraction's grid (``voxels_per_side`` voxels along the points' longest side).
    """
    if len(points) == 0:
        return None
    distances = (points - point.cpu()).norm(dim=-1)
    nearest = int(distances.argmin())
    extent = float((points.max(0).values - points.min(0).values).max())
    tolerance = 3.0 * extent / voxels_per_side
    label = int(labels[nearest])
    if label < 0 or float(distances[nearest]) > tolerance:
        return None
    return points[torch.from_numpy(labels == label)]
