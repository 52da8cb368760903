"""Scene-graph export shared by ``relationfield export`` and ``relationfield demo``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from relationfield.extraction import Extraction, ExtractionConfig, Progress, extract_scene_graph, no_progress
from relationfield.graph_cache import record_export
from relationfield.query import FieldQuery
from relationfield.scene_graph import write_scene_graph


@dataclass
class ExportResult:
    """An extraction, the files written for it and how long extraction took."""

    extraction: Extraction
    """The extracted graph and its points."""
    paths: dict[str, Path]
    """Written files by name: "json", "png", "ply"."""
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
) -> ExportResult:
    """Extract the scene graph of a loaded run and write scene_graph.json/.png and points.ply.

    ``load_config`` (the run's config.yml) is recorded in the graph's metadata with the extraction time.
    """
    extraction = extract_scene_graph(query, objects, predicates, config or ExtractionConfig(), progress, load_config)
    paths = write_scene_graph(extraction.graph, Path(output_dir), extraction.points_world, extraction.point_node)
    if load_config is not None:
        record_export(load_config, Path(output_dir))  # queries on this run reuse the export
    return ExportResult(extraction, paths, extraction.seconds)
