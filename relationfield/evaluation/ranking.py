"""Ranks (ties counted against the prediction) and recall@k of objects, predicates and triplets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import TypeAdapter

from relationfield.evaluation.ground_truth import GroundTruth, GtObject, Triplet
from relationfield.evaluation.prediction import Prediction
from relationfield.evaluation.schema import Scores, ScoreTable, normalize_name, path_locator, validate
from relationfield.vocab import NONE_PREDICATE

OBJECT_KS: tuple[int, ...] = (1, 5, 10)
PREDICATE_KS: tuple[int, ...] = (1, 3, 5)
RELATION_KS: tuple[int, ...] = (1, 50, 100)

#: Products of scores that differ by less than this relative amount count as ties (against us):
#: (a * b) * c and (c * b) * a may differ in the last bit although they are the same number.
TRIPLET_REL_TOL = 1e-9

_SCORE_TABLE = TypeAdapter(ScoreTable)


def rank_with_ties(scores: Sequence[tuple[str, float]], name: str) -> int | None:
    """Rank of ``name`` among ``scores``, ties counted against it; ``None`` when absent.

    ``rank = 1 + number of other names whose score is >= the score of name``. Names are compared
    after :func:`normalize_name`; a name listed twice keeps its highest score.
    """
    table: Scores = validate(_SCORE_TABLE, scores, path_locator("scores", "scores"))
    return rank(table, normalize_name(name))


def rank(table: Mapping[str, float], name: str) -> int | None:
    """Rank of an already normalised ``name`` in a score table (ties against it); ``None`` when absent."""
    if name not in table:
        return None
    score = table[name]
    return 1 + sum(1 for other, value in table.items() if other != name and value >= score)


def recall(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[int, float | None]:
    """Fraction of ranks that are not None and <= k, for each k; None when there are no ranks."""
    if not ranks:
        return {k: None for k in ks}
    return {k: sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}


def recall_by_predicate(
    triplets: Sequence[Triplet], ranks: Sequence[int | None], ks: Sequence[int]
) -> dict[str, tuple[int, dict[int, float | None]]]:
    """Recall@k of each GT predicate's triplets (``ranks[i]`` is ``triplets[i]``'s), with their count, by name."""
    groups: dict[str, list[int | None]] = defaultdict(list)
    for (_, _, predicate), r in zip(triplets, ranks, strict=True):
        groups[predicate].append(r)
    return {predicate: (len(group), recall(group, ks)) for predicate, group in sorted(groups.items())}


def object_ranks(objects: Sequence[GtObject], pred: Prediction, node_of: Mapping[int, int]) -> list[int | None]:
    """Rank of each GT object's label among its matched node's label scores (None: unmatched or absent)."""
    ranks: list[int | None] = []
    for obj in objects:
        node_id = node_of.get(obj.id)
        ranks.append(None if node_id is None else rank(pred.nodes[node_id].label_scores, obj.label))
    return ranks


def _link_of(pred: Prediction, node_of: Mapping[int, int], subject: int, obj: int) -> tuple[int, int, Scores] | None:
    """The predicted link between the nodes matched to GT objects subject -> obj, if any."""
    source, target = node_of.get(subject), node_of.get(obj)
    if source is None or target is None or (source, target) not in pred.links:
        return None
    return source, target, pred.links[(source, target)]


def triplet_rank(subjects: Scores, objects: Scores, predicates: Scores, triplet: tuple[str, str, str]) -> int | None:
    """Rank of (subject label, object label, predicate) among all combinations, by score product.

    "none" is not a candidate predicate; ties (within ``TRIPLET_REL_TOL``) count against us.
    """
    label_s, label_o, predicate = triplet
    candidates = {p: s for p, s in predicates.items() if p != NONE_PREDICATE}
    if label_s not in subjects or label_o not in objects or predicate not in candidates:
        return None
    s = np.fromiter(subjects.values(), dtype=float)
    o = np.fromiter(objects.values(), dtype=float)
    pair = np.outer(s, o).ravel()
    target = (subjects[label_s] * objects[label_o]) * candidates[predicate]
    threshold = target - TRIPLET_REL_TOL * abs(target)
    # Counts the GT triplet itself too, so the count is 1 + the number of others scoring >= it.
    return int(sum(np.count_nonzero(pair * p >= threshold) for p in candidates.values()))


@dataclass(frozen=True)
class TripletRanks:
    """Predicate and relation rank of each GT triplet, and how many distinct links served them."""

    predicate: list[int | None]
    relation: list[int | None]
    evaluated_links: int


def triplet_ranks(
    triplets: Sequence[Triplet], gt: GroundTruth, pred: Prediction, node_of: Mapping[int, int]
) -> TripletRanks:
    """Rank every GT triplet through the link between its matched ends (None: no such link)."""
    predicate_ranks: list[int | None] = []
    relation_ranks: list[int | None] = []
    links: set[tuple[int, int]] = set()
    for subject, obj, predicate in triplets:
        link = _link_of(pred, node_of, subject, obj)
        if link is None:
            predicate_ranks.append(None)
            relation_ranks.append(None)
            continue
        source, target, scores = link
        links.add((source, target))
        predicate_ranks.append(rank(scores, predicate))
        labels = (gt.objects[subject].label, gt.objects[obj].label, predicate)
        relation_ranks.append(
            triplet_rank(pred.nodes[source].label_scores, pred.nodes[target].label_scores, scores, labels)
        )
    return TripletRanks(predicate_ranks, relation_ranks, len(links))
