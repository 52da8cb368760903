"""Ground-truth formats: the synthetic captures' "objects" format and 3DSSG's ``relationships.json``.

* ``{"objects": [{"id", "label", "aabb"}, ...], "relationships": [[s, o, "p"], ...]}``: the synthetic
  captures' ``ground_truth/scene_graph.json``, with geometry;
* ``{"scans": [{"scan", "objects": {"1": "chair"}, "relationships": [[s, o, index, "p"], ...]}]}``:
  3DSSG, labels only (one scan is evaluated at a time).

Both are read into a :class:`GroundTruth`: objects by id, and the triplets cleaned (ends checked,
duplicates and "none" dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator

from relationfield.errors import UserError
from relationfield.evaluation.prediction import PRED_FORMAT
from relationfield.evaluation.schema import (
    Aabb,
    Locate,
    Location,
    Name,
    NodeId,
    PlacedError,
    fixed_list,
    path_locator,
    validate,
)
from relationfield.vocab import NONE_PREDICATE

GT_FORMAT_OBJECTS = "objects"
GT_FORMAT_3DSSG = "3dssg"

Triplet = tuple[int, int, str]
"""(subject id, object id, normalised predicate)."""


class GtObject(BaseModel):
    """A ground-truth object."""

    model_config = ConfigDict(frozen=True)

    id: NodeId
    """The id relationships refer to."""
    label: Name
    """The object's label."""
    aabb: Aabb | None = None
    """Its box (None in 3DSSG, which has no geometry)."""


class BoxedObject(GtObject):
    """An object of the "objects" format: the box is required (IoU matching needs it)."""

    aabb: Aabb


class ObjectsFormat(BaseModel):
    """Synthetic captures' ``ground_truth/scene_graph.json``."""

    objects: list[BoxedObject]
    """The objects, with their boxes."""
    relationships: list[Annotated[tuple[NodeId, NodeId, Name], fixed_list(3, "[subject_id, object_id, predicate]")]]
    """One triple per predicate of a pair."""

    @model_validator(mode="after")
    def _unique_ids(self) -> ObjectsFormat:
        seen: set[int] = set()
        for obj in self.objects:
            if obj.id in seen:
                raise PlacedError(f"ground truth object id {obj.id} appears twice")
            seen.add(obj.id)
        return self


class ThreeDSSGFile(BaseModel):
    """3DSSG ``relationships.json``: scans, read one at a time (see :class:`ThreeDSSGScan`)."""

    scans: list[dict[str, Any]]
    """The scans, as JSON objects."""


class ThreeDSSGScan(BaseModel):
    """One scan of 3DSSG ``relationships.json``."""

    scan: Any = None
    """The scan id."""
    objects: dict[NodeId, Name]
    """Object id -> label."""
    relationships: list[
        Annotated[tuple[NodeId, NodeId, Any, Name], fixed_list(4, "[s, o, predicate_index, predicate_name]")]
    ]
    """``[subject, object, predicate index, predicate name]``; the index is ignored."""


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth in either format: objects by id and the cleaned triplets."""

    format: str
    objects: dict[int, GtObject]
    triplets: tuple[Triplet, ...]
    scan: str | None


def read_ground_truth(gt: Any, scan: str | None) -> GroundTruth:
    """Detect the format of ``gt``, validate it (raising UserError) and read it; ``scan`` picks a 3DSSG scan."""
    kind = detect_gt_format(gt)
    if kind == GT_FORMAT_3DSSG:
        return _read_3dssg(gt, scan)
    if scan is not None:
        raise UserError('a scan id only applies to 3DSSG ground truth ({"scans": [...]})')
    return _read_objects_format(gt)


def detect_gt_format(gt: Any) -> str:
    """``"3dssg"`` or ``"objects"``, from the keys."""
    if not isinstance(gt, dict):
        raise UserError(f"the ground truth must be a JSON object, got {type(gt).__name__}")
    if "scans" in gt:
        return GT_FORMAT_3DSSG
    if "objects" in gt and "relationships" in gt:
        return GT_FORMAT_OBJECTS
    if gt.get("format") == PRED_FORMAT:
        raise UserError("the ground truth is a relationfield prediction; swap the arguments?")
    raise UserError(
        'unrecognised ground truth: expected {"objects": [...], "relationships": [...]} '
        '(synthetic capture scene_graph.json) or {"scans": [...]} (3DSSG relationships.json)'
    )


def _read_objects_format(data: Mapping[str, Any]) -> GroundTruth:
    truth = validate(ObjectsFormat, data, path_locator("ground truth", "the ground truth"))
    objects: dict[int, GtObject] = {obj.id: obj for obj in truth.objects}
    triplets = clean_triplets(truth.relationships, objects, "ground truth")
    return GroundTruth(GT_FORMAT_OBJECTS, objects, triplets, scan=None)


def _read_3dssg(data: Mapping[str, Any], scan: str | None) -> GroundTruth:
    entries = validate(ThreeDSSGFile, data, path_locator("ground truth", "the ground truth")).scans
    entry = select_scan(entries, scan)
    scan_id = str(entry.get("scan"))
    where = f"scan {scan_id}"
    truth = validate(ThreeDSSGScan, entry, _scan_locator(where))
    objects = {obj_id: GtObject(id=obj_id, label=label) for obj_id, label in truth.objects.items()}
    triplets = clean_triplets(((s, o, name) for s, o, _, name in truth.relationships), objects, where)
    return GroundTruth(GT_FORMAT_3DSSG, objects, triplets, scan=scan_id)


def _scan_locator(where: str) -> Locate:
    """Paths below ``scan ID``; an entry of ``objects`` is named by its key ("scan X object 3 label")."""
    below = path_locator(where, where)

    def locate(loc: Location) -> str:
        if len(loc) >= 2 and loc[0] == "objects":
            # pydantic marks a failing key with "[key]" after it; anything else failed in the label.
            return f"{where} object id" if loc[-1] == "[key]" else f"{where} object {loc[1]} label"
        return below(loc)

    return locate


def select_scan(entries: list[dict[str, Any]], scan: str | None) -> dict[str, Any]:
    """The entry of the scan ``scan``; without one, the only scan (several are an error)."""
    ids = [str(entry.get("scan")) for entry in entries]
    if scan is None:
        if len(entries) != 1:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise UserError(f"the ground truth holds {len(entries)} scans ({shown}); choose one with a scan id")
        return entries[0]
    matching = [entry for entry, scan_id in zip(entries, ids) if scan_id == scan]
    if not matching:
        raise UserError(f"scan {scan!r} is not in the ground truth ({len(entries)} scans)")
    if len(matching) > 1:
        raise UserError(f"scan {scan!r} appears {len(matching)} times in the ground truth")
    return matching[0]


def clean_triplets(triplets: Iterable[Triplet], objects: Mapping[int, GtObject], where: str) -> tuple[Triplet, ...]:
    """Check the endpoints exist; drop duplicates and "none" (no relation is not evaluated)."""
    seen: dict[Triplet, None] = {}
    for subject, obj, predicate in triplets:
        for end in (subject, obj):
            if end not in objects:
                raise UserError(f"{where}: a relationship refers to object {end}, which is not among its objects")
        if predicate != NONE_PREDICATE:
            seen.setdefault((subject, obj, predicate), None)
    return tuple(seen)
