"""The ``masks`` stage: class-agnostic masks of the selected frames, one ``masks/<stem>.npz`` each.

For every selected frame of the capture the stage runs a
:class:`~relationfield.preprocess.sam.MaskGenerator` (SAM's automatic mask generator in practice),
keeps the best non-duplicate masks (:func:`~relationfield.preprocess.mask_filter.filter_masks`),
rasterises them into one segment map (a nested mask wins the pixels it shares with the larger one; a
disputed boundary, where a mask holds pixels near the edge of a mask it is not nested in, stays unlabelled)
and writes the file
described in :mod:`relationfield.preprocess.workspace`. Frames whose masks file already records the image's
current hash are skipped, so an interrupted run resumes where it stopped and a changed image is
segmented again (only the image's hash is recorded: changing an option does not redo a frame, pass
``overwrite`` for that).

SAM upsamples the candidate masks of every batch of prompts to the size of the image it is given (as
float32: about 1.6 GB per batch of 16 prompts for a 3840x2160 frame), while its image encoder only
sees the image at 1024 px on its long side. So a frame whose long side exceeds ``max_image_side`` is
downscaled (antialiased) before SAM, its masks are filtered at that size, and the kept ones are scaled
back up (bilinear, thresholded at one half) to the frame's own size: the segment map always has the
size of the image, whatever the options.

Typical use::

    summary = run_masks(MasksConfig(data=Path("capture"), sam_checkpoint=Path("sam_vit_h_4b8939.pth")))
    print(summary_text(summary))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from relationfield.errors import UserError
from relationfield.images import load_rgb
from relationfield.labels.format import MAX_MASKS_PER_FRAME, file_sha256, normalize_frame_name, save_npz_atomic
from relationfield.preprocess.frames import select_frames
from relationfield.preprocess.mask_filter import filter_masks, masks_arrays
from relationfield.preprocess.sam import (
    SAM_CHECKPOINT_URLS,
    MaskGenerator,
    MaskRecord,
    SamMaskGenerator,
    SamModelType,
    missing_checkpoint_message,
)
from relationfield.preprocess.workspace import (
    capture_frames,
    default_workspace,
    failure_lines,
    frame_stem,
    masks_path,
    read_masks,
)
from relationfield.progress import item_progress


@dataclass
class MasksConfig:
    """Segment the frames of a capture into class-agnostic masks with SAM (first preprocessing stage).

    Writes WORKSPACE/masks/<stem>.npz per frame; frames already segmented from the same image are skipped."""

    data: Path
    """The nerfstudio capture (the directory holding transforms.json)."""
    sam_checkpoint: Path | None = None
    """SAM checkpoint (.pth), e.g. sam_vit_h_4b8939.pth from https://dl.fbaipublicfiles.com/segment_anything/."""
    model_type: SamModelType = "vit_h"
    """SAM architecture of the checkpoint."""
    max_masks: int = 40
    """The most masks kept per frame (the best distinct ones)."""
    points_per_side: int = 32
    """SAM prompts a grid of points_per_side x points_per_side points."""
    pred_iou_thresh: float = 0.88
    """SAM drops masks whose predicted IoU is below this."""
    stability_score_thresh: float = 0.95
    """SAM drops masks whose stability score is below this."""
    min_mask_region_area: int = 0
    """SAM removes holes and islands smaller than this many pixels of the image it sees (0: off)."""
    max_image_side: int = 1280
    """Frames with a longer side are downscaled to it for SAM, masks scaled back up (0: full resolution)."""
    points_per_batch: int = 16
    """Prompts SAM runs at once; each takes 12 bytes per pixel of the image SAM sees (memory vs. speed)."""
    crop_n_layers: int = 0
    """SAM also segments 4**i overlapping crops for each layer i up to this (small objects; 0: off)."""
    min_area_fraction: float = 0.001
    """Masks smaller than this fraction of the image are dropped."""
    duplicate_iou: float = 0.85
    """Of two masks overlapping with a higher IoU, the lower-quality one is dropped."""
    device: str | None = None
    """Torch device for SAM (default: cuda when available, else cpu)."""
    max_frames: int | None = None
    """Segment at most this many frames, chosen to spread over the camera poses (default: all)."""
    stride: int = 1
    """Consider every stride-th frame only (applied before --max-frames)."""
    workspace: Path | None = None
    """Preprocessing workspace (default: DATA/relationfield_work)."""
    overwrite: bool = False
    """Segment the selected frames again even when their masks are up to date."""


def validate_config(config: MasksConfig) -> None:
    """Check the options that do not need the capture.

    Raises:
        UserError: an option is out of range, or ``sam_checkpoint`` is given but does not exist.
    """
    checks = (
        (1 <= config.max_masks <= MAX_MASKS_PER_FRAME, f"--max-masks must be in 1..{MAX_MASKS_PER_FRAME}"),
        (config.points_per_side >= 1, "--points-per-side must be >= 1"),
        (0.0 <= config.pred_iou_thresh <= 1.0, "--pred-iou-thresh must be in [0, 1]"),
        (0.0 <= config.stability_score_thresh <= 1.0, "--stability-score-thresh must be in [0, 1]"),
        (config.min_mask_region_area >= 0, "--min-mask-region-area must be >= 0"),
        (config.max_image_side >= 0, "--max-image-side must be >= 0 (0: full resolution)"),
        (config.points_per_batch >= 1, "--points-per-batch must be >= 1"),
        (config.crop_n_layers >= 0, "--crop-n-layers must be >= 0"),
        (0.0 <= config.min_area_fraction < 1.0, "--min-area-fraction must be in [0, 1)"),
        (0.0 < config.duplicate_iou <= 1.0, "--duplicate-iou must be in (0, 1]"),
        (config.stride >= 1, "--stride must be >= 1"),
        (config.max_frames is None or config.max_frames >= 1, "--max-frames must be >= 1"),
        (config.model_type in SAM_CHECKPOINT_URLS, f"--model-type must be one of {', '.join(SAM_CHECKPOINT_URLS)}"),
    )
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if config.sam_checkpoint is not None and not Path(config.sam_checkpoint).is_file():
        raise UserError(missing_checkpoint_message(config.model_type, Path(config.sam_checkpoint)))


def build_generator(config: MasksConfig) -> SamMaskGenerator:
    """The SAM generator ``config`` asks for.

    Raises:
        UserError: no checkpoint was given, or it cannot be loaded (see :func:`load_sam`).
    """
    if config.sam_checkpoint is None:
        raise UserError(missing_checkpoint_message(config.model_type))
    return SamMaskGenerator.from_checkpoint(
        config.sam_checkpoint,
        config.model_type,
        config.device,
        points_per_side=config.points_per_side,
        pred_iou_thresh=config.pred_iou_thresh,
        stability_score_thresh=config.stability_score_thresh,
        min_mask_region_area=config.min_mask_region_area,
        points_per_batch=config.points_per_batch,
        crop_n_layers=config.crop_n_layers,
    )


def run_masks(config: MasksConfig, generator: MaskGenerator | None = None, progress: bool = True) -> dict[str, Any]:
    """Segment the selected frames of ``config.data`` into the workspace (see the module docstring).

    Args:
        config: the stage's options.
        generator: the mask generator (default: SAM from ``config``, built only when a frame needs it).
        progress: show a rich progress bar.

    Returns:
        A summary: ``workspace`` (str), ``frames`` (in the capture), ``selected``, ``segmented``,
        ``skipped`` (up to date), ``failed`` (``{image name: reason}``), ``masks`` (masks written by
        this run) and ``seconds``.

    Raises:
        UserError: bad options or capture, a missing/unloadable SAM checkpoint while frames need
            segmenting, or no selected frame could be segmented nor was already up to date.
    """
    start = time.perf_counter()
    validate_config(config)
    data_dir = Path(config.data)
    workspace = Path(config.workspace) if config.workspace is not None else default_workspace(data_dir)
    frames = capture_frames(data_dir)
    try:
        selected = select_frames(frames, config.max_frames, config.stride)
    except ValueError as error:
        raise UserError(f"cannot select frames of {data_dir / 'transforms.json'}: {error}") from None
    summary: dict[str, Any] = {
        "workspace": str(workspace),
        "frames": len(frames),
        "selected": len(selected),
        "segmented": 0,
        "skipped": 0,
        "failed": {},
        "masks": 0,
    }
    todo = _frames_to_segment(config, data_dir, workspace, _frame_names(frames, selected), summary)
    if todo:
        active = generator if generator is not None else build_generator(config)
        bar, advance = item_progress(progress, len(todo), "Segmenting")
        with bar:
            for name, image_hash in todo:
                _segment_frame(active, config, data_dir, workspace, name, image_hash, summary)
                advance(name)

    summary["seconds"] = round(time.perf_counter() - start, 3)
    if summary["failed"] and not summary["segmented"] and not summary["skipped"]:
        raise UserError(f"no frame could be segmented:\n{failure_lines(summary['failed'])}")
    return summary


def _is_up_to_date(path: Path, name: str, image_hash: str) -> bool:
    """Whether ``path`` is a readable masks file of the image ``name`` with the hash ``image_hash``."""
    if not path.is_file():
        return False
    try:
        masks = read_masks(path)
    except (OSError, ValueError, EOFError):  # unreadable or malformed: segmented again
        return False
    return (masks.name, masks.image_hash) == (name, image_hash)


def _frames_to_segment(
    config: MasksConfig, data_dir: Path, workspace: Path, names: Sequence[str], summary: dict[str, Any]
) -> list[tuple[str, str]]:
    """``(name, image hash)`` of the frames to segment; up-to-date frames and missing images are
    counted in ``summary`` instead."""
    todo: list[tuple[str, str]] = []
    for name in names:
        image_path = data_dir / name
        if not image_path.is_file():
            summary["failed"][name] = f"image {image_path} does not exist"
            continue
        image_hash = file_sha256(image_path)
        if not config.overwrite and _is_up_to_date(masks_path(workspace, name), name, image_hash):
            summary["skipped"] += 1
        else:
            todo.append((name, image_hash))
    return todo


def _frame_names(frames: Sequence[Mapping[str, Any]], selected: Sequence[int]) -> list[str]:
    """The normalised image names of the selected frames.

    Raises:
        UserError: a selected frame has no ``file_path``, or two selected images share a file stem
            (workspace files are named by stem).
    """
    names: list[str] = []
    stems: dict[str, str] = {}
    for index in selected:
        file_path = frames[index].get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise UserError(f"frame {index} of transforms.json has no file_path")
        name = normalize_frame_name(file_path)
        stem = frame_stem(name)
        if stem in stems and stems[stem] != name:
            raise UserError(
                f"images {stems[stem]} and {name} share the file stem {stem!r}; "
                "the workspace names files by stem, so rename one of them"
            )
        if stem not in stems:
            stems[stem] = name
            names.append(name)
    return names


def _segment_frame(
    generator: MaskGenerator,
    config: MasksConfig,
    data_dir: Path,
    workspace: Path,
    name: str,
    image_hash: str,
    summary: dict[str, Any],
) -> None:
    """Segment one frame (at most ``config.max_image_side`` px on its long side) and write its masks
    file at the image's own size; an unreadable image is recorded as failed."""
    try:
        image = load_rgb(data_dir / name)
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        summary["failed"][name] = f"cannot read image: {error}"
        return
    shape = (int(image.shape[0]), int(image.shape[1]))
    seen = downscale_image(image, config.max_image_side)
    del image  # only its size is needed from here on (the generator gets the downscaled copy)
    records = filter_masks(
        generator.generate(seen, name), config.max_masks, config.min_area_fraction, config.duplicate_iou
    )
    seen_shape = (int(seen.shape[0]), int(seen.shape[1]))
    del seen
    upscaled = [upscale_record(record, seen_shape, shape) for record in records]
    arrays = masks_arrays(name, image_hash, upscaled, shape)
    save_npz_atomic(masks_path(workspace, name), arrays)
    summary["segmented"] += 1
    summary["masks"] += int(len(arrays["scores"]))


def scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(height, width)`` scaled so that the long side is ``max_side`` (unchanged when it is not longer,
    or when ``max_side`` is 0); the short side is rounded and at least 1."""
    long_side = max(height, width)
    if max_side <= 0 or long_side <= max_side:
        return height, width
    scale = max_side / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) resized with PIL's antialiased bilinear filter to
    :func:`scaled_size` (the same array when it is small enough)."""
    height, width = scaled_size(int(image.shape[0]), int(image.shape[1]), max_side)
    if (height, width) == image.shape[:2]:
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def upscale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to ``shape`` (``(height, width)``): bilinear, thresholded at one half, so
    edges stay within a source pixel of nearest-neighbour upsampling but are smoothed (corners round)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask
    if mask.ndim != 2:
        raise ValueError(f"a mask's segmentation must be a 2D array, got shape {mask.shape}")
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized) >= 128


def upscale_record(record: MaskRecord, seen: tuple[int, int], shape: tuple[int, int]) -> MaskRecord:
    """``record``, a mask of the ``seen``-sized image the generator was given, with its ``segmentation``
    resized to ``shape`` (:func:`upscale_mask`) and its ``area`` recounted (the same record when the
    sizes agree; other geometry keys such as SAM's ``bbox`` stay in the generator's coordinates).

    Raises:
        ValueError: the mask does not have the size ``seen``.
    """
    mask = np.asarray(record["segmentation"])
    if mask.shape != tuple(seen):
        raise ValueError(f"the mask generator returned masks of size {mask.shape} for a {tuple(seen)} image")
    if tuple(seen) == tuple(shape):
        return record
    resized = upscale_mask(mask, shape)
    return {**record, "segmentation": resized, "area": int(np.count_nonzero(resized))}


def summary_text(summary: Mapping[str, Any]) -> str:
    """A human-readable report of :func:`run_masks`'s summary (for the CLI)."""
    text = (
        f"Segmented {summary['segmented']} of {summary['selected']} selected frames "
        f"({summary['frames']} in the capture) into {summary['masks']} masks; "
        f"{summary['skipped']} already up to date, {len(summary['failed'])} failed. "
        f"Workspace: {summary['workspace']}"
    )
    if summary["failed"]:
        text += f"\nFailed frames:\n{failure_lines(summary['failed'])}"
    return text
