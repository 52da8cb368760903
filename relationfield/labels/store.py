"""The label store as compact CPU tensors for training (:class:`LabelStore`).

Embeddings stay once per mask and once per relation (float16); segment maps stay at their stored
dtype (uint8, or int16 for frames with more than 255 masks). A per-pixel feature is looked up as
``mask_embeddings[mask_offsets[f] + segments[f][y, x] - 1]`` where the segment id is non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relationfield.errors import UserError
from relationfield.labels.format import mask_boxes, normalize_frame_name
from relationfield.labels.frames import FrameArrays, read_frame, read_predicates
from relationfield.labels.manifest import check_fresh, read_manifest
from relationfield.labels.selection import segment_maps, select_frames

IGNORED_RELATION = -2
"""What :meth:`LabelStore.relation_lookup` returns for a pair that is taught neither a relation nor "none"."""


@dataclass(eq=False)
class LabelStore:
    """A capture's labels, selected and ordered to match a dataset's frames.

    Frame ``f`` corresponds to ``frame_names[f]``. Mask ids are global across frames: local mask
    ``k`` (1-based, as in ``segments``) of frame ``f`` is global mask ``mask_offsets[f] + k - 1``.
    Frames the store has no labels for are empty (all-zero segments, no masks, no relations) and
    have ``labelled[f] == False``.
    """

    labels_dir: Path
    manifest: dict[str, Any]
    semantic_encoder: str
    semantic_dim: int
    relation_encoder: str
    relation_dim: int
    frame_names: list[str]
    labelled: torch.Tensor  # bool [F]
    segments: list[torch.Tensor]  # uint8 / int16 [H, W] per frame
    mask_offsets: torch.Tensor  # int64 [F + 1]
    mask_embeddings: torch.Tensor  # float16 [M, Ds]
    mask_labels: list[str]  # [M]
    mask_boxes: torch.Tensor  # int16 [M, 4] (y0, x0, y1, x1), inclusive; -1 for an empty mask
    mask_areas: torch.Tensor  # int32 [M]
    relation_frame: torch.Tensor  # int64 [R]
    relation_subject: torch.Tensor  # int64 [R], global mask ids
    relation_object: torch.Tensor  # int64 [R], global mask ids
    relation_predicates: torch.Tensor  # int64 [R, K], indices into predicates, padded with -1
    relation_embeddings: torch.Tensor  # float16 [R, Dr]
    predicates: list[str]  # [P], sorted
    predicate_embeddings: torch.Tensor  # float16 [P, Dr]
    none_embedding: torch.Tensor  # float16 [Dr]
    _pair_keys: torch.Tensor = field(repr=False)  # int64 [R], sorted subject * M + object
    _pair_relations: torch.Tensor = field(repr=False)  # int64 [R], relation index of each key
    _ignored_keys: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long), repr=False)
    """int64, sorted subject * M + object keys of pairs taught neither a relation nor "none"."""

    @property
    def num_frames(self) -> int:
        """Number of frames (labelled or not)."""
        return len(self.frame_names)

    @property
    def num_masks(self) -> int:
        """Number of masks over all frames."""
        return int(self.mask_offsets[-1])

    @property
    def num_relations(self) -> int:
        """Number of labelled relations over all frames."""
        return int(self.relation_frame.shape[0])

    @property
    def mask_frame(self) -> torch.Tensor:
        """int64 ``[M]``: the frame of each global mask."""
        counts = self.mask_offsets[1:] - self.mask_offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.num_frames), counts)

    @classmethod
    def open(
        cls,
        labels_dir: Path,
        data_dir: Path | None = None,
        frame_names: Sequence[str] | None = None,
    ) -> LabelStore:
        """Load a label store.

        Args:
            labels_dir: the store's directory (``CAPTURE/relationfield`` by default).
            data_dir: the capture. When given, the images the store covers are hashed and compared
                with the manifest, so labels of a changed capture are not used silently.
            frame_names: the dataset's images (relative to the capture, as in ``transforms.json``;
                absolute paths inside ``data_dir`` are accepted too). Frame ``f`` of the store is
                ``frame_names[f]``; images without labels become empty frames. Default: the
                manifest's frames in manifest order.

        Raises:
            UserError: the store, its manifest or a frame file is missing or unreadable, or was
                written in another format version.
            StaleLabelsError: the capture's images differ from the labelled ones, or none of
                ``frame_names`` has labels.
        """
        labels_dir = Path(labels_dir)
        data_dir = Path(data_dir) if data_dir is not None else None
        manifest = read_manifest(labels_dir)
        stored_names: list[str] = [normalize_frame_name(name) for name in manifest["frames"]["names"]]
        if data_dir is not None:
            check_fresh(labels_dir, data_dir, manifest, stored_names)
        names = select_frames(labels_dir, stored_names, frame_names, data_dir)
        semantic_dim = int(manifest["semantic"]["dim"])
        relation_dim = int(manifest["relation"]["dim"])
        predicates = read_predicates(labels_dir, relation_dim)
        stored = set(stored_names)
        frames = [
            read_frame(labels_dir, name, semantic_dim, relation_dim, len(predicates[0])) if name in stored else None
            for name in names
        ]
        return cls._assemble(labels_dir, manifest, names, frames, data_dir, predicates)

    @classmethod
    def _assemble(
        cls,
        labels_dir: Path,
        manifest: dict[str, Any],
        names: list[str],
        frames: list[FrameArrays | None],
        data_dir: Path | None,
        predicates: tuple[list[str], np.ndarray, np.ndarray],
    ) -> LabelStore:
        """Concatenate per-frame arrays into global tensors."""
        semantic_dim = int(manifest["semantic"]["dim"])
        relation_dim = int(manifest["relation"]["dim"])
        masks = _Masks.gather(frames, semantic_dim)
        relations = _Relations.gather(frames, masks.offsets, relation_dim)
        pair_keys, pair_relations = _pair_index(labels_dir, relations, int(masks.offsets[-1]))
        texts, predicate_embeddings, none_embedding = predicates
        return cls(
            labels_dir=labels_dir,
            manifest=manifest,
            semantic_encoder=str(manifest["semantic"]["encoder"]),
            semantic_dim=semantic_dim,
            relation_encoder=str(manifest["relation"]["encoder"]),
            relation_dim=relation_dim,
            frame_names=list(names),
            labelled=torch.tensor([frame is not None for frame in frames], dtype=torch.bool),
            segments=segment_maps(names, frames, data_dir),
            mask_offsets=masks.offsets,
            mask_embeddings=masks.embeddings,
            mask_labels=masks.labels,
            mask_boxes=masks.boxes,
            mask_areas=masks.areas,
            relation_frame=relations.frame,
            relation_subject=relations.subject,
            relation_object=relations.object,
            relation_predicates=relations.predicates,
            relation_embeddings=relations.embeddings,
            predicates=texts,
            predicate_embeddings=torch.from_numpy(predicate_embeddings),
            none_embedding=torch.from_numpy(none_embedding),
            _pair_keys=pair_keys,
            _pair_relations=pair_relations,
        )

    def with_relations(
        self,
        frame: torch.Tensor,
        subject: torch.Tensor,
        obj: torch.Tensor,
        predicates: torch.Tensor,
        source: torch.Tensor,
        ignored: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> LabelStore:
        """A copy with relations added (each with the text embedding of stated relation ``source``) and
        ``ignored`` (subject, object) pairs that :meth:`relation_lookup` reports as ``IGNORED_RELATION``.

        ``frame``, ``subject``, ``obj`` and ``source`` are ``[A]``; ``predicates`` is ``[A, K]``, predicate ids
        padded with -1 (``K`` may differ from the store's width).

        Raises:
            UserError: an added pair is already a relation of its frame.
        """
        width = max(self.relation_predicates.shape[1], predicates.shape[1])

        def pad(table: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(table.long(), (0, width - table.shape[1]), value=-1)

        relations = _Relations(
            frame=torch.cat([self.relation_frame, frame.long()]),
            subject=torch.cat([self.relation_subject, subject.long()]),
            object=torch.cat([self.relation_object, obj.long()]),
            predicates=torch.cat([pad(self.relation_predicates), pad(predicates)]),
            embeddings=torch.cat([self.relation_embeddings, self.relation_embeddings[source.long()]]),
        )
        pair_keys, pair_relations = _pair_index(self.labels_dir, relations, self.num_masks)
        ignored_keys = self._ignored_keys
        if ignored is not None:
            keys = ignored[0].long() * max(self.num_masks, 1) + ignored[1].long()
            ignored_keys = torch.unique(torch.cat([ignored_keys, keys]))
        return replace(
            self,
            relation_frame=relations.frame,
            relation_subject=relations.subject,
            relation_object=relations.object,
            relation_predicates=relations.predicates,
            relation_embeddings=relations.embeddings,
            _pair_keys=pair_keys,
            _pair_relations=pair_relations,
            _ignored_keys=ignored_keys,
        )

    def relation_lookup(self, subject_global: torch.Tensor, object_global: torch.Tensor) -> torch.Tensor:
        """Relation index of each (subject, object) pair of global mask ids, -1 if unlabelled ("none"), or
        ``IGNORED_RELATION`` for a pair to teach nothing (see :meth:`with_relations`).

        Global mask ids belong to one frame, so pairs of masks from different frames never match.
        Ids outside ``0..M-1`` (e.g. -1 for "no mask") give -1. The inputs broadcast against each
        other; the result has their broadcast shape and lives on their device.
        """
        subject_global, object_global = torch.broadcast_tensors(
            torch.as_tensor(subject_global), torch.as_tensor(object_global)
        )
        device = subject_global.device
        subject_global = subject_global.long()
        object_global = object_global.long().to(device)
        num_masks = max(self.num_masks, 1)
        valid = (subject_global >= 0) & (subject_global < self.num_masks)
        valid &= (object_global >= 0) & (object_global < self.num_masks)
        keys = subject_global * num_masks + object_global
        result = torch.full_like(keys, -1)
        if self._ignored_keys.numel():
            result = torch.where(valid & _contains(self._ignored_keys.to(device), keys), IGNORED_RELATION, result)
        if self._pair_keys.numel() == 0:
            return result
        sorted_keys = self._pair_keys.to(device)
        positions = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
        found = valid & (sorted_keys[positions] == keys)
        return torch.where(found, self._pair_relations.to(device)[positions], result)

    def nbytes(self) -> int:
        """Bytes held by all the store's tensors (shared storages counted once)."""
        tensors: list[torch.Tensor] = list(self.segments)
        tensors += [value for value in vars(self).values() if isinstance(value, torch.Tensor)]
        seen: set[tuple[str, int]] = set()
        total = 0
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr())
            if key in seen:
                continue
            seen.add(key)
            total += storage.nbytes()
        return total

    def __repr__(self) -> str:
        return (
            f"LabelStore({self.labels_dir}, frames={self.num_frames} "
            f"({int(self.labelled.sum())} labelled), masks={self.num_masks}, "
            f"relations={self.num_relations}, predicates={len(self.predicates)}, "
            f"semantic={self.semantic_encoder}:{self.semantic_dim}, "
            f"relation={self.relation_encoder}:{self.relation_dim})"
        )


@dataclass
class _Masks:
    """The masks of all frames, concatenated (see the fields of :class:`LabelStore`)."""

    offsets: torch.Tensor
    embeddings: torch.Tensor
    labels: list[str]
    boxes: torch.Tensor
    areas: torch.Tensor

    @classmethod
    def gather(cls, frames: list[FrameArrays | None], semantic_dim: int) -> _Masks:
        """Concatenate the masks of ``frames`` (unlabelled frames have none)."""
        counts = [0 if frame is None else frame.mask_embeddings.shape[0] for frame in frames]
        offsets = torch.zeros(len(frames) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.long), dim=0)
        present = [frame for frame in frames if frame is not None]
        boxes_and_areas = [_boxes_and_areas(frame.segments, frame.mask_embeddings.shape[0]) for frame in present]
        return cls(
            offsets=offsets,
            embeddings=torch.from_numpy(
                _concat([frame.mask_embeddings for frame in present], (0, semantic_dim), np.float16)
            ),
            labels=[label for frame in present for label in frame.mask_labels],
            boxes=torch.from_numpy(_concat([boxes for boxes, _ in boxes_and_areas], (0, 4), np.int16)),
            areas=torch.from_numpy(_concat([areas for _, areas in boxes_and_areas], (0,), np.int32)),
        )


@dataclass
class _Relations:
    """The relations of all frames, concatenated, with global mask ids (see :class:`LabelStore`)."""

    frame: torch.Tensor
    subject: torch.Tensor
    object: torch.Tensor
    predicates: torch.Tensor
    embeddings: torch.Tensor

    @classmethod
    def gather(cls, frames: list[FrameArrays | None], mask_offsets: torch.Tensor, relation_dim: int) -> _Relations:
        """Concatenate the relations of ``frames``; ``mask_offsets`` turn local mask ids into global ones."""
        indexed = [(index, frame) for index, frame in enumerate(frames) if frame is not None]
        pairs = _concat(
            [frame.relations.astype(np.int64) + (int(mask_offsets[index]) - 1) for index, frame in indexed],
            (0, 2),
            np.int64,
        )
        width = max(max((frame.relation_predicates.shape[1] for _, frame in indexed), default=1), 1)
        padded = [
            np.pad(p.astype(np.int64), ((0, 0), (0, width - p.shape[1])), constant_values=-1)
            for p in (frame.relation_predicates for _, frame in indexed)
        ]
        frame_of = [np.full(frame.relations.shape[0], index, dtype=np.int64) for index, frame in indexed]
        return cls(
            frame=torch.from_numpy(_concat(frame_of, (0,), np.int64)),
            subject=torch.from_numpy(np.ascontiguousarray(pairs[:, 0])),
            object=torch.from_numpy(np.ascontiguousarray(pairs[:, 1])),
            predicates=torch.from_numpy(_concat(padded, (0, width), np.int64)),
            embeddings=torch.from_numpy(
                _concat([frame.relation_embeddings for _, frame in indexed], (0, relation_dim), np.float16)
            ),
        )


def _contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Whether each of ``keys`` is in the non-empty sorted tensor ``sorted_keys``."""
    positions = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[positions] == keys


def _pair_index(labels_dir: Path, relations: _Relations, num_masks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sorted subject * M + object keys, relation index of each key)`` for :meth:`LabelStore.relation_lookup`.

    Raises:
        UserError: a frame lists a (subject, object) pair twice.
    """
    keys = relations.subject * max(num_masks, 1) + relations.object
    sorted_keys, order = torch.sort(keys)
    if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise UserError(f"The label store {labels_dir} lists a (subject, object) pair twice in a frame.")
    return sorted_keys, order


def _boxes_and_areas(segments: np.ndarray, num_masks: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``(y0, x0, y1, x1)`` boxes (int16, -1 for empty masks) and pixel counts of masks ``1..n``."""
    areas = np.bincount(segments.astype(np.int64).reshape(-1), minlength=num_masks + 1)[1 : num_masks + 1]
    return mask_boxes(segments, num_masks).astype(np.int16), areas.astype(np.int32)


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Concatenate along axis 0 into a contiguous array of ``dtype`` (``empty_shape`` if no parts)."""
    if not parts:
        return np.zeros(empty_shape, dtype=dtype)
    return np.ascontiguousarray(np.concatenate(parts, axis=0).astype(dtype, copy=False))
