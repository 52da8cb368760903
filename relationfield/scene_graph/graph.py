"""The scene graph in memory: objects (:class:`SceneNode`), their relations (:class:`SceneLink`), the graph.

A :class:`SceneGraph` holds objects (world frame, +z up) and directed, scored relations between them
(subject -> object). :meth:`SceneGraph.to_json` is networkx node-link data (``edges="links"``) with a
format name and version; :meth:`SceneGraph.from_json` reads it back through the pydantic models of
:mod:`relationfield.scene_graph.schema`, which also check graphs built in memory (:meth:`SceneGraph.validate`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic_core import to_jsonable_python

from relationfield.scene_graph.schema import LinkRecord, NodeRecord, header, parse_scene_graph
from relationfield.vocab import NONE_PREDICATE

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["SceneGraph", "SceneLink", "SceneNode"]

Vec3 = tuple[float, float, float]


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
    def from_record(cls, record: NodeRecord) -> SceneNode:
        """The node of a validated JSON node."""
        return cls(
            id=record.id,
            label=record.label,
            label_scores=list(record.label_scores),
            centroid=record.centroid,
            aabb_min=record.aabb.min,
            aabb_max=record.aabb.max,
            point_count=record.point_count,
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
    def from_record(cls, record: LinkRecord) -> SceneLink:
        """The link of a validated JSON link."""
        return cls(
            source=record.source,
            target=record.target,
            predicate=record.predicate,
            score=record.score,
            predicate_scores=list(record.predicate_scores),
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
        return {**header(), "graph": _plain(self.metadata), **self._parts_to_json()}

    def _parts_to_json(self) -> dict[str, list[dict[str, Any]]]:
        """The ``"nodes"`` and ``"links"`` of the JSON."""
        return {"nodes": [node.to_json() for node in self.nodes], "links": [link.to_json() for link in self.links]}

    @classmethod
    def from_json(cls, data: Any) -> SceneGraph:
        """Parse and validate :meth:`to_json` output; raises :class:`UserError` naming what is wrong."""
        record = parse_scene_graph(data)
        return cls(
            nodes=[SceneNode.from_record(node) for node in record.nodes],
            links=[SceneLink.from_record(link) for link in record.links],
            metadata=dict(record.graph),
        )

    def validate(self) -> None:
        """Check ids are unique, links join existing, distinct nodes once per ordered pair, numbers are finite.

        Raises :class:`UserError` as :meth:`from_json` does (the metadata is not checked: any JSON will do).
        """
        parse_scene_graph({**header(), **self._parts_to_json()})

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


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types."""
    return to_jsonable_python(value, fallback=_numpy_to_json)


def _numpy_to_json(value: Any) -> Any:
    """What pydantic cannot serialise itself: numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"scene graph metadata holds a {type(value).__name__}, which cannot be written as JSON")
