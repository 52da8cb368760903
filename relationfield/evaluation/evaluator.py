"""The evaluation's entry points: :func:`evaluate` (parsed JSON) and :func:`evaluate_files` (paths)."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from relationfield.errors import UserError
from relationfield.evaluation.ground_truth import GT_FORMAT_3DSSG, GroundTruth, GtObject, Triplet, read_ground_truth
from relationfield.evaluation.matching import (
    DEFAULT_MIN_EXTENT,
    DEFAULT_MIN_IOU,
    MATCHING_IOU,
    MATCHING_NODE_MAP,
    Match,
    match_by_iou,
    match_by_map,
    read_node_map,
)
from relationfield.evaluation.point_matching import MATCHING_POINTS, match_by_points
from relationfield.evaluation.prediction import Prediction, read_prediction
from relationfield.evaluation.protocols import (
    DEFAULT_PROTOCOL,
    ProtocolRecalls,
    Rules,
    get_rules,
    protocol_recalls,
    subgraph_groups,
)
from relationfield.evaluation.reference import STRUCTURAL_LABELS, reference_metrics
from relationfield.evaluation.report import EvalResult, write_report
from relationfield.evaluation.schema import Name, NodeId, path_locator, validate

_LABELS = TypeAdapter(list[Name])
_NAMED_GROUPS = TypeAdapter(dict[str, list[NodeId]])
_IDS = TypeAdapter(list[NodeId])


def evaluate(
    pred: dict[str, Any],
    gt: dict[str, Any],
    *,
    min_iou: float = DEFAULT_MIN_IOU,
    min_extent: float = DEFAULT_MIN_EXTENT,
    ignore_labels: Sequence[str] = (),
    node_map: Mapping[int, int] | None = None,
    scan: str | None = None,
    structural_labels: Sequence[str] = STRUCTURAL_LABELS,
    protocol: str = DEFAULT_PROTOCOL,
    splits: Any = None,
    points: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> EvalResult:
    """Evaluate a prediction (our export format) against ground truth (synthetic or 3DSSG).

    The ground-truth format is detected. With 3DSSG ground truth ``node_map`` (prediction node id ->
    GT object id) is required and ``scan`` picks the scan (needed when the file holds several).
    With synthetic ground truth the nodes are matched by aabb IoU (``min_iou``), unless a
    ``node_map`` is given, which is then used instead. GT objects whose label is in
    ``ignore_labels`` take part in the matching, then they and their triplets are left out of every
    count and denominator. ``structural_labels`` are left out of none precision (see :mod:`.reference`).
    ``protocol`` picks the ranking rules (:mod:`.protocols`); ``splits`` (``open3dsg`` only) groups the
    GT objects into subgraphs (see :func:`read_splits`), the whole scan being one subgraph without it.
    ``points`` (node points, their node ids, GT object points, their object ids) matches by point overlap
    instead of boxes (:mod:`.point_matching`; ``min_iou`` is then the least overlap).
    """
    rules = get_rules(protocol)
    if isinstance(min_iou, bool) or not isinstance(min_iou, numbers.Real) or not 0.0 < float(min_iou) <= 1.0:
        raise UserError(f"min_iou must be a number in (0, 1], got {min_iou!r}")
    if splits is not None and not rules.per_subgraph:
        raise UserError(f"subgraph splits only apply to protocols that average per subgraph, not {rules.name!r}")
    ignored = _ignore_set(ignore_labels)
    prediction = read_prediction(pred)
    truth = read_ground_truth(gt, scan)
    kept = [obj for _, obj in sorted(truth.objects.items()) if obj.label not in ignored]
    kept_ids = {obj.id for obj in kept}
    triplets = [t for t in truth.triplets if t[0] in kept_ids and t[1] in kept_ids]
    groups = None if splits is None else subgraph_groups(read_splits(splits, truth.scan), truth, kept_ids)

    if points is not None and node_map is None:
        node_ids, object_ids = sorted(prediction.nodes), sorted(truth.objects)
        all_matches, matching = match_by_points(node_ids, object_ids, points, float(min_iou)), MATCHING_POINTS
    else:
        all_matches, matching = _match(prediction, truth, node_map, float(min_iou), float(min_extent))
    # Ignored objects take part in the matching (a floor node pairs with the floor, not with a rug),
    # then their matches are dropped with them.
    matches = [m for m in all_matches if m.gt_id in kept_ids]
    node_of = {m.gt_id: m.node_id for m in matches}
    structural = _ignore_set(structural_labels, "structural_labels", "a structural label")
    return _result(
        rules,
        protocol_recalls(rules, kept, triplets, truth, prediction, node_of, groups),
        _Counted(prediction, truth, kept, triplets, matches),
        matching=matching,
        min_iou=float(min_iou),
        ignore_labels=tuple(sorted(ignored)),
        reference=reference_metrics(triplets, kept, prediction, node_of, structural),
    )


@dataclass(frozen=True)
class _Counted:
    """What the counts of a result are taken from."""

    prediction: Prediction
    truth: GroundTruth
    kept: list[GtObject]
    triplets: list[Triplet]
    matches: list[Match]


def _result(rules: Rules, recalls: ProtocolRecalls, counted: _Counted, **settings: Any) -> EvalResult:
    """The result: the protocol's recalls, the counts behind them and the settings that produced them."""
    truth, prediction, matches = counted.truth, counted.prediction, counted.matches
    ious = [m.iou for m in matches if m.iou is not None]
    return EvalResult(
        object_recall=recalls.object,
        predicate_recall=recalls.predicate,
        relation_recall=recalls.relation,
        num_gt_objects=len(counted.kept),
        num_matched_objects=len(matches),
        num_gt_triplets=len(counted.triplets),
        num_gt_pairs=len({(s, o) for s, o, _ in counted.triplets}),
        num_evaluated_links=recalls.evaluated_links,
        num_pred_nodes=len(prediction.nodes),
        num_pred_links=len(prediction.links),
        num_ignored_objects=len(truth.objects) - len(counted.kept),
        num_ignored_triplets=len(truth.triplets) - len(counted.triplets),
        mean_iou=float(np.mean(ious)) if ious else None,
        gt_format=truth.format,
        scan=truth.scan,
        matches=tuple(matches),
        protocol=rules.name,
        num_none_triplets=recalls.none_triplets,
        num_subgraphs=recalls.subgraphs,
        predicate_by_predicate=recalls.predicate_by_predicate,
        **settings,
    )


def _match(
    prediction: Prediction, truth: GroundTruth, node_map: Mapping[int, int] | None, min_iou: float, min_extent: float
) -> tuple[list[Match], str]:
    """Every match (ignored objects included) and how they were made: the node map if given, else IoU."""
    if node_map is not None:
        return match_by_map(prediction, truth, read_node_map(node_map)), MATCHING_NODE_MAP
    if truth.format == GT_FORMAT_3DSSG:
        raise UserError("3DSSG ground truth has no geometry: give a node map (prediction node id -> GT object id)")
    objects = [obj for _, obj in sorted(truth.objects.items())]
    return match_by_iou(prediction, objects, min_iou, min_extent), MATCHING_IOU


def _ignore_set(labels: Sequence[str], what: str = "ignore_labels", item: str = "an ignored label") -> set[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise UserError(f"{what} must be a list of labels, got {labels!r}")
    return set(validate(_LABELS, list(labels), lambda loc: item))


def read_splits(data: Any, scan: str | None, where: str = "the split mapping") -> dict[str, list[int]]:
    """Subgraphs as ``{name: [GT object ids]}``, from that form or from a 3DSSG split file.

    A 3DSSG split file (``3DSSG_subset/relationships_*.json``) is ``{"scans": [{"scan", "split",
    "objects": {"id": label}}, ...]}``: each entry of the evaluated scan is one subgraph, named by its
    ``split``. Without a scan id (synthetic ground truth) the file must hold a single scan.
    """
    if isinstance(data, Mapping) and isinstance(data.get("scans"), list):
        return _splits_of_scan(data["scans"], scan, where)
    if not isinstance(data, Mapping):
        raise UserError(f"{where} must be a JSON object {{subgraph: [object ids]}} or a 3DSSG split file")
    return validate(_NAMED_GROUPS, dict(data), path_locator(where, where))


def _splits_of_scan(entries: list[Any], scan: str | None, where: str) -> dict[str, list[int]]:
    if not all(isinstance(e, Mapping) and isinstance(e.get("objects"), Mapping) for e in entries):
        raise UserError(f'{where}: every entry of "scans" must be a JSON object with "objects"')
    scans = sorted({str(e.get("scan")) for e in entries})
    if scan is None and len(scans) > 1:
        raise UserError(f"{where} holds {len(scans)} scans; it needs 3DSSG ground truth with a scan id")
    chosen = [e for e in entries if scan is None or str(e.get("scan")) == scan]
    if not chosen:
        raise UserError(f"{where} has no subgraph of scan {scan!r}")
    splits: dict[str, list[int]] = {}
    for i, entry in enumerate(chosen):
        name = str(entry.get("split", i))
        if name in splits:
            raise UserError(f"{where}: split {name!r} of scan {entry.get('scan')!r} appears twice")
        splits[name] = validate(_IDS, list(entry["objects"]), path_locator(f"{where} split {name}", where))
    return splits


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning every failure into a UserError that names the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} is not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def evaluate_files(
    pred_path: Path,
    gt_path: Path,
    *,
    output_dir: Path | None = None,
    min_iou: float = DEFAULT_MIN_IOU,
    min_extent: float = DEFAULT_MIN_EXTENT,
    ignore_labels: Sequence[str] = (),
    node_map_path: Path | None = None,
    scan: str | None = None,
    structural_labels: Sequence[str] = STRUCTURAL_LABELS,
    protocol: str = DEFAULT_PROTOCOL,
    splits_path: Path | None = None,
    points_paths: tuple[Path, Path] | None = None,
) -> EvalResult:
    """:func:`evaluate` on files; with ``output_dir``, also write ``eval.json`` and ``eval.md`` there.

    ``points_paths`` (the export's points.ply, the ground truth's points.ply) matches by point overlap."""
    get_rules(protocol)  # an unknown protocol fails before any file is read
    pred = read_json(Path(pred_path), "prediction file")
    gt = read_json(Path(gt_path), "ground-truth file")
    node_map = None
    if node_map_path is not None:
        node_map = read_node_map(read_json(Path(node_map_path), "node map file"), f"node map {node_map_path}")
    splits = None if splits_path is None else read_json(Path(splits_path), "split file")
    points = None
    if points_paths is not None:
        points = _read_points(*points_paths)
    try:
        result = evaluate(
            pred,
            gt,
            min_iou=min_iou,
            min_extent=min_extent,
            ignore_labels=ignore_labels,
            node_map=node_map,
            scan=scan,
            structural_labels=structural_labels,
            protocol=protocol,
            splits=splits,
            points=points,
        )
    except UserError as exc:
        raise UserError(f"evaluating {pred_path} against {gt_path}: {exc}") from exc
    if output_dir is not None:
        write_report(Path(output_dir), result)
    return result


def _read_points(pred_points: Path, gt_points: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Node points and ids of the export's points.ply, object points and ids of the ground truth's."""
    from relationfield.scene_graph.ply import read_ply

    read = []
    for path, what in ((pred_points, "the export's points.ply"), (gt_points, "the ground truth's points.ply")):
        if not Path(path).is_file():
            raise UserError(f"point matching needs {what}: {path} does not exist")
        cloud, ids = read_ply(Path(path))
        if ids is None:
            raise UserError(f"{path} has no node property; point matching needs an id per point")
        read += [cloud, ids]
    return read[0], read[1], read[2], read[3]
