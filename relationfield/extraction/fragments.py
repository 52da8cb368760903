"""Fragments: small nodes that are pieces of a larger touching object with the same label, merged into it.

Clustering leaves slivers where features blend (floor points at a chair's feet, a strip of wall behind a
picture). They are not objects, and as nodes they compete with the object they belong to: "the chair
stands on the floor" is as true of the sliver as of the floor. A node becomes part of a touching node
(boxes of their points at most two voxels apart) when both have the same top label and it has at most
``fragment_ratio`` of that node's points; two stacked books of similar size stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relationfield.extraction.clustering import box_gap, node_boxes
from relationfield.extraction.config import ExtractionConfig
from relationfield.scene_graph import SceneNode

__all__ = ["absorb_fragments"]


def absorb_fragments(
    world: np.ndarray, labels: np.ndarray, nodes: Sequence[SceneNode], config: ExtractionConfig
) -> np.ndarray:
    """Node id per point after merging each fragment into its largest touching same-label node."""
    if config.fragment_ratio <= 0 or len(nodes) < 2:
        return labels
    extent = float((world.max(0) - world.min(0)).max())
    voxel = 2.0 * extent / config.voxels_per_side
    boxes = node_boxes(world, labels, [n.id for n in nodes])
    by_size = sorted(nodes, key=lambda n: -n.point_count)
    target: dict[int, int] = {}
    for small in by_size:
        for large in by_size:
            if large.point_count * config.fragment_ratio < small.point_count:
                break  # sorted by size: no larger node is left
            if large.label == small.label and box_gap(*boxes[small.id], *boxes[large.id]) <= 2 * voxel:
                target[small.id] = target.get(large.id, large.id)
                break
    if not target:
        return labels
    out = labels.copy()
    for fragment, whole in target.items():
        out[labels == fragment] = whole
    return out
