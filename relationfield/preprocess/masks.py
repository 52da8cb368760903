"""The ``masks`` stage: class-agnostic masks of the selected frames, one ``masks/<stem>.npz`` each.

For every selected frame of the capture the stage runs a :class:`MaskGenerator` (SAM's automatic
mask generator in practice), keeps the best non-duplicate masks (:func:`filter_masks`), rasterises
them into one segment map (smaller masks win where masks overlap) and writes the file described in
:mod:`relationfield.preprocess.workspace`. Frames whose masks file already records the image's
current hash are skipped, so an interrupted run resumes where it stopped and a changed image is
segmented again.

Typical use::

    summary = run_masks(MasksConfig(data=Path("capture"), sam_checkpoint=Path("sam_vit_h_4b8939.pth")))
    print(summary_text(summary))
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from relationfield.devices import default_device
from relationfield.errors import UserError
from relationfield.images import load_rgb
from relationfield.labels.format import MAX_MASKS_PER_FRAME, file_sha256, normalize_frame_name, save_npz_atomic
from relationfield.labels.writer import segments_from_masks
from relationfield.preprocess.frames import select_frames
from relationfield.preprocess.workspace import capture_frames, default_workspace, failure_lines, frame_stem, masks_path
from relationfield.progress import item_progress

SamModelType = Literal["vit_h", "vit_l", "vit_b"]

#: Official SAM checkpoints (github.com/facebookresearch/segment-anything).
SAM_CHECKPOINT_URLS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}

#: Width of each SAM image encoder (the last dimension of ``image_encoder.pos_embed``).
_ENCODER_WIDTHS: dict[int, str] = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}

#: A mask record as SAM's automatic mask generator returns it: ``segmentation`` (bool ``[H, W]``),
#: ``area`` (pixels), ``predicted_iou`` and ``stability_score`` (floats); other keys are kept as is.
MaskRecord = dict[str, Any]


@runtime_checkable
class MaskGenerator(Protocol):
    """Anything that proposes class-agnostic masks for an image.

    ``generate(image, name)`` receives the RGB image (``uint8 [H, W, 3]``) and its path relative to
    the capture as in ``transforms.json`` (normalised, e.g. ``images/frame_00000.png``) and returns
    SAM-style :data:`MaskRecord` s whose ``segmentation`` has the image's size. SAM ignores the name;
    it lets test doubles (or precomputed masks) look up the frame.
    """

    def generate(self, image: np.ndarray, name: str) -> list[MaskRecord]:
        """The mask records of ``image`` (any order, duplicates allowed)."""
        ...


class SamMaskGenerator:
    """SAM's automatic mask generator behind the :class:`MaskGenerator` interface.

    Args:
        model: a ``segment_anything.modeling.Sam`` (already on its device; see
            :meth:`from_checkpoint` to load an official checkpoint).
        points_per_side: the prompt grid has ``points_per_side ** 2`` points.
        pred_iou_thresh: drop masks whose predicted IoU is below this.
        stability_score_thresh: drop masks whose stability score is below this.
        min_mask_region_area: remove holes and islands smaller than this many pixels (0: off).
        points_per_batch: prompts run through the model at once (memory vs. speed).
    """

    def __init__(
        self,
        model: Any,
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_mask_region_area: int = 0,
        points_per_batch: int = 64,
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.model = model
        self._generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=int(points_per_side),
            points_per_batch=int(points_per_batch),
            pred_iou_thresh=float(pred_iou_thresh),
            stability_score_thresh=float(stability_score_thresh),
            min_mask_region_area=int(min_mask_region_area),
            output_mode="binary_mask",
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Path,
        model_type: SamModelType = "vit_h",
        device: str | None = None,
        **options: Any,
    ) -> SamMaskGenerator:
        """Load an official SAM checkpoint (see :func:`load_sam`) and wrap it; ``options`` go to
        the constructor."""
        return cls(load_sam(checkpoint, model_type, device), **options)

    def generate(self, image: np.ndarray, name: str = "") -> list[MaskRecord]:
        """SAM's mask records of ``image`` (``uint8 [H, W, 3]`` RGB); ``name`` is ignored."""
        del name
        return list(self._generator.generate(np.ascontiguousarray(image)))


def missing_checkpoint_message(model_type: str, path: Path | None = None) -> str:
    """Explain where to get a SAM checkpoint and how to pass it."""
    where = "No SAM checkpoint was given" if path is None else f"The SAM checkpoint {path} does not exist"
    urls = "\n".join(f"  {kind}: {url}" for kind, url in SAM_CHECKPOINT_URLS.items())
    return (
        f"{where}. Download one of the official checkpoints:\n{urls}\n"
        f"and pass it with --sam-checkpoint PATH (with --model-type matching it; now {model_type})."
    )


def load_sam(checkpoint: Path, model_type: SamModelType = "vit_h", device: str | None = None) -> Any:
    """Build SAM's ``model_type`` architecture with segment-anything's builder and load ``checkpoint``.

    The state dict is read with ``torch.load(..., map_location="cpu", weights_only=True)`` (a GPU
    checkpoint loads on a CPU-only machine, and nothing but tensors is unpickled), then the model is
    moved to ``device`` (default: :func:`default_device`) and put in eval mode.

    Raises:
        UserError: the checkpoint is missing or unreadable, is not a state dict, or does not fit
            ``model_type`` (the message names the type it fits when that can be told).
    """
    import torch
    from segment_anything import sam_model_registry

    checkpoint = Path(checkpoint)
    if model_type not in SAM_CHECKPOINT_URLS:
        raise UserError(f"unknown SAM model type {model_type!r}; choose one of {', '.join(SAM_CHECKPOINT_URLS)}")
    if not checkpoint.is_file():
        raise UserError(missing_checkpoint_message(model_type, checkpoint))
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        raise UserError(f"Cannot read the SAM checkpoint {checkpoint}: {type(error).__name__}: {error}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{checkpoint} is not a SAM checkpoint (expected a state dict of tensors).")
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(_mismatch_message(checkpoint, model_type, state, error)) from None
    device = device or default_device()
    try:
        return model.to(device).eval()
    except (RuntimeError, AssertionError, ValueError) as error:  # torch asserts when CUDA is absent
        raise UserError(f"Cannot put SAM on device {device!r}: {error}") from None


def _mismatch_message(checkpoint: Path, model_type: str, state: Mapping[str, Any], error: Exception) -> str:
    """Explain that ``checkpoint`` does not fit ``model_type``, guessing the type it fits."""
    pos_embed = state.get("image_encoder.pos_embed")
    guess = _ENCODER_WIDTHS.get(int(pos_embed.shape[-1])) if pos_embed is not None and pos_embed.ndim else None
    hint = (
        f" It looks like a {guess} checkpoint: pass --model-type {guess}."
        if guess and guess != model_type
        else " Check that it is an official SAM checkpoint and that --model-type matches it."
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"The SAM checkpoint {checkpoint} does not fit --model-type {model_type} ({first_line}).{hint}"


def mask_quality(record: Mapping[str, Any]) -> float:
    """A record's quality: ``predicted_iou * stability_score`` (a missing value counts as 1)."""
    return float(record.get("predicted_iou", 1.0)) * float(record.get("stability_score", 1.0))


def _bool_mask(record: Mapping[str, Any]) -> np.ndarray:
    """A record's ``segmentation`` as a 2D bool array."""
    mask = np.asarray(record["segmentation"])
    if mask.ndim != 2:
        raise ValueError(f"a mask's segmentation must be a 2D array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` (exclusive ends) of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


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
        boxes[index] = _bounding_box(masks[index])
        duplicate = any(
            _iou(masks[index], boxes[index], areas[index], masks[other], boxes[other], areas[other]) > duplicate_iou
            for other in kept
        )
        if not duplicate:
            kept.append(index)
    kept.sort(key=lambda index: (-areas[index], -qualities[index], index))
    return [records[index] for index in kept]


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
    """SAM removes holes and islands smaller than this many pixels (0: off)."""
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
    )


def read_masks_header(path: Path) -> tuple[str, str] | None:
    """``(name, image_hash)`` of an existing masks file, or ``None`` when it is absent or unreadable."""
    if not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["name"][()]), str(data["image_hash"][()])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


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
    names = _frame_names(frames, selected)

    summary: dict[str, Any] = {
        "workspace": str(workspace),
        "frames": len(frames),
        "selected": len(selected),
        "segmented": 0,
        "skipped": 0,
        "failed": {},
        "masks": 0,
    }
    todo: list[tuple[str, str]] = []  # (name, image hash)
    for name in names:
        image_path = data_dir / name
        if not image_path.is_file():
            summary["failed"][name] = f"image {image_path} does not exist"
            continue
        image_hash = file_sha256(image_path)
        if not config.overwrite and read_masks_header(masks_path(workspace, name)) == (name, image_hash):
            summary["skipped"] += 1
        else:
            todo.append((name, image_hash))

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
    """Segment one frame and write its masks file; an unreadable image is recorded as failed."""
    try:
        image = load_rgb(data_dir / name)
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        summary["failed"][name] = f"cannot read image: {error}"
        return
    records = filter_masks(
        generator.generate(image, name), config.max_masks, config.min_area_fraction, config.duplicate_iou
    )
    arrays = masks_arrays(name, image_hash, records, image.shape[:2])
    save_npz_atomic(masks_path(workspace, name), arrays)
    summary["segmented"] += 1
    summary["masks"] += int(len(arrays["scores"]))


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
