"""Segment maps: overlapping binary masks rasterised into the one id-per-pixel map a frame file stores."""

from __future__ import annotations

import numpy as np

from relationfield.labels.format import MAX_MASKS_PER_FRAME


def segments_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise possibly overlapping binary masks into one segment map.

    Masks are painted from the largest to the smallest, so where masks overlap the smaller one
    wins (a cup on a table keeps its pixels). Masks that end up with no pixels are dropped and the
    remaining ones get compact local ids ``1..n`` in their original order.

    Args:
        masks: boolean array ``[N, H, W]``.

    Returns:
        ``(segments, kept)``: ``segments`` ``[H, W]`` (uint8 when ``n <= 255``, else uint16) with
        0 for pixels no mask covers and ``k`` for local mask ``k``; ``kept`` ``[n]`` (int64) with
        the original index of each local mask (local mask ``k`` is ``masks[kept[k - 1]]``).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [N, H, W], got {masks.shape}")
    masks = masks.astype(bool, copy=False)
    num, height, width = masks.shape
    painted = np.zeros((height, width), dtype=np.int64)
    if num:
        areas = masks.reshape(num, -1).sum(axis=1)
        for index in np.argsort(-areas, kind="stable"):
            painted[masks[index]] = index + 1
    present = np.zeros(num + 1, dtype=bool)
    present[np.unique(painted)] = True
    present[0] = False
    kept = np.flatnonzero(present) - 1  # original indices, ascending
    if len(kept) > MAX_MASKS_PER_FRAME:
        raise ValueError(f"a frame may hold at most {MAX_MASKS_PER_FRAME} masks, got {len(kept)}")
    lut = np.zeros(num + 1, dtype=np.int64)
    lut[kept + 1] = np.arange(1, len(kept) + 1)
    dtype = np.uint8 if len(kept) <= 255 else np.uint16
    return lut[painted].astype(dtype), kept.astype(np.int64)
