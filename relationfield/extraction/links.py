"""Links of the extracted graph: candidate node pairs scored with the relation field against the predicates.

For every pair, relation features g(x, z) with x sampled on the subject and z on the object are averaged
and scored against the predicate vocabulary and "none". Pairs are scored in batches: memory grows with the
number of points and the number of candidate pairs, never with their product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from relationfield.extraction.clustering import box_gap
from relationfield.extraction.config import ExtractionConfig, Progress, no_progress
from relationfield.extraction.converse import fuse_converses
from relationfield.extraction.implication import fuse_implications
from relationfield.extraction.measured import fuse_measured
from relationfield.extraction.nodes import top_scores
from relationfield.query import FieldQuery
from relationfield.scene_graph import SceneLink, SceneNode
from relationfield.vocab import NONE_PREDICATE

__all__ = ["candidate_pairs", "score_links"]


def candidate_pairs(nodes: Sequence[SceneNode], config: ExtractionConfig) -> list[tuple[int, int]]:
    """Ordered (subject, object) index pairs to score."""
    pairs = []
    for a, na in enumerate(nodes):
        for b, nb in enumerate(nodes):
            if a == b:
                continue
            gap = box_gap(np.array(na.aabb_min), np.array(na.aabb_max), np.array(nb.aabb_min), np.array(nb.aabb_max))
            if config.all_pairs or gap <= config.max_distance:
                pairs.append((a, b))
    return pairs


@torch.no_grad()
def score_links(
    query: FieldQuery,
    points: Tensor,
    labels: np.ndarray,
    nodes: Sequence[SceneNode],
    predicates: Sequence[str],
    config: ExtractionConfig,
    progress: Progress = no_progress,
) -> list[SceneLink]:
    """Score the candidate pairs in batches: x on the subject, z on the object, averaged features; then raise
    entailed predicates (:mod:`~relationfield.extraction.implication`), mix in the predicates measured from the
    boxes (:mod:`~relationfield.extraction.measured`) and let converse predicates of the two directions of a
    pair agree (:mod:`~relationfield.extraction.converse`)."""
    texts = [*predicates, NONE_PREDICATE]
    none_index = len(texts) - 1
    members = [torch.from_numpy(np.nonzero(labels == node.id)[0]) for node in nodes]
    generator = torch.Generator().manual_seed(config.seed)
    pairs = candidate_pairs(nodes, config)
    head = query.model.relation_head
    normalize = query.model.normalize_positions
    rows: dict[tuple[int, int], Tensor] = {}
    advance = progress("scoring relations", len(pairs))
    for start in range(0, len(pairs), config.pairs_per_batch):
        batch = pairs[start : start + config.pairs_per_batch]
        xs, zs = [], []
        for a, b in batch:
            xs.append(members[a][torch.randint(len(members[a]), (config.subject_samples,), generator=generator)])
            zs.append(members[b][torch.randint(len(members[b]), (config.object_samples,), generator=generator)])
        x = normalize(points[torch.stack(xs)].to(query.device))  # [P, m, 3]
        z = normalize(points[torch.stack(zs)].to(query.device))  # [P, q, 3]
        feats = head(x[:, :, None, :], z[:, None, :, :])  # [P, m, q, D]: m + q grid lookups per pair
        mean = F.normalize(F.normalize(feats, dim=-1).mean(dim=(1, 2)), dim=-1)
        probs = query.predicate_probabilities(mean, texts, config.predicate_temperature).cpu()
        rows.update(zip(batch, probs))
        advance(len(batch))
    links: list[SceneLink] = []
    if config.implied_predicates:
        rows = fuse_implications(rows, texts)
    rows = fuse_measured(rows, texts, nodes, config)
    for (a, b), row in fuse_converses(rows, texts, config.converse_weight).items():
        scores = top_scores(row, texts, config.predicate_top_k, always=none_index)
        best = max(((n, s) for n, s in scores if n != NONE_PREDICATE), key=lambda item: item[1])
        links.append(SceneLink(nodes[a].id, nodes[b].id, best[0], best[1], scores))
    return links
