"""Relevancy images of a trained run: relevancy at each pixel's surface point, turbo composited over the RGB.

The viewer's outputs (:mod:`relationfield.viewer.panel`) and ``relationfield render`` both use these, so a
frame of a video shows what the viewer shows for the same camera and query. Relevancy is evaluated with the
heads at each pixel's expected-depth point (not from rendered features), 0 where the pixel hit no surface.

What a frame shows is a :class:`RelevancyRequest`: an object text, a relation text to reference points, or
both (a referring query's winner): then the geometric mean of the subject's object relevancy and the
predicate's relation relevancy, the per-pixel counterpart of the referring score ``subject * relation`` on
the scale of a single relevancy (so one threshold serves all three), shown only on the pixels whose surface
point belongs to the winning instance (:class:`InstanceMask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from relationfield.query import FieldQuery

if TYPE_CHECKING:
    from nerfstudio.cameras.rays import RayBundle

__all__ = [
    "MIN_ACCUMULATION",
    "InstanceMask",
    "RelevancyRequest",
    "composite_relevancy",
    "pixel_relevancy",
    "relevancy_colors",
    "surface_relevancy",
]

MIN_ACCUMULATION = 0.5
"""A click (or pixel) whose rendered opacity is lower hit no surface."""
MASK_CHUNK = 4096
"""Pixels per distance computation of :meth:`InstanceMask.contains` (bounds its memory)."""


def relevancy_colors(relevancy: Tensor) -> Tensor:
    """[H, W] relevancy in [0, 1] -> [H, W, 3] turbo colours (matplotlib's 256-entry table, as nerfstudio's)."""
    import matplotlib  # here: only rendering needs it, and it is slow to import

    table = torch.tensor(matplotlib.colormaps["turbo"].colors, dtype=torch.float32, device=relevancy.device)
    index = (torch.nan_to_num(relevancy.float(), 0.0).clamp(0, 1) * 255).long()
    return table[index]


def composite_relevancy(rgb: Tensor, relevancy: Tensor, threshold: float) -> Tensor:
    """The rendered colours with the relevancy colour map over pixels above ``threshold`` (LERF-style)."""
    span = max(1.0 - threshold, 1e-6)
    colors = relevancy_colors((relevancy - threshold) / span)
    above = (relevancy > threshold)[..., None]
    return torch.where(above, colors, rgb.clamp(0, 1).float())


def _surface(bundle: RayBundle, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Each pixel's expected-depth point [N, 3] and whether it hit a surface [N]."""
    origins = bundle.origins.to(outputs["expected_depth"].device)
    directions = bundle.directions.to(origins.device)
    points = (origins + directions * outputs["expected_depth"]).reshape(-1, 3)
    return points, outputs["accumulation"].reshape(-1) >= MIN_ACCUMULATION


@torch.no_grad()
def surface_relevancy(
    query: FieldQuery,
    bundle: RayBundle,
    outputs: dict[str, Tensor],
    object_text: str = "",
    relation_text: str = "",
    reference: Tensor | None = None,
) -> dict[str, Tensor]:
    """Relevancy [H, W] at each pixel's expected-depth point: "object" for an object text, "relation" for a
    relation text to ``reference`` points (0 where the pixel hit no surface; {} when there is nothing to do)."""
    wanted = {"object": bool(object_text), "relation": bool(relation_text and reference is not None)}
    if not any(wanted.values()) or "expected_depth" not in outputs:
        return {}
    points, hit = _surface(bundle, outputs)
    maps: dict[str, Tensor] = {}
    for name, active in wanted.items():
        if not active:
            continue
        values = torch.zeros(len(points), device=points.device)
        if hit.any():
            if name == "object":
                scores = query.object_relevancy(points[hit], object_text)
            else:
                assert reference is not None
                scores = query.relation_relevancy(points[hit], reference, relation_text)
            values[hit] = scores.to(values)
        maps[name] = values.reshape(outputs["expected_depth"].shape[:-1])
    return maps


@dataclass(frozen=True)
class InstanceMask:
    """Which surface points belong to one instance of a segmented scene (nerfstudio frame).

    A point belongs to it when its nearest segmented point is one of the instance's and no further than
    ``tolerance``. Only the segmented points near the instance's box are kept, so a frame costs little.
    """

    points: Tensor
    """[K, 3] segmented points within ``tolerance`` of the instance's box."""
    inside: Tensor
    """[K] whether each of ``points`` is the instance's."""
    tolerance: float

    @classmethod
    def of(cls, instances: dict[int, Tensor], node: int, tolerance: float) -> InstanceMask:
        """The mask of ``node`` among ``instances`` (node id -> points)."""
        low = instances[node].min(0).values - tolerance
        high = instances[node].max(0).values + tolerance
        near, inside = [], []
        for other, points in instances.items():
            keep = ((points >= low) & (points <= high)).all(dim=-1)
            near.append(points[keep])
            inside.append(torch.full((int(keep.sum()),), other == node))
        return cls(torch.cat(near).float(), torch.cat(inside), float(tolerance))

    def contains(self, points: Tensor) -> Tensor:
        """[N] whether each of ``points`` [N, 3] belongs to the instance."""
        own = self.points.to(points.device)
        result = torch.zeros(len(points), dtype=torch.bool, device=points.device)
        if len(own) == 0:
            return result
        for start in range(0, len(points), MASK_CHUNK):
            chunk = points[start : start + MASK_CHUNK].float()
            distance, nearest = torch.cdist(chunk, own).min(dim=-1)
            result[start : start + len(chunk)] = self.inside.to(points.device)[nearest] & (distance <= self.tolerance)
        return result


@dataclass(frozen=True)
class RelevancyRequest:
    """What a relevancy image shows (see the module doc)."""

    object_text: str = ""
    """Object query ("chair"), or a referring query's subject; "" for none."""
    relation_text: str = ""
    """Relation query ("standing on") to ``reference``; "" for none."""
    reference: Tensor | None = None
    """Reference points [M, 3] (nerfstudio frame): the relation query's positions z."""
    instance: InstanceMask | None = None
    """When given, pixels outside this instance get relevancy 0 (a referring query's winner)."""

    def __post_init__(self) -> None:
        if not (self.object_text or self.relation_text):
            raise ValueError("a relevancy request needs an object text, a relation text or both")
        if self.relation_text and self.reference is None:
            raise ValueError("a relation text needs reference points")


@torch.no_grad()
def pixel_relevancy(
    query: FieldQuery, bundle: RayBundle, outputs: dict[str, Tensor], request: RelevancyRequest
) -> Tensor:
    """Relevancy [H, W] in [0, 1] of ``request`` for a rendered camera (``outputs`` of ``bundle``)."""
    maps = surface_relevancy(query, bundle, outputs, request.object_text, request.relation_text, request.reference)
    if len(maps) == 2:
        relevancy = (maps["object"] * maps["relation"]).sqrt()
    else:
        (relevancy,) = maps.values()
    if request.instance is not None:
        points, hit = _surface(bundle, outputs)
        mask = torch.zeros_like(hit)
        if hit.any():
            mask[hit] = request.instance.contains(points[hit])
        relevancy = relevancy * mask.reshape(relevancy.shape).to(relevancy)
    return relevancy
