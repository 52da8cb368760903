"""Which frames the ``relations`` stage asks about, and what it keeps of each: jobs, overlays, records.

A frame is asked about when it has masks (``masks/<stem>.npz``) for its current image and no ``ok``
answer (``relations/<stem>.json``) for the current image and masks, or when ``--redo`` names it. Beside
the keys of the workspace contract, each relations file records ``masks_hash`` (:func:`segments_hash` of
the masks the tags refer to), so re-segmenting a frame makes its answer stale even when the image did
not change, and ``dropped``: why each entry left out of the model's answer was left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.images import load_rgb
from relationfield.labels.format import file_sha256, normalize_frame_name
from relationfield.preprocess.cost import Usage
from relationfield.preprocess.frames import select_frames
from relationfield.preprocess.overlay import draw_set_of_mark, present_tags
from relationfield.preprocess.vision_client import FrameResult
from relationfield.preprocess.workspace import (
    capture_frames,
    frame_stem,
    masks_path,
    overlay_path,
    read_json,
    read_masks,
    relations_path,
    segments_hash,
    write_json_atomic,
)

#: Reasons of dropped answer entries kept per relations file (a babbling model can produce thousands).
MAX_DROPPED_LINES = 50


@dataclass(frozen=True)
class FrameJob:
    """One segmented frame to ask about (its masks are read again when it is sent, to bound memory)."""

    name: str
    """The image path as in transforms.json."""
    image_hash: str
    """SHA-256 of the image file."""
    masks_hash: str
    """:func:`segments_hash` of its masks (the tags refer to them)."""
    size: tuple[int, int]
    """(width, height) of the image."""
    tags: tuple[int, ...]
    """The mask ids present, the tags of the overlay."""
    previous_ok: bool
    """Whether its relations file holds an ok answer (kept when asking again fails)."""


def _matches_redo(name: str, redo: Sequence[str]) -> bool:
    wanted = {normalize_frame_name(entry) for entry in redo} | {entry.strip() for entry in redo}
    return name in wanted or frame_stem(name) in wanted


def _is_done(path: Path, image_hash: str, masks_digest: str) -> tuple[bool, bool]:
    """``(skip, previous_ok)``: whether ``path`` holds an ok answer for this image and these masks."""
    if not path.is_file():
        return False, False
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return False, False
    ok = record.get("status") == "ok" and record.get("image_hash") == image_hash
    ok = ok and record.get("masks_hash", masks_digest) == masks_digest
    return ok, ok


def _masked_frames(data_dir: Path, workspace: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(name, frame)`` of every frame of transforms.json that has a masks file, in capture order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for frame in capture_frames(data_dir):
        file_path = frame.get("file_path")
        if isinstance(file_path, str) and file_path and masks_path(workspace, file_path).is_file():
            found.append((normalize_frame_name(file_path), frame))
    if not found:
        raise UserError(
            f"no frame of {data_dir} has masks in {Path(workspace) / 'masks'}: run `relationfield masks` first"
        )
    return found


def _selected_names(
    masked: Sequence[tuple[str, dict[str, Any]]], max_frames: int | None, redo: Sequence[str]
) -> list[str]:
    """The names to consider: up to ``max_frames`` spread over the capture, plus every ``--redo`` frame."""
    try:
        chosen = select_frames([frame for _, frame in masked], max_frames)
    except ValueError as error:
        raise UserError(f"cannot select frames: {error}") from None
    names = [masked[index][0] for index in chosen]
    unknown = [entry for entry in redo if not any(_matches_redo(name, [entry]) for name, _ in masked)]
    if unknown:
        raise UserError(f"--redo names frames without masks (or not in the capture): {', '.join(unknown)}")
    extra = [name for name, _ in masked if name not in names and _matches_redo(name, redo)]
    return names + extra


def _frame_job(data_dir: Path, workspace: Path, name: str, redo: Sequence[str]) -> FrameJob | str | None:
    """The job of frame ``name``; why it cannot be asked about; or ``None`` when it is already answered."""
    image_path = data_dir / name
    if not image_path.is_file():
        return f"image {image_path} does not exist"
    try:
        masks = read_masks(masks_path(workspace, name))
    except (OSError, ValueError, EOFError) as error:
        return f"cannot read its masks file: {error}; run `relationfield masks` again"
    masks_name, masks_image_hash, segments = masks.name, masks.image_hash, masks.segments
    image_hash = file_sha256(image_path)
    if normalize_frame_name(masks_name) != name:
        return f"its masks file belongs to {masks_name}; run `relationfield masks` again"
    if masks_image_hash != image_hash:
        return "its masks are stale (the image changed since); run `relationfield masks` again"
    digest = segments_hash(segments)
    done, previous_ok = _is_done(relations_path(workspace, name), image_hash, digest)
    if done and not _matches_redo(name, redo):
        return None
    size = (int(segments.shape[1]), int(segments.shape[0]))
    return FrameJob(name, image_hash, digest, size, tuple(present_tags(segments)), previous_ok)


def plan_jobs(
    data_dir: Path, workspace: Path, max_frames: int | None, redo: Sequence[str], summary: dict[str, Any]
) -> list[FrameJob]:
    """The frames to ask about, in selection order (frames whose masks hold no tag included).

    Counts the capture's segmented frames and the selected ones in ``summary`` (``frames``,
    ``selected``), the frames already answered (``skipped``) and, in ``failed``, those that cannot be
    asked about (a missing image, unreadable or stale masks).
    """
    masked = _masked_frames(data_dir, workspace)
    names = _selected_names(masked, max_frames, redo)
    summary["frames"], summary["selected"] = len(masked), len(names)
    jobs: list[FrameJob] = []
    for name in names:
        job = _frame_job(data_dir, workspace, name, redo)
        if isinstance(job, str):
            summary["failed"][name] = job
        elif job is None:
            summary["skipped"] += 1
        else:
            jobs.append(job)
    return jobs


def record_untagged(workspace: Path, jobs: Sequence[FrameJob], model: str) -> int:
    """Record each job whose masks hold no tag as answered, without a request; how many there were."""
    untagged = [job for job in jobs if not job.tags]
    for job in untagged:
        empty = FrameResult(status="ok", reason=None, attempts=0, usage=Usage(), answer=None)
        write_json_atomic(relations_path(workspace, job.name), frame_record(job, model, empty))
    return len(untagged)


def save_png_atomic(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a PNG, atomically."""
    with atomic_write(Path(path)) as handle:
        image.save(handle, format="PNG")


def draw_overlay(data_dir: Path, workspace: Path, job: FrameJob) -> Image.Image:
    """Draw the Set-of-Mark overlay of ``job`` and keep it as ``overlays/<stem>.png``.

    Raises:
        ValueError: the masks changed since the run was planned (or do not fit the image).
    """
    segments = read_masks(masks_path(workspace, job.name)).segments
    if segments_hash(segments) != job.masks_hash:
        raise ValueError("its masks changed during the run")
    overlay = draw_set_of_mark(load_rgb(data_dir / job.name), segments)
    save_png_atomic(overlay, overlay_path(workspace, job.name))
    return overlay


def dropped_lines(dropped: Sequence[str], limit: int = MAX_DROPPED_LINES) -> list[str]:
    """What a relations file keeps of an answer's drops: the first ``limit`` reasons, then a count."""
    kept = list(dropped[:limit])
    return kept + [f"... ({len(dropped) - limit} more)"] if len(dropped) > limit else kept


def frame_record(job: FrameJob, model: str, result: FrameResult) -> dict[str, Any]:
    """The ``relations/<stem>.json`` payload of a frame (the workspace contract plus ``masks_hash`` and
    ``dropped``: why each entry left out of the answer was left out)."""
    answer = result.answer
    return {
        "name": job.name,
        "image_hash": job.image_hash,
        "masks_hash": job.masks_hash,
        "status": result.status,
        "reason": result.reason,
        "model": model,
        "attempts": result.attempts,
        "usage": result.usage.to_json(),
        "objects": answer.objects_json() if answer is not None else {},
        "relations": answer.relations_json() if answer is not None else [],
        "dropped": dropped_lines(answer.dropped) if answer is not None else [],
        "raw": list(result.raw),
    }
