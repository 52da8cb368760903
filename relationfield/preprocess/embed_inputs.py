"""The inputs of the ``embed`` stage: the frames to label, found by a scan of the workspace.

Every frame of ``transforms.json`` that has ``masks/<stem>.npz`` is labelled; its ``relations/<stem>.json``
adds object names and relations when its status is ``ok``. Masks whose image changed since
segmentation, and relations whose image or masks changed since the vision model answered, are stale:
the scan stops with the commands to re-run, before the label store is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relationfield.errors import UserError
from relationfield.labels.format import MAX_MASKS_PER_FRAME, file_sha256, normalize_frame_name, preview_names
from relationfield.preprocess.workspace import (
    MASKS_DIR,
    FrameRelations,
    MasksFile,
    MasksFileError,
    capture_frames,
    masks_path,
    parse_relations,
    read_json,
    read_masks,
    relations_path,
    segments_hash,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FramePlan:
    """A frame to label, as found by the scan of the workspace."""

    name: str
    """The image path relative to the capture."""
    image_hash: str
    """SHA-256 of the image (the one its masks were made from)."""
    masks_hash: str
    """:func:`~relationfield.preprocess.workspace.segments_hash` of its masks."""
    num_masks: int
    """Masks in its masks file."""
    relations: FrameRelations
    """What its relations file contributes."""


def read_masks_file(path: Path) -> MasksFile:
    """The masks file at ``path``, checked for labelling (ids within ``0..num_masks``, at most
    :data:`MAX_MASKS_PER_FRAME` masks).

    Raises:
        UserError: the file is unreadable or malformed.
    """
    try:
        masks = read_masks(path)
    except (OSError, ValueError, EOFError) as error:  # MasksFileError is a ValueError
        if isinstance(error, MasksFileError) and error.malformed:
            raise UserError(f"The masks file {path} is malformed: segments must be a 2D integer image.") from None
        detail = error.detail if isinstance(error, MasksFileError) else error
        raise UserError(f"Cannot read the masks file {path}: {detail}; run `relationfield masks` again.") from None
    if masks.segments.size == 0:
        raise UserError(f"The masks file {path} is malformed: segments must be a 2D integer image.")
    num_masks = masks.num_masks
    if int(masks.segments.min()) < 0 or int(masks.segments.max()) > num_masks or num_masks > MAX_MASKS_PER_FRAME:
        raise UserError(
            f"The masks file {path} is malformed: its segments hold ids outside 0..{num_masks} "
            f"(at most {MAX_MASKS_PER_FRAME} masks)."
        )
    return masks


def _scan_relations(
    workspace: Path, name: str, image_hash: str, masks_hash: str, num_masks: int, stale: list[str]
) -> FrameRelations:
    """The relations file of a frame, or a record of why it contributes nothing (stale -> ``stale``)."""
    path = relations_path(workspace, name)
    if not path.is_file():
        return FrameRelations(status="missing")
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:
        raise UserError(
            f"Cannot read the relations file {path}: {error}. Delete it and run `relationfield relations` again."
        ) from None
    recorded_name = normalize_frame_name(str(record.get("name", name)))
    same_masks = record.get("masks_hash", masks_hash) == masks_hash
    if recorded_name != name or record.get("image_hash") != image_hash or not same_masks:
        stale.append(name)
        return FrameRelations(status="stale")
    relations = parse_relations(record, num_masks)
    if relations.problems:
        logger.warning("Skipped %d entries of %s: %s", len(relations.problems), path, "; ".join(relations.problems[:5]))
    return relations


def scan_workspace(data_dir: Path, workspace: Path, summary: dict[str, Any]) -> list[FramePlan]:
    """The frames to label (every capture frame with a masks file), after the staleness checks.

    Raises:
        UserError: no masks at all, a missing image, unreadable files, or stale masks / relations.
    """
    plans: list[FramePlan] = []
    stale_masks: list[str] = []
    stale_relations: list[str] = []
    frames = capture_frames(data_dir)
    summary["frames"] = len(frames)
    for frame in frames:
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            continue
        name = normalize_frame_name(file_path)
        path = masks_path(workspace, name)
        if not path.is_file():
            continue
        image_path = data_dir / name
        if not image_path.is_file():
            raise UserError(f"The image {image_path} of {path} does not exist; the capture is incomplete.")
        masks = read_masks_file(path)
        image_hash = file_sha256(image_path)
        if normalize_frame_name(masks.name) != name or masks.image_hash != image_hash:
            stale_masks.append(name)
            continue
        digest = segments_hash(masks.segments)
        relations = _scan_relations(workspace, name, image_hash, digest, masks.num_masks, stale_relations)
        plans.append(FramePlan(name, image_hash, digest, masks.num_masks, relations))
    if not plans and not stale_masks:
        raise UserError(
            f"No frame of {data_dir} has masks in {Path(workspace) / MASKS_DIR}: run `relationfield masks` first."
        )
    _raise_if_stale(stale_masks, stale_relations)
    return plans


def _raise_if_stale(stale_masks: Sequence[str], stale_relations: Sequence[str]) -> None:
    """Stop with the commands to re-run when inputs are stale."""
    lines = []
    if stale_masks:
        lines.append(
            f"{len(stale_masks)} frame(s) changed since they were segmented ({preview_names(list(stale_masks))}): "
            "run `relationfield masks` again (it re-segments changed images), then `relationfield relations`."
        )
    if stale_relations:
        lines.append(
            f"{len(stale_relations)} frame(s) were re-segmented or changed since the vision model described them "
            f"({preview_names(list(stale_relations))}): run `relationfield relations` again (it asks about them "
            "again), or delete their relations/ files to label them without relations."
        )
    if lines:
        raise UserError("Stale preprocessing inputs; the label store was not changed.\n" + "\n".join(lines))


def check_something_to_label(plans: Sequence[FramePlan], semantic_source: str) -> None:
    """Raise :class:`UserError` when no frame would keep a mask (checked before the store is touched)."""
    if semantic_source == "clip":
        if not any(plan.num_masks for plan in plans):
            raise UserError(
                "The masks files hold no masks; run `relationfield masks` again (e.g. with lower thresholds)."
            )
    elif not any(plan.relations.objects for plan in plans):
        raise UserError(
            "No mask has an object name, which --semantic-source text needs: run `relationfield relations` "
            "first (or retry its failed frames), or use --semantic-source clip."
        )


def iter_frames(plans: Sequence[FramePlan], workspace: Path) -> Iterator[tuple[FramePlan, np.ndarray]]:
    """Each plan with its segment map (read again: the scan does not keep them in memory)."""
    for plan in plans:
        yield plan, read_masks_file(masks_path(workspace, plan.name)).segments
