"""On-disk layout of the label store, and the helpers both sides of it share.

A label store is a directory (``CAPTURE/relationfield/`` by default) holding::

    manifest.json       written last; its presence means the store is complete
    predicates.npz      the capture's predicate table
    frames/<stem>.npz   one file per labelled image (``<stem>`` = the image file's stem)

``manifest.json``::

    {"format": "relationfield-labels", "version": 1,
     "semantic": {"encoder": NAME, "dim": INT},
     "relation": {"encoder": NAME, "dim": INT},
     "producer": {"tool": "label-gt" | "embed" | ..., "options": {...}, "created": ISO-8601 time},
     "frames": {"count": INT, "names": [image paths relative to the capture, as in transforms.json],
                "hash": HEX, "file_hashes": [HEX per name]}}

``frames.hash`` is :func:`frame_hash` of the covered frames: the SHA-256 of the concatenated
SHA-256 digests of the image files' contents, taken in sorted name order. ``frames.file_hashes``
holds each image's own SHA-256 (parallel to ``names``) so that a stale store can say which images
changed. ``producer.created`` is the only non-deterministic field.

``frames/<stem>.npz`` (a frame with ``n`` masks and ``R`` relations)::

    name                 ()        str      the image path the frame belongs to
    segments             [H, W]    uint8 if n <= 255 else uint16; 0 = unlabelled, k = local mask k
    mask_embeddings      [n, Ds]   float16  row k - 1 = mask k
    mask_labels          [n]       str      mask names (may be empty strings)
    relations            [R, 2]    int16    (subject, object) local mask ids, 1-based
    relation_predicates  [R, K]    int16    indices into the predicate table, padded with -1
    relation_embeddings  [R, Dr]   float16  L2-normalised mean of the relation's predicate embeddings

``predicates.npz``::

    texts            [P]       str      unique predicate texts of the capture, sorted
    embeddings       [P, Dr]   float16
    none_embedding   [Dr]      float16  embedding of the text "none"
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError

FORMAT_NAME = "relationfield-labels"
FORMAT_VERSION = 1
DEFAULT_LABELS_SUBDIR = "relationfield"
MANIFEST_FILE = "manifest.json"
PREDICATES_FILE = "predicates.npz"
FRAMES_DIR = "frames"

#: The most masks one frame may hold (local ids must fit the reader's int16 segment tensors).
MAX_MASKS_PER_FRAME = 32767

FRAME_KEYS = (
    "name",
    "segments",
    "mask_embeddings",
    "mask_labels",
    "relations",
    "relation_predicates",
    "relation_embeddings",
)
PREDICATE_KEYS = ("texts", "embeddings", "none_embedding")

_HASH_CHUNK = 1 << 20


def default_labels_dir(data_dir: Path) -> Path:
    """The label store's default location inside a capture: ``DATA/relationfield``."""
    return Path(data_dir) / DEFAULT_LABELS_SUBDIR


def normalize_frame_name(name: str | os.PathLike[str]) -> str:
    """Canonical spelling of an image path relative to the capture (``./a//b.png`` -> ``a/b.png``)."""
    text = os.fspath(name).replace("\\", "/")
    text = posixpath.normpath(text)
    return text[2:] if text.startswith("./") else text


def frame_file_name(name: str) -> str:
    """Name of the ``frames/`` file that holds the labels of the image ``name``."""
    return PurePosixPath(normalize_frame_name(name)).stem + ".npz"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_file_hashes(data_dir: Path, frame_names: Sequence[str]) -> list[str]:
    """Hex SHA-256 of each image (parallel to ``frame_names``).

    Raises:
        UserError: an image does not exist.
    """
    data_dir = Path(data_dir)
    missing = [name for name in frame_names if not (data_dir / name).is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) listed for labelling do not exist under {data_dir}: {preview_names(missing)}"
        )
    return [file_sha256(data_dir / name) for name in frame_names]


def combine_hashes(frame_names: Sequence[str], file_hashes: Sequence[str]) -> str:
    """Combine per-image hashes (parallel to ``frame_names``) into the store's frame hash."""
    if len(frame_names) != len(file_hashes):
        raise ValueError("frame_names and file_hashes must have the same length")
    digest = hashlib.sha256()
    for _, file_hash in sorted(zip(frame_names, file_hashes)):
        digest.update(bytes.fromhex(file_hash))
    return digest.hexdigest()


def frame_hash(data_dir: Path, frame_names: Sequence[str]) -> str:
    """SHA-256 (hex) over the contents of the images ``frame_names`` (relative to ``data_dir``).

    The hash covers the images in sorted name order, so it does not depend on the order of
    ``frame_names``. Raises :class:`UserError` when an image is missing.
    """
    return combine_hashes(list(frame_names), frame_file_hashes(data_dir, frame_names))


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (see :func:`atomic_write`)."""
    saver: Callable[..., None] = np.savez_compressed if compress else np.savez
    with atomic_write(path) as handle:
        saver(handle, **arrays)


def preview_names(items: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` with at most ``limit`` items and a count of the rest."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


def mask_boxes(segments: np.ndarray, num_masks: int) -> np.ndarray:
    """Inclusive ``(y0, x0, y1, x1)`` boxes of masks ``1..num_masks`` (int64 ``[n, 4]``, -1 if empty).

    Segment ids above ``num_masks`` are ignored.
    """
    height, width = segments.shape
    ids = np.asarray(segments, dtype=np.int64)
    slots = max(num_masks, int(ids.max(initial=0))) + 1
    rows = np.zeros((slots, height), dtype=bool)
    rows[ids, np.arange(height)[:, None]] = True
    cols = np.zeros((slots, width), dtype=bool)
    cols[ids, np.arange(width)[None, :]] = True
    rows, cols = rows[1 : num_masks + 1], cols[1 : num_masks + 1]
    boxes = np.stack(
        [
            rows.argmax(axis=1),
            cols.argmax(axis=1),
            height - 1 - rows[:, ::-1].argmax(axis=1),
            width - 1 - cols[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.int64)
    boxes[~rows.any(axis=1)] = -1
    return boxes
