"""Metrics that see whether a relation depends on its reference: Reference R@k and none precision.

The 3DSSG-style recalls rank predicates only on the ground-truth pairs, so a field that says "standing
on" for a monitor whatever it stands on scores perfectly there. These two metrics look at the other
pairs too (they need links for all pairs: ``export scene-graph --all-pairs``):

* **Reference R@k** (k = 1, 3): for a GT triple ``(s, o, p)``, the rank of ``o``'s node among all nodes
  ``t`` by the score of ``p`` on the link ``s -> t``. The nodes of the other GT objects of ``(s, p)`` do
  not compete (two pillows may both lie on the sofa), nor does ``s``'s own node; ties count against us.
  A triple with an unmatched end, no link ``s -> o`` or no ``p`` on it is a miss. A competitor without
  a link does not compete; a competitor link that does not list ``p`` counts with its lowest listed
  score (the most ``p`` could have). Reported overall, per predicate and over the support, attachment
  and containment predicates (:data:`SUPPORT_PREDICATES`).
* **None precision**: among the ordered pairs of matched, non-structural GT objects with no GT relation
  in that direction, the share whose link's top predicate is "none" (strictly above every other
  predicate; a missing link counts as "none").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from relationfield.evaluation.ground_truth import GtObject, Triplet
from relationfield.evaluation.prediction import Prediction
from relationfield.evaluation.ranking import recall
from relationfield.vocab import NONE_PREDICATE

REFERENCE_KS: tuple[int, ...] = (1, 3)

SUPPORT_PREDICATES: frozenset[str] = frozenset(
    {
        "supported by",
        "standing on",
        "lying on",
        "standing in",
        "lying in",
        "hanging on",
        "hanging in",
        "attached to",
        "leaning against",
        "inside",
        "build in",
    }
)
"""Support, attachment and containment predicates (3DSSG names): the ones a reference decides."""

STRUCTURAL_LABELS: tuple[str, ...] = ("floor", "wall", "ceiling")
"""Objects left out of none precision: everything stands on the floor or against a wall."""


@dataclass(frozen=True)
class ReferenceResult:
    """Reference ranks by predicate, and the none-precision counts."""

    ranks: dict[str, list[int | None]]
    """predicate -> the reference rank of each of its GT triples (None: a miss)."""
    none_hits: int
    """Unrelated pairs whose link's top predicate is "none"."""
    unrelated_pairs: int
    """Ordered pairs of matched, non-structural GT objects with no GT relation."""

    def recall(self, predicates: Iterable[str] | None = None) -> dict[int, float | None]:
        """Reference R@k over the triples of ``predicates`` (all of them when None)."""
        chosen = self.ranks if predicates is None else {p: r for p, r in self.ranks.items() if p in set(predicates)}
        return recall([r for ranks in chosen.values() for r in ranks], REFERENCE_KS)

    @property
    def support_recall(self) -> dict[int, float | None]:
        return self.recall(SUPPORT_PREDICATES)

    @property
    def none_precision(self) -> float | None:
        return self.none_hits / self.unrelated_pairs if self.unrelated_pairs else None

    def per_predicate(self) -> dict[str, tuple[int, dict[int, float | None]]]:
        """predicate -> (number of GT triples, Reference R@k), predicates sorted by name."""
        return {p: (len(r), recall(r, REFERENCE_KS)) for p, r in sorted(self.ranks.items())}


def reference_rank(
    pred: Prediction, source: int, target: int, predicate: str, excluded: Iterable[int] = ()
) -> int | None:
    """Rank of node ``target`` among the nodes linked from ``source`` by the score of ``predicate``.

    ``excluded`` nodes (and ``source``) do not compete; ties count against ``target``; None when there is
    no link ``source -> target`` or it does not list ``predicate``.
    """
    scores = pred.links.get((source, target))
    if scores is None or predicate not in scores:
        return None
    score = scores[predicate]
    skip = {source, target, *excluded}
    rank = 1
    for node in pred.nodes:
        other = pred.links.get((source, node))
        if node in skip or other is None:
            continue
        if other.get(predicate, min(other.values())) >= score:
            rank += 1
    return rank


def reference_metrics(
    triplets: Sequence[Triplet],
    objects: Sequence[GtObject],
    pred: Prediction,
    node_of: Mapping[int, int],
    structural_labels: Iterable[str] = STRUCTURAL_LABELS,
) -> ReferenceResult:
    """Reference ranks of every GT triple and none precision over the unrelated pairs (see the module doc)."""
    references: dict[tuple[int, str], set[int]] = defaultdict(set)
    for subject, obj, predicate in triplets:
        references[(subject, predicate)].add(obj)
    ranks: dict[str, list[int | None]] = defaultdict(list)
    for subject, obj, predicate in triplets:
        source, target = node_of.get(subject), node_of.get(obj)
        if source is None or target is None:
            ranks[predicate].append(None)
            continue
        others = (node_of[o] for o in references[(subject, predicate)] if o != obj and o in node_of)
        ranks[predicate].append(reference_rank(pred, source, target, predicate, others))
    related = {(s, o) for s, o, _ in triplets}
    structural = set(structural_labels)
    kept = [obj.id for obj in objects if obj.label not in structural and obj.id in node_of]
    hits = total = 0
    for a in kept:
        for b in kept:
            if a == b or (a, b) in related:
                continue
            total += 1
            hits += _none_wins(pred.links.get((node_of[a], node_of[b])))
    return ReferenceResult(dict(ranks), hits, total)


def _none_wins(scores: Mapping[str, float] | None) -> bool:
    if scores is None:
        return True
    none = scores.get(NONE_PREDICATE)
    return none is not None and all(none > value for name, value in scores.items() if name != NONE_PREDICATE)
