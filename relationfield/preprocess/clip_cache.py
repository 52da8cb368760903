"""The CLIP embedding cache of the ``embed`` stage: ``WORKSPACE/embeddings/<stem>.npz``, one per frame.

Each file holds a frame's CLIP mask embeddings under a key made of everything they depend on (the
image hash, the masks hash, the encoder's name and the crop options), so a re-run (after an
interruption, or with another text encoder) only embeds the frames that changed::

    key         ()               str      JSON of the cache version, encoder, hashes and crop options
    embeddings  [n, dim]         float32  the frame's mask embeddings (row k - 1 = mask k)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relationfield.encoders import ImageEncoder
from relationfield.labels.format import save_npz_atomic
from relationfield.preprocess.crops import CropOptions, embed_masks
from relationfield.preprocess.workspace import frame_stem

#: Workspace folder of the per-frame CLIP embedding cache.
EMBEDDINGS_DIR = "embeddings"
_CACHE_VERSION = 1


def embeddings_path(workspace: Path, name: str) -> Path:
    """Where the CLIP embedding cache of the image ``name`` lives."""
    return Path(workspace) / EMBEDDINGS_DIR / f"{frame_stem(name)}.npz"


def cache_key(encoder_name: str, image_hash: str, masks_hash: str, crops: CropOptions) -> str:
    """The cache key of a frame's CLIP embeddings (everything they depend on)."""
    return json.dumps(
        {
            "version": _CACHE_VERSION,
            "encoder": encoder_name,
            "image_hash": image_hash,
            "masks_hash": masks_hash,
            "scales": [float(s) for s in crops.scales],
            "margin": float(crops.margin),
            "background": crops.background,
        },
        sort_keys=True,
    )


def read_cache(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Cached embeddings of ``shape`` under ``key``, or ``None`` (absent, other key, unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"][()]) != key:
                return None
            embeddings = np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return embeddings if embeddings.shape == shape and np.all(np.isfinite(embeddings)) else None


@dataclass(frozen=True)
class CachedClipEmbedder:
    """CLIP mask embeddings of a capture's frames, kept in (and reused from) the workspace's cache."""

    encoder: ImageEncoder
    """The CLIP image tower."""
    workspace: Path
    """The preprocessing workspace holding embeddings/."""
    crops: CropOptions
    """How masks are cut out of their image."""
    batch_size: int = 64
    """Mask crops per CLIP forward pass."""
    overwrite: bool = False
    """Recompute every frame instead of reusing the cache."""

    def embed(
        self, name: str, image_hash: str, masks_hash: str, image: np.ndarray, segments: np.ndarray, num_masks: int
    ) -> tuple[np.ndarray, bool]:
        """``(embeddings [num_masks, dim], from the cache)`` of the frame ``name``; fresh ones are cached."""
        path = embeddings_path(self.workspace, name)
        key = cache_key(self.encoder.name, image_hash, masks_hash, self.crops)
        if not self.overwrite:
            cached = read_cache(path, key, (num_masks, self.encoder.dim))
            if cached is not None:
                return cached, True
        embeddings = embed_masks(
            self.encoder,
            image,
            segments,
            num_masks,
            scales=self.crops.scales,
            margin=self.crops.margin,
            background=self.crops.background,
            batch_size=self.batch_size,
        )
        save_npz_atomic(path, {"key": np.array(key), "embeddings": embeddings})
        return embeddings, False
