"""Layout of the scene-graph picture: node boxes at their floor-plane positions, spread and pushed apart."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from relationfield.scene_graph.graph import SceneNode

__all__ = ["layout"]

# Sizes in inches.
_GAP = (0.45, 0.5)  # free space kept between node boxes (x, y)
_ROOM_PER_LINK = 0.05  # extra space around a node per link it has
_MAX_ROOM = 0.6
_FILL = 0.25  # fraction of the drawing area covered by node boxes (and their gaps)
_SPRING_ITERATIONS = 12
_OVERLAP_ITERATIONS = 300
_MAX_OVERLAP_NODES = 600  # larger graphs skip overlap removal (quadratic cost)


def layout(nodes: Sequence[SceneNode], pairs: Sequence[tuple[int, int]], sizes: np.ndarray) -> np.ndarray:
    """Box centres (inches): floor-plane positions, a short spring refinement, then overlap removal."""
    degree = np.zeros(len(nodes))
    for source, target in pairs:
        degree[source] += 1.0
        degree[target] += 1.0
    # Busy nodes get more room around them for their links' labels.
    room = sizes + np.minimum(_ROOM_PER_LINK * degree, _MAX_ROOM)[:, None]
    positions = _spring_refine(_floor_positions(nodes), pairs)
    positions = _scale_to_inches(positions, room)
    if len(nodes) <= _MAX_OVERLAP_NODES:
        positions = _remove_overlaps(positions, room)
    return positions


def _floor_positions(nodes: Sequence[SceneNode]) -> np.ndarray:
    """Centroids' (x, y) scaled into [-1, 1]; a small z term makes stacked objects draw higher up."""
    centroids = np.array([node.centroid for node in nodes], dtype=np.float64)
    xy = centroids[:, :2] - centroids[:, :2].mean(axis=0)
    extent = float(np.abs(xy).max()) if len(xy) else 0.0
    scale = extent if extent > 1e-9 else 1.0
    xy = xy / scale
    xy[:, 1] += 0.02 * (centroids[:, 2] - centroids[:, 2].mean()) / scale
    # Tiny deterministic offsets so that nodes at identical positions can be pushed apart.
    xy += 1e-4 * np.stack([np.cos(np.arange(len(xy))), np.sin(np.arange(len(xy)))], axis=1)
    return xy


def _spring_refine(positions: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """A few seeded Fruchterman-Reingold steps from the floor-plane positions (spreads clumps)."""
    count = len(positions)
    if count < 3:
        return positions
    import networkx as nx  # imported when used: the package imports with numpy alone

    graph = nx.Graph()
    graph.add_nodes_from(range(count))
    graph.add_edges_from(pairs)
    start = {i: tuple(p) for i, p in enumerate(positions)}
    refined = nx.spring_layout(graph, pos=start, iterations=_SPRING_ITERATIONS, seed=0, k=1.5 / math.sqrt(count))
    return np.array([refined[i] for i in range(count)], dtype=np.float64)


def _scale_to_inches(positions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Scale so that the layout's larger extent leaves room for all boxes at the fill fraction."""
    if len(positions) < 2:
        return np.zeros_like(positions)
    area = float(np.prod(sizes + np.array(_GAP), axis=1).sum()) / _FILL
    extent = float(np.ptp(positions, axis=0).max())
    return positions * (math.sqrt(area) / max(extent, 1e-9))


def _remove_overlaps(positions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Push overlapping boxes (gaps included) apart along the line joining their centres.

    Pushing along that line, rather than along one axis, keeps the floor-plane arrangement and spreads
    clumps in two dimensions instead of stacking them into columns.
    """
    pos = positions.copy()
    count = len(pos)
    need = (sizes[:, None, :] + sizes[None, :, :]) / 2.0 + np.array(_GAP)
    upper = np.triu(np.ones((count, count), dtype=bool), k=1)
    for _ in range(_OVERLAP_ITERATIONS):
        delta = pos[:, None, :] - pos[None, :, :]
        reach = (np.abs(delta) / need).max(axis=-1)  # < 1: the boxes overlap
        first, second = np.nonzero(upper & (reach < 1.0))
        if not len(first):
            break
        apart = delta[first, second]
        ratio = np.maximum(reach[first, second], 0.05)
        push = apart * (1.0 / ratio - 1.0)[:, None]
        shift = np.zeros_like(pos)
        np.add.at(shift, first, push / 2.0)
        np.add.at(shift, second, -push / 2.0)
        pos += 0.5 * shift
    return pos
