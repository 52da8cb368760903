"""The prediction reader: an exported scene graph (``relationfield-scene-graph``) as the evaluator reads it.

Only what the evaluation uses is validated (node ids, label scores, boxes; link ends and predicate
scores); the export's other fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from relationfield.evaluation.schema import Aabb, NodeId, PlacedError, Scores, ScoreTable, path_locator, validate

PRED_FORMAT = "relationfield-scene-graph"
PRED_VERSION = 1


class PredNode(BaseModel):
    """A predicted node."""

    model_config = ConfigDict(frozen=True)

    id: NodeId
    """The node id links refer to."""
    label_scores: ScoreTable
    """Label -> score, best first in the file."""
    aabb: Aabb | None = None
    """The box of the node's points (needed for IoU matching)."""


class PredLink(BaseModel):
    """A predicted directed link."""

    model_config = ConfigDict(frozen=True)

    source: NodeId
    """The subject node."""
    target: NodeId
    """The object node."""
    predicate_scores: ScoreTable
    """Predicate -> score ("none" included)."""


class PredictionFile(BaseModel):
    """``scene_graph.json`` written by ``relationfield export scene-graph`` (networkx node-link data)."""

    nodes: list[PredNode]
    """The objects."""
    links: list[PredLink] = []
    """The relations, at most one per ordered pair of nodes."""

    @model_validator(mode="before")
    @classmethod
    def _header(cls, data: Any) -> Any:
        """Format, version and graph kind, checked before anything else (a swapped argument fails here)."""
        if not isinstance(data, dict):
            return data  # pydantic says it must be a JSON object
        fmt = data.get("format")
        if fmt != PRED_FORMAT:
            looks_like_gt = "relationships" in data or "scans" in data
            hint = " (this looks like ground truth; swap the arguments?)" if looks_like_gt else ""
            raise PlacedError(f'the prediction must have "format": {PRED_FORMAT!r}, got {fmt!r}{hint}')
        if data.get("version") != PRED_VERSION:
            raise PlacedError(
                f"unsupported prediction version {data.get('version')!r}; this evaluator reads version {PRED_VERSION}"
            )
        if data.get("directed", True) is not True or data.get("multigraph", False) is not False:
            raise PlacedError(
                "the prediction must be a directed graph without parallel links (directed: true, multigraph: false)"
            )
        return data

    @model_validator(mode="after")
    def _graph(self) -> PredictionFile:
        """Unique node ids; links between known nodes, at most one per (source, target)."""
        ids: set[int] = set()
        for node in self.nodes:
            if node.id in ids:
                raise PlacedError(f"prediction node id {node.id} appears twice")
            ids.add(node.id)
        pairs: set[tuple[int, int]] = set()
        for i, link in enumerate(self.links):
            for end in (link.source, link.target):
                if end not in ids:
                    raise PlacedError(
                        f"prediction links[{i}] refers to node {end}, which is not among the prediction's nodes"
                    )
            if (link.source, link.target) in pairs:
                raise PlacedError(f"prediction has two links {link.source} -> {link.target} (multigraph is false)")
            pairs.add((link.source, link.target))
        return self


@dataclass(frozen=True)
class Prediction:
    """A validated prediction, indexed: nodes by id, predicate scores by (source, target)."""

    nodes: dict[int, PredNode]
    links: dict[tuple[int, int], Scores]


def read_prediction(data: Any) -> Prediction:
    """Validate our export format (raising UserError) and index it."""
    graph = validate(PredictionFile, data, path_locator("prediction", "the prediction"))
    return Prediction(
        nodes={node.id: node for node in graph.nodes},
        links={(link.source, link.target): link.predicate_scores for link in graph.links},
    )
