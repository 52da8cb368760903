"""``relationfield eval``: score a predicted scene graph against ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relationfield.errors import UserError


@dataclass
class Eval:
    """Score a predicted scene graph against ground truth (3DSSG-style recalls under --protocol relationfield,
    open3dsg or 3dssg; Reference R@k and none precision; protocol in README). Reference R@k and none precision
    need links for all pairs (export with --all-pairs). Prints a markdown table and writes eval.json and eval.md
    next to the prediction (or to --output-dir)."""

    pred: Path
    """scene_graph.json written by `relationfield export scene-graph`."""
    gt: Path
    """Ground truth: a synth capture's ground_truth/scene_graph.json, or 3DSSG relationships.json."""
    output_dir: Path | None = None
    """Where to write eval.json and eval.md (default: the prediction's directory)."""
    min_iou: float = 0.1
    """Minimum 3D box IoU (with --matching points: point overlap) for a predicted node to match a ground-truth
    object."""
    matching: Literal["boxes", "points"] = "boxes"
    """How nodes are matched to ground-truth objects: by box IoU, or by point overlap between the export's
    points.ply (--points) and the ground truth's points (--gt-points; converted scans have them)."""
    gt_points: Path | None = None
    """For --matching points: points on the ground-truth objects with an object id each (default:
    points.ply next to --gt, as relationfield convert writes it)."""
    min_extent: float = 0.1
    """Boxes are padded to at least this side length before IoU (surface points of walls are flat)."""
    ignore_labels: tuple[str, ...] = ()
    """Ground-truth labels to leave out of every count (e.g. floor wall ceiling)."""
    structural_labels: tuple[str, ...] = ("floor", "wall", "ceiling")
    """Ground-truth labels left out of none precision (everything stands on the floor or against a wall)."""
    node_map: Path | None = None
    """For 3DSSG ground truth (no geometry): JSON {predicted node id: ground-truth object id}."""
    scan: str | None = None
    """For 3DSSG ground truth with several scans: the scan id."""
    protocol: Literal["relationfield", "open3dsg", "3dssg"] = "relationfield"
    """Rules of Object / Predicate / Relation R@k.
    relationfield: ties count against the prediction; "none" competes for predicates but is no triplet
    candidate; GT-related pairs only; pooled over all GT objects / triples.
    open3dsg (Open3DSG eval.py): predicate and triplet ties in the prediction's favour, object ties by list
    order; every unrelated ordered pair is a "none" triple (a predicate hit when the GT boxes are over 0.5 m
    apart); "none" is a triplet candidate; recalls averaged per subgraph (--splits).
    3dssg (3DSSG util_eva.py): ties by list order; a pair's predicate and triplet ranks are divided by its
    number of GT predicates (rounded up); "none" is no class; pooled."""
    splits: Path | None = None
    """For --protocol open3dsg: the subgraphs, a 3DSSG split file (relationships_*.json with "split" entries)
    or JSON {subgraph name: [GT object ids]} (default: the whole scan is one subgraph)."""
    load_config: Path | None = None
    """The run the graph was exported from: adds relation-guided segmentation (referring queries about twins,
    with a CLIP-only baseline) and the predicate-only queries (needs synth ground truth and points.ply)."""
    points: Path | None = None
    """points.ply of the export, for --matching points and the query-based measures (default: next to --pred)."""
    guided_threshold: float = 0.5
    """Relevancy above which a point counts as selected in the predicate-only queries."""

    def main(self) -> None:
        from relationfield.evaluation import evaluate_files

        output_dir = self.output_dir or self.pred.parent
        result = evaluate_files(
            self.pred,
            self.gt,
            output_dir=output_dir,
            min_iou=self.min_iou,
            min_extent=self.min_extent,
            ignore_labels=self.ignore_labels,
            node_map_path=self.node_map,
            scan=self.scan,
            structural_labels=self.structural_labels,
            protocol=self.protocol,
            splits_path=self.splits,
            points_paths=self._points_paths(),
        )
        report = result.to_markdown()
        if self.load_config is not None:
            guided, referring = self._guided(result)
            report += "\n" + referring.to_markdown() + "\n" + guided.to_markdown()
            summary = json.loads((output_dir / "eval.json").read_text(encoding="utf-8"))
            summary["referring_segmentation"] = referring.to_json()
            summary["predicate_queries"] = guided.to_json()
            (output_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            (output_dir / "eval.md").write_text(report, encoding="utf-8")
        print(report)

    def _points_paths(self) -> tuple[Path, Path] | None:
        """The export's and the ground truth's points.ply for --matching points (None for box matching)."""
        if self.matching != "points":
            return None
        return self.points or self.pred.parent / "points.ply", self.gt_points or self.gt.parent / "points.ply"

    def _guided(self, result):
        """The predicate-only queries and the referring queries about twins, on one loaded run."""
        from relationfield.evaluation import referring_segmentation, relation_guided_segmentation
        from relationfield.query import FieldQuery
        from relationfield.scene_graph import read_ply

        points_path = self.points or self.pred.parent / "points.ply"
        points, nodes = read_ply(points_path)
        if nodes is None:
            raise UserError(f"{points_path} has no node ids; pass the points.ply written by export scene-graph")
        gt = json.loads(self.gt.read_text(encoding="utf-8"))
        matches = {m.gt_id: m.node_id for m in result.matches}
        query = FieldQuery.load(self.load_config)
        guided = relation_guided_segmentation(
            query, points, nodes, gt, matches, threshold=self.guided_threshold, min_extent=self.min_extent
        )
        return guided, referring_segmentation(query, points, nodes, gt, matches, min_extent=self.min_extent)
