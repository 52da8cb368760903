"""Reading capture images: one loader for every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as ``uint8 [H, W, 3]`` RGB.

    Raises:
        OSError: the file is missing or not an image (PIL's UnidentifiedImageError is an OSError).
        ValueError: PIL cannot decode it.
    """
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the image at ``path``, read from its header (same errors as :func:`load_rgb`)."""
    with Image.open(path) as image:
        return image.size[1], image.size[0]
