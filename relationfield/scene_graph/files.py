"""The files of an export: ``scene_graph.json``, ``scene_graph.png``, the labelled ``points.ply``, the
per-object ``objects/<id>_<label>.ply`` with ``labels.txt``, other tools' formats, and a query's points.

``points.ply`` (:mod:`relationfield.scene_graph.ply`) has, per point, its colour, ``node`` (node id, -1: none)
and ``label``: an index into the graph's label list, the distinct node labels sorted alphabetically (-1: no
node). The list is in the file's header, one ``comment label <index> <name>`` line each, and in
``labels.txt`` (line i, from 0, is label i). An index into the object vocabulary would not do: a graph need
not come from one (hand-made graphs, other vocabularies), and its own list stays short and self-contained.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.scene_graph.colors import NOISE_COLOR, node_colors
from relationfield.scene_graph.conceptgraphs import CONCEPTGRAPHS_DIR, conceptgraphs_files
from relationfield.scene_graph.graph import SceneGraph, SceneNode
from relationfield.scene_graph.picture import draw_scene_graph
from relationfield.scene_graph.ply import as_colors, as_node_ids, as_points, write_ply
from relationfield.scene_graph.threedssg import THREEDSSG_DIR, threedssg_files

__all__ = [
    "FORMATS",
    "JSON_FILE",
    "LABELS_FILE",
    "OBJECTS_DIR",
    "PLY_FILE",
    "PNG_FILE",
    "QUERY_FILE",
    "label_table",
    "object_file_name",
    "read_scene_graph",
    "write_query_points",
    "write_scene_graph",
]

JSON_FILE = "scene_graph.json"
PNG_FILE = "scene_graph.png"
PLY_FILE = "points.ply"
LABELS_FILE = "labels.txt"
OBJECTS_DIR = "objects"
QUERY_FILE = "query_points.ply"
FORMATS = ("conceptgraphs", "3dssg")
"""Other tools' formats :func:`write_scene_graph` writes on request, each into the folder of its name."""

_OBJECT_FILE = re.compile(r"-?[0-9]+_.*\.ply")
"""Names of per-object files (those of a previous export are replaced, not left behind)."""

Cloud = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Checked points, colours and node ids."""


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
    *,
    per_object: bool = False,
    formats: Sequence[str] = (),
    predicates: Sequence[str] | None = None,
    draw_predicates: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``scene_graph.json``, ``scene_graph.png`` and (with ``points``) ``points.ply`` to ``output_dir``.

    ``point_node`` gives each point's node id (-1: none); ``colors`` default to the node colours
    (:func:`node_colors`), grey without ``point_node``. ``per_object`` (with ``point_node``) adds
    ``labels.txt`` and ``objects/<id>_<label>.ply``, one per node that has points; ``formats`` (of
    :data:`FORMATS`) add ``conceptgraphs/`` and ``3dssg/`` (scan id: the folder's name; ``predicates``: the
    predicate vocabulary of the 3DSSG indices, default the shipped one). Everything is checked before the
    first file is written, and every file is replaced atomically. Returns the written paths by name:
    ``"json"``, ``"png"``, ``"ply"``, ``"labels"``, ``"objects"`` and each format's folder.
    """
    graph.validate()
    if points is None and (point_node is not None or colors is not None):
        raise ValueError("point_node and colors describe points; pass points too")
    cloud = _prepare_points(graph, points, point_node, colors) if points is not None else None
    output_dir = Path(output_dir)
    extra = _format_files(graph, formats, Path(output_dir).resolve().name, predicates)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / JSON_FILE, "png": output_dir / PNG_FILE}
    text = json.dumps(graph.to_json(), indent=2) + "\n"
    with atomic_write(paths["json"], "w") as handle:
        handle.write(text)
    draw_scene_graph(graph, paths["png"], draw_predicates)  # None: the default families
    if cloud is not None:
        paths["ply"] = output_dir / PLY_FILE
        _write_points(paths["ply"], graph, cloud)
        if per_object and cloud[2] is not None:
            paths["labels"] = output_dir / LABELS_FILE
            _write_text(paths["labels"], "".join(f"{name}\n" for name in label_table(graph)))
            paths["objects"] = output_dir / OBJECTS_DIR
            _write_objects(paths["objects"], graph, cloud)
    for folder, files in extra.items():
        paths[folder] = output_dir / folder
        for name, data in files.items():
            _write_text(paths[folder] / name, data if isinstance(data, str) else json.dumps(data, indent=2) + "\n")
    return paths


def label_table(graph: SceneGraph) -> list[str]:
    """The graph's label list: its distinct node labels, sorted (a point's ``label`` indexes it)."""
    return sorted({node.label for node in graph.nodes})


def object_file_name(node: SceneNode) -> str:
    """``<id>_<label>.ply``, the label reduced to letters, digits and ``_`` (``12_kitchen_cabinet.ply``)."""
    label = re.sub(r"[^A-Za-z0-9]+", "_", node.label).strip("_")[:60] or "object"
    return f"{node.id}_{label}.ply"


def write_query_points(
    path: Path, points: np.ndarray, relevancy: np.ndarray, point_node: np.ndarray, low: float, comments: Sequence[str]
) -> Path:
    """A query's answer points: ``points.ply``'s properties plus a float ``relevancy`` per point, coloured by
    it (turbo from ``low``, dark blue, to 1, dark red); ``comments`` say what was asked."""
    from matplotlib import colormaps  # imported when used: the package imports with numpy alone

    values = np.asarray(relevancy, dtype=np.float64)
    span = max(1.0 - float(low), 1e-6)
    rgb = colormaps["turbo"](np.clip((values - low) / span, 0.0, 1.0))[:, :3] if len(values) else np.zeros((0, 3))
    notes = ["relationfield query points: relevancy = the query's relevancy in [0, 1]; node = node id", *comments]
    write_ply(Path(path), points, rgb, point_node, properties={"relevancy": values}, comments=notes)
    return Path(path)


def _prepare_points(
    graph: SceneGraph, points: np.ndarray, point_node: np.ndarray | None, colors: np.ndarray | None
) -> Cloud:
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


def _format_files(
    graph: SceneGraph, formats: Sequence[str], scan: str, predicates: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    """Folder -> file name -> data of the requested formats (each validated by its module)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(FORMATS)}")
    files: dict[str, dict[str, Any]] = {}
    if "conceptgraphs" in formats:
        files[CONCEPTGRAPHS_DIR] = conceptgraphs_files(graph)
    if "3dssg" in formats:
        files[THREEDSSG_DIR] = threedssg_files(graph, scan, predicates)
    return files


def _point_labels(graph: SceneGraph, ids: np.ndarray) -> np.ndarray:
    """Each point's index into :func:`label_table` (-1: in no node)."""
    index = {name: i for i, name in enumerate(label_table(graph))}
    node_ids = np.array([node.id for node in graph.nodes] + [-1], dtype=np.int64)
    node_labels = np.array([index[node.label] for node in graph.nodes] + [-1], dtype=np.int32)
    order = np.argsort(node_ids)
    # every id is a node's or negative (checked by _prepare_points); negative ids map to the -1 entry
    where = np.searchsorted(node_ids[order], np.where(ids >= 0, ids, -1))
    return node_labels[order][where]


def _write_points(path: Path, graph: SceneGraph, cloud: Cloud) -> None:
    """``points.ply``: with node ids, also each point's label index and the label list in the header."""
    xyz, rgb, ids = cloud
    if ids is None:
        write_ply(path, xyz, rgb)
        return
    notes = ["relationfield points: node = node id, label = index into the labels below and labels.txt; -1 = none"]
    notes += [f"label {i} {name}" for i, name in enumerate(label_table(graph))]
    write_ply(path, xyz, rgb, ids, properties={"label": _point_labels(graph, ids)}, comments=notes)


def _write_objects(directory: Path, graph: SceneGraph, cloud: Cloud) -> None:
    """``objects/<id>_<label>.ply`` for every node with points; other nodes' files of a previous export go."""
    xyz, rgb, ids = cloud
    assert ids is not None
    labels = _point_labels(graph, ids)
    index = {name: i for i, name in enumerate(label_table(graph))}
    directory.mkdir(parents=True, exist_ok=True)
    written = set()
    for node in graph.nodes:
        mask = ids == node.id
        if not mask.any():
            continue
        name = object_file_name(node)
        notes = [f"relationfield object {node.id}: {node.label}", f"label {index[node.label]} {node.label}"]
        write_ply(directory / name, xyz[mask], rgb[mask], ids[mask], properties={"label": labels[mask]}, comments=notes)
        written.add(name)
    for stale in directory.iterdir():
        if stale.is_file() and _OBJECT_FILE.fullmatch(stale.name) and stale.name not in written:
            stale.unlink()


def _write_text(path: Path, text: str) -> None:
    """A text file, replaced atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
