"""The JSON schema of ``scene_graph.json``: pydantic models of the file, its nodes and its links.

The models validate the node-link data written by :meth:`relationfield.scene_graph.SceneGraph.to_json`:
types (strict: ``"1"`` is not an id, ``true`` is not a number), shapes, finite numbers, and the
checks across objects (unique node ids, links between existing, distinct nodes, once per ordered pair).
:func:`parse_scene_graph` turns the first problem into a :class:`UserError` that says where it is, e.g.
``invalid scene graph: nodes[3].centroid must be [x, y, z], not a list of 2``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from relationfield.errors import UserError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GraphRecord",
    "LinkRecord",
    "NodeRecord",
    "describe_error",
    "header",
    "parse_scene_graph",
]

FORMAT_NAME = "relationfield-scene-graph"
FORMAT_VERSION = 1

_PROBLEM = "invalid_scene_graph"
"""pydantic error type of the checks written here (their message is the problem, said as today)."""


def _problem(text: str, where: str | None = None) -> PydanticCustomError:
    """A validation error whose message is ``text``; ``where`` overrides the place pydantic gives it."""
    return PydanticCustomError(_PROBLEM, text, {"where": where} if where else None)


def _fixed_length(count: int, shape: str) -> BeforeValidator:
    """Reject a list of the wrong length before the tuple's items are validated (one clear message)."""

    def check(value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) != count:
            raise _problem(f"must be {shape}, not a list of {len(value)}")
        return value

    return BeforeValidator(check)


FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite JSON number (an integer is read as a float; a boolean is not a number)."""
Vec3 = Annotated[tuple[FiniteFloat, FiniteFloat, FiniteFloat], _fixed_length(3, "[x, y, z]")]
ScorePair = Annotated[tuple[StrictStr, FiniteFloat], _fixed_length(2, "[name, score]")]


class _Record(BaseModel):
    """Unknown keys are ignored, as networkx's node-link readers do."""

    model_config = ConfigDict(extra="ignore")


class BoxRecord(_Record):
    """An axis-aligned box, ``{"min": [x, y, z], "max": [x, y, z]}``."""

    min: Vec3
    """Lower corner."""
    max: Vec3
    """Upper corner."""


class NodeRecord(_Record):
    """One entry of ``"nodes"``: an object."""

    id: StrictInt
    """Node id, unique in the graph."""
    label: StrictStr
    """Best label."""
    label_scores: list[ScorePair]
    """[[label, score], ...], best first."""
    centroid: Vec3
    """Centre of the object's points (world frame)."""
    aabb: BoxRecord
    """Box of the object's points (world frame)."""
    point_count: StrictInt
    """Number of surface points of the object."""

    @model_validator(mode="after")
    def _check_box_and_count(self) -> NodeRecord:
        name = f"({self.label} #{self.id})"
        low, high = self.aabb.min, self.aabb.max
        if any(lo > hi for lo, hi in zip(low, high)):
            raise _problem(f"{name} has an aabb whose min {low!r} exceeds its max {high!r}")
        if self.point_count < 0:
            raise _problem(f"{name} has a negative point_count ({self.point_count})")
        return self


class LinkRecord(_Record):
    """One entry of ``"links"``: a directed relation ``source --predicate--> target``."""

    source: StrictInt
    """Subject node id."""
    target: StrictInt
    """Object node id."""
    predicate: StrictStr
    """Best predicate (not "none")."""
    score: FiniteFloat
    """Score of ``predicate``."""
    predicate_scores: list[ScorePair]
    """[[predicate, score], ...], "none" included."""


class GraphRecord(_Record):
    """The whole file: format header, graph attributes (metadata), nodes and links."""

    format: Any
    """Always :data:`FORMAT_NAME`."""
    version: StrictInt
    """Always :data:`FORMAT_VERSION`."""
    directed: Any = True
    """networkx's flag; scene graphs are directed."""
    multigraph: Any = False
    """networkx's flag; at most one link per ordered pair."""
    graph: dict[str, Any] = Field(default_factory=dict)
    """Metadata (networkx's graph attributes)."""
    nodes: list[NodeRecord]
    """The objects."""
    links: list[LinkRecord]
    """The relations."""

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: Any) -> Any:
        if value != FORMAT_NAME:
            raise _problem(f'has "format": {value!r}; expected {FORMAT_NAME!r}', "the file")
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            newer = " (written by a newer relationfield)" if value > FORMAT_VERSION else ""
            problem = f"has format version {value}{newer}; this relationfield reads version {FORMAT_VERSION}"
            raise _problem(problem, "the file")
        return value

    @field_validator("directed")
    @classmethod
    def _check_directed(cls, value: Any) -> Any:
        if value is not True:
            raise _problem('has "directed": false; scene graphs are directed', "the file")
        return value

    @field_validator("multigraph")
    @classmethod
    def _check_multigraph(cls, value: Any) -> Any:
        if value is not False:
            raise _problem('has "multigraph": true; a scene graph has at most one link per ordered pair', "the file")
        return value

    @model_validator(mode="after")
    def _check_ids_and_links(self) -> GraphRecord:
        ids: set[int] = set()
        for i, node in enumerate(self.nodes):
            if node.id in ids:
                raise _problem(f"repeats the node id {node.id}", f"nodes[{i}]")
            ids.add(node.id)
        pairs: set[tuple[int, int]] = set()
        for i, link in enumerate(self.links):
            _check_link(link, f"links[{i}]", ids, pairs)
            pairs.add((link.source, link.target))
        return self


def _check_link(link: LinkRecord, where: str, ids: set[int], pairs: set[tuple[int, int]]) -> None:
    """Endpoints exist and differ, and the ordered pair is new."""
    for end, node_id in (("source", link.source), ("target", link.target)):
        if node_id not in ids:
            raise _problem(f"has {end} {node_id}, which is not a node of the graph", where)
    if link.source == link.target:
        raise _problem(f"links node {link.source} to itself", where)
    if (link.source, link.target) in pairs:
        raise _problem(f"repeats the link {link.source} -> {link.target} (one link per ordered pair)", where)


def header() -> dict[str, Any]:
    """The keys that open every file: format name and version, networkx's node-link flags."""
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "directed": True, "multigraph": False}


def parse_scene_graph(data: Any) -> GraphRecord:
    """Validate node-link data; raises :class:`UserError` naming the first problem and where it is."""
    try:
        return GraphRecord.model_validate(data)
    except ValidationError as error:
        raise UserError(f"invalid scene graph: {describe_error(error)}") from None


def describe_error(error: ValidationError) -> str:
    """The first problem of a validation error as this module says it (``nodes[0].id must be an integer,
    not '1'``): the other file formats of the package report theirs the same way."""
    return _describe(error.errors()[0])


# --------------------------------------------------------------------------- error messages

_MISSING = {("format",): f'has no "format" key; expected "format": {FORMAT_NAME!r}'}
"""Problems said more helpfully than "has no ... key" when a top-level key is missing."""
_EXPECTED = {
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a finite number",
    "float_parsing": "must be a finite number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
}
"""pydantic error types and what the value must be."""
_CONTAINERS = {"model_type", "model_attributes_type", "dict_type", "list_type", "tuple_type"}
"""Error types whose wrong value is named by its JSON type ("not a list") rather than shown."""


def _describe(error: ErrorDetails) -> str:
    """``"<where> <problem>"`` for one pydantic error, e.g. ``nodes[0].id must be an integer, not '1'``."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    if kind == _PROBLEM:
        return f"{(error.get('ctx') or {}).get('where') or _where(loc)} {error['msg']}"
    if kind == "missing":
        return f"{_where(loc[:-1])} {_MISSING.get(loc) or f'has no {loc[-1]!r} key'}"
    if kind in _EXPECTED:
        shown = _json_type(value) if kind in _CONTAINERS else repr(value)
        return f"{_where(loc)} {_EXPECTED[kind]}, not {shown}"
    return f"{_where(loc)} is invalid: {error['msg']}"


def _where(loc: tuple[int | str, ...]) -> str:
    """A place in the file: ``the file``, ``"nodes"``, ``nodes[3].aabb.min[2]``."""
    if not loc:
        return "the file"
    if len(loc) == 1:
        return f'"{loc[0]}"'
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _json_type(value: Any) -> str:
    """How a JSON value's type reads in an error message."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
