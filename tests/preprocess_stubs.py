"""Test doubles for the preprocessing stages (no model weights, no network).

:class:`GroundTruthMaskGenerator` implements :class:`relationfield.preprocess.sam.MaskGenerator`
for a capture written by :func:`relationfield.synth.generate_capture`: it answers each image with the
exact object masks of ``ground_truth/instances/<stem>.png``, so tests of later stages can check that
the masks stage numbered real objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

INSTANCES_DIR = Path("ground_truth") / "instances"


class GroundTruthMaskGenerator:
    """Masks of a synthetic capture from its ground-truth instance maps.

    ``generate(image, name)`` returns one SAM-style record per object id visible in the instance map
    of the image ``name`` (``predicted_iou`` and ``stability_score`` 1, plus ``instance_id``: the
    ground-truth object id). Every call's name is appended to :attr:`calls`.

    Args:
        capture_dir: the synthetic capture (holding ``ground_truth/instances``).
        extra: optional hook ``extra(name, ids) -> list of bool masks`` whose masks are appended to
            the ground-truth ones at quality 0.5 (e.g. near-duplicates, to exercise the filtering).
    """

    def __init__(self, capture_dir: Path, extra: Any | None = None) -> None:
        self.capture_dir = Path(capture_dir)
        self.extra = extra
        self.calls: list[str] = []

    def instance_map(self, name: str) -> np.ndarray:
        """The 16-bit object-id map of the image ``name`` (0 = nothing)."""
        path = self.capture_dir / INSTANCES_DIR / f"{Path(name).stem}.png"
        with Image.open(path) as image:
            return np.asarray(image).astype(np.int64)

    def generate(self, image: np.ndarray, name: str) -> list[dict[str, Any]]:
        """One record per visible object of ``name`` (``image`` is only checked for its size)."""
        self.calls.append(name)
        ids = self.instance_map(name)
        if ids.shape != image.shape[:2]:
            raise ValueError(f"instance map of {name} is {ids.shape}, image is {image.shape[:2]}")
        records = [_record(ids == object_id, instance_id=int(object_id)) for object_id in np.unique(ids) if object_id]
        if self.extra is not None:
            records.extend(_record(np.asarray(mask, dtype=bool), quality=0.5) for mask in self.extra(name, ids))
        return records


def _record(mask: np.ndarray, instance_id: int | None = None, quality: float = 1.0) -> dict[str, Any]:
    """A SAM-style record of ``mask``."""
    record: dict[str, Any] = {
        "segmentation": mask,
        "area": int(mask.sum()),
        "predicted_iou": quality,
        "stability_score": 1.0,
    }
    if instance_id is not None:
        record["instance_id"] = instance_id
    return record
