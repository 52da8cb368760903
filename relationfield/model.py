"""The RelationField model: Nerfacto plus semantic, instance and pairwise-relation heads.

Geometry and colour are Nerfacto's. The three heads are evaluated at the ``feature_samples``
highest-weight samples of each ray, with positions and weights detached, so feature losses never
deform the density field. At training time each ray's relation query z is the expected-depth point
of its partner ray (``ray_bundle.metadata["partner"]``, set by the data manager); at query time z is
:attr:`RelationFieldModel.relation_query` (a point in nerfstudio's normalised world frame).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import OrientedBox, SceneBox
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch import Tensor
from torch.nn import Parameter

from relationfield.compat import offline_safe_lpips
from relationfield.contraction import speed_up_contractions
from relationfield.hash_grid import speed_up_hash_grids
from relationfield.heads import FeatureHead, GridSpec, RelationHead, topk_samples
from relationfield.labels.spec import LABEL_SPEC_KEY, LabelSpec
from relationfield.losses import cosine_loss, instance_contrastive_loss, relation_loss
from relationfield.sampler import PAIR_OBJECTS


class CameraOutputsHook(Protocol):
    """Adds outputs to the model's camera renders (the viewer's query panel is one)."""

    def add_outputs(self, bundle: RayBundle, outputs: dict[str, Tensor]) -> dict[str, Tensor]: ...


@dataclass
class RelationFieldModelConfig(NerfactoModelConfig):
    """RelationField model: Nerfacto with semantic, instance and relation heads."""

    _target: type = field(default_factory=lambda: RelationFieldModel)
    semantic_grid: GridSpec = field(default_factory=GridSpec)
    """Hash grid and MLP of the semantic head."""
    instance_grid: GridSpec = field(default_factory=lambda: GridSpec(num_levels=12, hidden_dim=64))
    """Hash grid and MLP of the instance head."""
    relation_grid: GridSpec = field(default_factory=GridSpec)
    """Hash grid and MLP of the relation head g(x, z)."""
    relation_offset_frequencies: int = 0
    """Octaves of sines and cosines of the offset z - x fed to the relation head (0: the raw offset only, as in
    runs trained before they existed; the presets use 6)."""
    instance_dim: int = 16
    """Size of the instance features (clustered with HDBSCAN)."""
    feature_samples: int = 8
    """Heads are evaluated at this many highest-weight samples of each ray."""
    semantic_loss_mult: float = 1.0
    """Weight of the semantic cosine loss."""
    instance_loss_mult: float = 0.1
    """Weight of the instance contrastive loss."""
    instance_margin: float = 1.0
    """Distance that features of different masks are pushed apart to."""
    relation_loss_mult: float = 1.0
    """Weight of the relation loss (cosine + contrastive)."""
    relation_none_weight: float = 0.2
    """Weight of uniform pixel pairs with no labelled relation ("none") relative to labelled ones."""
    relation_object_none_weight: float = 1.0
    """Weight of "none" on object pairs (two masks of an image drawn uniformly; see datamanager.object-pair-fraction):
    the unrelated objects a subject must tell from its reference."""
    relation_contrastive_mult: float = 0.5
    """Weight of the multi-positive contrastive term against the capture's other relation texts."""
    relation_temperature: float = 0.1
    """Softmax temperature of the contrastive term."""
    depth_loss_mult: float = 0.05
    """Weight of the L1 depth loss, applied when the batch carries depth (datamanager.depth_supervision)."""


class RelationFieldModel(NerfactoModel):
    """Nerfacto with RelationField's feature heads."""

    config: RelationFieldModelConfig

    def populate_modules(self) -> None:
        with offline_safe_lpips():  # only this model's LPIPS: other methods keep torchmetrics' own
            super().populate_modules()
        spec = self.kwargs.get("metadata", {}).get(LABEL_SPEC_KEY)
        if not isinstance(spec, LabelSpec):
            raise ValueError(
                "RelationFieldModel needs the label store's LabelSpec in metadata['relationfield']; "
                "train it with the relationfield data manager (ns-train relationfield / relationfield-lite)."
            )
        self.label_spec = spec
        implementation = self.config.implementation
        self.semantic_head = FeatureHead(spec.semantic_dim, self.config.semantic_grid, implementation)
        self.instance_head = FeatureHead(self.config.instance_dim, self.config.instance_grid, implementation)
        self.relation_head = RelationHead(
            spec.relation_dim, self.config.relation_grid, implementation, self.config.relation_offset_frequencies
        )
        speed_up_hash_grids(self)  # this model's torch hash grids only (nerfacto's field, proposals, heads)
        speed_up_contractions(self)  # and its scene contraction (shared by the field and the proposals)
        self.relation_query: Tensor | None = None
        """Query position z (normalised world frame, [3]) for rendering relation features at inference."""
        self.render_features = True
        """Render semantic and instance features outside training (switch off to save memory)."""
        self.viewer_controls: CameraOutputsHook | None = None
        """Set by the pipeline (the viewer's query panel); anything with ``add_outputs(bundle, outputs)``.
        It must hold no parameters or buffers, so checkpoints stay the same with and without it."""

    @contextmanager
    def rendering(self, features: bool, relation_query: Tensor | None = None) -> Iterator[None]:
        """Render with these feature switches, restoring the previous ones afterwards.

        Args:
            features: render semantic and instance features outside training.
            relation_query: query position z (normalised world frame, [3]) for relation features, or None.
        """
        previous = (self.render_features, self.relation_query)
        self.render_features = features
        self.relation_query = None if relation_query is None else relation_query.to(self.device).reshape(3)
        try:
            yield
        finally:
            self.render_features, self.relation_query = previous

    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> dict[str, Tensor]:
        """nerfstudio's camera render (the viewer's and eval's), plus :attr:`viewer_controls`' outputs when set."""
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True, obb_box=obb_box)
        outputs = self.get_outputs_for_camera_ray_bundle(bundle)
        if self.viewer_controls is None:
            return outputs
        return self.viewer_controls.add_outputs(bundle, outputs)

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        groups = super().get_param_groups()
        groups["relationfield_heads"] = (
            list(self.semantic_head.parameters())
            + list(self.instance_head.parameters())
            + list(self.relation_head.parameters())
        )
        return groups

    def normalize_positions(self, positions: Tensor) -> Tensor:
        """World positions -> the [0, 1] coordinates the hash grids take (as NerfactoField does)."""
        distortion = self.field.spatial_distortion
        if distortion is not None:
            return (distortion(positions) + 2.0) / 4.0
        return SceneBox.get_normalized_positions(positions, self.field.aabb)

    def _render_geometry(self, ray_bundle: RayBundle) -> tuple[dict[str, Tensor], Tensor, Tensor, list, list]:
        """Nerfacto's forward pass; also returns sample positions and weights for the heads."""
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field.forward(ray_samples, compute_normals=self.config.predict_normals)
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)
        outputs = {
            "rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights=weights),
            "expected_depth": self.renderer_expected_depth(weights=weights, ray_samples=ray_samples),
        }
        with torch.no_grad():
            outputs["depth"] = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        positions = ray_samples.frustums.get_positions()
        return outputs, positions, weights, weights_list, ray_samples_list

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:  # type: ignore[override]
        outputs, positions, weights, weights_list, ray_samples_list = self._render_geometry(ray_bundle)
        if self.training:
            outputs["weights_list"] = weights_list  # type: ignore[assignment]
            outputs["ray_samples_list"] = ray_samples_list  # type: ignore[assignment]
            if ray_bundle.metadata and "directions_norm" in ray_bundle.metadata:
                outputs["directions_norm"] = ray_bundle.metadata["directions_norm"]
        partner = (ray_bundle.metadata or {}).get("partner")
        want_relation = partner is not None or self.relation_query is not None
        if not (self.training or self.render_features or want_relation):
            return outputs
        top_positions, top_weights = topk_samples(
            self.normalize_positions(positions), weights, self.config.feature_samples
        )
        if self.training or self.render_features:
            outputs["semantic"] = self.semantic_head.composite(top_positions, top_weights)
            outputs["instance"] = self.instance_head.composite(top_positions, top_weights)
        if want_relation:
            if partner is not None:
                points = (ray_bundle.origins + ray_bundle.directions * outputs["expected_depth"]).detach()
                query = self.normalize_positions(points[partner.reshape(-1).long()])[:, None, :]
            else:
                assert self.relation_query is not None
                query = self.normalize_positions(self.relation_query.to(positions).reshape(1, 1, 3))
            outputs["relation"] = self.relation_head.composite(top_positions, query, top_weights)
        return outputs

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        if "semantic_target" in batch and "semantic" in outputs:
            valid = batch["mask_id"].to(self.device) >= 0
            if valid.any():
                cos = torch.nn.functional.cosine_similarity(
                    outputs["semantic"][valid], batch["semantic_target"].to(self.device)[valid], dim=-1
                )
                metrics["semantic_cosine"] = cos.mean().detach()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        if not self.training or "mask_id" not in batch:
            return losses
        device = self.device
        mask = batch["mask_id"].to(device)
        valid = mask >= 0
        losses["semantic_loss"] = self.config.semantic_loss_mult * cosine_loss(
            outputs["semantic"], batch["semantic_target"].to(device), valid.float()
        )
        losses["instance_loss"] = self.config.instance_loss_mult * instance_contrastive_loss(
            outputs["instance"], mask, batch["indices"][:, 0].to(device), self.config.instance_margin
        )
        if "relation" in outputs:
            none_weight = torch.full_like(mask, self.config.relation_none_weight, dtype=torch.float32)
            if "pair_source" in batch:
                objects = batch["pair_source"].to(device) == PAIR_OBJECTS
                none_weight = torch.where(objects, self.config.relation_object_none_weight, none_weight)
            losses["relation_loss"] = self.config.relation_loss_mult * relation_loss(
                outputs["relation"],
                batch["relation_target"].to(device),
                batch["relation_positives"].to(device),
                batch["relation_table"].to(device),
                batch["relation_valid"].to(device),
                none_weight=none_weight,
                contrastive_weight=self.config.relation_contrastive_mult,
                temperature=self.config.relation_temperature,
            )
        if "depth_image" in batch and self.config.depth_loss_mult > 0 and "directions_norm" in outputs:
            depth = batch["depth_image"].to(device).reshape(-1, 1)
            has_depth = depth > 0
            if has_depth.any():
                ray_depth = depth * outputs["directions_norm"]
                error = (outputs["expected_depth"] - ray_depth).abs()
                losses["depth_loss"] = self.config.depth_loss_mult * error[has_depth].mean()
        return losses

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if getattr(self.lpips, "unavailable", False):
            metrics.pop("lpips", None)
        return metrics, images
