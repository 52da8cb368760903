"""Keeping the best distinct masks of an image and rasterising them into a masks file's arrays.

SAM proposes many overlapping masks; :func:`filter_masks` keeps the best non-duplicate ones and
:func:`masks_arrays` turns them into the segment map and scores of ``masks/<stem>.npz`` (nested
masks win the pixels they share with larger ones; pixels two masks dispute stay unlabelled, see
:func:`~relationfield.labels.segments.segments_from_masks`), as :mod:`relationfield.preprocess.workspace`
describes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from relationfield.labels.segments import mask_box, segments_from_masks
from relationfield.preprocess.sam import MaskRecord


def mask_quality(record: Mapping[str, Any]) -> float:
    """A record's quality: ``predicted_iou * stability_score`` (a missing value counts as 1)."""
    return float(record.get("predicted_iou", 1.0)) * float(record.get("stability_score", 1.0))


def _bool_mask(record: Mapping[str, Any]) -> np.ndarray:
    """A record's ``segmentation`` as a 2D bool array."""
    mask = np.asarray(record["segmentation"])
    if mask.ndim != 2:
        raise ValueError(f"a mask's segmentation must be a 2D array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _iou(
    mask_a: np.ndarray,
    box_a: tuple[int, int, int, int],
    area_a: int,
    mask_b: np.ndarray,
    box_b: tuple[int, int, int, int],
    area_b: int,
) -> float:
    """IoU of two masks; the intersection is only counted inside the overlap of their boxes."""
    row0, row1 = max(box_a[0], box_b[0]), min(box_a[1], box_b[1])
    col0, col1 = max(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    if row0 >= row1 or col0 >= col1:
        return 0.0
    inter = int(np.count_nonzero(mask_a[row0:row1, col0:col1] & mask_b[row0:row1, col0:col1]))
    return inter / float(area_a + area_b - inter)


def filter_masks(
    records: Sequence[MaskRecord],
    max_masks: int,
    min_area_fraction: float = 0.001,
    duplicate_iou: float = 0.85,
) -> list[MaskRecord]:
    """Keep the best distinct masks of one image.

    1. drop masks covering less than ``min_area_fraction`` of the image (and empty ones);
    2. go through the rest from the best quality (:func:`mask_quality`) down, dropping a mask whose
       IoU with an already kept one exceeds ``duplicate_iou``, until ``max_masks`` are kept;
    3. return the kept records ordered by area, largest first (ties: better quality, then input
       order), so that mask numbers are stable from run to run.

    Args:
        records: SAM-style records of one image (all masks of the same size).
        max_masks: the most masks to keep (>= 1).
        min_area_fraction: smallest mask area kept, as a fraction of the image's pixels.
        duplicate_iou: IoU above which the worse of two masks is dropped.

    Returns:
        The kept records (the same dict objects), in the order described above.
    """
    if max_masks < 1:
        raise ValueError(f"max_masks must be >= 1, got {max_masks}")
    if not 0.0 <= min_area_fraction < 1.0:
        raise ValueError(f"min_area_fraction must be in [0, 1), got {min_area_fraction}")
    if not 0.0 < duplicate_iou <= 1.0:
        raise ValueError(f"duplicate_iou must be in (0, 1], got {duplicate_iou}")
    masks = [_bool_mask(record) for record in records]
    if len({mask.shape for mask in masks}) > 1:
        raise ValueError("all masks of one image must have the same size")
    if not masks:
        return []
    areas = [int(np.count_nonzero(mask)) for mask in masks]
    min_area = max(1.0, min_area_fraction * masks[0].size)
    qualities = [mask_quality(record) for record in records]
    candidates = [index for index, area in enumerate(areas) if area >= min_area]
    candidates.sort(key=lambda index: (-qualities[index], -areas[index], index))

    kept: list[int] = []
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for index in candidates:
        if len(kept) >= max_masks:
            break
        boxes[index] = mask_box(masks[index])
        duplicate = any(
            _iou(masks[index], boxes[index], areas[index], masks[other], boxes[other], areas[other]) > duplicate_iou
            for other in kept
        )
        if not duplicate:
            kept.append(index)
    kept.sort(key=lambda index: (-areas[index], -qualities[index], index))
    return [records[index] for index in kept]


def masks_arrays(
    name: str, image_hash: str, records: Sequence[MaskRecord], shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The arrays of a masks file from the kept ``records`` (local id ``k`` = ``records[kept[k-1]]``)."""
    if records:
        stack = np.stack([_bool_mask(record) for record in records])
        if stack.shape[1:] != tuple(shape):
            raise ValueError(f"the mask generator returned masks of size {stack.shape[1:]} for a {shape} image")
        segments, kept = segments_from_masks(stack)
        scores = np.array([mask_quality(records[index]) for index in kept], dtype=np.float32)
    else:
        segments, scores = np.zeros(shape, dtype=np.uint8), np.zeros(0, dtype=np.float32)
    return {"name": np.array(name), "image_hash": np.array(image_hash), "segments": segments, "scores": scores}
