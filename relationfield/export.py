"""Exports of a trained run: the scene graph (``relationfield export scene-graph`` and the demo), and the
surface points that answer a query (``relationfield export pointcloud --query``).

A query's points come from the run's segmented scene (its export, or the query cache, as for
``relationfield query``; see :mod:`relationfield.graph_cache`) and are scored with the query's own functions:

* an object query ("chair"): every surface point whose object relevancy (:meth:`FieldQuery.object_relevancy`)
  is above the threshold;
* a relation query (a predicate and a reference, no subject: ``--relation "standing on" --reference table``):
  every surface point outside the reference whose relation relevancy towards the reference
  (:meth:`FieldQuery.relation_relevancy` at :func:`sample_reference`'s points, the reference found by
  :func:`find_reference`) is above the threshold;
* a referring query ("cup standing on table"): all the points of the instance :func:`answer_referring` ranks
  first, whatever their relevancy (the query asks for one object, not for points), each with its relation
  relevancy towards the reference that instance was scored against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relationfield.errors import UserError
from relationfield.extraction import Extraction, ExtractionConfig, Progress, extract_scene_graph, no_progress
from relationfield.graph_cache import GraphFiles, record_export, segmented_scene
from relationfield.query import FieldQuery, answer_referring, find_reference, sample_reference
from relationfield.referring import ReferringQuery, parse_referring
from relationfield.scene_graph import write_query_points, write_scene_graph
from relationfield.vocab import predicate_vocab

DEFAULT_THRESHOLD = 0.5
"""Relevancy above which a point answers an object or relation query (the viewer's default too)."""


@dataclass
class ExportResult:
    """An extraction, the files written for it and how long extraction took."""

    extraction: Extraction
    """The extracted graph and its points."""
    paths: dict[str, Path]
    """Written files by name: "json", "png", "ply", and the optional "labels", "objects" and format folders."""
    seconds: float
    """Seconds the extraction took (also in the graph's metadata, rounded)."""


def export_scene_graph(
    query: FieldQuery,
    output_dir: Path,
    objects: Sequence[str],
    predicates: Sequence[str],
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
    load_config: Path | None = None,
    *,
    per_object: bool = False,
    formats: Sequence[str] = (),
    draw_predicates: Sequence[str] | None = None,
) -> ExportResult:
    """Extract the scene graph of a loaded run and write scene_graph.json/.png and points.ply; with
    ``per_object`` also labels.txt and objects/<id>_<label>.ply, and the ``formats`` requested
    (:data:`relationfield.scene_graph.FORMATS`; 3DSSG's predicate indices follow ``predicates``).

    ``load_config`` (the run's config.yml) is recorded in the graph's metadata with the extraction time.
    """
    extraction = extract_scene_graph(query, objects, predicates, config or ExtractionConfig(), progress, load_config)
    paths = write_scene_graph(
        extraction.graph,
        Path(output_dir),
        extraction.points_world,
        extraction.point_node,
        per_object=per_object,
        formats=formats,
        predicates=predicates,
        draw_predicates=draw_predicates,
    )
    if load_config is not None:
        record_export(load_config, Path(output_dir))  # queries on this run reuse the export
    return ExportResult(extraction, paths, extraction.seconds)


@dataclass
class QueryPoints:
    """A query's answer as surface points (world frame) and the file they were written to."""

    query: ReferringQuery
    """The parsed query."""
    kind: str
    """"object", "relation" or "referring"."""
    points_world: np.ndarray
    """[N, 3] the answer's points."""
    relevancy: np.ndarray
    """[N] their relevancy (object relevancy, or relation relevancy towards the reference)."""
    point_node: np.ndarray
    """[N] their node ids (-1: none)."""
    path: Path
    """The PLY file written."""
    node: int | None = None
    """The instance that answers a referring query."""
    reference: int | None = None
    """The reference node of a relation or referring query."""


def export_query_points(
    query: FieldQuery,
    load_config: Path,
    path: Path,
    text: str = "",
    relation: str | None = None,
    reference: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
) -> QueryPoints:
    """Write the surface points that answer a query (see the module doc) to ``path`` (a PLY file with a
    float ``relevancy`` per point). ``text`` is an object or referring query; ``relation`` and
    ``reference`` give a relation query's parts (or override the parsed ones)."""
    parsed = parse_referring(text, [*predicate_vocab(), *query.relation_texts()], None, relation, reference)
    scene = segmented_scene(query, load_config, config=config, progress=progress)
    model_points = query.to_model(torch.from_numpy(np.asarray(scene.points_world)).float())
    node = ref = None
    if not parsed.is_referring:
        relevancy = _numpy(query.object_relevancy(model_points, parsed.subject or ""))
        keep = relevancy > threshold
        kind = "object"
    elif parsed.subject is None:
        relevancy, ref = _relation_relevancy(query, scene, model_points, parsed)
        keep = (relevancy > threshold) & (scene.point_node != ref)
        kind = "relation"
    else:
        relevancy, node, ref = _referring_relevancy(query, scene, model_points, parsed)
        keep = scene.point_node == node
        kind = "referring"
    answer = QueryPoints(
        parsed, kind, scene.points_world[keep], relevancy[keep], scene.point_node[keep], Path(path), node, ref
    )
    low = 0.0 if kind == "referring" else threshold  # colours span the written relevancies
    write_query_points(
        answer.path, answer.points_world, answer.relevancy, answer.point_node, low, _notes(answer, threshold)
    )
    return answer


def _notes(answer: QueryPoints, threshold: float) -> list[str]:
    """The PLY header's account of the query: what was asked, how points were chosen, the nodes involved."""
    notes = [f"query: {answer.query.text()}", f"kind: {answer.kind}"]
    if answer.kind == "referring":
        notes.append("points: all of the answer's; relevancy: the relation's towards the reference")
    else:
        notes.append(f"points: relevancy above {threshold:g}")
    ends = (("answer", answer.node), ("reference", answer.reference))
    return notes + [f"{what}: node {value}" for what, value in ends if value is not None]


def _relation_relevancy(
    query: FieldQuery, scene: GraphFiles, points: torch.Tensor, parsed: ReferringQuery
) -> tuple[np.ndarray, int]:
    """Every point's relation relevancy towards the query's reference, and the reference's node."""
    objects = _instances(query, scene)
    ref = find_reference(query, objects, parsed.reference or "")
    relevancy = query.relation_relevancy(points, sample_reference(objects[ref]), parsed.predicate or "")
    return _numpy(relevancy), ref


def _referring_relevancy(
    query: FieldQuery, scene: GraphFiles, points: torch.Tensor, parsed: ReferringQuery
) -> tuple[np.ndarray, int, int]:
    """The winning instance of a referring query, its reference, and its points' relation relevancy
    towards that reference (0 elsewhere)."""
    objects = _instances(query, scene)
    best = answer_referring(query, objects, parsed).best
    if best is None or not best.candidate or best.reference is None:
        raise UserError(f"no object answers {parsed.text()!r}: no candidate has a reference other than itself")
    mask = torch.from_numpy(np.asarray(scene.point_node) == best.node)
    relevancy = np.zeros(len(points), dtype=np.float64)
    scores = query.relation_relevancy(points[mask], sample_reference(objects[best.reference]), parsed.predicate or "")
    relevancy[mask.numpy()] = _numpy(scores)
    return relevancy, best.node, best.reference


def _instances(query: FieldQuery, scene: GraphFiles) -> dict[int, torch.Tensor]:
    """The scene's instances (node id -> points, model frame); a clear error when there are none."""
    objects = scene.instances(query)
    if not objects:
        raise UserError("the run's segmentation has no objects; train longer or check the labels")
    return objects


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy().astype(np.float64)
