"""3DSSG-style files of a scene graph (``relationfield export scene-graph --format 3dssg``).

3DSSG (Wald et al., CVPR 2020) documents its data format in the README of
https://github.com/3DSSG/3DSSG.github.io ("Data Formats"); ShunChengWu/3DSSG's loaders and
:mod:`relationfield.evaluation.ground_truth` read it. ``OUT/3dssg/`` holds one scan (the export):

* ``objects.json``: ``{"scans": [{"scan": ID, "objects": [{"id": "1", "label": "chair", "ply_color":
  "#aec7e8", "affordances": [], "attributes": {}}, ...]}]}``: ids are strings, as in 3DSSG; ``ply_color`` is
  the node's colour in ``points.ply`` and ``objects/`` (3DSSG: its colour in 3RScan's
  ``labels.instances.annotated.ply``); affordances and attributes are empty (the field predicts none).
  3DSSG's ``global_id`` (an index into 3RScan's 534 classes) is left out: the labels come from the export's
  vocabulary, which need not be 3RScan's.
* ``relationships.json``: ``{"scans": [{"scan": ID, "objects": {"1": "chair"}, "relationships":
  [[subject id, object id, predicate index, "predicate"], ...]}]}``, with the ``objects`` map of
  3DSSG_subset's ``relationships.json`` (the evaluator reads labels from it).
* ``relationships.txt``: the predicates, one a line, "none" first: line i (from 0) is predicate index i.
  With the shipped vocabulary (:func:`relationfield.vocab.predicate_vocab`) these are 3DSSG_subset's 27
  relationships in 3DSSG's order, whose indices the README's examples confirm ("attached to" 14,
  "standing on" 15, "higher than" 10, "same as" 13).

The relationships are the graph's relations (:mod:`relationfield.scene_graph.relations`: each ordered pair
whose top predicate is not "none"), one triplet per pair with its top predicate. The scan id defaults to the
name of the export's folder.

The pydantic models below validate the files (unknown keys are errors): :func:`threedssg_files` checks what
it returns, and :func:`parse_threedssg` checks files read back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, StringConstraints, ValidationError, model_validator

from relationfield.errors import UserError
from relationfield.scene_graph.colors import node_colors
from relationfield.scene_graph.graph import SceneGraph
from relationfield.scene_graph.relations import relation_links
from relationfield.scene_graph.schema import describe_error
from relationfield.vocab import NONE_PREDICATE, predicate_vocab

__all__ = [
    "OBJECTS_FILE",
    "PREDICATES_FILE",
    "RELATIONSHIPS_FILE",
    "THREEDSSG_DIR",
    "ThreeDSSGFiles",
    "parse_threedssg",
    "predicate_table",
    "threedssg_files",
]

THREEDSSG_DIR = "3dssg"
"""Folder of the files inside an export."""
OBJECTS_FILE = "objects.json"
RELATIONSHIPS_FILE = "relationships.json"
PREDICATES_FILE = "relationships.txt"

IdText = Annotated[StrictStr, StringConstraints(pattern=r"^-?[0-9]+$")]
"""An object id as 3DSSG writes it in ``objects.json``: a string of digits."""
Label = Annotated[StrictStr, StringConstraints(min_length=1)]
Color = Annotated[StrictStr, StringConstraints(pattern=r"^#[0-9a-f]{6}$")]
Triplet = tuple[StrictInt, StrictInt, StrictInt, Label]
"""``[subject id, object id, predicate index, predicate]``."""


class _Record(BaseModel):
    """3DSSG's keys exactly: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")


class ObjectRecord(_Record):
    """One object of a scan in ``objects.json``."""

    id: IdText
    """Instance id (the node id)."""
    label: Label
    """Its label."""
    ply_color: Color
    """Its colour, ``#rrggbb``."""
    affordances: list[StrictStr]
    """Empty here."""
    attributes: dict[StrictStr, list[StrictStr]]
    """Empty here."""


class ObjectsScan(_Record):
    """One scan of ``objects.json``."""

    scan: StrictStr
    objects: list[ObjectRecord]


class ObjectsFile(_Record):
    """``objects.json``."""

    scans: list[ObjectsScan]


class RelationshipsScan(_Record):
    """One scan of ``relationships.json``."""

    scan: StrictStr
    objects: dict[IdText, Label]
    """Object id -> label."""
    relationships: list[Triplet]
    """The triplets."""

    @model_validator(mode="after")
    def _check_triplets(self) -> RelationshipsScan:
        seen: set[tuple[int, int]] = set()
        for subject, obj, _, predicate in self.relationships:
            for end in (subject, obj):
                if str(end) not in self.objects:
                    raise ValueError(f"scan {self.scan}: a relationship refers to object {end}, which it does not have")
            if subject == obj or (subject, obj) in seen:
                raise ValueError(f"scan {self.scan}: {subject} -> {obj} ({predicate}) repeats a pair or a node")
            seen.add((subject, obj))
        return self


class RelationshipsFile(_Record):
    """``relationships.json``."""

    scans: list[RelationshipsScan]


class ThreeDSSGFiles(BaseModel):
    """The three files together, checked against each other."""

    objects: ObjectsFile
    relationships: RelationshipsFile
    predicates: list[Label]
    """The lines of ``relationships.txt``."""

    @model_validator(mode="after")
    def _check_across(self) -> ThreeDSSGFiles:
        if not self.predicates or self.predicates[0] != NONE_PREDICATE:
            raise ValueError(f'relationships.txt must start with "{NONE_PREDICATE}" (predicate index 0)')
        labelled = [(scan.scan, {o.id: o.label for o in scan.objects}) for scan in self.objects.scans]
        if labelled != [(scan.scan, scan.objects) for scan in self.relationships.scans]:
            raise ValueError("objects.json and relationships.json disagree on the scans or their objects")
        for scan in self.relationships.scans:
            for subject, obj, index, predicate in scan.relationships:
                if not 0 < index < len(self.predicates) or self.predicates[index] != predicate:
                    raise ValueError(f"{subject} -> {obj}: predicate index {index} is not {predicate!r}")
        return self


def predicate_table(predicates: Sequence[str] | None = None) -> list[str]:
    """The predicates by index: "none" first, then ``predicates`` (default: the shipped vocabulary)."""
    names = predicate_vocab() if predicates is None else list(predicates)
    return [NONE_PREDICATE, *dict.fromkeys(p for p in names if p != NONE_PREDICATE)]


def threedssg_files(graph: SceneGraph, scan: str, predicates: Sequence[str] | None = None) -> dict[str, Any]:
    """The files by name: JSON data for the ``.json`` files, text for ``relationships.txt`` (validated).

    ``predicates`` are the export's predicate vocabulary (default: the shipped one); a relation whose
    predicate is not among them is a ``ValueError``.
    """
    table = predicate_table(predicates)
    index = {name: i for i, name in enumerate(table)}
    colors = dict(zip((node.id for node in graph.nodes), node_colors([node.id for node in graph.nodes])))
    objects = [
        {
            "id": str(node.id),
            "label": node.label,
            "ply_color": "#" + "".join(f"{int(c):02x}" for c in colors[node.id]),
            "affordances": [],
            "attributes": {},
        }
        for node in graph.nodes
    ]
    triplets = []
    for link in relation_links(graph):
        if link.predicate not in index:
            raise ValueError(f"predicate {link.predicate!r} is not in the predicate vocabulary {table[1:]}")
        triplets.append([int(link.source), int(link.target), index[link.predicate], link.predicate])
    labels = {str(node.id): node.label for node in graph.nodes}
    files = {
        OBJECTS_FILE: {"scans": [{"scan": str(scan), "objects": objects}]},
        RELATIONSHIPS_FILE: {"scans": [{"scan": str(scan), "objects": labels, "relationships": triplets}]},
        PREDICATES_FILE: "".join(f"{name}\n" for name in table),
    }
    parse_threedssg(files)
    return files


def parse_threedssg(files: Mapping[str, Any]) -> ThreeDSSGFiles:
    """Validate the files (by name: JSON data, and the text of ``relationships.txt``); :class:`UserError`
    names the first problem."""
    missing = [name for name in (OBJECTS_FILE, RELATIONSHIPS_FILE, PREDICATES_FILE) if name not in files]
    if missing:
        raise UserError(f"3DSSG files missing: {', '.join(missing)}")
    text = files[PREDICATES_FILE]
    data = {
        "objects": files[OBJECTS_FILE],
        "relationships": files[RELATIONSHIPS_FILE],
        "predicates": text.splitlines() if isinstance(text, str) else text,
    }
    try:
        return ThreeDSSGFiles.model_validate(data)
    except ValidationError as error:
        raise UserError(f"invalid 3DSSG files: {describe_error(error)}") from None
