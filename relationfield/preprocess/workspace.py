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

The readers of both files live here, once: :func:`read_masks` (with :func:`segments_hash`, the
``masks_hash`` of a segment map) and :func:`parse_relations` (the :class:`RelationsFile` model).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.labels.format import frame_file_name, normalize_frame_name
from relationfield.vocab import NONE_PREDICATE

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


# ------------------------------------------------------------------------------------ masks files


@dataclass(frozen=True)
class MasksFile:
    """The arrays of one ``masks/<stem>.npz`` that the later stages read."""

    name: str
    """The image path relative to the capture, as recorded when it was segmented."""
    image_hash: str
    """SHA-256 of the image when it was segmented."""
    segments: np.ndarray
    """``[H, W]`` integer segment map (0 = no mask, ``k`` = mask ``k``)."""
    scores: np.ndarray | None
    """Quality of each mask, flattened (``None`` when the file has none)."""

    @property
    def num_masks(self) -> int:
        """The number of masks: the length of ``scores`` (the highest segment id when it is absent)."""
        if self.scores is not None:
            return int(self.scores.shape[0])
        return int(self.segments.max(initial=0))


class MasksFileError(ValueError):
    """A masks file that is a broken archive or lacks an array (``malformed`` False), or whose segments
    are not a 2D integer image (``malformed`` True); ``detail`` is the reason without the path."""

    def __init__(self, message: str, detail: str, *, malformed: bool) -> None:
        super().__init__(message)
        self.detail = detail
        self.malformed = malformed


def read_masks(path: Path) -> MasksFile:
    """Read a masks file (see the module docstring).

    Raises:
        MasksFileError: an array is missing, or ``segments`` is not a 2D integer array.
        OSError, ValueError, EOFError: ``path`` cannot be read as an ``.npz`` file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            try:
                name, image_hash, segments = str(data["name"][()]), str(data["image_hash"][()]), data["segments"]
                scores = data["scores"].reshape(-1) if "scores" in data.files else None
            except KeyError as error:
                raise MasksFileError(f"{path} lacks {error}", str(error), malformed=False) from None
    except zipfile.BadZipFile as error:  # a truncated archive: unreadable like any other broken file
        raise MasksFileError(f"{path} is not a readable npz archive: {error}", str(error), malformed=False) from None
    if segments.ndim != 2 or not np.issubdtype(segments.dtype, np.integer):
        detail = f"segments must be a 2D integer array, got {segments.dtype} {segments.shape}"
        raise MasksFileError(f"{path}: {detail}", detail, malformed=True)
    return MasksFile(name, image_hash, segments, scores)


def segments_hash(segments: np.ndarray) -> str:
    """SHA-256 of a segment map's shape and ids (independent of its integer dtype): the ``masks_hash``
    that a relations file records for the masks its tags refer to."""
    array = np.ascontiguousarray(np.asarray(segments).astype("<u4"))
    digest = hashlib.sha256(f"{array.shape[0]}x{array.shape[1]}:".encode("ascii"))
    digest.update(array.tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------------------- relations files


def normalize_text(text: str) -> str:
    """A predicate or object name as embedded: lowercased, whitespace collapsed."""
    return " ".join(str(text).split()).lower()


@dataclass(frozen=True)
class FrameRelations:
    """What one frame's relations file contributes.

    Attributes:
        status: ``"ok"``, ``"failed"`` (the vision-model call failed) or ``"missing"`` (no file).
        objects: local mask id -> normalised object name.
        relations: ``(subject, object, predicates)`` with 1-based local mask ids, each pair once.
        problems: why entries of the file were skipped.
    """

    status: str
    objects: dict[int, str] = field(default_factory=dict)
    relations: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _tag_from_digits(value: Any) -> Any:
    """Tags may be written as digit strings (object tags always are: they are JSON keys)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _mask_in_file(tag: int, info: ValidationInfo) -> int:
    """Reject tags outside ``1..num_masks`` (the validation context's number of masks)."""
    num_masks = (info.context or {}).get("num_masks")
    if num_masks is not None and not 1 <= tag <= num_masks:
        raise ValueError(f"tag {tag} is not a mask of the masks file")
    return tag


def _predicate_texts(value: Any) -> tuple[str, ...]:
    """One predicate or a list; texts are normalised, non-texts, empty ones and ``none`` dropped."""
    items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    texts = (normalize_text(item) for item in items if isinstance(item, str))
    return tuple(dict.fromkeys(text for text in texts if text and text != NONE_PREDICATE))


#: A mask tag: an int or a digit string (``True`` is not a tag, hence strict).
MaskTag = Annotated[StrictInt, BeforeValidator(_tag_from_digits)]
#: A name given to a mask, normalised; anything but a text counts as no name (``""``).
ObjectName = Annotated[str, BeforeValidator(lambda value: normalize_text(value) if isinstance(value, str) else "")]


def _skip(problem: str) -> PydanticCustomError:
    """The error of an entry that is skipped, ``problem`` being its whole message."""
    return PydanticCustomError("skipped_entry", "{problem}", {"problem": problem})


def _problems(info: ValidationInfo) -> list[str]:
    """The list in the validation context where skipped entries are described."""
    return (info.context or {}).setdefault("problems", [])


class RelationEntry(BaseModel):
    """One entry of a relations file's ``relations``: ``predicates`` (or ``predicate``) relate
    ``subject`` to ``object``, both 1-based mask tags."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    subject: MaskTag
    """The subject's mask tag."""
    object: MaskTag
    """The object's mask tag."""
    predicates: Annotated[tuple[str, ...], BeforeValidator(_predicate_texts)] = Field(
        default=(), validation_alias=AliasChoices("predicates", "predicate")
    )
    """The normalised predicates (``none`` removed)."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_message_per_bad_entry(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> RelationEntry:
        """Every way an entry can be wrong becomes one message, as the warning about it shows it."""
        if not isinstance(value, Mapping):
            raise _skip(f"relation {value!r} is not an object")
        try:
            entry = handler(dict(value))
        except ValidationError:
            raise _skip(f"relation {dict(value)!r} lacks integer subject/object tags") from None
        pair, num_masks = (entry.subject, entry.object), (info.context or {}).get("num_masks")
        if num_masks is not None and not all(1 <= tag <= num_masks for tag in pair):
            raise _skip(f"relation {pair} refers to a mask absent from the masks file")
        if entry.subject == entry.object:
            raise _skip(f"relation {pair} relates a mask to itself")
        if not entry.predicates:
            raise _skip(f"relation {pair} has no predicate")
        return entry


class RelationsFile(BaseModel):
    """The content of an ``ok`` ``relations/<stem>.json`` that ``embed`` reads.

    Validate it with the context ``{"num_masks": N, "problems": []}``: entries that are wrong
    (tags outside ``1..N``, a mask related to itself, no predicate, ...) are skipped and described in
    ``problems`` instead of failing the file, because hand-edited files should still label the frame.
    """

    model_config = ConfigDict(extra="ignore")

    status: Literal["ok"]
    """Only answered frames have objects and relations."""
    objects: dict[Annotated[MaskTag, AfterValidator(_mask_in_file)], ObjectName] = Field(default_factory=dict)
    """Mask tag -> normalised object name (masks without a name are left out)."""
    relations: list[RelationEntry] = Field(default_factory=list)
    """The valid relation entries, in file order."""

    @field_validator("objects", mode="wrap")
    @classmethod
    def _skip_bad_objects(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            if value not in (None, {}):
                _problems(info).append("'objects' is not a mapping")
            return {}
        names: dict[int, str] = {}
        for key, name in value.items():
            try:
                names.update((tag, text) for tag, text in handler({key: name}).items() if text)
            except ValidationError:
                _problems(info).append(f"object tag {key!r} is not a mask of the masks file")
        return names

    @field_validator("relations", mode="wrap")
    @classmethod
    def _skip_bad_relations(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            if value is not None:
                _problems(info).append("'relations' is not a list")
            return []
        entries: list[RelationEntry] = []
        for item in value:
            try:
                entries.extend(handler([item]))
            except ValidationError as error:
                _problems(info).append(error.errors()[0]["msg"])
        return entries

    def merged_relations(self) -> list[tuple[int, int, tuple[str, ...]]]:
        """``(subject, object, predicates)`` with the entries of one pair merged, in first-seen order."""
        merged: dict[tuple[int, int], list[str]] = {}
        for entry in self.relations:
            known = merged.setdefault((entry.subject, entry.object), [])
            known.extend(p for p in entry.predicates if p not in known)
        return [(subject, obj, tuple(predicates)) for (subject, obj), predicates in merged.items()]


def parse_relations(record: Mapping[str, Any], num_masks: int) -> FrameRelations:
    """What an ``ok`` relations record contributes to a frame with ``num_masks`` masks.

    Failed records (``status != "ok"``) contribute nothing. Object names and predicates are
    normalised (:func:`normalize_text`); entries naming masks outside ``1..num_masks``, relating a
    mask to itself or without predicates are skipped and described in ``problems``.
    """
    if record.get("status") != "ok":
        return FrameRelations(status="failed")
    problems: list[str] = []
    parsed = RelationsFile.model_validate(dict(record), context={"num_masks": num_masks, "problems": problems})
    return FrameRelations(status="ok", objects=parsed.objects, relations=parsed.merged_relations(), problems=problems)
