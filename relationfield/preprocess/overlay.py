"""Set-of-Mark overlays: the image the vision model sees, with every mask filled, outlined and numbered.

Mask ``k`` of ``segments`` gets a light tint (:data:`FILL_ALPHA`, as Set-of-Mark's own overlays, so the
objects' colours stay recognisable for "same as") and an opaque outline in its own colour, and a
numbered mark (a filled box holding ``k`` in a contrasting colour) at its interior point: the mask
pixel farthest from the mask's boundary (and from the image border), so the number sits inside the
object even for thin or ring-shaped masks. Mark size, outline width and font size scale with the image,
and tiny images are upscaled first so the marks stay legible to the model.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

RGB = tuple[int, int, int]

#: Images whose longer side is below this are upscaled (by a whole factor) before drawing.
MIN_LONG_SIDE = 512
#: Images whose longer side is above this are downscaled first (the model sees no more detail anyway).
MAX_LONG_SIDE = 2048
#: Opacity of the colour tint over each mask: light (Set-of-Mark uses about 0.1-0.15), so an object's own
#: colour shows through; the opaque outline and the mark tell the masks apart.
FILL_ALPHA = 0.15
_GOLDEN_RATIO = 0.618033988749895


def mask_color(k: int) -> RGB:
    """A saturated colour for mask ``k`` (hues spread by the golden ratio, so neighbours differ)."""
    hue = (0.13 + k * _GOLDEN_RATIO) % 1.0
    value = 0.95 if k % 2 else 0.8
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, value)
    return int(red * 255), int(green * 255), int(blue * 255)


def text_color(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background`` (relative luminance threshold)."""
    red, green, blue = background
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def present_tags(segments: np.ndarray) -> list[int]:
    """The mask ids that cover at least one pixel of ``segments``, ascending (0 = no mask is left out)."""
    values = np.unique(np.asarray(segments))
    return [int(v) for v in values if v > 0]


def interior_points(segments: np.ndarray) -> dict[int, tuple[int, int]]:
    """``{k: (row, col)}``: for each mask, the pixel farthest from its boundary and from the image border."""
    segments = np.asarray(segments)
    points: dict[int, tuple[int, int]] = {}
    for index, box in enumerate(ndimage.find_objects(segments), start=1):
        if box is None:
            continue
        crop = np.pad(segments[box] == index, 1)
        distance = ndimage.distance_transform_edt(crop)
        row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points[index] = (int(row) - 1 + box[0].start, int(col) - 1 + box[1].start)
    return points


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as ``[H, W, 3]`` uint8 (grey is repeated, an alpha channel is dropped)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image must be [H, W, 3] (or [H, W] / [H, W, 4]), got shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def overlay_size(
    width: int, height: int, min_long_side: int = MIN_LONG_SIDE, max_long_side: int = MAX_LONG_SIDE
) -> tuple[int, int]:
    """``(width, height)`` of the overlay :func:`draw_set_of_mark` makes of a ``width x height`` image."""
    long_side = max(width, height)
    if long_side < min_long_side:
        factor = math.ceil(min_long_side / long_side)
        return width * factor, height * factor
    if long_side > max_long_side:
        scale = max_long_side / long_side
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def _rescale(
    image: np.ndarray, segments: np.ndarray, min_long_side: int, max_long_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Upscale tiny images by a whole factor or shrink huge ones; segments follow with nearest sampling."""
    height, width = segments.shape
    size = overlay_size(width, height, min_long_side, max_long_side)
    if size[0] > width:
        factor = size[0] // width
        image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
        segments = np.repeat(np.repeat(segments, factor, axis=0), factor, axis=1)
    elif size[0] < width or size[1] < height:
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        segments = np.asarray(Image.fromarray(segments.astype(np.int32)).resize(size, Image.Resampling.NEAREST))
    return image, segments.astype(np.int64, copy=False)


def _palette(count: int) -> np.ndarray:
    """``[count + 1, 3]`` colours indexed by mask id (row 0 unused)."""
    return np.array([(0, 0, 0)] + [mask_color(k) for k in range(1, count + 1)], dtype=np.float32)


def _boundaries(segments: np.ndarray, width: int) -> np.ndarray:
    """Pixels of a mask that lie within ``width`` pixels of a different label (or of no mask)."""
    edge = np.zeros(segments.shape, dtype=bool)
    vertical = segments[1:, :] != segments[:-1, :]
    horizontal = segments[:, 1:] != segments[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if width > 1:
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    return edge & (segments > 0)


def _fill_and_outline(image: np.ndarray, segments: np.ndarray, outline: int) -> np.ndarray:
    """Blend each mask's colour over it and paint its outline opaquely."""
    colors = _palette(int(segments.max(initial=0)))[segments]
    masked = (segments > 0)[:, :, None]
    blended = np.where(masked, (1.0 - FILL_ALPHA) * image + FILL_ALPHA * colors, image.astype(np.float32))
    edge = _boundaries(segments, outline)[:, :, None]
    blended = np.where(edge, colors, blended)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _font_size(height: int, width: int) -> int:
    """Font size for the marks: about 1/24 of the shorter side, at least 12 px."""
    return max(12, round(min(height, width) / 24))


def _draw_mark(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    font_size: int,
    k: int,
    center: tuple[int, int],
    size: tuple[int, int],
) -> None:
    """A filled box in mask ``k``'s colour holding the number ``k``, kept inside the image."""
    row, col = center
    width, height = size
    text = str(k)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, anchor="mm")
    pad = max(2, round(font_size * 0.25))
    half_w = (right - left) / 2 + pad
    half_h = (bottom - top) / 2 + pad
    x = min(max(col, half_w), width - 1 - half_w)
    y = min(max(row, half_h), height - 1 - half_h)
    fill = mask_color(k)
    ink = text_color(fill)
    outline = (255, 255, 255) if ink == (0, 0, 0) else (0, 0, 0)
    box = (x - half_w, y - half_h, x + half_w, y + half_h)
    draw.rounded_rectangle(box, radius=pad, fill=fill, outline=outline, width=max(1, round(font_size / 12)))
    draw.text((x, y), text, fill=ink, font=font, anchor="mm")


def draw_set_of_mark(
    image: np.ndarray,
    segments: np.ndarray,
    min_long_side: int = MIN_LONG_SIDE,
    max_long_side: int = MAX_LONG_SIDE,
    font_size: int | None = None,
) -> Image.Image:
    """The Set-of-Mark overlay of ``image`` (``[H, W, 3]`` uint8) with the masks ``segments`` (``[H, W]``).

    Each mask ``k > 0`` is filled translucently and outlined in its colour and numbered ``k`` at its
    interior point. The result is upscaled by a whole factor when the longer side is below
    ``min_long_side`` and shrunk when it is above ``max_long_side``; marks scale with the result
    (``font_size`` overrides the automatic size).
    """
    rgb = _as_rgb(image)
    labels = np.asarray(segments)
    if labels.ndim != 2 or labels.shape != rgb.shape[:2]:
        raise ValueError(f"segments must be [H, W] = {rgb.shape[:2]}, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError("segments must hold non-negative integer mask ids")
    points = interior_points(labels)  # on the original masks, so masks too small after shrinking keep a mark
    source_height, source_width = labels.shape
    rgb, labels = _rescale(rgb, labels, min_long_side, max_long_side)
    height, width = labels.shape
    size = font_size or _font_size(height, width)
    outline = max(1, round(size / 8))
    canvas = Image.fromarray(_fill_and_outline(rgb, labels, outline))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=size)
    for k, (row, col) in sorted(points.items()):
        center = (int((row + 0.5) * height / source_height), int((col + 0.5) * width / source_width))
        _draw_mark(draw, font, size, k, center, (width, height))
    return canvas
