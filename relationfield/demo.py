"""``relationfield demo``: the whole method on a synthetic scene, offline, in one command.

synth capture -> ground-truth labels (offline MiniLM) -> relationfield-lite training -> scene-graph
export -> evaluation against the ground truth -> a short report. Every stage that already finished in
the output directory is reused, so an interrupted demo picks up where it stopped. Progress lines go to
nerfstudio's console, where training prints too. Each stage imports its torch/nerfstudio dependencies
when it runs, so reused stages cost no import time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from nerfstudio.utils.rich_utils import CONSOLE

from relationfield.errors import UserError
from relationfield.synth import LAYOUTS, generate_capture

if TYPE_CHECKING:
    from relationfield.evaluation import EvalResult, ReferringResult
    from relationfield.export import ExportResult
    from relationfield.query import FieldQuery

T = TypeVar("T")

VIEWER_HOST = "127.0.0.1"


@dataclass
class DemoReport:
    """What the demo produced, and how long each stage took."""

    capture: Path
    layout: str
    """The synthetic layout that was rendered (one of :data:`relationfield.synth.LAYOUTS`)."""
    config: Path
    scene_graph: Path
    scene_graph_png: Path
    eval_markdown: str
    eval_json: Path
    seconds: dict[str, float]

    def viewer_command(self) -> str:
        return f"ns-viewer --load-config {self.config} --viewer.websocket-host {VIEWER_HOST}"

    def to_text(self) -> str:
        timing = ", ".join(f"{name} {value:.0f} s" for name, value in self.seconds.items())
        lines: list[str] = [
            "",
            f"RelationField demo: scene graph of a synthetic {self.layout.replace('-', ' ')} vs its ground truth",
            "",
            self.eval_markdown,
            "",
            f"time: {timing} (total {sum(self.seconds.values()):.0f} s)",
            f"scene graph:  {self.scene_graph}",
            f"picture:      {self.scene_graph_png}",
            f"evaluation:   {self.eval_json}",
            f"run config:   {self.config}",
            f"look at it:   {self.viewer_command()}",
        ]
        return "\n".join(lines)


def say(message: str) -> None:
    """One progress line on nerfstudio's console (the one training prints to), as plain text."""
    CONSOLE.print(f"[demo] {message}", markup=False, highlight=False, soft_wrap=True)


def _stage(name: str, seconds: dict[str, float], work: Callable[[], T]) -> T:
    say(f"{name} ...")
    start = time.perf_counter()
    result = work()
    seconds[name] = time.perf_counter() - start
    say(f"{name} done in {seconds[name]:.1f} s")
    return result


def _check_settings(output: Path, settings: dict[str, object]) -> None:
    """Record the demo's settings in OUT/demo.json; refuse to mix stages made with other settings."""
    import json

    path = output / "demo.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous != settings:
            raise UserError(
                f"{output} holds a demo made with other settings ({previous}); pass another --output "
                "or delete that directory"
            )
        return
    if output.exists() and any(output.iterdir()):
        raise UserError(f"{output} exists and is not a demo directory; pass another --output")
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings) + "\n", encoding="utf-8")


def _capture(output: Path, seed: int, frames: int, resolution: tuple, layout: str) -> Path:
    capture = output / "capture"
    if (capture / "transforms.json").is_file() and (capture / "ground_truth" / "scene_graph.json").is_file():
        say(f"reusing the capture in {capture}")
        return capture
    generate_capture(capture, seed=seed, num_frames=frames, resolution=resolution, layout=layout, overwrite=True)
    return capture


def _labels(capture: Path, realism: str) -> Path:
    from relationfield.labels.format import MANIFEST_FILE, default_labels_dir
    from relationfield.labels.gt_labeler import label_from_ground_truth

    labels = default_labels_dir(capture)
    if (labels / MANIFEST_FILE).is_file():
        say(f"reusing the label store in {labels}")
        return labels
    return label_from_ground_truth(capture, realism=realism)


def _finished_run(runs: Path, steps: int) -> Path | None:
    config = runs / "demo" / "relationfield-lite" / "run" / "config.yml"
    checkpoint = config.parent / "nerfstudio_models" / f"step-{steps - 1:09d}.ckpt"
    return config if checkpoint.is_file() else None


def _train(capture: Path, labels: Path, runs: Path, steps: int, consensus: bool = False) -> Path:
    from nerfstudio.scripts.train import main as train_main

    from relationfield.config import lite_run_config

    finished = _finished_run(runs, steps)
    if finished is not None:
        say(f"reusing the trained run {finished}")
        return finished
    config = lite_run_config(capture, labels, runs, steps)
    config.pipeline.datamanager.relation_consensus = consensus
    config.experiment_name = "demo"
    config.timestamp = "run"
    train_main(config)
    return config.get_base_dir() / "config.yml"


def run_demo(
    output: Path,
    steps: int = 800,
    frames: int = 60,
    resolution: tuple = (128, 96),
    seed: int = 0,
    layout: str = LAYOUTS[0],
    realism: str = "none",
    consensus: bool = False,
) -> DemoReport:
    """Run every stage of the demo into ``output`` and return the report (``realism``: the labels' level, see
    :mod:`relationfield.labels.realism`; ``consensus``: train with relations pooled over frames, see
    :mod:`relationfield.labels.consensus`)."""
    from relationfield.evaluation import evaluate_files
    from relationfield.query import FieldQuery

    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    output = Path(output)
    settings = {"steps": steps, "frames": frames, "resolution": list(resolution), "seed": seed, "layout": layout}
    if realism != "none":  # absent for clean labels, so demo directories made before --realism stay usable
        settings["realism"] = realism
    if consensus:  # likewise absent when off
        settings["consensus"] = True
    _check_settings(output, settings)
    seconds: dict[str, float] = {}
    capture = _stage("synthetic capture", seconds, lambda: _capture(output, seed, frames, resolution, layout))
    labels = _stage("ground-truth labels", seconds, lambda: _labels(capture, realism))
    config = _stage("training", seconds, lambda: _train(capture, labels, output / "runs", steps, consensus))

    loaded: list[FieldQuery] = []  # the run, loaded once for the export and the referring queries
    exported = _stage("scene-graph export", seconds, lambda: _export(config, output, loaded))
    gt = capture / "ground_truth" / "scene_graph.json"
    result = _stage(
        "evaluation", seconds, lambda: evaluate_files(exported.paths["json"], gt, output_dir=output / "scene_graph")
    )
    referring = _stage(
        "referring queries",
        seconds,
        lambda: _referring(loaded[0] if loaded else FieldQuery.load(config), exported, gt, result, output),
    )
    return DemoReport(
        capture=capture,
        layout=layout,
        config=config,
        scene_graph=exported.paths["json"],
        scene_graph_png=exported.paths["png"],
        eval_markdown=result.to_markdown() + "\n" + referring.to_markdown(),
        eval_json=output / "scene_graph" / "eval.json",
        seconds=seconds,
    )


def _export(config: Path, output: Path, loaded: list[FieldQuery]) -> ExportResult:
    """Export the run's scene graph (all pairs) to OUTPUT/scene_graph; the loaded run is appended to ``loaded``."""
    from relationfield.export import export_scene_graph
    from relationfield.extraction.config import ExtractionConfig
    from relationfield.progress import rich_progress
    from relationfield.query import FieldQuery
    from relationfield.vocab import object_vocab, predicate_vocab

    query = FieldQuery.load(config)
    loaded.append(query)
    bar, progress = rich_progress()
    with bar:
        # All pairs: Reference R@k and none precision need the links to every other object.
        return export_scene_graph(
            query,
            output / "scene_graph",
            object_vocab(),
            predicate_vocab(),
            ExtractionConfig(all_pairs=True),
            progress=progress,
            load_config=config,
        )


def _referring(
    query: FieldQuery, exported: ExportResult, gt: Path, result: EvalResult, output: Path
) -> ReferringResult:
    """Relation-guided segmentation (referring queries about twins, and the CLIP-only baseline), added to
    the demo's eval.json."""
    from relationfield.evaluation import referring_segmentation

    extraction = exported.extraction
    truth = json.loads(gt.read_text(encoding="utf-8"))
    matches = {m.gt_id: m.node_id for m in result.matches}
    referring = referring_segmentation(query, extraction.points_world, extraction.point_node, truth, matches)
    path = output / "scene_graph" / "eval.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["referring_segmentation"] = referring.to_json()
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return referring


def open_viewer(config: Path) -> None:
    """Serve the run in nerfstudio's viewer on 127.0.0.1 until interrupted."""
    from nerfstudio.scripts.viewer.run_viewer import RunViewer, ViewerConfigWithoutNumRays

    say(f"opening the viewer on {VIEWER_HOST} (Ctrl-C to stop)")
    RunViewer(load_config=config, viewer=ViewerConfigWithoutNumRays(websocket_host=VIEWER_HOST)).main()
