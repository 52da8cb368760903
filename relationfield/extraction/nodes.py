"""Nodes of the extracted graph: one per instance, labelled against the object vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from relationfield.extraction.config import ExtractionConfig
from relationfield.extraction.segmentation import Segmentation
from relationfield.query import FieldQuery
from relationfield.scene_graph import SceneNode

__all__ = ["label_nodes", "top_scores"]


def top_scores(scores: Tensor, names: Sequence[str], k: int, always: int | None = None) -> list[tuple[str, float]]:
    """The ``k`` best (name, score) pairs, best first, plus ``names[always]`` if it is not among them."""
    order = torch.argsort(scores, descending=True).tolist()
    keep = order[:k]
    if always is not None and always not in keep:
        keep.append(always)
    return [(names[i], float(scores[i])) for i in keep]


def label_nodes(
    query: FieldQuery, seg: Segmentation, objects: Sequence[str], config: ExtractionConfig
) -> list[SceneNode]:
    """One node per instance: vocabulary label scores, centroid and robust box (1st-99th percentiles)."""
    vocab = query.encode(list(objects), "semantic").cpu()
    nodes: list[SceneNode] = []
    for nid in seg.node_ids:
        members = seg.labels == nid
        mean = F.normalize(seg.semantic[torch.from_numpy(members)].mean(0), dim=0)
        probs = torch.softmax(vocab @ mean / config.label_temperature, dim=0)
        label_scores = top_scores(probs, objects, config.label_top_k)
        pts = seg.world[members]
        nodes.append(
            SceneNode(
                id=nid,
                label=label_scores[0][0],
                label_scores=label_scores,
                centroid=tuple(float(v) for v in pts.mean(0)),
                aabb_min=tuple(float(v) for v in np.percentile(pts, 1, axis=0)),
                aabb_max=tuple(float(v) for v in np.percentile(pts, 99, axis=0)),
                point_count=int(members.sum()),
            )
        )
    return nodes
