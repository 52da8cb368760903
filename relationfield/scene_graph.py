"""Scene graphs: the data model and the files it is written to.

A :class:`SceneGraph` holds objects (:class:`SceneNode`, world frame, +z up) and directed, scored
relations between them (:class:`SceneLink`, subject -> object). It is written as

* ``scene_graph.json``: networkx node-link data (``edges="links"``) with a format name and version,
  readable by :meth:`SceneGraph.from_json` and by ``networkx.node_link_graph(data, edges="links")``;
* ``scene_graph.png``: a drawing of the graph (:func:`draw_scene_graph`);
* ``points.ply``: surface points coloured by node, with the node id of every point (:func:`write_ply`).

Only numpy is imported with the module; networkx, matplotlib and plyfile are imported by the functions
that need them (torch and nerfstudio never are).
"""

from __future__ import annotations

import colorsys
import inspect
import json
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from relationfield.errors import UserError
from relationfield.vocab import NONE_PREDICATE

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "JSON_FILE",
    "MAX_DRAWN_LINKS",
    "NOISE_COLOR",
    "PLY_FILE",
    "PNG_FILE",
    "SceneGraph",
    "SceneLink",
    "SceneNode",
    "draw_scene_graph",
    "node_colors",
    "read_scene_graph",
    "write_ply",
    "write_scene_graph",
]

FORMAT_NAME = "relationfield-scene-graph"
FORMAT_VERSION = 1
JSON_FILE = "scene_graph.json"
PNG_FILE = "scene_graph.png"
PLY_FILE = "points.ply"
MAX_DRAWN_LINKS = 150
"""At most this many links (the highest-scoring) are drawn in the PNG."""
NOISE_COLOR = (128, 128, 128)
"""Colour of points that belong to no node (node id -1)."""

Vec3 = tuple[float, float, float]
Scores = list[tuple[str, float]]

_GOLDEN = 0.6180339887498949
_PLASTIC = 0.7548776662466927

# Drawing parameters: sizes in inches unless named otherwise.
_NODE_FONT = 8.0
_EDGE_FONT = 6.0
_TITLE_FONT = 10.0
_NODE_PAD = 0.3  # box padding, in units of the node font size
_GAP = (0.45, 0.5)  # free space kept between node boxes (x, y)
_ROOM_PER_LINK = 0.05  # extra space around a node per link it has
_MAX_ROOM = 0.6
_FILL = 0.25  # fraction of the drawing area covered by node boxes (and their gaps)
_MARGIN = 0.3
_TITLE_HEIGHT = 0.6
_SPRING_ITERATIONS = 12
_OVERLAP_ITERATIONS = 300
_MAX_OVERLAP_NODES = 600  # larger graphs skip overlap removal (quadratic cost)
_MAX_PIXELS = 3000  # longest side of the PNG
_MAX_DPI = 100.0
_MIN_DPI = 10.0
_MAX_NODE_CHARS = 28
_MAX_EDGE_CHARS = 20
_ARROW: dict[str, Any] = {
    "arrowstyle": "-|>",
    "mutation_scale": 9,
    "linewidth": 0.7,
    "color": "#4a4a4a",
    "alpha": 0.85,
    "shrinkA": 1.0,
    "shrinkB": 1.0,
    "zorder": 1,
}
_EDGE_TEXT: dict[str, Any] = {
    "color": "#202060",
    "bbox": {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
}
_CURVE = 0.15  # arc3 rad of links that have a reverse link (at least)
_MAX_CURVE = 0.6
_LABEL_SEPARATION = (
    0.2  # wanted distance between the labels of two opposite links (each is rad * length / 2 off the chord)
)


# --------------------------------------------------------------------------- data model


@dataclass
class SceneNode:
    """An object: its label (best first in ``label_scores``), centroid, box and number of points."""

    id: int
    label: str
    label_scores: list[tuple[str, float]]
    centroid: Vec3
    aabb_min: Vec3
    aabb_max: Vec3
    point_count: int

    def to_json(self) -> dict[str, Any]:
        """The node as node-link JSON (plain Python numbers)."""
        return {
            "id": int(self.id),
            "label": str(self.label),
            "label_scores": _scores_to_json(self.label_scores),
            "centroid": _vec_to_json(self.centroid),
            "aabb": {"min": _vec_to_json(self.aabb_min), "max": _vec_to_json(self.aabb_max)},
            "point_count": int(self.point_count),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "node") -> SceneNode:
        """Parse one node; ``where`` names it in error messages."""
        node = _mapping(data, where)
        aabb = _mapping(_key(node, "aabb", where), f"{where}.aabb")
        return cls(
            id=_int(_key(node, "id", where), f"{where}.id"),
            label=_str(_key(node, "label", where), f"{where}.label"),
            label_scores=_scores(_key(node, "label_scores", where), f"{where}.label_scores"),
            centroid=_vec3(_key(node, "centroid", where), f"{where}.centroid"),
            aabb_min=_vec3(_key(aabb, "min", f"{where}.aabb"), f"{where}.aabb.min"),
            aabb_max=_vec3(_key(aabb, "max", f"{where}.aabb"), f"{where}.aabb.max"),
            point_count=_int(_key(node, "point_count", where), f"{where}.point_count"),
        )

    @property
    def display_name(self) -> str:
        """``"label #id"``, as drawn."""
        return f"{self.label} #{self.id}"


@dataclass
class SceneLink:
    """A directed relation ``source --predicate--> target`` (subject -> object) and its scores."""

    source: int
    target: int
    predicate: str
    score: float
    predicate_scores: list[tuple[str, float]]

    def to_json(self) -> dict[str, Any]:
        """The link as node-link JSON (plain Python numbers)."""
        return {
            "source": int(self.source),
            "target": int(self.target),
            "predicate": str(self.predicate),
            "score": float(self.score),
            "predicate_scores": _scores_to_json(self.predicate_scores),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "link") -> SceneLink:
        """Parse one link; ``where`` names it in error messages."""
        link = _mapping(data, where)
        return cls(
            source=_int(_key(link, "source", where), f"{where}.source"),
            target=_int(_key(link, "target", where), f"{where}.target"),
            predicate=_str(_key(link, "predicate", where), f"{where}.predicate"),
            score=_float(_key(link, "score", where), f"{where}.score"),
            predicate_scores=_scores(_key(link, "predicate_scores", where), f"{where}.predicate_scores"),
        )

    def none_wins(self) -> bool:
        """Whether "none" (no relation) scores higher than the link's predicate."""
        return any(name == NONE_PREDICATE and score > self.score for name, score in self.predicate_scores)


@dataclass
class SceneGraph:
    """Objects and the directed relations between them; ``metadata`` is written as the JSON ``"graph"``."""

    nodes: list[SceneNode] = field(default_factory=list)
    links: list[SceneLink] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Node-link JSON: ``networkx.node_link_graph(data, edges="links")`` reads it as a DiGraph."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "directed": True,
            "multigraph": False,
            "graph": _plain(self.metadata, "metadata"),
            "nodes": [node.to_json() for node in self.nodes],
            "links": [link.to_json() for link in self.links],
        }

    @classmethod
    def from_json(cls, data: Any) -> SceneGraph:
        """Parse and validate :meth:`to_json` output; raises :class:`UserError` naming what is wrong."""
        top = _mapping(data, "the file")
        _check_header(top)
        metadata = dict(_mapping(top.get("graph", {}), '"graph"'))
        raw_nodes = _list(_key(top, "nodes", "the file"), '"nodes"')
        raw_links = _list(_key(top, "links", "the file"), '"links"')
        nodes = [SceneNode.from_json(raw, f"nodes[{i}]") for i, raw in enumerate(raw_nodes)]
        links = [SceneLink.from_json(raw, f"links[{i}]") for i, raw in enumerate(raw_links)]
        graph = cls(nodes=nodes, links=links, metadata=metadata)
        graph.validate()
        return graph

    def validate(self) -> None:
        """Check ids are unique, links join existing, distinct nodes once per ordered pair, numbers are finite."""
        ids: set[int] = set()
        for i, node in enumerate(self.nodes):
            if node.id in ids:
                _fail(f"nodes[{i}]", f"repeats the node id {node.id}")
            ids.add(node.id)
            _check_node_numbers(node, f"nodes[{i}] ({node.display_name})")
        pairs: set[tuple[int, int]] = set()
        for i, link in enumerate(self.links):
            _check_link(link, f"links[{i}]", ids, pairs)
            pairs.add((link.source, link.target))

    def node(self, node_id: int) -> SceneNode:
        """The node with this id (``KeyError`` if there is none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``: node attributes label, label_scores, centroid, aabb, point_count; edge
        attributes predicate, score, predicate_scores; ``metadata`` as the graph attributes."""
        import networkx as nx

        return nx.node_link_graph(self.to_json(), directed=True, multigraph=False, **_node_link_keywords())


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


def _node_link_keywords() -> dict[str, str]:
    """The keyword naming the edge list "links" for the installed networkx.

    networkx >= 3.4 calls it ``edges`` (and its default changes from "links" to "edges"); older
    versions call it ``link`` (default "links") or take it in an ``attrs`` dict (default "links").
    """
    import networkx as nx

    parameters = inspect.signature(nx.node_link_graph).parameters
    if "edges" in parameters:
        return {"edges": "links"}
    if "link" in parameters:
        return {"link": "links"}
    return {}


# --------------------------------------------------------------------------- JSON helpers


def _vec_to_json(values: Sequence[float]) -> list[float]:
    """[x, y, z] as plain floats."""
    return [float(v) for v in values]


def _scores_to_json(scores: Sequence[tuple[str, float]]) -> list[list[Any]]:
    """Scores as [[name, score], ...] with plain floats."""
    return [[str(name), float(score)] for name, score in scores]


def _plain(value: Any, where: str) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"scene graph {where} holds a {type(value).__name__}, which cannot be written as JSON")


def _fail(where: str, problem: str) -> NoReturn:
    """Raise the :class:`UserError` of a malformed scene graph."""
    raise UserError(f"invalid scene graph: {where} {problem}")


def _check_header(top: Mapping[str, Any]) -> None:
    """Format name, version and the node-link flags."""
    if "format" not in top:
        _fail("the file", f'has no "format" key; expected "format": {FORMAT_NAME!r}')
    if top["format"] != FORMAT_NAME:
        _fail("the file", f'has "format": {top["format"]!r}; expected {FORMAT_NAME!r}')
    version = _int(_key(top, "version", "the file"), '"version"')
    if version != FORMAT_VERSION:
        newer = " (written by a newer relationfield)" if version > FORMAT_VERSION else ""
        _fail("the file", f"has format version {version}{newer}; this relationfield reads version {FORMAT_VERSION}")
    if top.get("directed", True) is not True:
        _fail("the file", 'has "directed": false; scene graphs are directed')
    if top.get("multigraph", False) is not False:
        _fail("the file", 'has "multigraph": true; a scene graph has at most one link per ordered pair')


def _key(obj: Mapping[str, Any], key: str, where: str) -> Any:
    """``obj[key]``, or an error naming the missing key."""
    if key not in obj:
        _fail(where, f"has no {key!r} key")
    return obj[key]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object."""
    if not isinstance(value, Mapping):
        _fail(where, f"must be a JSON object, not {_json_type(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """``value`` if it is a JSON list."""
    if not isinstance(value, list):
        _fail(where, f"must be a list, not {_json_type(value)}")
    return value


def _int(value: Any, where: str) -> int:
    """``value`` if it is an integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"must be an integer, not {value!r}")
    return int(value)


def _float(value: Any, where: str) -> float:
    """``value`` as a float if it is a finite number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"must be a finite number, not {value!r}")
    return float(value)


def _str(value: Any, where: str) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        _fail(where, f"must be a string, not {value!r}")
    return value


def _vec3(value: Any, where: str) -> Vec3:
    """``value`` as (x, y, z) if it is a list of three finite numbers."""
    items = _list(value, where)
    if len(items) != 3:
        _fail(where, f"must be [x, y, z], not a list of {len(items)}")
    x, y, z = (_float(v, f"{where}[{i}]") for i, v in enumerate(items))
    return (x, y, z)


def _scores(value: Any, where: str) -> Scores:
    """``value`` as [(name, score), ...] if it is a list of [string, number] pairs."""
    pairs = []
    for i, item in enumerate(_list(value, where)):
        entry = _list(item, f"{where}[{i}]")
        if len(entry) != 2:
            _fail(f"{where}[{i}]", f"must be [name, score], not a list of {len(entry)}")
        pairs.append((_str(entry[0], f"{where}[{i}][0]"), _float(entry[1], f"{where}[{i}][1]")))
    return pairs


def _json_type(value: Any) -> str:
    """How a JSON value's type reads in an error message."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _check_node_numbers(node: SceneNode, where: str) -> None:
    """Finite centroid and box, min <= max, a non-negative point count."""
    for name, vec in (("centroid", node.centroid), ("aabb min", node.aabb_min), ("aabb max", node.aabb_max)):
        if len(vec) != 3 or not all(math.isfinite(float(v)) for v in vec):
            _fail(where, f"has a {name} that is not 3 finite numbers: {vec!r}")
    if any(float(lo) > float(hi) for lo, hi in zip(node.aabb_min, node.aabb_max)):
        _fail(where, f"has an aabb whose min {node.aabb_min!r} exceeds its max {node.aabb_max!r}")
    if node.point_count < 0:
        _fail(where, f"has a negative point_count ({node.point_count})")


def _check_link(link: SceneLink, where: str, ids: set[int], pairs: set[tuple[int, int]]) -> None:
    """Endpoints exist and differ, the ordered pair is new, the score is finite."""
    for end in ("source", "target"):
        node_id = getattr(link, end)
        if node_id not in ids:
            _fail(where, f"has {end} {node_id}, which is not a node of the graph")
    if link.source == link.target:
        _fail(where, f"links node {link.source} to itself")
    if (link.source, link.target) in pairs:
        _fail(where, f"repeats the link {link.source} -> {link.target} (one link per ordered pair)")
    if not math.isfinite(float(link.score)):
        _fail(where, f"has a score that is not finite: {link.score!r}")


# --------------------------------------------------------------------------- files


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
    _atomic_write(paths["json"], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    draw_scene_graph(graph, paths["png"])
    if cloud is not None:
        paths["ply"] = output_dir / PLY_FILE
        write_ply(paths["ply"], *cloud)
    return paths


def _prepare_points(
    graph: SceneGraph, points: np.ndarray, point_node: np.ndarray | None, colors: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked points, colours and node ids for :func:`write_ply` (checked before any file is written)."""
    xyz = _as_points(points)
    ids = _as_node_ids(point_node, len(xyz))
    if ids is not None:
        unknown = sorted(set(np.unique(ids[ids >= 0]).tolist()) - {node.id for node in graph.nodes})
        if unknown:
            raise ValueError(f"point_node refers to node ids that are not in the graph: {unknown[:10]}")
    if colors is None:
        rgb = node_colors(ids) if ids is not None else np.tile(np.array(NOISE_COLOR, np.uint8), (len(xyz), 1))
    else:
        rgb = _as_colors(colors, len(xyz))
    return xyz, rgb, ids


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, node_ids: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: ``x y z`` (float32), ``red green blue`` (uchar) and, with ``node_ids``,
    an int32 ``node`` property per vertex.

    ``colors`` are uint8 (any integer type in 0..255, or floats in 0..1). Replaced atomically.
    """
    from plyfile import PlyData, PlyElement

    xyz = _as_points(points)
    rgb = _as_colors(colors, len(xyz))
    ids = _as_node_ids(node_ids, len(xyz))
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(xyz), dtype=fields + ([("node", "<i4")] if ids is not None else []))
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, channel]
    if ids is not None:
        vertex["node"] = ids
    data = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: data.write(str(tmp)))


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``[N, 3]`` (float64) and node ids ``[N]`` (None without a ``node`` property) of a PLY file
    written by :func:`write_ply`.

    Raises:
        UserError: the file is missing or is not a PLY point cloud.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        vertex = PlyData.read(str(path))["vertex"].data
        points = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path} is not a PLY point cloud ({error})") from None
    names = vertex.dtype.names or ()
    return points, (np.asarray(vertex["node"], dtype=np.int64) if "node" in names else None)


def _as_points(points: np.ndarray) -> np.ndarray:
    """Finite [N, 3] points as float32."""
    xyz = np.asarray(points, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must be an [N, 3] array, got shape {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("points must be finite (found NaN or inf)")
    return xyz.astype(np.float32)


def _as_colors(colors: np.ndarray, count: int) -> np.ndarray:
    """[N, 3] colours as uint8 (integers in 0..255 or floats in [0, 1])."""
    rgb = np.asarray(colors)
    if rgb.shape != (count, 3):
        raise ValueError(f"colors must be an [N, 3] array matching {count} points, got shape {rgb.shape}")
    if np.issubdtype(rgb.dtype, np.floating):
        if count and (not np.isfinite(rgb).all() or rgb.min() < -1e-3 or rgb.max() > 1.0 + 1e-3):
            raise ValueError("float colors must lie in [0, 1] (pass uint8 for 0..255)")
        return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not np.issubdtype(rgb.dtype, np.integer):
        raise ValueError(f"colors must be integers in 0..255 or floats in [0, 1], got dtype {rgb.dtype}")
    if count and (rgb.min() < 0 or rgb.max() > 255):
        raise ValueError("integer colors must lie in 0..255")
    return rgb.astype(np.uint8)


def _as_node_ids(node_ids: np.ndarray | None, count: int) -> np.ndarray | None:
    """[N] integer node ids as int32 (or None)."""
    if node_ids is None:
        return None
    ids = np.asarray(node_ids)
    if ids.shape != (count,):
        raise ValueError(f"node ids must be an [N] array matching {count} points, got shape {ids.shape}")
    if count and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"node ids must be integers, got dtype {ids.dtype}")
    limits = np.iinfo(np.int32)
    if count and (ids.min() < limits.min or ids.max() > limits.max):
        raise ValueError("node ids must fit in int32")
    return ids.astype(np.int32)


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- colours


def node_colors(ids: Sequence[int]) -> np.ndarray:
    """Distinct, deterministic colours ([n, 3] uint8) for node ids; negative ids (noise) are grey.

    Hue steps by the golden ratio per id; saturation and value vary slowly so that far-apart ids with
    close hues still differ. Repeated ids (e.g. one per point) get the same colour.
    """
    values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(values, return_inverse=True)
    palette = np.array([_id_color(int(i)) for i in unique], dtype=np.uint8).reshape(-1, 3)
    return palette[inverse.reshape(-1)]


def _id_color(node_id: int) -> tuple[int, int, int]:
    """The colour of one node id (grey for negative ids)."""
    if node_id < 0:
        return NOISE_COLOR
    hue = (node_id * _GOLDEN) % 1.0
    saturation = 0.55 + 0.35 * ((node_id * _PLASTIC) % 1.0)
    value = 0.95 - 0.2 * ((node_id // 7) % 2)
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(red * 255), round(green * 255), round(blue * 255))


# --------------------------------------------------------------------------- drawing


def draw_scene_graph(graph: SceneGraph, path: Path, title: str | None = None) -> None:
    """Draw ``graph`` to a PNG: "label #id" boxes placed by their floor-plane (x, y) positions, directed
    links as arrows with the predicate at their middle.

    Links where "none" outscores the predicate are left out, as are all but the
    :data:`MAX_DRAWN_LINKS` highest-scoring others; the title says so. Needs no display (Agg canvas).
    """
    graph.validate()
    figure, dpi = _render(graph, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: figure.savefig(str(tmp), format="png", dpi=dpi))


def _render(graph: SceneGraph, title: str | None) -> tuple[Figure, float]:
    """The figure (on an Agg canvas) and the dpi to save it at."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    links, notes = _drawn_links(graph.links)
    heading = title or f"scene graph: {len(graph.nodes)} objects, {len(graph.links)} links"
    heading = "\n".join([heading, *notes])
    figure = Figure(dpi=_MAX_DPI)
    FigureCanvasAgg(figure)
    if not graph.nodes:
        _draw_empty(figure, heading)
        return figure, _MAX_DPI
    names = [_shorten(node.display_name, _MAX_NODE_CHARS) for node in graph.nodes]
    sizes = _box_sizes(figure, names)
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    pairs = [(index[link.source], index[link.target]) for link in links]
    centers = _layout(graph.nodes, pairs, sizes)
    axes, width, height = _place_axes(figure, centers, sizes, heading)
    _draw_links(axes, links, pairs, centers, sizes)
    _draw_nodes(axes, graph.nodes, names, centers)
    dpi = max(_MIN_DPI, min(_MAX_DPI, _MAX_PIXELS / max(width, height)))
    return figure, dpi


def _drawn_links(links: Sequence[SceneLink]) -> tuple[list[SceneLink], list[str]]:
    """The links to draw (highest score first) and notes for the title about the others."""
    related = [link for link in links if link.predicate != NONE_PREDICATE and not link.none_wins()]
    notes = []
    hidden = len(links) - len(related)
    if hidden:
        notes.append(f'{hidden} pairs where "none" scores highest are not drawn')
    related.sort(key=lambda link: -float(link.score))
    if len(related) > MAX_DRAWN_LINKS:
        notes.append(f"showing the {MAX_DRAWN_LINKS} highest-scoring of {len(related)} relations")
        related = related[:MAX_DRAWN_LINKS]
    return related, notes


def _draw_empty(figure: Figure, heading: str) -> None:
    """A small figure saying that there is nothing to draw."""
    figure.set_size_inches(5.0, 3.0)
    figure.text(0.5, 0.9, heading, ha="center", va="top", fontsize=_TITLE_FONT)
    figure.text(0.5, 0.45, "no objects found", ha="center", va="center", fontsize=14, color="#555555")


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis if it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _box_sizes(figure: Figure, names: Sequence[str]) -> np.ndarray:
    """[n, 2] width and height (inches) of the node boxes, padding included."""
    from matplotlib.font_manager import FontProperties

    renderer = figure.canvas.get_renderer()
    font = FontProperties(size=_NODE_FONT)
    pad = 2.0 * _NODE_PAD * _NODE_FONT / 72.0
    sizes = []
    for name in names:
        width, height, _ = renderer.get_text_width_height_descent(name, font, ismath=False)
        sizes.append((width / figure.dpi + pad, height / figure.dpi + pad))
    return np.array(sizes, dtype=np.float64)


def _layout(nodes: Sequence[SceneNode], pairs: Sequence[tuple[int, int]], sizes: np.ndarray) -> np.ndarray:
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
    import networkx as nx

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


def _place_axes(figure: Figure, centers: np.ndarray, sizes: np.ndarray, heading: str) -> tuple[Axes, float, float]:
    """Size the figure to the layout (1 data unit = 1 inch), add borderless axes and the title."""
    low = (centers - sizes / 2.0).min(axis=0) - _MARGIN
    high = (centers + sizes / 2.0).max(axis=0) + _MARGIN
    span = high - low
    title_height = _TITLE_HEIGHT + 0.18 * heading.count("\n")
    width, height = float(max(span[0], 4.0)), float(span[1]) + title_height
    figure.set_size_inches(width, height)
    axes = figure.add_axes((0.0, 0.0, 1.0, float(span[1]) / height))
    middle = (low[0] + high[0]) / 2.0
    axes.set_xlim(middle - width / 2.0, middle + width / 2.0)
    axes.set_ylim(low[1], high[1])
    axes.set_axis_off()
    figure.text(0.5, 1.0 - 0.15 / height, heading, ha="center", va="top", fontsize=_TITLE_FONT)
    return axes, width, height


def _draw_nodes(axes: Axes, nodes: Sequence[SceneNode], names: Sequence[str], centers: np.ndarray) -> None:
    """Node boxes in light versions of the node colours, framed in the colour itself."""
    colors = node_colors([node.id for node in nodes]) / 255.0
    for name, color, (x, y) in zip(names, colors, centers):
        box = {"boxstyle": f"round,pad={_NODE_PAD}", "facecolor": tuple(0.45 * color + 0.55)}
        box["edgecolor"] = tuple(0.8 * color)
        axes.text(x, y, name, ha="center", va="center", fontsize=_NODE_FONT, zorder=3, bbox=box)


def _draw_links(
    axes: Axes, links: Sequence[SceneLink], pairs: Sequence[tuple[int, int]], centers: np.ndarray, sizes: np.ndarray
) -> None:
    """Arrows from box edge to box edge (curved where both directions exist), predicates at their middles."""
    from matplotlib.patches import FancyArrowPatch

    both_ways = set(pairs)
    for link, (source, target) in zip(links, pairs):
        start = _box_exit(centers[source], centers[target], sizes[source])
        end = _box_exit(centers[target], centers[source], sizes[target])
        rad = _curvature(start, end) if (target, source) in both_ways else 0.0
        axes.add_patch(FancyArrowPatch(tuple(start), tuple(end), connectionstyle=f"arc3,rad={rad}", **_ARROW))
        x, y = _arc_middle(start, end, rad)
        text = _shorten(link.predicate, _MAX_EDGE_CHARS)
        axes.text(x, y, text, ha="center", va="center", fontsize=_EDGE_FONT, zorder=2, **_EDGE_TEXT)


def _curvature(start: np.ndarray, end: np.ndarray) -> float:
    """arc3 ``rad`` for one of two opposite links: enough bend to keep their two labels apart."""
    length = float(np.linalg.norm(end - start))
    return min(_MAX_CURVE, max(_CURVE, _LABEL_SEPARATION / max(length, 1e-6)))


def _box_exit(center: np.ndarray, toward: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Where the segment from ``center`` to ``toward`` leaves the box of ``size`` around ``center``."""
    direction = toward - center
    half = size / 2.0
    with np.errstate(divide="ignore"):
        limits = np.where(np.abs(direction) > 1e-12, half / np.abs(direction), np.inf)
    fraction = float(limits.min())
    return center + direction * min(fraction, 0.5)


def _arc_middle(start: np.ndarray, end: np.ndarray, rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's arc3 quadratic Bezier curve from ``start`` to ``end``."""
    dx, dy = end - start
    middle = (start + end) / 2.0
    return float(middle[0] + 0.5 * rad * dy), float(middle[1] - 0.5 * rad * dx)
