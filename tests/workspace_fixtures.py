"""Preprocessing workspaces made from a synthetic capture's ground truth (no SAM, no vision model).

:func:`write_workspace_from_ground_truth` writes what ``relationfield masks`` and ``relationfield
relations`` would write for a synthetic capture if both were perfect: ``masks/<stem>.npz`` from the
ground-truth instance maps and ``relations/<stem>.json`` from the scene graph, following
:mod:`relationfield.preprocess.workspace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from relationfield.labels.format import file_sha256, save_npz_atomic
from relationfield.labels.gt_labeler import (
    GROUND_TRUTH_DIR,
    INSTANCES_DIR,
    MIN_MASK_PIXELS,
    read_frame_names,
    read_ground_truth,
    read_instance_map,
)
from relationfield.preprocess.workspace import (
    default_workspace,
    masks_path,
    relations_path,
    segments_hash,
    write_json_atomic,
)


@dataclass
class GroundTruthWorkspace:
    """What :func:`write_workspace_from_ground_truth` wrote.

    Attributes:
        workspace: the workspace directory.
        names: the capture's image names, in transforms.json order.
        object_ids: per image, the ground-truth object id of each local mask (mask ``k`` is
            ``object_ids[name][k - 1]``).
        relations: per image, the relations written (empty for failed frames).
        failed: the images whose relations file says ``failed``.
        unasked: the images without a relations file.
    """

    workspace: Path
    names: list[str]
    object_ids: dict[str, list[int]] = field(default_factory=dict)
    relations: dict[str, list[tuple[int, int, tuple[str, ...]]]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    unasked: list[str] = field(default_factory=list)


def ground_truth_segments(capture: Path, name: str, min_pixels: int = MIN_MASK_PIXELS) -> tuple[np.ndarray, list[int]]:
    """``(segments, object ids)``: the instance map of ``name`` with compact local ids ``1..n``.

    Objects covering fewer than ``min_pixels`` pixels are left out (their pixels are 0).
    """
    instance_path = Path(capture) / GROUND_TRUTH_DIR / INSTANCES_DIR / f"{PurePosixPath(name).stem}.png"
    instances = read_instance_map(instance_path)
    counts = np.bincount(instances.reshape(-1))
    visible = [int(i) for i in np.flatnonzero(counts) if i > 0 and counts[i] >= min_pixels]
    lut = np.zeros(len(counts), dtype=np.int64)
    lut[visible] = np.arange(1, len(visible) + 1)
    segments = lut[instances]
    return segments.astype(np.uint8 if len(visible) <= 255 else np.uint16), visible


def write_workspace_from_ground_truth(
    capture: Path,
    workspace: Path | None = None,
    *,
    failed: Sequence[int] = (),
    unasked: Sequence[int] = (),
    frames: Sequence[int] | None = None,
    record_masks_hash: bool = True,
) -> GroundTruthWorkspace:
    """Write ``masks/`` and ``relations/`` of a synthetic capture from its ground truth.

    Args:
        capture: a capture written by :func:`relationfield.synth.generate_capture`.
        workspace: the workspace (default: ``CAPTURE/relationfield_work``).
        failed: indices (into the capture's frames) whose relations file records a failed call.
        unasked: indices of frames that get masks but no relations file.
        frames: indices of the frames to write masks for (default: all).
        record_masks_hash: add the ``masks_hash`` the relations stage records.

    Returns:
        What was written.
    """
    capture = Path(capture)
    workspace = Path(workspace) if workspace is not None else default_workspace(capture)
    names = read_frame_names(capture)
    truth = read_ground_truth(capture)
    result = GroundTruthWorkspace(workspace=workspace, names=names)
    for index in frames if frames is not None else range(len(names)):
        name = names[index]
        segments, object_ids = ground_truth_segments(capture, name)
        image_hash = file_sha256(capture / name)
        scores = np.ones(len(object_ids), dtype=np.float32)
        save_npz_atomic(
            masks_path(workspace, name),
            {"name": np.array(name), "image_hash": np.array(image_hash), "segments": segments, "scores": scores},
        )
        result.object_ids[name] = object_ids
        if index in unasked:
            result.unasked.append(name)
            result.relations[name] = []
            continue
        local = {object_id: k for k, object_id in enumerate(object_ids, start=1)}
        relations = [
            (local[s], local[o], predicates)
            for (s, o), predicates in truth.relations.items()
            if s in local and o in local
        ]
        is_failed = index in failed
        record = {
            "name": name,
            "image_hash": image_hash,
            "status": "failed" if is_failed else "ok",
            "reason": "the reply was not valid JSON" if is_failed else None,
            "model": "ground-truth",
            "attempts": 1,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0},
            "objects": {} if is_failed else {str(local[i]): truth.labels[i] for i in object_ids},
            "relations": []
            if is_failed
            else [{"subject": s, "object": o, "predicates": list(p)} for s, o, p in relations],
            "raw": ["not json"] if is_failed else [],
        }
        if record_masks_hash:
            record["masks_hash"] = segments_hash(segments)
        write_json_atomic(relations_path(workspace, name), record)
        if is_failed:
            result.failed.append(name)
            relations = []
        result.relations[name] = relations
    return result
