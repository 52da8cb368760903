"""Relation-guided segmentation: can a relation query single out the right object?

For every ground-truth triplet ``subject -> predicate -> object`` the object is the reference and the
predicate the query: the relation head g(x, z) is evaluated at the exported surface points x with z on
the reference's points, and its relevancy (LERF-style, against "none", "next to" and "and") is read two
ways:

* **top-1**: the predicted node with the highest mean relevancy (the reference's own node left out) is
  matched to a ground-truth subject of that predicate and reference (when two pillows lie on the sofa,
  either one answers "lying on" the sofa); ties count against us;
* **IoU**: the points whose relevancy exceeds a threshold, against the points inside the boxes of those
  subjects (padded like the matching's boxes), both without the reference's own points.

Triplets whose subject or object was not matched are misses (top-1 false, IoU 0). Needs ground truth
with geometry (synthetic captures) and the run the scene graph was exported from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from relationfield.errors import UserError
from relationfield.evaluation.matching import pad_box
from relationfield.evaluation.schema import Box
from relationfield.vocab import NONE_PREDICATE

if TYPE_CHECKING:
    from relationfield.query import FieldQuery


@dataclass
class GuidedTriplet:
    """The outcome for one ground-truth triplet."""

    subject: int
    predicate: str
    object: int
    top1: bool
    iou: float


@dataclass
class GuidedResult:
    """Per-triplet outcomes and their means."""

    threshold: float
    triplets: list[GuidedTriplet] = field(default_factory=list)

    @property
    def top1_accuracy(self) -> float | None:
        return float(np.mean([t.top1 for t in self.triplets])) if self.triplets else None

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean([t.iou for t in self.triplets])) if self.triplets else None

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "triplets": len(self.triplets),
            "top1_accuracy": self.top1_accuracy,
            "mean_iou": self.mean_iou,
            "per_triplet": [vars(t) for t in self.triplets],
        }

    def to_markdown(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.2f}"

        return (
            "| relation-guided segmentation | value |\n|---|---|\n"
            f"| subject is the top object (%) | {pct(self.top1_accuracy)} |\n"
            f"| mean IoU at relevancy > {self.threshold:g} (%) | {pct(self.mean_iou)} |\n"
            f"| ground-truth triplets | {len(self.triplets)} |\n"
        )


@dataclass(frozen=True)
class _Scene:
    """What every reference is scored against: the evaluated points, their nodes, the GT boxes."""

    points_world: np.ndarray  # every exported point (references are sampled among them)
    point_node: np.ndarray
    points: np.ndarray  # the evaluated subset
    nodes: np.ndarray
    model_points: Any  # the subset in the model's frame (a torch tensor)
    node_ids: list[int]
    boxes: dict[int, Box]
    matches: Mapping[int, int]


def relation_guided_segmentation(
    query: FieldQuery,
    points_world: np.ndarray,
    point_node: np.ndarray,
    gt: Mapping[str, Any],
    matches: Mapping[int, int],
    threshold: float = 0.5,
    min_extent: float = 0.1,
    max_points: int = 20000,
    reference_samples: int = 8,
    seed: int = 0,
) -> GuidedResult:
    """Score every ground-truth triplet of ``gt`` (synthetic format) by relation-guided segmentation.

    Args:
        query: the run the points were exported from.
        points_world: exported surface points (the capture's world frame).
        point_node: node id of each point (-1: none).
        gt: ground truth with ``objects`` (id, aabb) and ``relationships`` ([s, o, predicate]).
        matches: ground-truth object id -> matched predicted node id.
        threshold: relevancy above which a point counts as selected.
        min_extent: boxes are padded to at least this side length (as in the matching).
        max_points: points the relevancy is evaluated at (a fixed random subset of the export).
        reference_samples: query positions z sampled on the reference object.
    """
    import torch  # lazy: the rest of relationfield.evaluation needs only numpy and scipy

    if "objects" not in gt or "relationships" not in gt:
        raise UserError("relation-guided segmentation needs ground truth with object boxes (a synth capture)")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(points_world), size=min(max_points, len(points_world)), replace=False))
    points, nodes = np.asarray(points_world, float)[keep], np.asarray(point_node)[keep]
    result = GuidedResult(threshold=threshold)
    with torch.no_grad():
        scene = _Scene(
            points_world=np.asarray(points_world, float),
            point_node=np.asarray(point_node),
            points=points,
            nodes=nodes,
            model_points=query.to_model(torch.from_numpy(points).float()),
            node_ids=sorted(int(i) for i in np.unique(nodes) if i >= 0),
            boxes={
                int(obj["id"]): pad_box(obj["aabb"]["min"], obj["aabb"]["max"], min_extent) for obj in gt["objects"]
            },
            matches=matches,
        )
        for reference, asked in sorted(_by_reference(gt["relationships"]).items()):
            result.triplets += _score_reference(query, scene, reference, asked, threshold, reference_samples, rng)
    return result


def _by_reference(relationships: Iterable[Sequence[Any]]) -> dict[int, list[tuple[int, str]]]:
    """GT object id -> the (subject, predicate) pairs that refer to it ("none" left out)."""
    by_reference: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for subject, obj, predicate in relationships:
        if str(predicate).strip().lower() != NONE_PREDICATE:
            by_reference[int(obj)].append((int(subject), str(predicate)))
    return by_reference


def _score_reference(
    query: FieldQuery,
    scene: _Scene,
    reference: int,
    asked: Sequence[tuple[int, str]],
    threshold: float,
    reference_samples: int,
    rng: np.random.Generator,
) -> list[GuidedTriplet]:
    """The outcomes of the triplets ``asked`` about one reference object (misses when it is unmatched)."""
    import torch  # lazy, as above

    ref_node = scene.matches.get(reference)
    all_ref = np.nonzero(scene.point_node == ref_node)[0] if ref_node is not None else []
    if ref_node is None or len(all_ref) == 0:
        return [GuidedTriplet(s, p, reference, False, 0.0) for s, p in asked]
    picks = rng.choice(all_ref, size=min(reference_samples, len(all_ref)), replace=False)
    references = query.to_model(torch.from_numpy(scene.points_world[picks]).float())
    features = query.relation(scene.model_points, references)
    outside = scene.nodes != ref_node
    subjects: dict[str, list[int]] = defaultdict(list)
    for subject, predicate in asked:
        subjects[predicate].append(subject)
    outcomes: list[GuidedTriplet] = []
    for predicate, holders in subjects.items():
        relevancy = query.relevancy(features, predicate, "relation").cpu().numpy()
        truth = np.zeros(len(scene.points), dtype=bool)
        for subject in holders:
            truth |= _inside(scene.points, scene.boxes.get(subject))
        holder_nodes = {scene.matches[s] for s in holders if s in scene.matches}
        top1 = _top_node(relevancy, scene.nodes, scene.node_ids, ref_node) in holder_nodes
        iou = _iou(relevancy > threshold, truth, outside)
        outcomes += [GuidedTriplet(s, predicate, reference, top1, iou) for s in holders]
    return outcomes


def _inside(points: np.ndarray, box: Box | None) -> np.ndarray:
    if box is None:
        return np.zeros(len(points), dtype=bool)
    return np.all((points >= box[0]) & (points <= box[1]), axis=1)


def _iou(selected: np.ndarray, truth: np.ndarray, considered: np.ndarray) -> float:
    selected, truth = selected & considered, truth & considered
    union = int((selected | truth).sum())
    return float((selected & truth).sum() / union) if union else 0.0


def _top_node(relevancy: np.ndarray, nodes: np.ndarray, node_ids: Sequence[int], ref_node: int) -> int | None:
    """The node with the highest mean relevancy (None on a tie for first place: ties count against us)."""
    means = sorted(
        ((float(relevancy[nodes == n].mean()), n) for n in node_ids if n != ref_node and (nodes == n).any()),
        reverse=True,
    )
    if not means or (len(means) > 1 and means[1][0] >= means[0][0]):
        return None
    return means[0][1]
