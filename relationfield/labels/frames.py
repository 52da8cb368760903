"""Reading a label store's files: one frame file's arrays and the predicate table, each checked against the
manifest."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relationfield.errors import UserError
from relationfield.labels.format import (
    FRAME_KEYS,
    FRAMES_DIR,
    MAX_MASKS_PER_FRAME,
    PREDICATE_KEYS,
    PREDICATES_FILE,
    frame_file_name,
)
from relationfield.labels.manifest import HOW_TO_MAKE


@dataclass
class FrameArrays:
    """The arrays of one frame file (see :mod:`relationfield.labels.format`), as the reader keeps them."""

    segments: np.ndarray
    """uint8 or int16 ``[H, W]``; 0 = unlabelled, ``k`` = local mask ``k``."""
    mask_embeddings: np.ndarray
    """float16 ``[n, Ds]``."""
    mask_labels: list[str]
    """``n`` mask names."""
    relations: np.ndarray
    """int64 ``[R, 2]`` (subject, object) local mask ids, 1-based."""
    relation_predicates: np.ndarray
    """int64 ``[R, K]`` indices into the predicate table, padded with -1."""
    relation_embeddings: np.ndarray
    """float16 ``[R, Dr]``."""


def load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` from an ``.npz`` file, with human-readable errors."""
    if not path.is_file():
        raise UserError(f"The label file {path} is missing; the label store is incomplete. {HOW_TO_MAKE}")
    try:
        with np.load(path, allow_pickle=False) as data:
            absent = [key for key in keys if key not in data.files]
            if absent:
                raise UserError(f"The label file {path} lacks {', '.join(absent)}. {HOW_TO_MAKE}")
            return {key: data[key] for key in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"Cannot read the label file {path}: {error}. {HOW_TO_MAKE}") from error


def read_predicates(labels_dir: Path, relation_dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read ``predicates.npz``: texts, float16 embeddings ``[P, Dr]``, float16 none embedding."""
    path = labels_dir / PREDICATES_FILE
    data = load_npz(path, PREDICATE_KEYS)
    texts = [str(text) for text in data["texts"].reshape(-1)]
    embeddings = data["embeddings"].astype(np.float16, copy=False)
    none_embedding = data["none_embedding"].astype(np.float16, copy=False)
    if embeddings.shape != (len(texts), relation_dim) or none_embedding.shape != (relation_dim,):
        raise UserError(
            f"{path} holds embeddings of the wrong shape ({embeddings.shape} for {len(texts)} predicates, "
            f"none {none_embedding.shape}; the manifest says dimension {relation_dim})."
        )
    return texts, np.ascontiguousarray(embeddings), np.ascontiguousarray(none_embedding)


def read_frame(labels_dir: Path, name: str, semantic_dim: int, relation_dim: int, num_predicates: int) -> FrameArrays:
    """Read and validate the frame file of image ``name``.

    Raises:
        UserError: the file is missing, unreadable, belongs to another image or is malformed.
    """
    path = labels_dir / FRAMES_DIR / frame_file_name(name)
    data = load_npz(path, FRAME_KEYS)
    if str(data["name"]) != name:
        raise UserError(f"The label file {path} belongs to {str(data['name'])!r}, not {name!r}. {HOW_TO_MAKE}")
    problems = _frame_problems(data, semantic_dim, relation_dim, num_predicates)
    if problems:
        raise UserError(f"The label file {path} is malformed: {'; '.join(problems)}. {HOW_TO_MAKE}")
    segments = data["segments"]
    if segments.dtype == np.uint16:
        segments = segments.astype(np.int16)  # ids <= 32767 (checked via the number of masks)
    num_masks = data["mask_embeddings"].shape[0]
    num_relations = data["relations"].reshape(-1, 2).shape[0]
    return FrameArrays(
        segments=np.ascontiguousarray(segments),
        mask_embeddings=data["mask_embeddings"].astype(np.float16, copy=False).reshape(num_masks, semantic_dim),
        mask_labels=[str(label) for label in data["mask_labels"].reshape(-1)],
        relations=data["relations"].reshape(-1, 2).astype(np.int64),
        relation_predicates=data["relation_predicates"].astype(np.int64),
        relation_embeddings=data["relation_embeddings"]
        .astype(np.float16, copy=False)
        .reshape(num_relations, relation_dim),
    )


def _frame_problems(
    data: dict[str, np.ndarray], semantic_dim: int, relation_dim: int, num_predicates: int
) -> list[str]:
    """What is wrong with a frame file's arrays (empty when they fit together and the manifest)."""
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
    return problems
