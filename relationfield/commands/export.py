"""``relationfield export scene-graph`` and ``relationfield export pointcloud``: files from a trained run."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import numpy as np
import tyro

from relationfield.progress import rich_progress


@dataclass
class ExportSceneGraph:
    """Extract the 3D scene graph of a trained run: OUT/scene_graph.json (networkx node-link, world frame),
    OUT/scene_graph.png and OUT/points.ply (surface points coloured by node)."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output_dir: Path
    """Directory to write the files to."""
    object_vocab: Path | None = None
    """Object classes, one per line (default: the 160 3DSSG classes shipped in relationfield/configs/)."""
    predicate_vocab: Path | None = None
    """Predicates, one per line (default: the 26 3DSSG predicates shipped in relationfield/configs/)."""
    all_pairs: bool = False
    """Score every ordered pair of objects, not only those within --max-distance."""
    max_distance: float = 3.0
    """Candidate pairs are objects whose boxes are at most this far apart (world units)."""
    max_views: int = 40
    """Training views rendered to find surface points (evenly spread)."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution; raise it on a GPU)."""

    def main(self) -> None:
        from relationfield.export import export_scene_graph
        from relationfield.extraction import ExtractionConfig
        from relationfield.query import FieldQuery
        from relationfield.vocab import object_vocab, predicate_vocab

        objects, predicates = object_vocab(self.object_vocab), predicate_vocab(self.predicate_vocab)
        query = FieldQuery.load(self.load_config)
        config = ExtractionConfig(
            all_pairs=self.all_pairs,
            max_distance=self.max_distance,
            max_views=self.max_views,
            view_pixels=self.view_pixels,
        )
        bar, progress = rich_progress()
        with bar:
            result = export_scene_graph(
                query, self.output_dir, objects, predicates, config, progress, load_config=self.load_config
            )
        graph = result.extraction.graph
        if not graph.nodes:
            print("warning: clustering found no objects; wrote an empty but valid scene graph", file=sys.stderr)
        print(f"{len(graph.nodes)} objects, {len(graph.links)} scored pairs in {result.seconds:.1f} s")
        for name, path in result.paths.items():
            print(f"  {name}: {path}")


@dataclass
class ExportPointcloud:
    """Write the trained run's surface points coloured by instance cluster (OUT/points.ply)."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output_dir: Path
    """Directory to write points.ply to."""
    max_views: int = 40
    """Training views rendered to find surface points (evenly spread)."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution; raise it on a GPU)."""

    def main(self) -> None:
        from relationfield.extraction import ExtractionConfig, instance_point_cloud
        from relationfield.query import FieldQuery
        from relationfield.scene_graph import node_colors, write_ply

        query = FieldQuery.load(self.load_config)
        bar, progress = rich_progress()
        with bar:
            world, labels = instance_point_cloud(
                query, ExtractionConfig(max_views=self.max_views, view_pixels=self.view_pixels), progress
            )
        ids = sorted({int(i) for i in labels})
        palette = dict(zip(ids, node_colors(ids)))
        colors = np.stack([palette[int(i)] for i in labels]) if len(labels) else np.zeros((0, 3), np.uint8)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "points.ply"
        write_ply(path, world, colors, labels)
        print(f"{len(world)} points in {len([i for i in ids if i >= 0])} instances: {path}")


ExportTarget = Union[  # noqa: UP007  (tyro reads subcommands from a Union)
    Annotated[ExportSceneGraph, tyro.conf.subcommand("scene-graph")],
    Annotated[ExportPointcloud, tyro.conf.subcommand("pointcloud")],
]
