"""Where a run's segmented scene comes from for queries: its export, a given folder, or a cache made once.

A query needs the run's instances (a node id per surface point). Segmenting renders and clusters the whole
scene (about a minute on a CPU), so a query looks, in this order, for:

1. ``--graph DIR``: the ``scene_graph.json`` and ``points.ply`` there (used as given);
2. an export of this run at this checkpoint: ``relationfield export`` and the demo record each export in
   the run's folder (``relationfield_exports.json``, with the checkpoint it was made from);
3. the query cache: ``relationfield_cache/<checkpoint key>/`` next to the run's config.yml.

Otherwise the scene is segmented once (nodes and points, no links) and written to the cache. The key is
the newest checkpoint's name, size and modification time, so a newer checkpoint is never served an older
segmentation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.extraction import ExtractionConfig, Progress, extract_scene_graph, no_progress
from relationfield.query import FieldQuery, instance_points
from relationfield.scene_graph import PLY_FILE, SceneGraph, read_ply, read_scene_graph, write_scene_graph
from relationfield.vocab import object_vocab

__all__ = ["GraphFiles", "checkpoint_key", "find_graph", "record_export", "segmented_scene"]

REGISTRY_FILE = "relationfield_exports.json"
"""In a run's folder: the exports made from it, with their checkpoint keys."""
CACHE_DIR = "relationfield_cache"
"""In a run's folder: segmentations made for queries, one sub-folder per checkpoint key."""
MODEL_DIR = "nerfstudio_models"
"""nerfstudio's checkpoint folder inside a run (its ``relative_model_dir`` default)."""


@dataclass
class GraphFiles:
    """A segmented scene: the graph's nodes, the surface points (world frame) and their node ids."""

    graph: SceneGraph
    points_world: np.ndarray
    point_node: np.ndarray
    directory: Path
    source: str
    """"graph" (given folder), "export" or "cache"."""

    def instances(self, query: FieldQuery) -> dict[int, Tensor]:
        """node id -> its points in ``query``'s model frame, for the graph's nodes that have points."""
        return instance_points(query, [node.id for node in self.graph.nodes], self.points_world, self.point_node)


def checkpoint_key(config_path: Path) -> str:
    """A short key of the run's newest checkpoint (name, size, mtime); "none" without checkpoints."""
    checkpoints = sorted(Path(config_path).parent.joinpath(MODEL_DIR).glob("step-*.ckpt"))
    if not checkpoints:
        return "none"
    newest = checkpoints[-1]
    stat = newest.stat()
    digest = hashlib.sha1(f"{newest.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{newest.stem}-{digest}"


def record_export(config_path: Path, output_dir: Path) -> None:
    """Note in the run's folder that ``output_dir`` holds an export of its current checkpoint."""
    registry = Path(config_path).parent / REGISTRY_FILE
    entries = [e for e in _registry(registry) if Path(e.get("directory", "")) != Path(output_dir).resolve()]
    entries.append({"directory": str(Path(output_dir).resolve()), "checkpoint": checkpoint_key(config_path)})
    with atomic_write(registry, "w") as handle:
        json.dump({"exports": entries}, handle, indent=2)


def find_graph(config_path: Path, graph_dir: Path | None = None) -> GraphFiles | None:
    """The segmented scene of the run at its current checkpoint, without segmenting (None: none found)."""
    if graph_dir is not None:
        return read_graph_files(Path(graph_dir), "graph")
    key = checkpoint_key(config_path)
    run_dir = Path(config_path).parent
    candidates = [Path(e["directory"]) for e in reversed(_registry(run_dir / REGISTRY_FILE)) if e["checkpoint"] == key]
    candidates.append(cache_dir(config_path))
    for directory in candidates:
        if (directory / "scene_graph.json").is_file() and (directory / PLY_FILE).is_file():
            return read_graph_files(directory, "cache" if directory == cache_dir(config_path) else "export")
    return None


def cache_dir(config_path: Path) -> Path:
    """The query cache's folder for the run's current checkpoint."""
    return Path(config_path).parent / CACHE_DIR / checkpoint_key(config_path)


def read_graph_files(directory: Path, source: str) -> GraphFiles:
    """``scene_graph.json`` and ``points.ply`` of a folder; a clear error when one is missing or lacks node ids."""
    graph = read_scene_graph(directory / "scene_graph.json")
    ply = directory / PLY_FILE
    if not ply.is_file():
        raise UserError(f"{ply} does not exist: a query needs the export's points (export again, or drop --graph)")
    points, node_ids = read_ply(ply)
    if node_ids is None:
        raise UserError(f"{ply} has no node ids per point; export it with `relationfield export scene-graph`")
    return GraphFiles(graph, points, node_ids, directory, source)


def _registry(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("exports", [])
    except (json.JSONDecodeError, AttributeError, OSError):
        return []  # a damaged registry only costs a segmentation
    return [e for e in entries if isinstance(e, dict) and {"directory", "checkpoint"} <= set(e)]


def segmented_scene(
    query: FieldQuery,
    config_path: Path,
    graph_dir: Path | None = None,
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
) -> GraphFiles:
    """:func:`find_graph`, or the run (``query``, loaded from ``config_path``) segmented now (nodes, no
    links) and written to the query cache."""
    found = find_graph(config_path, graph_dir)
    if found is not None:
        return found
    extraction = extract_scene_graph(
        query, object_vocab(), [], config or ExtractionConfig(), progress, config_path, links=False
    )
    directory = cache_dir(config_path)
    write_scene_graph(extraction.graph, directory, extraction.points_world, extraction.point_node)
    return GraphFiles(extraction.graph, extraction.points_world, extraction.point_node, directory, "new")
