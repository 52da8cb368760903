"""Scene-graph export shared by ``relationfield export`` and ``relationfield demo``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from relationfield.extract import Extraction, ExtractionConfig, Progress, extract_scene_graph, no_progress
from relationfield.query import FieldQuery
from relationfield.scene_graph import write_scene_graph


@dataclass
class ExportResult:
    """An extraction, the files written for it and how long extraction took."""

    extraction: Extraction
    paths: dict[str, Path]
    seconds: float


def export_scene_graph(
    query: FieldQuery,
    output_dir: Path,
    objects: Sequence[str],
    predicates: Sequence[str],
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
    load_config: Path | None = None,
) -> ExportResult:
    """Extract the scene graph of a loaded run and write scene_graph.json/.png and points.ply."""
    start = time.perf_counter()
    extraction = extract_scene_graph(query, objects, predicates, config or ExtractionConfig(), progress)
    seconds = time.perf_counter() - start
    metadata = {"extraction_seconds": round(seconds, 2)}
    if load_config is not None:
        metadata["load_config"] = str(load_config)
    extraction.graph.metadata.update(metadata)
    paths = write_scene_graph(extraction.graph, Path(output_dir), extraction.points_world, extraction.point_node)
    return ExportResult(extraction, paths, seconds)
