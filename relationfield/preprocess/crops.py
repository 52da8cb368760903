"""Mask crops and their CLIP embeddings: what ``embed`` shows CLIP of each mask.

Each mask is cut out of its image (:func:`mask_crops`: the mask's bounding box plus a margin, the
background outside the mask greyed or blurred, padded to a square) at several scales; the CLIP image
embeddings of a mask's crops are averaged and renormalised (:func:`embed_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from relationfield.encoders import ImageEncoder
from relationfield.labels.format import mask_boxes

CropBackground = Literal["grey", "blur"]

DEFAULT_CROP_SCALES: tuple[float, ...] = (1.0, 1.5, 2.0)
DEFAULT_CROP_MARGIN = 0.15
#: Colour outside the mask in a crop: CLIP's mean pixel, which its normalisation maps to about zero.
CROP_GREY: tuple[int, int, int] = (122, 116, 104)
#: Gaussian blur radius of the ``blur`` background, as a fraction of the image's longer side.
BLUR_RADIUS_FRACTION = 0.03


@dataclass(frozen=True)
class CropOptions:
    """How masks are cut out of their image for CLIP (everything their embeddings depend on but the encoder)."""

    scales: tuple[float, ...] = DEFAULT_CROP_SCALES
    """Crop sizes relative to the mask's padded bounding box; the crops' embeddings are averaged."""
    margin: float = DEFAULT_CROP_MARGIN
    """Margin added on each side of a mask's bounding box, as a fraction of its longer side."""
    background: CropBackground = "grey"
    """What replaces the pixels outside the mask: flat grey, or the blurred image."""


def crop_backdrop(image: np.ndarray, background: str) -> np.ndarray | None:
    """The pixels shown outside masks: the blurred image for ``blur``, ``None`` (flat grey) otherwise."""
    if background != "blur":
        return None
    radius = max(2.0, BLUR_RADIUS_FRACTION * max(image.shape[:2]))
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)


def square_mask_crop(
    image: np.ndarray,
    segments: np.ndarray,
    mask_id: int,
    box: Sequence[int],
    *,
    size: int,
    scale: float = 1.0,
    margin: float = DEFAULT_CROP_MARGIN,
    backdrop: np.ndarray | None = None,
) -> np.ndarray:
    """One ``uint8 [size, size, 3]`` crop of mask ``mask_id``.

    The square is centred on the mask's bounding box ``box`` (inclusive ``y0, x0, y1, x1``); its side
    is the box's longer side times ``(1 + 2 * margin) * scale``. Pixels outside the mask show
    ``backdrop`` (or :data:`CROP_GREY` when it is ``None``); the parts of the square beyond the image
    are grey. Only the part of the square inside the image is resized, so large squares cost no more
    than the image itself.
    """
    height, width = segments.shape
    y0, x0, y1, x1 = (int(v) for v in box)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = CROP_GREY
    if y0 < 0:
        return canvas
    side = max(1, int(round(max(y1 - y0 + 1, x1 - x0 + 1) * (1.0 + 2.0 * margin) * scale)))
    top = int(np.floor((y0 + y1 + 1) / 2.0 - side / 2.0))
    left = int(np.floor((x0 + x1 + 1) / 2.0 - side / 2.0))
    in_top, in_left = max(top, 0), max(left, 0)
    in_bottom, in_right = min(top + side, height), min(left + side, width)
    if in_bottom <= in_top or in_right <= in_left:
        return canvas
    inside = segments[in_top:in_bottom, in_left:in_right] == mask_id
    fill = backdrop[in_top:in_bottom, in_left:in_right] if backdrop is not None else np.array(CROP_GREY, np.uint8)
    region = np.where(inside[..., None], image[in_top:in_bottom, in_left:in_right], fill).astype(np.uint8)
    factor = size / side
    dst_top = min(size - 1, int(round((in_top - top) * factor)))
    dst_left = min(size - 1, int(round((in_left - left) * factor)))
    dst_height = max(1, min(size, int(round((in_bottom - top) * factor))) - dst_top)
    dst_width = max(1, min(size, int(round((in_right - left) * factor))) - dst_left)
    resized = Image.fromarray(region).resize((dst_width, dst_height), Image.Resampling.BICUBIC)
    canvas[dst_top : dst_top + dst_height, dst_left : dst_left + dst_width] = np.asarray(resized)
    return canvas


def mask_crops(
    image: np.ndarray,
    segments: np.ndarray,
    mask_ids: Sequence[int],
    *,
    size: int,
    scales: Sequence[float] = DEFAULT_CROP_SCALES,
    margin: float = DEFAULT_CROP_MARGIN,
    background: str = "grey",
    boxes: np.ndarray | None = None,
    backdrop: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Square crops of the masks ``mask_ids``: for each mask, one crop per scale (mask-major order).

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        segments: ``[H, W]`` segment map (0 = no mask, ``k`` = mask ``k``).
        mask_ids: 1-based mask ids.
        size: side of the returned crops (the image encoder's input size).
        scales: crop sizes relative to the padded bounding box.
        margin: margin on each side of the bounding box, as a fraction of its longer side.
        background: ``grey`` or ``blur`` (see :func:`crop_backdrop`).
        boxes: precomputed :func:`mask_boxes` of all masks (computed when omitted).
        backdrop: precomputed :func:`crop_backdrop` (computed when omitted).
    """
    if boxes is None:
        boxes = mask_boxes(segments, max([int(k) for k in mask_ids], default=0))
    if backdrop is None:
        backdrop = crop_backdrop(image, background)
    return [
        square_mask_crop(
            image, segments, int(k), boxes[int(k) - 1], size=size, scale=float(s), margin=margin, backdrop=backdrop
        )
        for k in mask_ids
        for s in scales
    ]


def embed_masks(
    encoder: ImageEncoder,
    image: np.ndarray,
    segments: np.ndarray,
    num_masks: int,
    *,
    scales: Sequence[float] = DEFAULT_CROP_SCALES,
    margin: float = DEFAULT_CROP_MARGIN,
    background: str = "grey",
    batch_size: int = 64,
) -> np.ndarray:
    """CLIP embeddings of masks ``1..num_masks``: the renormalised mean over the crops' scales.

    Crops are made and encoded a batch at a time (``batch_size`` crops, whole masks per batch).

    Returns:
        float32 ``[num_masks, encoder.dim]`` with unit-norm rows.
    """
    if num_masks == 0:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    boxes = mask_boxes(segments, num_masks)
    backdrop = crop_backdrop(image, background)
    per_batch = max(1, batch_size // len(scales))
    rows: list[np.ndarray] = []
    for start in range(1, num_masks + 1, per_batch):
        ids = list(range(start, min(num_masks, start + per_batch - 1) + 1))
        crops = mask_crops(
            image, segments, ids, size=encoder.image_size, scales=scales, margin=margin, boxes=boxes, backdrop=backdrop
        )
        features = encoder.encode_images(crops).numpy().astype(np.float32)
        rows.append(features.reshape(len(ids), len(scales), -1).mean(axis=1))
    mean = np.concatenate(rows)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)
