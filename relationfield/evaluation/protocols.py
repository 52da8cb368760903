"""Evaluation protocols: how relationfield, Open3DSG and 3DSSG rank ties, count "none" and average recalls.

``relationfield`` (the default) is the protocol of :mod:`.ranking`. The two others apply the rules of
the peers' evaluation code to our prediction and ground-truth formats (each rule cites its source):

* ``open3dsg``: boschresearch/Open3DSG ``open3dsg/scripts/eval.py`` (``get_eval``, ``topk_object``,
  ``topk_ratio_pred``, ``topk_relationship``), with the pairs and distances of
  ``open3dsg/data/preprocess_3rscan.py`` and the averaging of ``open3dsg/scripts/trainer.py``
  (``on_test_epoch_end``);
* ``3dssg``: ShunChengWu/3DSSG ``ssg/utils/util_eva.py`` (``evaluate_topk_recall_single_prediction``,
  ``evaluate_topk_recall_predicate``, ``evaluate_topk_recall``, ``EvalSceneGraphBatch``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relationfield.errors import UserError
from relationfield.evaluation.ground_truth import GroundTruth, GtObject, Triplet
from relationfield.evaluation.prediction import Prediction
from relationfield.evaluation.ranking import (
    OBJECT_KS,
    PREDICATE_KS,
    RELATION_KS,
    TRIPLET_REL_TOL,
    object_ranks,
    recall,
    recall_by_predicate,
    triplet_ranks,
)
from relationfield.evaluation.schema import Box, Scores
from relationfield.vocab import NONE_PREDICATE

PROTOCOL_RELATIONFIELD = "relationfield"
PROTOCOL_OPEN3DSG = "open3dsg"
PROTOCOL_3DSSG = "3dssg"
PROTOCOLS: tuple[str, ...] = (PROTOCOL_RELATIONFIELD, PROTOCOL_OPEN3DSG, PROTOCOL_3DSSG)
DEFAULT_PROTOCOL = PROTOCOL_RELATIONFIELD

TIES_AGAINST = "against"
"""rank = 1 + the number of other entries scoring >= it."""
TIES_FAVOUR = "favour"
"""rank = 1 + the number of entries scoring > it (the peers' ``torch.where(sorted == score)[0][0] + 1``)."""
TIES_INDEX = "index"
"""A stable descending sort: rank = 1 + entries scoring > it + tied entries listed before it."""

OPEN3DSG_FAR_DISTANCE = 0.5
"""Open3DSG: an unrelated pair further apart than this (metres) is a "none" hit whatever was predicted."""


@dataclass(frozen=True)
class Rules:
    """The rules of one protocol."""

    name: str
    """The protocol's name, one of :data:`PROTOCOLS`."""
    summary: str
    """What differs from the other protocols, in one line (help text and ``eval.md``)."""
    object_ties: str
    """How a tie is ranked in Object R@k (one of the ``TIES_*``)."""
    predicate_ties: str
    """How a tie is ranked in Predicate R@k."""
    triplet_ties: str
    """How a tie is ranked in Relation R@k (products within ``TRIPLET_REL_TOL`` tie)."""
    none_competes: bool
    """Whether "none" competes with the GT predicate in Predicate R@k."""
    none_in_triplets: bool
    """Whether (subject, object, "none") combinations are triplet candidates."""
    unrelated_pairs: bool
    """Whether every unrelated ordered pair of a subgraph is scored as a GT "none" triple."""
    far_distance: float | None
    """An unrelated pair whose boxes are more than this apart is a Predicate hit without looking at the link."""
    divide_by_predicates: bool
    """Whether a rank becomes ceil(rank / the number of GT predicates of its pair)."""
    per_subgraph: bool
    """Whether recalls are averaged over subgraphs (else pooled over all GT objects and triples)."""


RULES: dict[str, Rules] = {
    PROTOCOL_RELATIONFIELD: Rules(
        name=PROTOCOL_RELATIONFIELD,
        summary='ties count against the prediction; "none" competes for predicates but is no triplet candidate; '
        "related pairs only; recalls pooled over all GT objects / triples",
        object_ties=TIES_AGAINST,
        predicate_ties=TIES_AGAINST,
        triplet_ties=TIES_AGAINST,
        none_competes=True,
        none_in_triplets=False,
        unrelated_pairs=False,
        far_distance=None,
        divide_by_predicates=False,
        per_subgraph=False,
    ),
    PROTOCOL_OPEN3DSG: Rules(
        name=PROTOCOL_OPEN3DSG,
        summary="Open3DSG eval.py: predicate and triplet ties in the prediction's favour, object ties by list order; "
        'every unrelated ordered pair is a "none" triple (a predicate hit when the boxes are over 0.5 m apart); '
        '"none" is a triplet candidate; recalls averaged per subgraph (--splits)',
        object_ties=TIES_INDEX,
        predicate_ties=TIES_FAVOUR,
        triplet_ties=TIES_FAVOUR,
        none_competes=True,
        none_in_triplets=True,
        unrelated_pairs=True,
        far_distance=OPEN3DSG_FAR_DISTANCE,
        divide_by_predicates=False,
        per_subgraph=True,
    ),
    PROTOCOL_3DSSG: Rules(
        name=PROTOCOL_3DSSG,
        summary="3DSSG util_eva.py: ties by list order; a pair's predicate and triplet ranks are divided by its "
        'number of GT predicates (rounded up); "none" is no class (multi-label predicates); related pairs only; '
        "recalls pooled",
        object_ties=TIES_INDEX,
        predicate_ties=TIES_INDEX,
        triplet_ties=TIES_INDEX,
        none_competes=False,
        none_in_triplets=False,
        unrelated_pairs=False,
        far_distance=None,
        divide_by_predicates=True,
        per_subgraph=False,
    ),
}


def get_rules(protocol: Any) -> Rules:
    """The rules of ``protocol``; a UserError naming the protocols for anything else."""
    if not isinstance(protocol, str) or protocol.strip().lower() not in RULES:
        raise UserError(f"unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return RULES[protocol.strip().lower()]


# ----------------------------------------------------------------------------------------------
# Ranks under a tie rule


def tie_rank(table: Mapping[str, float], name: str, ties: str) -> int | None:
    """Rank of ``name`` in a score table (file order kept) under a tie rule; None when it is absent."""
    if name not in table:
        return None
    score = table[name]
    if ties == TIES_AGAINST:
        return 1 + sum(1 for other, value in table.items() if other != name and value >= score)
    if ties == TIES_FAVOUR:
        return 1 + sum(1 for value in table.values() if value > score)
    position = list(table).index(name)
    return 1 + sum(1 for i, value in enumerate(table.values()) if value > score or (value == score and i < position))


def _rank_value(values: np.ndarray, target: float, ties: str, position: int) -> int:
    """Rank of ``values[position]`` (worth ``target``) among ``values``; values within the tolerance tie."""
    tol = TRIPLET_REL_TOL * abs(target)
    above = int(np.count_nonzero(values > target + tol))
    tied = np.abs(values - target) <= tol
    if ties == TIES_FAVOUR:
        return 1 + above
    if ties == TIES_AGAINST:
        return above + int(np.count_nonzero(tied))  # the entry itself is among the tied ones
    return 1 + above + int(np.count_nonzero(tied[:position]))


def _products(subjects: Scores, objects: Scores, predicates: Scores) -> np.ndarray:
    """Every (subject, object, predicate) product, shape (subjects, objects, predicates), in list order."""
    pair = np.outer(np.fromiter(subjects.values(), dtype=float), np.fromiter(objects.values(), dtype=float))
    return np.multiply.outer(pair, np.fromiter(predicates.values(), dtype=float))


def rule_triplet_rank(
    subjects: Scores, objects: Scores, predicates: Scores, triplet: tuple[str, str, str], rules: Rules
) -> int | None:
    """Rank of (subject label, object label, predicate) among all combinations under ``rules``; None: a miss."""
    label_s, label_o, predicate = triplet
    candidates = predicates if rules.none_in_triplets else {p: s for p, s in predicates.items() if p != NONE_PREDICATE}
    if label_s not in subjects or label_o not in objects or predicate not in candidates:
        return None
    products = _products(subjects, objects, candidates)
    target = (subjects[label_s] * objects[label_o]) * candidates[predicate]
    # The flat index of the GT cell, as 3DSSG's (s * n_objects + o) * n_predicates + p.
    flat = (list(subjects).index(label_s) * len(objects) + list(objects).index(label_o)) * len(candidates)
    flat += list(candidates).index(predicate)
    return _rank_value(products.ravel(), target, rules.triplet_ties, flat)


def none_triplet_rank(subjects: Scores, objects: Scores, predicates: Scores) -> int | None:
    """Open3DSG's triplet rank of an unrelated pair: that of its best (any label, any label, "none") product.

    ``topk_relationship`` ranks ``conf_matrix[:, :, 0]`` whatever the labels, ties in the prediction's favour.
    """
    if NONE_PREDICATE not in predicates or not subjects or not objects:
        return None
    products = _products(subjects, objects, predicates)
    best = float(products[:, :, list(predicates).index(NONE_PREDICATE)].max())
    return _rank_value(products.ravel(), best, TIES_FAVOUR, 0)


def divide_rank(rank: int | None, count: int) -> int | None:
    """3DSSG's multi-predicate rank: ``math.ceil(index / len(gt_rels))`` (None stays a miss)."""
    return None if rank is None else math.ceil(rank / count)


def box_gap(a: Box, b: Box) -> float:
    """Euclidean distance between two axis-aligned boxes (0 when they touch or overlap)."""
    a_lo, a_hi = np.asarray(a[0], dtype=float), np.asarray(a[1], dtype=float)
    b_lo, b_hi = np.asarray(b[0], dtype=float), np.asarray(b[1], dtype=float)
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(b_lo - a_hi, a_lo - b_hi))))


# ----------------------------------------------------------------------------------------------
# Recalls of a protocol


@dataclass(frozen=True)
class ProtocolRecalls:
    """Recall@k of objects, predicates and triplets under one protocol, and what they were computed over."""

    object: dict[int, float | None]
    """Object R@k."""
    predicate: dict[int, float | None]
    """Predicate R@k."""
    relation: dict[int, float | None]
    """Relation (triplet) R@k."""
    evaluated_links: int
    """Distinct predicted links that served a GT triple ("none" triples included)."""
    none_triplets: int | None
    """GT "none" triples (unrelated ordered pairs) scored; None when the protocol scores none."""
    subgraphs: int | None
    """Subgraphs the recalls are averaged over; None when they are pooled."""
    predicate_by_predicate: dict[str, tuple[int, dict[int, float | None]]] | None = None
    """Predicate R@k of each GT predicate's triplets, with their count; the default protocol only."""


@dataclass(frozen=True)
class _Scene:
    truth: GroundTruth
    pred: Prediction
    node_of: Mapping[int, int]


@dataclass
class _Ranks:
    objects: list[int | None] = field(default_factory=list)
    predicates: list[int | None] = field(default_factory=list)
    relations: list[int | None] = field(default_factory=list)
    links: set[tuple[int, int]] = field(default_factory=set)
    none_triplets: int = 0


def _link(scene: _Scene, subject: int, obj: int) -> tuple[int, int, Scores] | None:
    source, target = scene.node_of.get(subject), scene.node_of.get(obj)
    if source is None or target is None or (source, target) not in scene.pred.links:
        return None
    return source, target, scene.pred.links[(source, target)]


def _pair_gap(scene: _Scene, a: int, b: int) -> float | None:
    """Gap between the GT boxes of a and b (the matched nodes' boxes for 3DSSG GT); None when unknown."""
    boxes = [scene.truth.objects[i].aabb for i in (a, b)]
    if boxes[0] is None or boxes[1] is None:
        boxes = [scene.pred.nodes[scene.node_of[i]].aabb for i in (a, b)]
    if boxes[0] is None or boxes[1] is None:
        return None
    return box_gap(boxes[0].box, boxes[1].box)


def _related_ranks(rules: Rules, triplets: Sequence[Triplet], scene: _Scene, ranks: _Ranks) -> None:
    """Predicate and triplet rank of every GT triple (a missing link or unmatched end is a miss)."""
    per_pair = Counter((s, o) for s, o, _ in triplets)
    for subject, obj, predicate in triplets:
        link = _link(scene, subject, obj)
        if link is None:
            ranks.predicates.append(None)
            ranks.relations.append(None)
            continue
        source, target, scores = link
        ranks.links.add((source, target))
        table = scores if rules.none_competes else {p: s for p, s in scores.items() if p != NONE_PREDICATE}
        by_predicate = tie_rank(table, predicate, rules.predicate_ties)
        labels = (scene.truth.objects[subject].label, scene.truth.objects[obj].label, predicate)
        nodes = scene.pred.nodes
        by_triplet = rule_triplet_rank(nodes[source].label_scores, nodes[target].label_scores, scores, labels, rules)
        if rules.divide_by_predicates:
            by_predicate = divide_rank(by_predicate, per_pair[(subject, obj)])
            by_triplet = divide_rank(by_triplet, per_pair[(subject, obj)])
        ranks.predicates.append(by_predicate)
        ranks.relations.append(by_triplet)


def _unrelated_ranks(
    rules: Rules, group: Sequence[int], related: set[tuple[int, int]], scene: _Scene, ranks: _Ranks
) -> None:
    """Open3DSG's "none" triple of every unrelated ordered pair of the group (preprocess_3rscan.py adds them)."""
    for a in group:
        for b in group:
            if a == b or (a, b) in related:
                continue
            ranks.none_triplets += 1
            link = _link(scene, a, b)
            matched = a in scene.node_of and b in scene.node_of
            gap = _pair_gap(scene, a, b) if matched and rules.far_distance is not None else None
            if gap is not None and gap > rules.far_distance:  # type: ignore[operator]
                ranks.predicates.append(1)  # topk_ratio_pred: index = 1 when norm(dist) > 0.5
            else:
                ranks.predicates.append(
                    None if link is None else tie_rank(link[2], NONE_PREDICATE, rules.predicate_ties)
                )
            if link is None:
                ranks.relations.append(None)
                continue
            ranks.links.add((link[0], link[1]))
            nodes = scene.pred.nodes
            ranks.relations.append(none_triplet_rank(nodes[link[0]].label_scores, nodes[link[1]].label_scores, link[2]))


def _group_ranks(rules: Rules, group: Sequence[int], triplets: Sequence[Triplet], scene: _Scene) -> _Ranks:
    """Every rank of one subgraph: its objects, its GT triples and (Open3DSG) its unrelated pairs."""
    ranks = _Ranks()
    members = set(group)
    for obj_id in group:
        node_id = scene.node_of.get(obj_id)
        obj = scene.truth.objects[obj_id]
        table = None if node_id is None else scene.pred.nodes[node_id].label_scores
        ranks.objects.append(None if table is None else tie_rank(table, obj.label, rules.object_ties))
    inside = [t for t in triplets if t[0] in members and t[1] in members]
    _related_ranks(rules, inside, scene, ranks)
    if rules.unrelated_pairs:
        _unrelated_ranks(rules, group, {(s, o) for s, o, _ in inside}, scene, ranks)
    return ranks


def mean_recall(groups: Sequence[Sequence[int | None]], ks: Sequence[int]) -> dict[int, float | None]:
    """Recall@k of each non-empty group, averaged (Open3DSG's ``np.nanmean`` over subgraphs); None if all empty."""
    per_group = [recall(ranks, ks) for ranks in groups if ranks]
    if not per_group:
        return {k: None for k in ks}
    return {k: sum(r[k] for r in per_group) / len(per_group) for k in ks}  # type: ignore[misc]


def pooled_recall(groups: Sequence[Sequence[int | None]], ks: Sequence[int]) -> dict[int, float | None]:
    """Recall@k over the ranks of every group together (3DSSG extends one list over all batches)."""
    return recall([r for ranks in groups for r in ranks], ks)


def protocol_recalls(
    rules: Rules,
    objects: Sequence[GtObject],
    triplets: Sequence[Triplet],
    truth: GroundTruth,
    pred: Prediction,
    node_of: Mapping[int, int],
    subgraphs: Sequence[Sequence[int]] | None = None,
) -> ProtocolRecalls:
    """Object, predicate and triplet recalls under ``rules`` (``subgraphs``: GT object ids per subgraph)."""
    if rules.name == PROTOCOL_RELATIONFIELD:
        # The default protocol is ranking.py's, unchanged.
        ranks = triplet_ranks(triplets, truth, pred, node_of)
        return ProtocolRecalls(
            object=recall(object_ranks(objects, pred, node_of), OBJECT_KS),
            predicate=recall(ranks.predicate, PREDICATE_KS),
            relation=recall(ranks.relation, RELATION_KS),
            evaluated_links=ranks.evaluated_links,
            none_triplets=None,
            subgraphs=None,
            predicate_by_predicate=recall_by_predicate(triplets, ranks.predicate, PREDICATE_KS),
        )
    scene = _Scene(truth, pred, node_of)
    groups = [[obj.id for obj in objects]] if subgraphs is None else [list(g) for g in subgraphs]
    results = [_group_ranks(rules, group, triplets, scene) for group in groups]
    combine = mean_recall if rules.per_subgraph else pooled_recall
    return ProtocolRecalls(
        object=combine([r.objects for r in results], OBJECT_KS),
        predicate=combine([r.predicates for r in results], PREDICATE_KS),
        relation=combine([r.relations for r in results], RELATION_KS),
        evaluated_links=len(set().union(*(r.links for r in results))),
        none_triplets=sum(r.none_triplets for r in results) if rules.unrelated_pairs else None,
        subgraphs=len(groups) if rules.per_subgraph else None,
    )


# ----------------------------------------------------------------------------------------------
# Subgraphs (3DSSG "split" files)


def subgraph_groups(splits: Mapping[str, Sequence[int]], truth: GroundTruth, kept: set[int]) -> list[list[int]]:
    """The kept (not ignored) GT object ids of each subgraph, sorted; unknown ids are a UserError."""
    if not splits:
        raise UserError("the split mapping holds no subgraph")
    groups = []
    for name, ids in splits.items():
        unknown = sorted(set(ids) - set(truth.objects))
        if unknown:
            raise UserError(f"subgraph {name!r} refers to GT objects {unknown[:5]}, which the ground truth lacks")
        groups.append(sorted(set(ids) & kept))
    return groups
