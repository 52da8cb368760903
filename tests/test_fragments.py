"""Fragments of a larger same-label object are merged into it; real small objects stay."""

from __future__ import annotations

import numpy as np

from relationfield.extraction.config import ExtractionConfig
from relationfield.extraction.fragments import absorb_fragments
from relationfield.scene_graph import SceneNode


def blob(rng: np.random.Generator, low, high, count: int) -> np.ndarray:
    return rng.uniform(low, high, size=(count, 3))


def node(node_id: int, label: str, points: np.ndarray) -> SceneNode:
    lo, hi = tuple(points.min(0)), tuple(points.max(0))
    return SceneNode(node_id, label, [(label, 1.0)], tuple(points.mean(0)), lo, hi, len(points))


def test_slivers_join_their_object_and_small_objects_stay():
    rng = np.random.default_rng(0)
    parts = {
        0: ("floor", blob(rng, [0, 0, 0], [4, 4, 0.01], 2000)),
        1: ("floor", blob(rng, [1, 1, 0.0], [1.2, 1.2, 0.1], 40)),  # a sliver at a chair's feet: merged
        2: ("cup", blob(rng, [2, 2, 0.0], [2.1, 2.1, 0.1], 40)),  # another label: stays
        3: ("floor", blob(rng, [3, 3, 1.0], [3.2, 3.2, 1.1], 40)),  # same label, 1 m above: not touching
        4: ("book", blob(rng, [0, 0, 0.5], [0.2, 0.3, 0.53], 30)),  # two stacked books of similar size
        5: ("book", blob(rng, [0, 0, 0.53], [0.2, 0.3, 0.56], 60)),
        6: ("book", blob(rng, [0.05, 0.05, 0.56], [0.1, 0.1, 0.57], 5)),  # a sliver on the top book: merged
    }
    world = np.concatenate([points for _, points in parts.values()])
    labels = np.concatenate([np.full(len(points), i) for i, (_, points) in parts.items()])
    nodes = [node(i, label, points) for i, (label, points) in parts.items()]
    merged = absorb_fragments(world, labels, nodes, ExtractionConfig())
    assert sorted(np.unique(merged).tolist()) == [0, 2, 3, 4, 5]
    assert (merged[labels == 1] == 0).all() and (merged[labels == 6] == 5).all()
    assert (merged[labels != 1][labels[labels != 1] != 6] == labels[(labels != 1) & (labels != 6)]).all()
    off = absorb_fragments(world, labels, nodes, ExtractionConfig(fragment_ratio=0.0))
    assert off is labels
