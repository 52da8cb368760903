"""``relationfield export scene-graph`` and ``relationfield export pointcloud``: files from a trained run."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import tyro

from relationfield.progress import rich_progress

ExportFormat = Literal["conceptgraphs", "3dssg"]


@dataclass
class ExportSceneGraph:
    """Extract the 3D scene graph of a trained run: OUT/scene_graph.json (networkx node-link, world frame),
    OUT/scene_graph.png, OUT/points.ply (surface points coloured by node, with node id and label index per
    point), OUT/labels.txt (the label indices' names) and OUT/objects/<id>_<label>.ply (each object's points);
    --format adds OUT/conceptgraphs/ (ConceptGraphs' scene_graph.json, obj_json and edge_json) or OUT/3dssg/
    (3DSSG's objects.json, relationships.json and relationships.txt)."""

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
    measured_weight: float = 0.5
    """Weight of close by, bigger / smaller than and higher / lower than measured from the objects' boxes against
    the field's scores of them (0: the field alone; set 0 for a capture not in metres, e.g. plain COLMAP)."""
    max_views: int = 80
    """Training views that give surface points (evenly spread)."""
    surface: Literal["auto", "rendered", "depth"] = "auto"
    """Surface points from the capture's depth maps (depth), the field's rendered depth (rendered), or depth
    maps when the run was trained with depth supervision (auto)."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution; raise it on a GPU)."""
    label_top_k: int = 10
    """Label scores kept per node (0: every class; a label outside the list is a miss at every k of eval)."""
    predicate_top_k: int = 10
    """Predicate scores kept per link, "none" always among them (0: every predicate)."""
    format: Annotated[tuple[tuple[ExportFormat, ...], ...], tyro.conf.UseAppendAction] = ()
    """Also write other tools' formats (repeatable, or several at once: --format conceptgraphs 3dssg)."""
    draw_predicates: tuple[str, ...] | None = None
    """Predicates scene_graph.png draws (default: support, attachment, containment and similarity ones; the
    comparison and proximity ones are hidden). The JSON keeps every link."""

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
            measured_weight=self.measured_weight,
            max_views=self.max_views,
            view_pixels=self.view_pixels,
            surface=self.surface,
            label_top_k=self.label_top_k or len(objects),
            predicate_top_k=self.predicate_top_k or len(predicates) + 1,  # and "none"
        )
        bar, progress = rich_progress()
        with bar:
            result = export_scene_graph(
                query,
                self.output_dir,
                objects,
                predicates,
                config,
                progress,
                load_config=self.load_config,
                per_object=True,
                formats=list(dict.fromkeys(name for names in self.format for name in names)),
                draw_predicates=self.draw_predicates,
            )
        graph = result.extraction.graph
        if not graph.nodes:
            print("warning: clustering found no objects; wrote an empty but valid scene graph", file=sys.stderr)
        print(f"{len(graph.nodes)} objects, {len(graph.links)} scored pairs in {result.seconds:.1f} s")
        for name, path in result.paths.items():
            print(f"  {name}: {path}")


@dataclass
class ExportPointcloud:
    """Write the trained run's surface points coloured by instance cluster (OUT/points.ply); with --query
    (or --relation and --reference), only the points that answer the query, each with its relevancy
    (OUT/query_points.ply): an object query's and a relation query's points above --threshold, a referring
    query's best instance. The run's export (or query cache) is reused when it has one."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output_dir: Path
    """Directory to write points.ply (or the query's points) to."""
    max_views: int = 80
    """Training views that give surface points (evenly spread)."""
    surface: Literal["auto", "rendered", "depth"] = "auto"
    """Surface points from the capture's depth maps (depth), the field's rendered depth (rendered), or depth
    maps when the run was trained with depth supervision (auto)."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution; raise it on a GPU)."""
    query: str | None = None
    """An object query ("chair") or a referring one ("cup standing on table"): write only its answer's points."""
    relation: str | None = None
    """A relation query's predicate ("standing on"), with --reference; with --query, the query's predicate."""
    reference: str | None = None
    """The reference object of --relation: text ("table") or a node id ("#3")."""
    threshold: float = 0.5
    """Object and relation queries write the points whose relevancy is above this."""
    output: Path = Path("query_points.ply")
    """File of the query's points, inside --output-dir (an absolute path is used as given)."""

    def main(self) -> None:
        if self.query is not None or self.relation is not None or self.reference is not None:
            self._query_points()
            return
        from relationfield.extraction import ExtractionConfig, instance_point_cloud
        from relationfield.query import FieldQuery
        from relationfield.scene_graph import node_colors, write_ply

        query = FieldQuery.load(self.load_config)
        bar, progress = rich_progress()
        config = ExtractionConfig(max_views=self.max_views, view_pixels=self.view_pixels, surface=self.surface)
        with bar:
            world, labels = instance_point_cloud(query, config, progress)
        ids = sorted({int(i) for i in labels})
        palette = dict(zip(ids, node_colors(ids)))
        colors = np.stack([palette[int(i)] for i in labels]) if len(labels) else np.zeros((0, 3), np.uint8)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "points.ply"
        write_ply(path, world, colors, labels)
        print(f"{len(world)} points in {len([i for i in ids if i >= 0])} instances: {path}")

    def _query_points(self) -> None:
        from relationfield.export import export_query_points
        from relationfield.extraction import ExtractionConfig
        from relationfield.query import FieldQuery

        query = FieldQuery.load(self.load_config)
        config = ExtractionConfig(max_views=self.max_views, view_pixels=self.view_pixels, surface=self.surface)
        bar, progress = rich_progress()
        with bar:
            answer = export_query_points(
                query,
                self.load_config,
                self.output_dir / self.output,
                self.query or "",
                self.relation,
                self.reference,
                self.threshold,
                config,
                progress,
            )
        if not len(answer.points_world):
            print(f"warning: no point answers {answer.query.text()!r}; wrote an empty point cloud", file=sys.stderr)
        about = f" (node #{answer.node})" if answer.node is not None else ""
        print(f"{len(answer.points_world)} points answer {answer.query.text()!r}{about}: {answer.path}")


ExportTarget = Union[  # noqa: UP007  (tyro reads subcommands from a Union)
    Annotated[ExportSceneGraph, tyro.conf.subcommand("scene-graph")],
    Annotated[ExportPointcloud, tyro.conf.subcommand("pointcloud")],
]
