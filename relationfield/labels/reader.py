"""Reading a label store into compact CPU tensors for training.

Embeddings stay once per mask and once per relation (float16); segment maps stay at their stored
dtype (uint8, or int16 for frames with more than 255 masks). A per-pixel feature is looked up as
``mask_embeddings[mask_offsets[f] + segments[f][y, x] - 1]`` where the segment id is non-zero.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relationfield.errors import StaleLabelsError, UserError
from relationfield.labels.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAME_KEYS,
    FRAMES_DIR,
    MANIFEST_FILE,
    MAX_MASKS_PER_FRAME,
    PREDICATE_KEYS,
    PREDICATES_FILE,
    combine_hashes,
    file_sha256,
    frame_file_name,
    mask_boxes,
    normalize_frame_name,
    preview_names,
)

_HOW_TO_MAKE = (
    "Create the labels with `relationfield label-gt` (synthetic captures) or the preprocessing "
    "commands (real captures)."
)
_HOW_TO_FIX_STALE = (
    "Re-run `relationfield label-gt` (synthetic captures) or the preprocessing commands (real "
    "captures) to label the capture again."
)


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
        manifest = read_manifest(labels_dir)
        stored_names: list[str] = [normalize_frame_name(name) for name in manifest["frames"]["names"]]
        if data_dir is not None:
            _check_fresh(labels_dir, Path(data_dir), manifest, stored_names)

        if frame_names is None:
            names = list(stored_names)
        else:
            names = [_relative_name(name, data_dir) for name in frame_names]
            stored = set(stored_names)
            if names and stored and not stored.intersection(names):
                raise StaleLabelsError(
                    f"None of the dataset's {len(names)} images has labels in {labels_dir} (it labels "
                    f"{preview_names(stored_names, 3)}; the dataset has {preview_names(names, 3)}). "
                    f"The labels belong to another capture or the images were renamed. {_HOW_TO_FIX_STALE}"
                )

        semantic_dim = int(manifest["semantic"]["dim"])
        relation_dim = int(manifest["relation"]["dim"])
        predicates, predicate_embeddings, none_embedding = _read_predicates(labels_dir, relation_dim)

        stored_set = set(stored_names)
        frames: list[_Frame | None] = []
        for name in names:
            if name in stored_set:
                frames.append(_read_frame(labels_dir, name, semantic_dim, relation_dim, len(predicates)))
            else:
                frames.append(None)
        return cls._assemble(
            labels_dir=labels_dir,
            manifest=manifest,
            names=names,
            frames=frames,
            data_dir=Path(data_dir) if data_dir is not None else None,
            predicates=predicates,
            predicate_embeddings=predicate_embeddings,
            none_embedding=none_embedding,
        )

    @classmethod
    def _assemble(
        cls,
        *,
        labels_dir: Path,
        manifest: dict[str, Any],
        names: list[str],
        frames: list[_Frame | None],
        data_dir: Path | None,
        predicates: list[str],
        predicate_embeddings: np.ndarray,
        none_embedding: np.ndarray,
    ) -> LabelStore:
        """Concatenate per-frame arrays into global tensors."""
        semantic_dim = int(manifest["semantic"]["dim"])
        relation_dim = int(manifest["relation"]["dim"])
        sizes = Counter(frame.segments.shape for frame in frames if frame is not None)
        fallback_size: tuple[int, int] = sizes.most_common(1)[0][0] if sizes else (1, 1)

        segments: list[torch.Tensor] = []
        counts: list[int] = []
        mask_embeddings: list[np.ndarray] = []
        mask_labels: list[str] = []
        boxes: list[np.ndarray] = []
        areas: list[np.ndarray] = []
        relation_frame: list[np.ndarray] = []
        relation_pairs: list[np.ndarray] = []
        relation_predicates: list[np.ndarray] = []
        relation_embeddings: list[np.ndarray] = []
        offset = 0
        for index, (name, frame) in enumerate(zip(names, frames)):
            if frame is None:
                size = _image_size(data_dir, name) or fallback_size
                segments.append(torch.zeros(size, dtype=torch.uint8))
                counts.append(0)
                continue
            segments.append(torch.from_numpy(frame.segments))
            num_masks = frame.mask_embeddings.shape[0]
            counts.append(num_masks)
            mask_embeddings.append(frame.mask_embeddings)
            mask_labels.extend(frame.mask_labels)
            frame_boxes, frame_areas = _boxes_and_areas(frame.segments, num_masks)
            boxes.append(frame_boxes)
            areas.append(frame_areas)
            num_relations = frame.relations.shape[0]
            relation_frame.append(np.full(num_relations, index, dtype=np.int64))
            relation_pairs.append(frame.relations.astype(np.int64) + (offset - 1))
            relation_predicates.append(frame.relation_predicates)
            relation_embeddings.append(frame.relation_embeddings)
            offset += num_masks

        width = max((p.shape[1] for p in relation_predicates), default=1)
        width = max(width, 1)
        padded = [
            np.pad(p.astype(np.int64), ((0, 0), (0, width - p.shape[1])), constant_values=-1)
            for p in relation_predicates
        ]
        pairs = _concat(relation_pairs, (0, 2), np.int64)
        subjects = torch.from_numpy(np.ascontiguousarray(pairs[:, 0]))
        objects = torch.from_numpy(np.ascontiguousarray(pairs[:, 1]))
        num_masks_total = offset
        keys = subjects * max(num_masks_total, 1) + objects
        sorted_keys, order = torch.sort(keys)
        if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
            raise UserError(f"The label store {labels_dir} lists a (subject, object) pair twice in a frame.")

        offsets = torch.zeros(len(names) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.long), dim=0)
        return cls(
            labels_dir=labels_dir,
            manifest=manifest,
            semantic_encoder=str(manifest["semantic"]["encoder"]),
            semantic_dim=semantic_dim,
            relation_encoder=str(manifest["relation"]["encoder"]),
            relation_dim=relation_dim,
            frame_names=list(names),
            labelled=torch.tensor([frame is not None for frame in frames], dtype=torch.bool),
            segments=segments,
            mask_offsets=offsets,
            mask_embeddings=torch.from_numpy(_concat(mask_embeddings, (0, semantic_dim), np.float16)),
            mask_labels=mask_labels,
            mask_boxes=torch.from_numpy(_concat(boxes, (0, 4), np.int16)),
            mask_areas=torch.from_numpy(_concat(areas, (0,), np.int32)),
            relation_frame=torch.from_numpy(_concat(relation_frame, (0,), np.int64)),
            relation_subject=subjects,
            relation_object=objects,
            relation_predicates=torch.from_numpy(_concat(padded, (0, width), np.int64)),
            relation_embeddings=torch.from_numpy(_concat(relation_embeddings, (0, relation_dim), np.float16)),
            predicates=predicates,
            predicate_embeddings=torch.from_numpy(predicate_embeddings),
            none_embedding=torch.from_numpy(none_embedding),
            _pair_keys=sorted_keys,
            _pair_relations=order,
        )

    def relation_lookup(self, subject_global: torch.Tensor, object_global: torch.Tensor) -> torch.Tensor:
        """Relation index of each (subject, object) pair of global mask ids, or -1 if unlabelled.

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
        if self._pair_keys.numel() == 0:
            return result
        sorted_keys = self._pair_keys.to(device)
        positions = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
        found = valid & (sorted_keys[positions] == keys)
        return torch.where(found, self._pair_relations.to(device)[positions], result)

    def pixel_masks(self, frame: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Global mask id at pixels ``(ys, xs)`` of ``frame``, or -1 where no mask covers them."""
        local = self.segments[frame][ys.long(), xs.long()].long()
        return torch.where(local > 0, local + (int(self.mask_offsets[frame]) - 1), torch.full_like(local, -1))

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
class _Frame:
    """The arrays of one frame file."""

    segments: np.ndarray
    mask_embeddings: np.ndarray
    mask_labels: list[str]
    relations: np.ndarray
    relation_predicates: np.ndarray
    relation_embeddings: np.ndarray


def read_manifest(labels_dir: Path) -> dict[str, Any]:
    """Read and validate a label store's ``manifest.json`` (cheap: no frame is read)."""
    if not labels_dir.is_dir():
        raise UserError(f"No label store at {labels_dir} (the directory does not exist). {_HOW_TO_MAKE}")
    path = labels_dir / MANIFEST_FILE
    if not path.is_file():
        raise UserError(
            f"The label store {labels_dir} has no {MANIFEST_FILE}: labelling never finished or was "
            f"interrupted ({path} is written last). {_HOW_TO_MAKE}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"Cannot read the label manifest {path}: {error}. {_HOW_TO_MAKE}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f'{path} is not a relationfield label manifest (no "format": "{FORMAT_NAME}").')
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"The label store {labels_dir} has format version {version!r}; this relationfield reads "
            f"version {FORMAT_VERSION}. Label the capture again with this version. {_HOW_TO_MAKE}"
        )
    try:
        for section in ("semantic", "relation"):
            str(manifest[section]["encoder"])
            if int(manifest[section]["dim"]) <= 0:
                raise ValueError(f"{section}.dim must be positive")
        names = manifest["frames"]["names"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError("frames.names must be a list of strings")
        if len(set(names)) != len(names):
            raise ValueError("frames.names contains duplicates")
        str(manifest["frames"]["hash"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"The label manifest {path} is malformed ({error!r}). {_HOW_TO_MAKE}") from error
    return manifest


def _check_fresh(labels_dir: Path, data_dir: Path, manifest: dict[str, Any], names: list[str]) -> None:
    """Raise :class:`StaleLabelsError` when the capture's images differ from the labelled ones."""
    missing = [name for name in names if not (data_dir / name).is_file()]
    if missing:
        raise StaleLabelsError(
            f"The labels in {labels_dir} do not match the capture {data_dir}: {len(missing)} labelled "
            f"image(s) no longer exist ({preview_names(missing)}). {_HOW_TO_FIX_STALE}"
        )
    hashes = [file_sha256(data_dir / name) for name in names]
    if combine_hashes(names, hashes) == manifest["frames"]["hash"]:
        return
    recorded = manifest["frames"].get("file_hashes")
    if isinstance(recorded, list) and len(recorded) == len(names):
        changed = [name for name, old, new in zip(names, recorded, hashes) if old != new]
        detail = f"{len(changed)} of {len(names)} labelled images changed since labelling ({preview_names(changed)})"
    else:
        detail = f"the contents of its {len(names)} labelled images changed since labelling"
    raise StaleLabelsError(
        f"The labels in {labels_dir} are stale for the capture {data_dir}: {detail}. {_HOW_TO_FIX_STALE}"
    )


def _relative_name(name: str | os.PathLike[str], data_dir: Path | None) -> str:
    """A dataset image name relative to the capture (absolute paths inside ``data_dir`` included)."""
    path = Path(name)
    if path.is_absolute() and data_dir is not None:
        for base in (Path(data_dir), Path(data_dir).resolve()):
            try:
                return normalize_frame_name(path.relative_to(base).as_posix())
            except ValueError:
                continue
        try:
            return normalize_frame_name(path.resolve().relative_to(Path(data_dir).resolve()).as_posix())
        except ValueError:
            pass
    return normalize_frame_name(name)


def _load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` from an ``.npz`` file, with human-readable errors."""
    if not path.is_file():
        raise UserError(f"The label file {path} is missing; the label store is incomplete. {_HOW_TO_MAKE}")
    try:
        with np.load(path, allow_pickle=False) as data:
            absent = [key for key in keys if key not in data.files]
            if absent:
                raise UserError(f"The label file {path} lacks {', '.join(absent)}. {_HOW_TO_MAKE}")
            return {key: data[key] for key in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"Cannot read the label file {path}: {error}. {_HOW_TO_MAKE}") from error


def _read_predicates(labels_dir: Path, relation_dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read ``predicates.npz``: texts, float16 embeddings ``[P, Dr]``, float16 none embedding."""
    path = labels_dir / PREDICATES_FILE
    data = _load_npz(path, PREDICATE_KEYS)
    texts = [str(text) for text in data["texts"].reshape(-1)]
    embeddings = data["embeddings"].astype(np.float16, copy=False)
    none_embedding = data["none_embedding"].astype(np.float16, copy=False)
    if embeddings.shape != (len(texts), relation_dim) or none_embedding.shape != (relation_dim,):
        raise UserError(
            f"{path} holds embeddings of the wrong shape ({embeddings.shape} for {len(texts)} predicates, "
            f"none {none_embedding.shape}; the manifest says dimension {relation_dim})."
        )
    return texts, np.ascontiguousarray(embeddings), np.ascontiguousarray(none_embedding)


def _read_frame(labels_dir: Path, name: str, semantic_dim: int, relation_dim: int, num_predicates: int) -> _Frame:
    """Read and validate the frame file of image ``name``."""
    path = labels_dir / FRAMES_DIR / frame_file_name(name)
    data = _load_npz(path, FRAME_KEYS)
    if str(data["name"]) != name:
        raise UserError(f"The label file {path} belongs to {str(data['name'])!r}, not {name!r}. {_HOW_TO_MAKE}")
    segments = data["segments"]
    embeddings = data["mask_embeddings"]
    num_masks = embeddings.shape[0] if embeddings.ndim == 2 else -1
    relations = data["relations"].reshape(-1, 2)
    predicate_ids = data["relation_predicates"]
    relation_embeddings = data["relation_embeddings"]
    problems = []
    if segments.ndim != 2 or segments.dtype not in (np.uint8, np.uint16):
        problems.append(f"segments must be a uint8/uint16 image, got {segments.dtype} {segments.shape}")
    if num_masks < 0 or num_masks > MAX_MASKS_PER_FRAME or (num_masks and embeddings.shape[1] != semantic_dim):
        problems.append(f"mask_embeddings must be [n, {semantic_dim}], got {embeddings.shape}")
    elif segments.size and int(segments.max()) > num_masks:
        problems.append(f"segments hold ids above the {num_masks} masks")
    if data["mask_labels"].reshape(-1).shape[0] != num_masks:
        problems.append("mask_labels do not match the masks")
    num_relations = relations.shape[0]
    if num_relations and (relations.min() < 1 or relations.max() > num_masks):
        problems.append("relations refer to masks that do not exist")
    if predicate_ids.ndim != 2 or predicate_ids.shape[0] != num_relations:
        problems.append("relation_predicates do not match the relations")
    elif predicate_ids.size and (predicate_ids.max() >= num_predicates or predicate_ids.min() < -1):
        problems.append("relation_predicates refer to predicates that do not exist")
    if relation_embeddings.shape[0] != num_relations or (
        num_relations and relation_embeddings.shape[1] != relation_dim
    ):
        problems.append(f"relation_embeddings must be [{num_relations}, {relation_dim}]")
    if problems:
        raise UserError(f"The label file {path} is malformed: {'; '.join(problems)}. {_HOW_TO_MAKE}")
    if segments.dtype == np.uint16:
        segments = segments.astype(np.int16)  # ids <= 32767 (checked above via num_masks)
    return _Frame(
        segments=np.ascontiguousarray(segments),
        mask_embeddings=embeddings.astype(np.float16, copy=False).reshape(num_masks, semantic_dim),
        mask_labels=[str(label) for label in data["mask_labels"].reshape(-1)],
        relations=relations.astype(np.int64),
        relation_predicates=predicate_ids.astype(np.int64),
        relation_embeddings=relation_embeddings.astype(np.float16, copy=False).reshape(num_relations, relation_dim),
    )


def _boxes_and_areas(segments: np.ndarray, num_masks: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``(y0, x0, y1, x1)`` boxes (int16, -1 for empty masks) and pixel counts of masks ``1..n``."""
    areas = np.bincount(segments.astype(np.int64).reshape(-1), minlength=num_masks + 1)[1 : num_masks + 1]
    return mask_boxes(segments, num_masks).astype(np.int16), areas.astype(np.int32)


def _image_size(data_dir: Path | None, name: str) -> tuple[int, int] | None:
    """``(height, width)`` of an image of the capture (read from its header), or None if unknown."""
    if data_dir is None or not (data_dir / name).is_file():
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(data_dir / name) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError):
        return None
    return height, width


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Concatenate along axis 0 into a contiguous array of ``dtype`` (``empty_shape`` if no parts)."""
    if not parts:
        return np.zeros(empty_shape, dtype=dtype)
    return np.ascontiguousarray(np.concatenate(parts, axis=0).astype(dtype, copy=False))
