"""Scene-graph extraction from a trained RelationField: segmentation, node labels, scored links, timed.

1. Surface points (:mod:`relationfield.extraction.surface`) clustered into instances
   (:mod:`relationfield.extraction.clustering`, :func:`relationfield.extraction.segmentation.segment`).
2. Labels: each node's mean semantic feature against the object vocabulary (:mod:`relationfield.extraction.nodes`);
   fragments of a larger same-label object merged into it (:mod:`relationfield.extraction.fragments`).
3. Links: candidate node pairs scored against the predicate vocabulary and "none"
   (:mod:`relationfield.extraction.links`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from relationfield.extraction.config import ExtractionConfig, Progress, no_progress
from relationfield.extraction.fragments import absorb_fragments
from relationfield.extraction.links import score_links
from relationfield.extraction.nodes import label_nodes
from relationfield.extraction.segmentation import Segmentation, segment
from relationfield.query import FieldQuery
from relationfield.scene_graph import SceneGraph, SceneNode

__all__ = ["Extraction", "extract_scene_graph", "extraction_metadata"]

_T = TypeVar("_T")


@dataclass
class Extraction:
    """The extracted graph plus the points behind it (world frame) and how long it took."""

    graph: SceneGraph
    """Nodes and scored links; its metadata holds :func:`extraction_metadata`."""
    points_world: np.ndarray
    """[N, 3] surface points in the capture's world frame."""
    point_node: np.ndarray
    """[N] node id of each point, -1 for points in no node."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: "segmentation", "labels", "links"."""
    seconds: float = 0.0
    """Seconds the whole extraction took."""


def extract_scene_graph(
    query: FieldQuery,
    objects: Sequence[str],
    predicates: Sequence[str],
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
    load_config: Path | None = None,
    links: bool = True,
) -> Extraction:
    """Extract a scene graph (world frame) from a loaded run; ``load_config`` (the run's config.yml) is
    recorded in the graph's metadata with the extraction time. ``links=False`` stops after the nodes (what
    a query needs)."""
    config = config or ExtractionConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    seg = _timed(timings, "segmentation", lambda: segment(query, config, progress))
    nodes = _timed(timings, "labels", lambda: _labelled_nodes(query, seg, objects, config))
    scored = []
    if links and nodes:
        scored = _timed(
            timings, "links", lambda: score_links(query, seg.points, seg.labels, nodes, predicates, config, progress)
        )
    seconds = time.perf_counter() - start
    graph = SceneGraph(nodes=nodes, links=scored, metadata=extraction_metadata(seconds, load_config))
    return Extraction(graph, seg.world, seg.labels, timings, seconds)


def _labelled_nodes(
    query: FieldQuery, seg: Segmentation, objects: Sequence[str], config: ExtractionConfig
) -> list[SceneNode]:
    """Label the nodes; merge the fragments into the objects they belong to and label those again."""
    nodes = label_nodes(query, seg, objects, config)
    merged = absorb_fragments(seg.world, seg.labels, nodes, config)
    if merged is seg.labels:
        return nodes
    seg.labels = merged
    return label_nodes(query, seg, objects, config)


def extraction_metadata(seconds: float, load_config: Path | None = None) -> dict[str, Any]:
    """The scene graph's metadata: extraction time (s, rounded to 0.01) and the run's config.yml, if known."""
    metadata: dict[str, Any] = {"extraction_seconds": round(seconds, 2)}
    if load_config is not None:
        metadata["load_config"] = str(load_config)
    return metadata


def _timed(timings: dict[str, float], stage: str, run: Callable[[], _T]) -> _T:
    """``run()``, its duration recorded in ``timings[stage]``."""
    start = time.perf_counter()
    result = run()
    timings[stage] = time.perf_counter() - start
    return result
