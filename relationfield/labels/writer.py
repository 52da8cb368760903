"""Writing a label store (see :mod:`relationfield.labels.format` for the layout).

Typical use by a labelling tool::

    writer = LabelWriter(labels_dir, semantic_encoder=enc.name, semantic_dim=enc.dim,
                         relation_encoder=enc.name, relation_dim=enc.dim, producer="label-gt")
    writer.set_predicates(texts, enc.encode(texts), enc.encode(["none"])[0])
    for name in frames:
        writer.write_frame(name, segments, mask_embeddings, [(1, 2, ["on"])], mask_labels)
    writer.finalize(data_dir, frames)   # writes manifest.json last

Every file is written atomically, and an existing manifest is removed when a writer is created, so
an interrupted run leaves a directory without a manifest (which readers reject) instead of a
manifest that claims frames it does not have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.labels.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAMES_DIR,
    MANIFEST_FILE,
    MAX_MASKS_PER_FRAME,
    PREDICATES_FILE,
    combine_hashes,
    frame_file_hashes,
    frame_file_name,
    normalize_frame_name,
    preview_names,
    save_npz_atomic,
)
from relationfield.vocab import NONE_PREDICATE

#: A relation as given to :meth:`LabelWriter.write_frame`: (subject mask, object mask, predicates),
#: mask ids local to the frame and 1-based.
RelationSpec = tuple[int, int, Sequence[str]]


def _as_float_array(values: Any, what: str) -> np.ndarray:
    """``values`` (numpy array, torch tensor or nested sequence) as a float32 numpy array."""
    if hasattr(values, "detach"):  # a torch tensor; avoids importing torch here
        values = values.detach().to("cpu").float().numpy()
    array = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def _normalize_rows(array: np.ndarray) -> np.ndarray:
    """L2-normalise the rows of ``array`` (rows of zeros stay zero)."""
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def _segment_map(name: str, segments: np.ndarray, num_masks: int) -> np.ndarray:
    """Validate a frame's segment map (ids ``0..num_masks``); uint8 when ``num_masks <= 255``, else uint16."""
    segment_map = np.asarray(segments)
    if segment_map.ndim != 2 or not np.issubdtype(segment_map.dtype, np.integer):
        raise ValueError(f"segments must be a 2D integer array, got {segment_map.dtype} {segment_map.shape}")
    if segment_map.size and (segment_map.min() < 0 or segment_map.max() > num_masks):
        raise ValueError(f"segments of {name} hold ids outside 0..{num_masks} (the number of mask embeddings)")
    return segment_map.astype(np.uint8 if num_masks <= 255 else np.uint16)


class LabelWriter:
    """Writes the frames, predicate table and manifest of a label store.

    Args:
        labels_dir: the store's directory (created if needed).
        semantic_encoder: name of the text/image encoder of the mask embeddings (reloadable with
            :func:`relationfield.encoders.load_text_encoder`).
        semantic_dim: dimension of the mask embeddings.
        relation_encoder: name of the encoder of the predicate embeddings.
        relation_dim: dimension of the predicate embeddings.
        producer: the tool that made the labels (``"label-gt"``, ``"embed"``, ...).
        options: the tool's options, recorded in the manifest (must be JSON-serialisable; paths
            are written as strings).

    Raises:
        UserError: ``labels_dir`` is a file, or holds a manifest that is not a label store's.
    """

    def __init__(
        self,
        labels_dir: Path,
        *,
        semantic_encoder: str,
        semantic_dim: int,
        relation_encoder: str,
        relation_dim: int,
        producer: str,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if semantic_dim <= 0 or relation_dim <= 0:
            raise ValueError("embedding dimensions must be positive")
        self.labels_dir = Path(labels_dir)
        self.semantic_encoder = str(semantic_encoder)
        self.semantic_dim = int(semantic_dim)
        self.relation_encoder = str(relation_encoder)
        self.relation_dim = int(relation_dim)
        self.producer = str(producer)
        self.options: dict[str, Any] = dict(options or {})
        self._frames: dict[str, str] = {}  # normalised image name -> frames/ file name
        self._files: dict[str, str] = {}  # frames/ file name -> normalised image name
        self._predicates: list[str] | None = None
        self._predicate_index: dict[str, int] = {}
        self._predicate_embeddings = np.zeros((0, self.relation_dim), dtype=np.float32)
        self._none_embedding = np.zeros(self.relation_dim, dtype=np.float32)
        self._prepare_directory()

    @property
    def frames_dir(self) -> Path:
        """The directory of the per-frame files."""
        return self.labels_dir / FRAMES_DIR

    @property
    def predicates(self) -> list[str]:
        """The predicate table (sorted), empty before :meth:`set_predicates`."""
        return list(self._predicates or [])

    def _prepare_directory(self) -> None:
        """Create the directory and invalidate a previous store in it by removing its manifest."""
        if self.labels_dir.exists() and not self.labels_dir.is_dir():
            raise UserError(f"Cannot write labels to {self.labels_dir}: it is a file, not a directory.")
        manifest_path = self.labels_dir / MANIFEST_FILE
        if manifest_path.is_file():
            try:
                previous = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                previous = None
            if not isinstance(previous, dict) or previous.get("format") != FORMAT_NAME:
                raise UserError(
                    f"{manifest_path} exists but is not a relationfield label store manifest; "
                    "refusing to overwrite it. Choose another labels directory."
                )
            manifest_path.unlink()
        self.frames_dir.mkdir(parents=True, exist_ok=True)

    def set_predicates(self, texts: Sequence[str], embeddings: Any, none_embedding: Any) -> None:
        """Set the capture's predicate table.

        Args:
            texts: unique predicate texts (any order; the store keeps them sorted).
            embeddings: ``[P, relation_dim]`` embeddings of ``texts`` (tensor or array).
            none_embedding: ``[relation_dim]`` embedding of the text ``"none"``.
        """
        texts = [str(text) for text in texts]
        if len(set(texts)) != len(texts):
            raise ValueError("predicate texts must be unique")
        table = _as_float_array(embeddings, "predicate embeddings")
        if table.size == 0 and not texts:
            table = table.reshape(0, self.relation_dim)
        if table.shape != (len(texts), self.relation_dim):
            raise ValueError(
                f"predicate embeddings must have shape [{len(texts)}, {self.relation_dim}], got {table.shape}"
            )
        none_vector = _as_float_array(none_embedding, "none embedding").reshape(-1)
        if none_vector.shape[0] != self.relation_dim:
            raise ValueError(f"none embedding has dimension {none_vector.shape[0]}, expected {self.relation_dim}")
        order = sorted(range(len(texts)), key=texts.__getitem__)
        self._predicates = [texts[i] for i in order]
        self._predicate_index = {text: i for i, text in enumerate(self._predicates)}
        self._predicate_embeddings = table[order]
        self._none_embedding = none_vector

    def set_predicate_table(self, texts: Sequence[str], table: Mapping[str, Any]) -> None:
        """:meth:`set_predicates` from a text -> embedding table that also holds "none"."""
        self.set_predicates(texts, [table[text] for text in texts], table[NONE_PREDICATE])

    def write_frame(
        self,
        name: str,
        segments: np.ndarray,
        mask_embeddings: Any,
        relations: Sequence[RelationSpec],
        mask_labels: Sequence[str] | None = None,
    ) -> Path:
        """Write the labels of one image.

        Args:
            name: the image path relative to the capture, as in ``transforms.json``.
            segments: ``[H, W]`` integer map, 0 = unlabelled, ``k`` = local mask ``k``.
            mask_embeddings: ``[n, semantic_dim]`` (row ``k - 1`` = mask ``k``).
            relations: ``(subject, object, predicates)`` with 1-based local mask ids and one or
                more predicate texts from the predicate table; each (subject, object) pair at most
                once per frame.
            mask_labels: ``n`` names (default: empty strings).

        Returns:
            The path of the written frame file.
        """
        name = normalize_frame_name(name)
        file_name = self._new_frame_file(name)
        embeddings = self._mask_embeddings(mask_embeddings)
        num_masks = embeddings.shape[0]
        segment_map = _segment_map(name, segments, num_masks)
        labels = [""] * num_masks if mask_labels is None else [str(label) for label in mask_labels]
        if len(labels) != num_masks:
            raise ValueError(f"got {len(labels)} mask labels for {num_masks} masks")

        pairs, predicate_ids, relation_embeddings = self._encode_relations(name, relations, num_masks)
        arrays = {
            "name": np.array(name),
            "segments": segment_map,
            "mask_embeddings": embeddings.astype(np.float16),
            "mask_labels": np.array(labels, dtype=str).reshape(num_masks),
            "relations": pairs,
            "relation_predicates": predicate_ids,
            "relation_embeddings": relation_embeddings,
        }
        path = self.frames_dir / file_name
        save_npz_atomic(path, arrays)
        self._frames[name] = file_name
        self._files[file_name] = name
        return path

    def _new_frame_file(self, name: str) -> str:
        """The frame file name of the normalised image ``name``, which must not have been written yet."""
        file_name = frame_file_name(name)
        if name in self._frames:
            raise ValueError(f"frame {name} was already written")
        if file_name in self._files:
            raise ValueError(
                f"frames {self._files[file_name]} and {name} have the same file stem; "
                "the label store names frame files by image stem"
            )
        return file_name

    def _mask_embeddings(self, mask_embeddings: Any) -> np.ndarray:
        """Validate a frame's mask embeddings; float32 ``[n, semantic_dim]``."""
        embeddings = _as_float_array(mask_embeddings, "mask embeddings")
        if embeddings.ndim != 2 or (embeddings.shape[1] != self.semantic_dim and len(embeddings)):
            raise ValueError(f"mask embeddings must have shape [n, {self.semantic_dim}], got {embeddings.shape}")
        num_masks = embeddings.shape[0]
        if num_masks > MAX_MASKS_PER_FRAME:
            raise ValueError(f"a frame may hold at most {MAX_MASKS_PER_FRAME} masks, got {num_masks}")
        return embeddings.reshape(num_masks, self.semantic_dim)

    def _encode_relations(
        self, name: str, relations: Sequence[RelationSpec], num_masks: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate ``relations`` and turn them into the frame file's relation arrays."""
        if len(relations) and self._predicates is None:
            raise ValueError("call set_predicates() before writing frames with relations")
        pairs: list[tuple[int, int]] = []
        predicate_lists: list[list[int]] = []
        seen: set[tuple[int, int]] = set()
        for relation in relations:
            subject, obj, predicates = relation
            subject, obj = int(subject), int(obj)
            if not (1 <= subject <= num_masks and 1 <= obj <= num_masks):
                raise ValueError(f"relation ({subject}, {obj}) of {name} refers to masks outside 1..{num_masks}")
            if subject == obj:
                raise ValueError(f"relation ({subject}, {obj}) of {name} relates a mask to itself")
            if (subject, obj) in seen:
                raise ValueError(f"relation ({subject}, {obj}) of {name} is given twice; merge its predicates")
            seen.add((subject, obj))
            if isinstance(predicates, str):
                predicates = [predicates]
            ids: list[int] = []
            for predicate in predicates:
                if predicate not in self._predicate_index:
                    raise ValueError(f"predicate {predicate!r} of {name} is not in the predicate table")
                if self._predicate_index[predicate] not in ids:
                    ids.append(self._predicate_index[predicate])
            if not ids:
                raise ValueError(f"relation ({subject}, {obj}) of {name} has no predicates")
            pairs.append((subject, obj))
            predicate_lists.append(ids)

        width = max((len(ids) for ids in predicate_lists), default=1)
        predicate_ids = np.full((len(pairs), width), -1, dtype=np.int16)
        relation_embeddings = np.zeros((len(pairs), self.relation_dim), dtype=np.float32)
        for row, ids in enumerate(predicate_lists):
            predicate_ids[row, : len(ids)] = ids
            relation_embeddings[row] = self._predicate_embeddings[ids].mean(axis=0)
        return (
            np.array(pairs, dtype=np.int16).reshape(len(pairs), 2),
            predicate_ids,
            _normalize_rows(relation_embeddings).astype(np.float16),
        )

    def finalize(self, data_dir: Path, frame_names: Sequence[str]) -> Path:
        """Write the predicate table and, last, ``manifest.json``.

        Args:
            data_dir: the capture directory (the images are hashed so that readers can detect a
                changed capture).
            frame_names: the covered images, relative to ``data_dir``; exactly the frames written.

        Returns:
            The labels directory.

        Raises:
            UserError: an image does not exist.
        """
        names = [normalize_frame_name(name) for name in frame_names]
        if len(set(names)) != len(names):
            raise ValueError("frame_names contains duplicates")
        not_written = [name for name in names if name not in self._frames]
        if not_written:
            raise ValueError(f"frames were never written: {preview_names(not_written)}")
        not_listed = sorted(set(self._frames) - set(names))
        if not_listed:
            raise ValueError(f"written frames are missing from frame_names: {preview_names(not_listed)}")
        if self._predicates is None:
            raise ValueError("call set_predicates() before finalize()")

        file_hashes = frame_file_hashes(Path(data_dir), names)
        save_npz_atomic(
            self.labels_dir / PREDICATES_FILE,
            {
                "texts": np.array(self._predicates, dtype=str).reshape(len(self._predicates)),
                "embeddings": self._predicate_embeddings.astype(np.float16),
                "none_embedding": self._none_embedding.astype(np.float16),
            },
        )
        self._remove_stale_frame_files()
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "semantic": {"encoder": self.semantic_encoder, "dim": self.semantic_dim},
            "relation": {"encoder": self.relation_encoder, "dim": self.relation_dim},
            "producer": {
                "tool": self.producer,
                "options": self.options,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "frames": {
                "count": len(names),
                "names": names,
                "hash": combine_hashes(names, file_hashes),
                "file_hashes": file_hashes,
            },
        }
        text = json.dumps(manifest, indent=2, default=_json_default, allow_nan=False)
        with atomic_write(self.labels_dir / MANIFEST_FILE, "w") as handle:
            handle.write(text + "\n")
        return self.labels_dir

    def _remove_stale_frame_files(self) -> None:
        """Delete frame files (and temporaries) a previous run left that this run did not write."""
        for path in self.frames_dir.iterdir():
            stale_frame = path.suffix == ".npz" and path.name not in self._files
            temporary = path.name.startswith(".") and path.suffix == ".tmp"
            if path.is_file() and (stale_frame or temporary):
                path.unlink()


def _json_default(value: Any) -> Any:
    """JSON fallback for option values: paths and other objects as strings, numpy scalars as numbers."""
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return str(value)
