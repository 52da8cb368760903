"""Relation-guided instance segmentation as in the paper: referring queries that must pick one of twins.

For every ground-truth triplet ``subject -> predicate -> object`` whose subject has a twin (another object
with the same label), the query "label(subject) predicate label(object)" (e.g. "box standing on box")
must single out the subject among the exported instances. Each distinct query is asked once:

* **RelationField**: the referring-query rule of :mod:`relationfield.referring` (subject relevancy times the
  predicate's relation relevancy towards every instance that matches the reference text);
* **CLIP-only baseline**: the instances ranked by the object relevancy of the whole sentence, the
  bag-of-words approach of CLIP-only fields (LERF, OpenNeRF, LangSplat) that the paper compares against.

**Top-1 accuracy**: the best instance is matched to a ground-truth object that satisfies the full query
(its label, and the predicate towards an object with the reference's label); ties for first place count
against us. **IoU**, on the exported points: the best instance's points against the points inside the
(padded) box of the satisfying object they overlap most (0 for a miss).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from relationfield.errors import UserError
from relationfield.evaluation.matching import pad_box
from relationfield.referring import ReferringConfig, ReferringQuery, rank_referring
from relationfield.vocab import NONE_PREDICATE

if TYPE_CHECKING:
    from relationfield.query import FieldQuery

__all__ = ["ReferringOutcome", "ReferringResult", "referring_segmentation"]


@dataclass
class ReferringOutcome:
    """One query's outcome for RelationField and for the CLIP-only baseline."""

    text: str
    holders: list[int]
    """Ground-truth objects that satisfy the query."""
    top1: bool
    iou: float
    baseline_top1: bool
    baseline_iou: float


@dataclass
class ReferringResult:
    """Outcomes of every referring query about a twin, and their means."""

    outcomes: list[ReferringOutcome] = field(default_factory=list)

    def _mean(self, name: str) -> float | None:
        return float(np.mean([getattr(o, name) for o in self.outcomes])) if self.outcomes else None

    def summary(self) -> dict[str, float | None]:
        """Top-1 accuracy and mean IoU of RelationField and of the CLIP-only baseline (fractions)."""
        return {
            "top1_accuracy": self._mean("top1"),
            "mean_iou": self._mean("iou"),
            "baseline_top1_accuracy": self._mean("baseline_top1"),
            "baseline_mean_iou": self._mean("baseline_iou"),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "queries": len(self.outcomes),
            "outcomes": [o.__dict__ for o in self.outcomes],
        }

    def to_markdown(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}"

        s = self.summary()
        return "\n".join(
            [
                f"### Relation-guided segmentation (referring queries about twins, {len(self.outcomes)} queries)",
                "",
                "| method | top-1 accuracy (%) | mean IoU (%) |",
                "|---|---|---|",
                f"| RelationField (subject x relation to the reference) | {pct(s['top1_accuracy'])} "
                f"| {pct(s['mean_iou'])} |",
                f"| CLIP-only baseline (whole sentence as one text) | {pct(s['baseline_top1_accuracy'])} "
                f"| {pct(s['baseline_mean_iou'])} |",
                "",
            ]
        )


def twin_queries(gt: Mapping[str, Any]) -> dict[tuple[str, str, str], list[int]]:
    """(subject label, predicate, reference label) -> the GT objects satisfying it, for subjects with twins."""
    if "objects" not in gt or "relationships" not in gt:
        raise UserError("referring segmentation needs ground truth with objects and boxes (a synth capture)")
    label = {int(o["id"]): str(o["label"]).strip().lower() for o in gt["objects"]}
    count: dict[str, int] = defaultdict(int)
    for name in label.values():
        count[name] += 1
    queries: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for subject, obj, predicate in gt["relationships"]:
        predicate = str(predicate).strip().lower()
        if predicate == NONE_PREDICATE or int(subject) not in label or int(obj) not in label:
            continue
        if count[label[int(subject)]] >= 2:
            queries[(label[int(subject)], predicate, label[int(obj)])].add(int(subject))
    return {key: sorted(holders) for key, holders in sorted(queries.items())}


def referring_segmentation(
    query: FieldQuery,
    points_world: np.ndarray,
    point_node: np.ndarray,
    gt: Mapping[str, Any],
    matches: Mapping[int, int],
    min_extent: float = 0.1,
    samples: int = 256,
    reference_samples: int = 16,
    config: ReferringConfig | None = None,
    seed: int = 0,
) -> ReferringResult:
    """Ask every twin query of ``gt`` (synthetic format) of the run, and of the CLIP-only baseline.

    Args:
        query: the run the points were exported from.
        points_world, point_node: the exported points (world frame) and their node ids (-1: none).
        matches: ground-truth object id -> matched node id.
        samples: points per instance at which relevancies are averaged (a fixed subset).
        reference_samples: query positions z per reference instance.
    """
    import torch  # lazy: the rest of relationfield.evaluation needs only numpy and scipy

    points_world, point_node = np.asarray(points_world, float), np.asarray(point_node)
    picked = _instance_samples(query, points_world, point_node, samples, np.random.default_rng(seed))
    nodes = sorted(picked)
    boxes = {int(o["id"]): pad_box(o["aabb"]["min"], o["aabb"]["max"], min_extent) for o in gt["objects"]}
    objects: dict[str, dict[int, float]] = {}

    def object_score(text: str, node: int) -> float:
        if text not in objects:
            with torch.no_grad():
                objects[text] = {n: float(query.object_relevancy(picked[n], text).mean()) for n in nodes}
        return objects[text][node]

    result = ReferringResult()
    for (subject, predicate, reference), holders in twin_queries(gt).items():

        def relation(candidate: int, ref: int, predicate: str = predicate) -> float:
            with torch.no_grad():
                refs = picked[ref][:reference_samples]
                return float(query.relation_relevancy(picked[candidate], refs, predicate).mean())

        parsed = ReferringQuery(subject, predicate, reference)
        answer = rank_referring(
            parsed,
            nodes,
            lambda n, s=subject: object_score(s, n),
            lambda n, r=reference: object_score(r, n),
            relation,
            config,
        )
        ranked = [(item.combined, item.node) for item in answer.ranked if item.candidate]
        sentence = parsed.text()
        baseline = sorted(((object_score(sentence, n), n) for n in nodes), reverse=True)
        top, top_iou = _judge(ranked, holders, matches, boxes, points_world, point_node)
        base, base_iou = _judge(baseline, holders, matches, boxes, points_world, point_node)
        result.outcomes.append(ReferringOutcome(sentence, holders, top, top_iou, base, base_iou))
    return result


def _instance_samples(
    query: FieldQuery, points_world: np.ndarray, point_node: np.ndarray, samples: int, rng: np.random.Generator
) -> dict[int, Any]:
    """node id -> a fixed random subset of its points, in the model's frame (a torch tensor)."""
    import torch  # lazy, as above

    picked = {}
    for node in sorted(int(n) for n in np.unique(point_node) if n >= 0):
        idx = rng.permutation(np.nonzero(point_node == node)[0])[:samples]
        picked[node] = query.to_model(torch.from_numpy(points_world[idx]).float())
    return picked


def _judge(
    ranked: Sequence[tuple[float, int]],
    holders: Sequence[int],
    matches: Mapping[int, int],
    boxes: Mapping[int, tuple[np.ndarray, np.ndarray]],
    points: np.ndarray,
    point_node: np.ndarray,
) -> tuple[bool, float]:
    """(top-1 hit, IoU) of a ranking ``[(score, node)]`` best first; a tie for first place is a miss."""
    ranked = sorted(ranked, reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[1][0] >= ranked[0][0]):
        return False, 0.0
    best = ranked[0][1]
    hit = best in {matches.get(h) for h in holders}
    chosen = point_node == best
    ious = []
    for holder in holders:
        lo, hi = boxes[holder]
        truth = np.all((points >= lo) & (points <= hi), axis=1)
        union = int((chosen | truth).sum())
        ious.append(float((chosen & truth).sum() / union) if union else 0.0)
    return hit, (max(ious) if hit else 0.0)
