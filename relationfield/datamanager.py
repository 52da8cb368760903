"""nerfstudio glue: feeds the label store to rays.

The data manager opens the label store next to the capture, checks that it matches the frames, draws
training rays in pairs with :class:`relationfield.sampler.PairSampler`, and adds each ray's targets to
the batch (its mask's semantic embedding, the relation embedding of (mask(ray) -> mask(partner)) or
"none", and the multi-hot predicate positives). Labels stay compact (one embedding per mask and per
relation); targets are gathered per batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from nerfstudio.data.utils.data_utils import get_depth_image_from_path
from nerfstudio.utils.rich_utils import CONSOLE

from relationfield.errors import UserError
from relationfield.labels import LabelStore
from relationfield.labels.identity import FrameGeometry
from relationfield.labels.spec import LABEL_SPEC_KEY, read_label_spec
from relationfield.labels.store import IGNORED_RELATION
from relationfield.losses import relation_targets_onehot
from relationfield.sampler import PairSampler

_DOWNSCALED_IMAGES = re.compile(r"^images_\d+/")


class RelationFieldDataset(InputDataset):
    """nerfstudio's InputDataset, plus the frame's depth map when depth supervision is on."""

    def __init__(self, dataparser_outputs, scale_factor: float = 1.0, load_depth: bool = False) -> None:
        super().__init__(dataparser_outputs, scale_factor)
        depth_files = self.metadata.get("depth_filenames")
        self.load_depth = bool(load_depth and depth_files)
        if load_depth and not depth_files:
            CONSOLE.print("[yellow]Depth supervision requested but the capture has no depth_file_path; it is off.")

    @property
    def has_depth(self) -> bool:
        """Whether the capture gives every frame a depth map (``depth_file_path``)."""
        return bool(self.metadata.get("depth_filenames"))

    def depth_map(self, index: int) -> torch.Tensor:
        """Frame ``index``'s depth along the camera axis ``[H, W, 1]`` in the dataparser's units (0: no depth)."""
        height = int(self._dataparser_outputs.cameras.height[index])
        width = int(self._dataparser_outputs.cameras.width[index])
        scale = self.metadata.get("depth_unit_scale_factor", 1e-3) * self._dataparser_outputs.dataparser_scale
        return get_depth_image_from_path(
            filepath=self.metadata["depth_filenames"][index], height=height, width=width, scale_factor=scale
        )

    def get_metadata(self, data: dict) -> dict:
        return {"depth_image": self.depth_map(data["image_idx"])} if self.load_depth else {}


class PairPixelSampler(PixelSampler):
    """nerfstudio PixelSampler that samples ray pairs with :class:`PairSampler`."""

    def __init__(self, config: PixelSamplerConfig, pair_sampler: PairSampler, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.pair_sampler = pair_sampler

    def sample(self, image_batch: dict) -> dict:
        images = image_batch["image"]
        image_idx = image_batch["image_idx"].cpu()
        sizes: list[tuple[int, int]] = [(int(img.shape[0]), int(img.shape[1])) for img in images]
        pairs = self.pair_sampler.sample(image_idx.tolist(), sizes, self.num_rays_per_batch)
        batch: dict = {}
        for key, value in image_batch.items():
            if key == "image_idx" or value is None:
                continue
            if isinstance(value, torch.Tensor):
                batch[key] = value[pairs.image.to(value.device), pairs.y.to(value.device), pairs.x.to(value.device)]
            elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                batch[key] = torch.stack([value[i][y, x] for i, y, x in zip(pairs.image, pairs.y, pairs.x)])
        batch["indices"] = torch.stack([image_idx[pairs.image], pairs.y, pairs.x], dim=-1)
        batch["partner"] = pairs.partner
        batch["mask_id"] = pairs.mask
        batch["relation_id"] = pairs.relation
        batch["from_relation"] = pairs.from_relation
        batch["pair_source"] = pairs.source
        return batch


@dataclass
class RelationFieldDataManagerConfig(VanillaDataManagerConfig):
    """Data manager that feeds RelationField's label store to ray pairs."""

    _target: type = field(default_factory=lambda: RelationFieldDataManager)
    labels_dir: Path | None = None
    """Label store directory (default: DATA/relationfield)."""
    images_per_batch: int = 8
    """Images one training batch is spread over (pairs are drawn within an image)."""
    relation_pair_fraction: float = 0.5
    """Share of ray pairs drawn from labelled relations."""
    object_pair_fraction: float = 0.25
    """Share of ray pairs joining two different masks of an image, each mask drawn uniformly (mostly unrelated
    objects: they teach "none"). The rest are uniform pixel pairs."""
    depth_supervision: bool = False
    """Load frames' depth_file_path maps and supervise expected depth with them."""
    sampler_seed: int = 0
    """Seed of the pair sampler (under DDP each process adds its global rank, so ranks draw different pairs)."""
    relation_consensus: bool = False
    """Pool each object pair's relations over the training frames when the capture has depth maps: a pair stated
    in some frames is taught in the frames that show it without stating it, instead of "none" (labels/consensus.py;
    off by default: on realistic labels it raises Predicate R@k and lowers Reference R@k, see the README)."""
    consensus_min_frames: int = 2
    """Frames that must state a pair before the other frames are taught it (fewer: those frames teach nothing)."""
    consensus_min_iou: float = 0.2
    """Least voxel intersection over union of two frames' masks of one object (labels/identity.py)."""
    consensus_predicate_share: float = 0.25
    """Least share of a pair's stating frames that must state a predicate for the other frames to be taught it."""
    consensus_ignore_rare: bool = True
    """A pair stated in fewer than consensus-min-frames frames teaches nothing, not "none", in the frames that show
    it without stating it."""


def capture_dir(data: Path) -> Path:
    """The capture directory of a dataparser ``data`` path (a folder or its transforms.json)."""
    data = Path(data)
    return data if data.is_dir() else data.parent


def frame_names(image_filenames: Sequence[Path], root: Path) -> list[str]:
    """Image paths relative to the capture, with nerfstudio's downscaled folders mapped back to images/."""
    names = []
    for path in image_filenames:
        try:
            name = Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = Path(path).as_posix()
        names.append(_DOWNSCALED_IMAGES.sub("images/", name))
    return names


class RelationFieldDataManager(VanillaDataManager[RelationFieldDataset]):
    """VanillaDataManager that trains on ray pairs and adds label targets to each batch."""

    config: RelationFieldDataManagerConfig

    def __init__(
        self,
        config: RelationFieldDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ) -> None:
        self.labels = None
        self.consensus = None  # what pool_relations changed (relation_consensus only)
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        self.train_dataset.metadata[LABEL_SPEC_KEY] = read_label_spec(self.labels_dir)

    @property
    def labels_dir(self) -> Path:
        config = self.config
        root = capture_dir(Path(config.data if config.data is not None else config.dataparser.data))
        return Path(config.labels_dir) if config.labels_dir is not None else root / "relationfield"

    def create_train_dataset(self) -> RelationFieldDataset:
        return RelationFieldDataset(
            self.train_dataparser_outputs, self.config.camera_res_scale_factor, self.config.depth_supervision
        )

    def create_eval_dataset(self) -> RelationFieldDataset:
        return RelationFieldDataset(
            self.dataparser.get_dataparser_outputs(split=self.test_split),
            self.config.camera_res_scale_factor,
            self.config.depth_supervision,
        )

    def open_labels(self) -> LabelStore:
        """Open the label store for the train frames followed by the eval frames (cached)."""
        if self.labels is None:
            root = capture_dir(Path(self.config.dataparser.data))
            names = frame_names(self.train_dataset.image_filenames, root)
            names += frame_names(self.eval_dataset.image_filenames, root)
            self.labels = LabelStore.open(self.labels_dir, data_dir=root, frame_names=names)
            if not bool(self.labels.labelled[: len(self.train_dataset)].any()):
                raise UserError(f"The label store at {self.labels_dir} labels none of the training frames.")
        return self.labels

    def pool_relations(self) -> None:
        """Pool the label store's relations over the training frames (``relation_consensus``), with depth maps."""
        if not (self.config.relation_consensus and self.train_dataset.has_depth):
            return
        from relationfield.labels.consensus import pool_relations

        labels = self.open_labels()
        self.labels, self.consensus = pool_relations(
            labels,
            self._frame_geometry,
            self.config.consensus_min_frames,
            self.config.consensus_min_iou,
            self.config.consensus_predicate_share,
            self.config.consensus_ignore_rare,
        )
        CONSOLE.print(
            f"Relation consensus: {self.consensus.num_added} relations taught in frames that do not state them, "
            f'{len(self.consensus.ignored_subject)} pairs stated too rarely left out of "none".'
        )

    def _frame_geometry(self, frame: int) -> FrameGeometry | None:
        """Depth and camera of label-store frame ``frame`` (training frames only)."""
        if frame >= len(self.train_dataset):
            return None
        cameras = self.train_dataparser_outputs.cameras
        intrinsics = tuple(float(v[frame]) for v in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
        return FrameGeometry(
            depth=self.train_dataset.depth_map(frame)[..., 0].numpy(),
            intrinsics=intrinsics,  # type: ignore[arg-type]
            camera_to_world=cameras.camera_to_worlds[frame].numpy(),
        )

    def setup_train(self) -> None:
        self.open_labels()
        self.pool_relations()
        labels = self.labels
        assert labels is not None
        super().setup_train()
        pair_sampler = PairSampler(
            labels,
            images_per_batch=self.config.images_per_batch,
            relation_pair_fraction=self.config.relation_pair_fraction,
            seed=self.config.sampler_seed + _global_rank(),
            object_pair_fraction=self.config.object_pair_fraction,
        )
        self.train_pixel_sampler = PairPixelSampler(
            self.config.pixel_sampler, pair_sampler, num_rays_per_batch=self.config.train_num_rays_per_batch
        )
        none = labels.none_embedding.float()[None]
        self._relation_table = torch.cat([labels.predicate_embeddings.float(), none], dim=0)

    def add_targets(self, batch: dict) -> dict:
        """Gather each ray's label targets from the store into the batch."""
        labels = self.labels
        assert labels is not None
        mask = batch["mask_id"]
        partner = batch["partner"]
        relation = batch["relation_id"]
        has_relation = relation >= 0
        batch["semantic_target"] = labels.mask_embeddings[mask.clamp_min(0)].float()
        none = labels.none_embedding.float()[None].expand(len(relation), -1)
        if labels.num_relations:
            batch["relation_target"] = torch.where(
                has_relation[:, None], labels.relation_embeddings[relation.clamp_min(0)].float(), none
            )
            predicates = labels.relation_predicates[relation.clamp_min(0)]
            predicates = torch.where(has_relation[:, None], predicates, torch.full_like(predicates, -1))
        else:  # a capture without relations (Replica): every pair is "none"
            batch["relation_target"] = none.clone()
            predicates = torch.full((len(relation), 1), -1, dtype=torch.long)
        batch["relation_positives"] = relation_targets_onehot(predicates, len(labels.predicates))
        batch["relation_valid"] = (mask >= 0) & (mask[partner] >= 0) & (relation != IGNORED_RELATION)
        batch["relation_table"] = self._relation_table
        return batch

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        ray_bundle, batch = super().next_train(step)
        batch = self.add_targets(batch)
        if ray_bundle.metadata is None:
            ray_bundle.metadata = {}
        ray_bundle.metadata["partner"] = batch["partner"][:, None].to(ray_bundle.origins.device)
        return ray_bundle, batch


def _global_rank() -> int:
    """This process's rank among all DDP processes (0 without DDP); nerfstudio hands the datamanager only the
    rank on this machine."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
