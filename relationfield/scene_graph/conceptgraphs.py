"""ConceptGraphs-style files of a scene graph (``relationfield export scene-graph --format conceptgraphs``).

ConceptGraphs (Gu et al., ICRA 2024; https://github.com/concept-graphs/concept-graphs) writes its scene
graphs in two styles; ``OUT/conceptgraphs/`` holds both, so that either kind of ConceptGraphs tooling reads it:

* ``scene_graph.json``: a JSON list of objects, as ``generate_scenegraph_json`` writes it in
  ``conceptgraph/scenegraph/build_scenegraph_cfslam.py``, with the keys ``id``, ``bbox_extent``,
  ``bbox_center``, ``possible_tags``, ``object_tag`` and ``caption``;
* ``obj_json_relationfield.json`` and ``edge_json_relationfield.json``: objects and edges as the mapping
  pipeline's ``save_obj_json`` and ``save_edge_json`` write them (``obj_json_{exp_suffix}.json``,
  ``edge_json_{exp_suffix}.json``; here the suffix is ``relationfield``): objects keyed ``object_1``,
  ``object_2``, ... with ``id``, ``object_tag``, ``object_caption``, ``bbox_extent``, ``bbox_center`` and
  ``bbox_volume``; edges keyed ``edge_0``, ``edge_1``, ... with ``edge_id``, ``edge_description``
  ("<tag 1> <relationship> <tag 2>"), ``num_detections``, ``object_1_id``, ``object_1_tag``,
  ``object_2_id``, ``object_2_tag`` and ``relationship``.

From a scene graph: ``id`` is the node id; the box is the axis-aligned box of the node's points
(``bbox_center`` its centre, ``bbox_extent`` its side lengths; ConceptGraphs rounds them to 0.1 or 0.01 m,
we do not); ``object_tag`` is the label and ``possible_tags`` the scored labels, best first; the caption is
``"<label> #<id>"`` followed by the node's relations (``"cup #3, standing on table #2"``), since no captioning
model describes the object. Edges are the relations of :mod:`relationfield.scene_graph.relations` (each
ordered pair whose top predicate is not "none"), subject as object 1; ``num_detections`` is 1 (ConceptGraphs
counts the frames that confirmed an edge; the field scores each pair once), and each edge adds ``score``, the
predicate's probability, which ConceptGraphs does not have.

The pydantic models below validate the files (unknown keys are errors): :func:`conceptgraphs_files` checks what
it returns, and :func:`parse_conceptgraphs` checks files read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, model_validator

from relationfield.errors import UserError
from relationfield.scene_graph.graph import SceneGraph, SceneNode
from relationfield.scene_graph.relations import relation_links
from relationfield.scene_graph.schema import FiniteFloat, Vec3, describe_error

__all__ = [
    "CONCEPTGRAPHS_DIR",
    "EDGE_JSON_FILE",
    "OBJ_JSON_FILE",
    "SCENE_GRAPH_FILE",
    "ConceptGraphsFiles",
    "conceptgraphs_files",
    "parse_conceptgraphs",
]

CONCEPTGRAPHS_DIR = "conceptgraphs"
"""Folder of the files inside an export."""
SCENE_GRAPH_FILE = "scene_graph.json"
OBJ_JSON_FILE = "obj_json_relationfield.json"
EDGE_JSON_FILE = "edge_json_relationfield.json"


class _Record(BaseModel):
    """ConceptGraphs' keys exactly: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")


class _Box(_Record):
    """What every ConceptGraphs object has: its id, tag and box."""

    id: StrictInt
    """The object's id (the node id)."""
    object_tag: StrictStr
    """Its label."""
    bbox_extent: Vec3
    """Side lengths of its axis-aligned box."""
    bbox_center: Vec3
    """Centre of the box."""

    @model_validator(mode="after")
    def _check_extent(self) -> _Box:
        if min(self.bbox_extent) < 0:
            raise ValueError(f"object {self.id} has a negative bbox_extent {self.bbox_extent}")
        return self


class SceneGraphObject(_Box):
    """One entry of ``scene_graph.json`` (``generate_scenegraph_json``)."""

    possible_tags: list[StrictStr]
    """The scored labels, best first."""
    caption: StrictStr
    """``"<label> #<id>"`` and the object's relations."""


class ObjJsonObject(_Box):
    """One value of ``obj_json_relationfield.json`` (``save_obj_json``)."""

    object_caption: StrictStr | None
    """The caption (as in ``scene_graph.json``)."""
    bbox_volume: FiniteFloat
    """Volume of the box."""


class EdgeJsonEdge(_Record):
    """One value of ``edge_json_relationfield.json`` (``save_edge_json``), plus ``score``."""

    edge_id: StrictInt
    """Index of the edge (its key is ``edge_<edge_id>``)."""
    edge_description: StrictStr
    """``"<object_1_tag> <relationship> <object_2_tag>"``."""
    num_detections: StrictInt
    """Always 1 here (ConceptGraphs: frames that confirmed the edge)."""
    object_1_id: StrictInt
    """The subject's id."""
    object_1_tag: StrictStr
    """The subject's label."""
    object_2_id: StrictInt
    """The object's id."""
    object_2_tag: StrictStr
    """The object's label."""
    relationship: StrictStr
    """The predicate."""
    score: FiniteFloat
    """The predicate's probability (relationfield's addition)."""


class ConceptGraphsFiles(BaseModel):
    """The three files together, checked against each other."""

    scene_graph: list[SceneGraphObject]
    """``scene_graph.json``."""
    obj_json: dict[str, ObjJsonObject]
    """``obj_json_relationfield.json``."""
    edge_json: dict[str, EdgeJsonEdge]
    """``edge_json_relationfield.json``."""

    @model_validator(mode="after")
    def _check_across(self) -> ConceptGraphsFiles:
        tags = {obj.id: obj.object_tag for obj in self.scene_graph}
        if len(tags) != len(self.scene_graph):
            raise ValueError("scene_graph.json repeats an object id")
        if list(self.obj_json) != [f"object_{i + 1}" for i in range(len(self.obj_json))]:
            raise ValueError("obj_json keys must be object_1, object_2, ... in order")
        if {obj.id: obj.object_tag for obj in self.obj_json.values()} != tags:
            raise ValueError("obj_json and scene_graph.json disagree on the objects")
        for key, edge in self.edge_json.items():
            _check_edge(key, edge, tags)
        return self


def _check_edge(key: str, edge: EdgeJsonEdge, tags: Mapping[int, str]) -> None:
    """An edge's key, ends, tags and description agree with the objects."""
    if key != f"edge_{edge.edge_id}":
        raise ValueError(f"edge key {key!r} does not match its edge_id {edge.edge_id}")
    for end, tag in ((edge.object_1_id, edge.object_1_tag), (edge.object_2_id, edge.object_2_tag)):
        if tags.get(end) != tag:
            raise ValueError(f"{key} names object {end} ({tag!r}), which is not among the objects")
    if edge.edge_description != f"{edge.object_1_tag} {edge.relationship} {edge.object_2_tag}":
        raise ValueError(f"{key} has the edge_description {edge.edge_description!r}")


def conceptgraphs_files(graph: SceneGraph) -> dict[str, Any]:
    """The files' JSON data by file name (validated; :class:`UserError` if the graph cannot be written)."""
    captions = _captions(graph)
    scene = [_object(node, captions[node.id]) for node in graph.nodes]
    obj_json = {}
    for index, (node, entry) in enumerate(zip(graph.nodes, scene)):
        extent = entry["bbox_extent"]
        obj_json[f"object_{index + 1}"] = {
            "id": entry["id"],
            "object_tag": node.label,
            "object_caption": entry["caption"],
            "bbox_extent": extent,
            "bbox_center": entry["bbox_center"],
            "bbox_volume": extent[0] * extent[1] * extent[2],
        }
    labels = {node.id: node.label for node in graph.nodes}
    edge_json = {}
    for index, link in enumerate(relation_links(graph)):
        edge_json[f"edge_{index}"] = {
            "edge_id": index,
            "edge_description": f"{labels[link.source]} {link.predicate} {labels[link.target]}",
            "num_detections": 1,
            "object_1_id": int(link.source),
            "object_1_tag": labels[link.source],
            "object_2_id": int(link.target),
            "object_2_tag": labels[link.target],
            "relationship": link.predicate,
            "score": float(link.score),
        }
    files = {SCENE_GRAPH_FILE: scene, OBJ_JSON_FILE: obj_json, EDGE_JSON_FILE: edge_json}
    parse_conceptgraphs(files)
    return files


def _object(node: SceneNode, caption: str) -> dict[str, Any]:
    """A node as an entry of ``scene_graph.json``."""
    low, high = [float(v) for v in node.aabb_min], [float(v) for v in node.aabb_max]
    return {
        "id": int(node.id),
        "bbox_extent": [hi - lo for lo, hi in zip(low, high)],
        "bbox_center": [(lo + hi) / 2 for lo, hi in zip(low, high)],
        "possible_tags": [str(name) for name, _ in node.label_scores] or [node.label],
        "object_tag": node.label,
        "caption": caption,
    }


def _captions(graph: SceneGraph) -> dict[int, str]:
    """``"<label> #<id>"`` and the node's relations, e.g. ``"cup #3, standing on table #2"``."""
    names = {node.id: node.display_name for node in graph.nodes}
    parts: dict[int, list[str]] = {node.id: [names[node.id]] for node in graph.nodes}
    for link in relation_links(graph):
        parts[link.source].append(f"{link.predicate} {names[link.target]}")
    return {node_id: ", ".join(words) for node_id, words in parts.items()}


def parse_conceptgraphs(files: Mapping[str, Any]) -> ConceptGraphsFiles:
    """Validate the files' JSON data (by file name); :class:`UserError` names the first problem."""
    missing = [name for name in (SCENE_GRAPH_FILE, OBJ_JSON_FILE, EDGE_JSON_FILE) if name not in files]
    if missing:
        raise UserError(f"ConceptGraphs files missing: {', '.join(missing)}")
    data = {
        "scene_graph": files[SCENE_GRAPH_FILE],
        "obj_json": files[OBJ_JSON_FILE],
        "edge_json": files[EDGE_JSON_FILE],
    }
    try:
        return ConceptGraphsFiles.model_validate(data)
    except ValidationError as error:
        raise UserError(f"invalid ConceptGraphs files: {describe_error(error)}") from None
