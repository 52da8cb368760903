"""The preprocessing workspace: what ``masks``, ``relations`` and ``embed`` hand to each other.

A workspace is a directory (``CAPTURE/relationfield_work/`` by default) holding::

    masks/<stem>.npz        written by `relationfield masks`, one per segmented frame
    overlays/<stem>.png     the Set-of-Mark image sent to the vision model (for inspection)
    relations/<stem>.json   written by `relationfield relations`, one per frame it asked about

``masks/<stem>.npz``::

    name        ()      str      the image path relative to the capture, as in transforms.json
    image_hash  ()      str      SHA-256 of the image when it was segmented (stale masks are redone)
    segments    [H, W]  uint8 (uint16 above 255 masks); 0 = no mask, k = mask k; same size as the image
    scores      [n]     float32  quality of mask k (row k - 1), e.g. SAM's predicted IoU x stability

Mask ``k`` is the mark numbered ``k`` in the Set-of-Mark overlay, so the vision model's tags are
local mask ids of ``segments``.

``relations/<stem>.json``::

    {"name": IMAGE PATH, "image_hash": HEX, "masks_hash": HEX (of the segments the tags refer to),
     "status": "ok" | "failed", "reason": TEXT or null,
     "model": MODEL NAME, "attempts": INT,
     "usage": {"prompt_tokens": INT, "completion_tokens": INT},
     "objects": {"1": "sofa", ...},                      # tag -> object name (tags as strings)
     "relations": [{"subject": 1, "object": 2, "predicates": ["standing on"]}, ...],
     "raw": [TEXT of each attempt's reply, ...]}

Only ``status == "ok"`` files feed ``embed``; failed frames keep their reason and raw replies and are
retried by the next run. Every file is written atomically (a stage interrupted mid-frame leaves the
frame absent, never half-written), which is what makes each stage resumable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relationfield.labels.format import atomic_write, frame_file_name, normalize_frame_name

DEFAULT_WORKSPACE_SUBDIR = "relationfield_work"
MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
RELATIONS_DIR = "relations"


def default_workspace(data_dir: Path) -> Path:
    """The workspace's default location inside a capture: ``DATA/relationfield_work``."""
    return Path(data_dir) / DEFAULT_WORKSPACE_SUBDIR


def frame_stem(name: str) -> str:
    """The file stem used for the image ``name`` in every workspace folder."""
    return Path(frame_file_name(normalize_frame_name(name))).stem


def masks_path(workspace: Path, name: str) -> Path:
    """Where the masks of the image ``name`` live."""
    return Path(workspace) / MASKS_DIR / f"{frame_stem(name)}.npz"


def overlay_path(workspace: Path, name: str) -> Path:
    """Where the Set-of-Mark overlay of the image ``name`` is kept."""
    return Path(workspace) / OVERLAYS_DIR / f"{frame_stem(name)}.png"


def relations_path(workspace: Path, name: str) -> Path:
    """Where the vision model's answer for the image ``name`` lives."""
    return Path(workspace) / RELATIONS_DIR / f"{frame_stem(name)}.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_write(Path(path), "w") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a workspace JSON file (``ValueError`` when it is not a JSON object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def capture_frames(data_dir: Path) -> list[dict[str, Any]]:
    """The frames of ``DATA/transforms.json`` (each a dict with at least ``file_path`` and
    ``transform_matrix``), in file order."""
    from relationfield.errors import UserError

    path = Path(data_dir) / "transforms.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: --data must be a nerfstudio capture (run ns-process-data first).")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path} lists no frames.")
    return frames


def failure_lines(failed: Mapping[str, str], limit: int = 10) -> str:
    """One ``  name: reason`` line per failed frame (at most ``limit``, then a count), for summaries."""
    items = list(failed.items())
    lines = [f"  {name}: {reason}" for name, reason in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... ({len(items) - limit} more)")
    return "\n".join(lines)
