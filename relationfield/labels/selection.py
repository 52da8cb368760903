"""Which of a label store's frames a dataset's images are, and the empty segment maps of images without labels."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from relationfield.errors import StaleLabelsError
from relationfield.labels.format import normalize_frame_name, preview_names
from relationfield.labels.frames import FrameArrays
from relationfield.labels.manifest import HOW_TO_FIX_STALE


def select_frames(
    labels_dir: Path, stored_names: list[str], frame_names: Sequence[str] | None, data_dir: Path | None
) -> list[str]:
    """The store's frames in dataset order: ``frame_names`` normalised, or the stored names by default.

    Raises:
        StaleLabelsError: none of ``frame_names`` has labels.
    """
    if frame_names is None:
        return list(stored_names)
    names = [_relative_name(name, data_dir) for name in frame_names]
    if names and stored_names and not set(stored_names).intersection(names):
        raise StaleLabelsError(
            f"None of the dataset's {len(names)} images has labels in {labels_dir} (it labels "
            f"{preview_names(stored_names, 3)}; the dataset has {preview_names(names, 3)}). "
            f"The labels belong to another capture or the images were renamed. {HOW_TO_FIX_STALE}"
        )
    return names


def _relative_name(name: str | os.PathLike[str], data_dir: Path | None) -> str:
    """A dataset image name relative to the capture (absolute paths inside ``data_dir`` included)."""
    path = Path(name)
    if path.is_absolute() and data_dir is not None:
        for base in (Path(data_dir), Path(data_dir).resolve()):
            try:
                return normalize_frame_name(path.relative_to(base).as_posix())
            except ValueError:
                continue
        try:
            return normalize_frame_name(path.resolve().relative_to(Path(data_dir).resolve()).as_posix())
        except ValueError:
            pass
    return normalize_frame_name(name)


def segment_maps(names: list[str], frames: list[FrameArrays | None], data_dir: Path | None) -> list[torch.Tensor]:
    """Each frame's segment map; an unlabelled frame gets an all-zero map of its image's size (or, if that
    is unknown, of the most common labelled size)."""
    sizes = Counter(frame.segments.shape for frame in frames if frame is not None)
    fallback_size: tuple[int, int] = sizes.most_common(1)[0][0] if sizes else (1, 1)
    return [
        torch.zeros(_image_size(data_dir, name) or fallback_size, dtype=torch.uint8)
        if frame is None
        else torch.from_numpy(frame.segments)
        for name, frame in zip(names, frames)
    ]


def _image_size(data_dir: Path | None, name: str) -> tuple[int, int] | None:
    """``(height, width)`` of an image of the capture (read from its header), or None if unknown."""
    if data_dir is None or not (data_dir / name).is_file():
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(data_dir / name) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError):
        return None
    return height, width
