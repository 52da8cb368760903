"""Relation-guided segmentation: can a relation query single out the right object?

For every ground-truth triplet ``subject -> predicate -> object`` the object is the reference and the
predicate the query: the relation head g(x, z) is evaluated at the exported surface points x with z on
the reference's points, and its relevancy (LERF-style, against "none", "next to" and "and") is read two
ways:

* **top-1**: the predicted node with the highest mean relevancy (the reference's own node left out) is
  matched to a ground-truth subject of that predicate and reference (when two pillows lie on the sofa,
  either one answers "lying on" the sofa); ties count against us;
* **IoU**: the points whose relevancy exceeds a threshold, against the points inside the boxes of those
  subjects (padded like the matching's boxes), both without the reference's own points;
* **Subject R@k** (k = 1, 3): the rank of the subject's node among all nodes by mean relevancy (the
  reference's node and the nodes of the predicate's other subjects left out; ties against us), the
  query-side twin of the scene graph's Reference R@k;
* **unrelated left dark**: over every query, the share of nodes of non-structural objects with no
  ground-truth relation to the reference whose mean relevancy stays at or below the threshold (the
  twin of none precision: "standing on" the desk must not light up the cup on the shelf).

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
from relationfield.evaluation.ranking import recall
from relationfield.evaluation.reference import REFERENCE_KS, STRUCTURAL_LABELS, SUPPORT_PREDICATES
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
    rank: int | None = None
    """Rank of the subject's node by mean relevancy (None: an end is unmatched)."""


@dataclass
class GuidedResult:
    """Per-triplet outcomes and their means."""

    threshold: float
    triplets: list[GuidedTriplet] = field(default_factory=list)
    unrelated_dark: int = 0
    """Nodes of objects unrelated to the query's reference whose mean relevancy stayed <= threshold ..."""
    unrelated_total: int = 0
    """... out of this many (summed over the queries)."""

    def subject_recall(self, support_only: bool = False) -> dict[int, float | None]:
        """Subject R@k over all triplets (or those of the support predicates)."""
        chosen = [t for t in self.triplets if not support_only or t.predicate in SUPPORT_PREDICATES]
        return recall([t.rank for t in chosen], REFERENCE_KS)

    @property
    def unrelated_dark_share(self) -> float | None:
        return self.unrelated_dark / self.unrelated_total if self.unrelated_total else None

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
            "subject_recall": {str(k): v for k, v in self.subject_recall().items()},
            "support_subject_recall": {str(k): v for k, v in self.subject_recall(support_only=True).items()},
            "unrelated_dark": self.unrelated_dark_share,
            "unrelated_nodes": self.unrelated_total,
            "per_triplet": [vars(t) for t in self.triplets],
        }

    def to_markdown(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.2f}"

        def pcts(values: dict[int, float | None]) -> str:
            return " / ".join(pct(v) for v in values.values())

        ks = " / ".join(f"R@{k}" for k in REFERENCE_KS)
        return (
            "| predicate-only queries (reference given, no subject text) | value |\n|---|---|\n"
            f"| subject is the top object (%) | {pct(self.top1_accuracy)} |\n"
            f"| mean IoU at relevancy > {self.threshold:g} (%) | {pct(self.mean_iou)} |\n"
            f"| Subject {ks} (%) | {pcts(self.subject_recall())} |\n"
            f"| Subject {ks}, support predicates (%) | {pcts(self.subject_recall(support_only=True))} |\n"
            f"| unrelated objects left dark (%) | {pct(self.unrelated_dark_share)} |\n"
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
    unrelated: dict[int, list[int]]  # GT reference -> nodes of non-structural objects with no relation to it


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
            unrelated=_unrelated_nodes(gt, matches),
        )
        for reference, asked in sorted(_by_reference(gt["relationships"]).items()):
            outcomes, dark, total = _score_reference(query, scene, reference, asked, threshold, reference_samples, rng)
            result.triplets += outcomes
            result.unrelated_dark += dark
            result.unrelated_total += total
    return result


def _unrelated_nodes(gt: Mapping[str, Any], matches: Mapping[int, int]) -> dict[int, list[int]]:
    """GT object id -> the matched nodes of non-structural objects with no GT relation to it."""
    related: dict[int, set[int]] = defaultdict(set)
    for subject, obj, predicate in gt["relationships"]:
        if str(predicate).strip().lower() != NONE_PREDICATE:
            related[int(obj)].add(int(subject))
    kept = [int(o["id"]) for o in gt["objects"] if str(o["label"]).strip().lower() not in STRUCTURAL_LABELS]
    return {
        int(o["id"]): [
            matches[u] for u in kept if u in matches and u != int(o["id"]) and u not in related[int(o["id"])]
        ]
        for o in gt["objects"]
    }


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
) -> tuple[list[GuidedTriplet], int, int]:
    """The outcomes of the triplets ``asked`` about one reference object (misses when it is unmatched), and
    how many of the nodes unrelated to it stayed dark, out of how many, over the predicates asked."""
    import torch  # lazy, as above

    ref_node = scene.matches.get(reference)
    all_ref = np.nonzero(scene.point_node == ref_node)[0] if ref_node is not None else []
    if ref_node is None or len(all_ref) == 0:
        return [GuidedTriplet(s, p, reference, False, 0.0) for s, p in asked], 0, 0
    picks = rng.choice(all_ref, size=min(reference_samples, len(all_ref)), replace=False)
    references = query.to_model(torch.from_numpy(scene.points_world[picks]).float())
    features = query.relation(scene.model_points, references)
    outside = scene.nodes != ref_node
    subjects: dict[str, list[int]] = defaultdict(list)
    for subject, predicate in asked:
        subjects[predicate].append(subject)
    outcomes: list[GuidedTriplet] = []
    dark = total = 0
    for predicate, holders in subjects.items():
        relevancy = query.relevancy(features, predicate, "relation").cpu().numpy()
        means = _node_means(relevancy, scene.nodes, scene.node_ids, ref_node)
        truth = np.zeros(len(scene.points), dtype=bool)
        for subject in holders:
            truth |= _inside(scene.points, scene.boxes.get(subject))
        holder_nodes = {scene.matches[s] for s in holders if s in scene.matches}
        top1 = _top_node(means) in holder_nodes
        iou = _iou(relevancy > threshold, truth, outside)
        for subject in holders:
            rank = _subject_rank(means, scene.matches.get(subject), holder_nodes)
            outcomes.append(GuidedTriplet(subject, predicate, reference, top1, iou, rank))
        unrelated = [means[n] for n in scene.unrelated.get(reference, []) if n in means]
        dark += sum(1 for value in unrelated if value <= threshold)
        total += len(unrelated)
    return outcomes, dark, total


def _node_means(relevancy: np.ndarray, nodes: np.ndarray, node_ids: Sequence[int], ref_node: int) -> dict[int, float]:
    """Mean relevancy of every node but the reference's."""
    return {n: float(relevancy[nodes == n].mean()) for n in node_ids if n != ref_node and (nodes == n).any()}


def _subject_rank(means: Mapping[int, float], node: int | None, holders: set[int]) -> int | None:
    """Rank of ``node`` by mean relevancy; the other holders do not compete, ties count against us."""
    if node is None or node not in means:
        return None
    return 1 + sum(1 for n, value in means.items() if n not in holders and value >= means[node])


def _inside(points: np.ndarray, box: Box | None) -> np.ndarray:
    if box is None:
        return np.zeros(len(points), dtype=bool)
    return np.all((points >= box[0]) & (points <= box[1]), axis=1)


def _iou(selected: np.ndarray, truth: np.ndarray, considered: np.ndarray) -> float:
    selected, truth = selected & considered, truth & considered
    union = int((selected | truth).sum())
    return float((selected & truth).sum() / union) if union else 0.0


def _top_node(means: Mapping[int, float]) -> int | None:
    """The node with the highest mean relevancy (None on a tie for first place: ties count against us)."""
    ranked = sorted(((value, n) for n, value in means.items()), reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[1][0] >= ranked[0][0]):
        return None
    return ranked[0][1]
