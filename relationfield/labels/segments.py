"""Segment maps: overlapping binary masks rasterised into the one id-per-pixel map a frame file stores."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse

from relationfield.labels.format import MAX_MASKS_PER_FRAME

NESTED_SHARE = 0.8
"""A mask with at least this share of its pixels inside a larger mask is nested in it (a seat in its chair's
mask, a cup in a mask of the table with the cup) and wins every pixel they share."""
BOUNDARY_BAND = 2
"""Pixels within this many pixels of a mask's edge are its boundary band: where a segmenter's masks bleed into
their neighbours' (a few pixels, SAM's and the realistic label model's alike)."""
_CROSS = ndimage.generate_binary_structure(2, 1)


def segments_from_masks(
    masks: np.ndarray, nested_share: float = NESTED_SHARE, boundary_band: int = BOUNDARY_BAND
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise possibly overlapping binary masks into one segment map.

    Masks are painted from the largest to the smallest, so where masks overlap the smaller one wins (a cup
    in a mask of the table with the cup keeps its pixels), except on a disputed boundary: a pixel that the
    winner shares with a mask it is not nested in (``nested_share``), within ``boundary_band`` pixels of
    that mask's edge, is left unlabelled. There one mask has bled into the other, and giving the pixel to
    either would teach the instance head that two touching objects are one (a bled mask of a 2-pixel-thick
    book holds more of the book on top of it than of itself). Masks that end up with no pixels are dropped
    and the remaining ones get compact local ids ``1..n`` in their original order.

    Args:
        masks: boolean array ``[N, H, W]``.
        nested_share: least share of a mask's pixels inside a larger mask for it to count as nested there
            (above 1: no mask is nested; 0: every mask is, and the smaller always wins).
        boundary_band: width in pixels of a mask's boundary band (0: no pixel is disputed).

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
        if boundary_band > 0:
            _clear_disputed(painted, masks, areas, nested_share, boundary_band)
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


def _clear_disputed(painted: np.ndarray, masks: np.ndarray, areas: np.ndarray, nested_share: float, band: int) -> None:
    """Set to 0 the pixels of ``painted`` on a disputed boundary (see :func:`segments_from_masks`)."""
    shared = masks.sum(axis=0, dtype=np.int32) >= 2
    if not shared.any():
        return
    height, width = shared.shape
    holder, pixel, on_edge = [], [], []  # every (mask, shared pixel) cover, and whether it is in the mask's band
    for index, mask in enumerate(masks):  # within each mask's box: the work grows with the masks' areas
        if not mask.any():
            continue
        r0, r1, c0, c1 = mask_box(mask)
        r0, r1, c0, c1 = max(r0 - band, 0), min(r1 + band, height), max(c0 - band, 0), min(c1 + band, width)
        crop = mask[r0:r1, c0:c1]
        ys, xs = np.nonzero(crop & shared[r0:r1, c0:c1])
        interior = ndimage.binary_erosion(crop, structure=_CROSS, iterations=band, border_value=1)
        holder.append(np.full(len(ys), index))
        pixel.append((ys + r0) * width + xs + c0)
        on_edge.append(~interior[ys, xs])
    holder, pixel, edge = np.concatenate(holder), np.concatenate(pixel), np.concatenate(on_edge)
    cover = sparse.csr_matrix(
        (np.ones(len(holder), dtype=np.float32), (holder, pixel)), shape=(len(masks), shared.size)
    )
    overlap = (cover @ cover.T).toarray()  # [N, N] pixels two masks share (sparse: a pixel has few masks)
    nested = overlap >= nested_share * np.maximum(areas, 1)[:, None]  # row mask nested in column mask
    # A pixel is disputed when a mask its winner is not nested in holds it within that mask's band.
    rival, pixel = holder[edge], pixel[edge]
    winner = painted.reshape(-1)[pixel] - 1
    painted.reshape(-1)[pixel[(rival != winner) & ~nested[winner, rival]]] = 0


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` (exclusive ends) of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
