"""The files of an exported scene graph: ``scene_graph.json``, ``scene_graph.png`` and ``points.ply``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.scene_graph.colors import NOISE_COLOR, node_colors
from relationfield.scene_graph.graph import SceneGraph
from relationfield.scene_graph.picture import draw_scene_graph
from relationfield.scene_graph.ply import as_colors, as_node_ids, as_points, write_ply

__all__ = ["JSON_FILE", "PLY_FILE", "PNG_FILE", "read_scene_graph", "write_scene_graph"]

JSON_FILE = "scene_graph.json"
PNG_FILE = "scene_graph.png"
PLY_FILE = "points.ply"


def read_scene_graph(path: str | Path) -> SceneGraph:
    """Load a ``scene_graph.json``; a missing or malformed file raises :class:`UserError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"scene graph not found: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read the scene graph {path}: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    try:
        return SceneGraph.from_json(data)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def write_scene_graph(
    graph: SceneGraph,
    output_dir: Path,
    points: np.ndarray | None = None,
    point_node: np.ndarray | None = None,
    colors: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``scene_graph.json``, ``scene_graph.png`` and (with ``points``) ``points.ply`` to ``output_dir``.

    ``point_node`` gives each point's node id (-1: none); ``colors`` default to the node colours
    (:func:`node_colors`), grey without ``point_node``. Every file is replaced atomically. Returns the
    written paths by name: ``"json"``, ``"png"`` and ``"ply"``.
    """
    graph.validate()
    if points is None and (point_node is not None or colors is not None):
        raise ValueError("point_node and colors describe points; pass points too")
    cloud = _prepare_points(graph, points, point_node, colors) if points is not None else None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / JSON_FILE, "png": output_dir / PNG_FILE}
    text = json.dumps(graph.to_json(), indent=2) + "\n"
    with atomic_write(paths["json"], "w") as handle:
        handle.write(text)
    draw_scene_graph(graph, paths["png"])
    if cloud is not None:
        paths["ply"] = output_dir / PLY_FILE
        write_ply(paths["ply"], *cloud)
    return paths


def _prepare_points(
    graph: SceneGraph, points: np.ndarray, point_node: np.ndarray | None, colors: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked points, colours and node ids for :func:`write_ply` (checked before any file is written)."""
    xyz = as_points(points)
    ids = as_node_ids(point_node, len(xyz))
    if ids is not None:
        unknown = sorted(set(np.unique(ids[ids >= 0]).tolist()) - {node.id for node in graph.nodes})
        if unknown:
            raise ValueError(f"point_node refers to node ids that are not in the graph: {unknown[:10]}")
    if colors is None:
        rgb = node_colors(ids) if ids is not None else np.tile(np.array(NOISE_COLOR, np.uint8), (len(xyz), 1))
    else:
        rgb = as_colors(colors, len(xyz))
    return xyz, rgb, ids
