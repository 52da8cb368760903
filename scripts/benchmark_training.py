"""Training benchmark: relationfield-lite against nerfacto on the same capture, machine and run.

Both methods use the same geometry settings (relationfield-lite's hash grids, samplers and rays per
batch) and train for the same number of steps through nerfstudio's train loop. Reported:

* step time of each method (median of the trainer's per-iteration timings after warm-up) and the ratios:
  ``step_time_ratio`` against stock nerfacto (nerfstudio's torch hash grids), ``step_time_ratio_same_grids``
  against nerfacto with RelationField's faster torch grids and contraction (:mod:`relationfield.hash_grid`,
  :mod:`relationfield.contraction`), i.e. what the feature heads alone cost;
* eval-split PSNR of each method and the difference (RelationField's target: within 0.5 dB);
* RelationField's held-out semantic and relation accuracies (per predicate).

Usage (writes the capture and labels itself unless --capture is given):

    python scripts/benchmark_training.py --steps 1000 --num-frames 60 --resolution 128x96 --output bench/
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from nerfstudio.models.nerfacto import NerfactoModel

from relationfield.contraction import speed_up_contractions
from relationfield.hash_grid import speed_up_hash_grids


@dataclass
class Args:
    output: Path = Path("bench")
    """Working directory (capture, runs, results.json)."""
    capture: Path | None = None
    """Use this labelled capture instead of generating one."""
    steps: int = 1000
    """Training steps of each method."""
    num_frames: int = 60
    """Frames of the generated synthetic capture."""
    resolution: str = "128x96"
    """Resolution of the generated capture (WxH)."""
    seed: int = 0
    """Scene seed."""
    relation_noise: float = 0.0
    """Label noise for label-gt."""
    depth_supervision: bool = False
    """Depth supervision for RelationField (off by default so that the only difference to nerfacto is the
    feature heads; relationfield-lite turns it on)."""


def _timed_train(config) -> list:
    """Train through nerfstudio's loop; returns per-iteration seconds."""
    from nerfstudio.engine.trainer import Trainer

    times: list = []
    original = Trainer.train_iteration

    def timed(self, step):
        start = time.perf_counter()
        result = original(self, step)
        times.append(time.perf_counter() - start)
        return result

    from nerfstudio.scripts.train import main as train_main

    Trainer.train_iteration = timed  # type: ignore[method-assign]
    try:
        train_main(config)
    finally:
        Trainer.train_iteration = original  # type: ignore[method-assign]
    return times


def _load(config_path: Path):
    """Pipeline of a finished run (like eval_setup, which only knows registered method names)."""
    import yaml
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    pipeline.eval()
    config.load_dir = config.get_checkpoint_dir()
    eval_load_checkpoint(config, pipeline)
    return pipeline


def _common(config, capture: Path, output: Path, steps: int) -> None:
    config.pipeline.datamanager.data = capture
    config.output_dir = output
    config.vis = "tensorboard"
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.steps_per_eval_batch = steps + 1
    config.steps_per_eval_image = steps + 1
    config.steps_per_eval_all_images = steps + 1


def nerfacto_like(lite) -> object:
    """nerfacto with relationfield-lite's geometry settings and batch (no feature heads, no depth)."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    config = lite
    model = lite.pipeline.model
    shared = {name: getattr(model, name) for name in NerfactoModelConfig.__dataclass_fields__ if name != "_target"}
    config.pipeline.model = NerfactoModelConfig(**shared)
    dm = lite.pipeline.datamanager
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=dm.dataparser,
        train_num_rays_per_batch=dm.train_num_rays_per_batch,
        eval_num_rays_per_batch=dm.eval_num_rays_per_batch,
    )
    config.method_name = "nerfacto-lite-baseline"
    config.optimizers = {k: v for k, v in lite.optimizers.items() if k != "relationfield_heads"}
    return config


class NerfactoFastGrid(NerfactoModel):
    """nerfacto with RelationField's faster torch hash grids and scene contraction (this benchmark's baseline only;
    at module level so that the run's config.yml can name it)."""

    def populate_modules(self) -> None:
        super().populate_modules()
        speed_up_hash_grids(self)
        speed_up_contractions(self)


def nerfacto_fast_grid(lite) -> object:
    """:func:`nerfacto_like` with :class:`NerfactoFastGrid`: the like-for-like baseline, whose ratio is what the
    feature heads alone cost."""
    config = nerfacto_like(lite)
    config.pipeline.model._target = NerfactoFastGrid
    config.method_name = "nerfacto-fast-grid-baseline"
    return config


BASELINES = {"nerfacto": nerfacto_like, "nerfacto-fast-grid": nerfacto_fast_grid}


def main(args: Args) -> None:
    from relationfield.commands.data import parse_resolution
    from relationfield.compat import offline_safe_lpips
    from relationfield.config import relationfield_lite_config
    from relationfield.diagnostics import evaluate_heads, summarise
    from relationfield.encoders import load_text_encoder
    from relationfield.labels.gt_labeler import label_from_ground_truth
    from relationfield.synth import generate_capture

    args.output.mkdir(parents=True, exist_ok=True)
    capture = args.capture
    if capture is None:
        capture = args.output / "capture"
        generate_capture(
            capture,
            seed=args.seed,
            num_frames=args.num_frames,
            resolution=parse_resolution(args.resolution),
            overwrite=True,
        )
        label_from_ground_truth(capture, relation_noise=args.relation_noise)

    results: dict = {"steps": args.steps, "capture": str(capture)}
    for name in ("relationfield-lite", *BASELINES):
        config = relationfield_lite_config()
        config.pipeline.datamanager.depth_supervision = args.depth_supervision
        if name in BASELINES:
            config = BASELINES[name](config)
        _common(config, capture, args.output / "runs", args.steps)
        with offline_safe_lpips():  # nerfacto's LPIPS needs AlexNet's weights, which may not be downloadable
            times = _timed_train(config)
            pipeline = _load(config.get_base_dir() / "config.yml")
        steady = times[min(20, len(times) // 4) :]
        metrics = pipeline.get_average_eval_image_metrics()
        results[name] = {"step_seconds": statistics.median(steady), "eval_psnr": float(metrics["psnr"])}
        if name == "relationfield-lite":
            report = evaluate_heads(pipeline, load_text_encoder(pipeline.model.label_spec.semantic_encoder))
            results[name]["heads"] = report.as_dict()
            for row in summarise(report):
                print(*row)
    rf, nf, fast = results["relationfield-lite"], results["nerfacto"], results["nerfacto-fast-grid"]
    results["step_time_ratio"] = rf["step_seconds"] / nf["step_seconds"]
    results["step_time_ratio_same_grids"] = rf["step_seconds"] / fast["step_seconds"]
    results["psnr_difference_db"] = rf["eval_psnr"] - nf["eval_psnr"]
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
