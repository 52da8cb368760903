"""Where a relationfield-lite training step spends its time: phases and modules, on one labelled capture.

Builds the demo's trainer (``lite_run_config``) on CAPTURE, runs ``--warmup`` steps, then times ``--steps``
steps phase by phase (batch from the data manager, forward, losses, backward, optimiser) and, through
forward hooks, each module's forward (proposal networks, nerfacto's grid and MLPs, each head's grid and MLP).
Backward time is reported as a whole: autograd does not say which module it is in.

Settings can be changed with dotted overrides of the trainer config, to time a candidate against the preset (here
the sample counts relationfield-lite had before):

    python scripts/profile_step.py outputs/relationfield-demo/capture --steps 40 \
        --set pipeline.model.num_nerf_samples_per_ray=24 "pipeline.model.num_proposal_samples_per_ray=(64,32)"
"""

from __future__ import annotations

import ast
import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

MODULES = (
    "proposal_sampler",
    "proposal_networks.0.mlp_base",
    "proposal_networks.1.mlp_base",
    "field.mlp_base",
    "field.mlp_head",
    *(f"{head}_head.{part}" for head in ("semantic", "instance", "relation") for part in ("encoding", "mlp.layers")),
)
"""Modules whose forward is timed (names inside the model; missing ones are skipped)."""


@dataclass
class Args:
    capture: tyro.conf.Positional[Path]
    """A capture with a label store (e.g. the demo's OUTPUT/capture)."""
    labels: Path | None = None
    """Its label store (default: CAPTURE/relationfield)."""
    steps: int = 40
    """Timed steps."""
    warmup: int = 10
    """Untimed steps before them."""
    set: list[str] = field(default_factory=list)
    """Dotted overrides of the trainer config, KEY=VALUE ... after one --set (VALUE read as a Python literal when it
    is one), e.g. --set pipeline.model.feature_samples=4 pipeline.datamanager.train_num_rays_per_batch=2048."""
    operators: int = 0
    """Also list this many operators with the most self CPU time over the timed steps (torch.profiler)."""
    output: Path = Path("/tmp/relationfield-profile")
    """Working directory of the run (nothing in it is kept)."""


def _override(config, assignment: str) -> None:
    key, _, text = assignment.partition("=")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    *parents, name = key.split(".")
    target = config
    for part in parents:
        target = getattr(target, part)
    if not hasattr(target, name):
        raise SystemExit(f"--set {assignment}: {type(target).__name__} has no field {name!r}")
    setattr(target, name, value)


def _hook_modules(model, seconds: dict[str, list[float]]) -> None:
    named = dict(model.named_modules())
    for name in MODULES:
        if name not in named:
            continue
        starts: list[float] = []
        # a ModuleList (the heads' MLP layers, which the heads call one by one) is timed layer by layer
        for part in named[name] if isinstance(named[name], torch.nn.ModuleList) else (named[name],):
            part.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter()))
            part.register_forward_hook(lambda *_, s=starts, n=name: seconds[n].append(time.perf_counter() - s.pop()))


def _callbacks(trainer, step: int, location) -> None:
    """The training callbacks nerfstudio's loop runs around each step (proposal annealing and the like)."""
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=location)


def main(args: Args) -> dict:
    """Run the profile; prints and returns the report."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation
    from nerfstudio.engine.trainer import Trainer

    from relationfield.compat import offline_safe_lpips
    from relationfield.config import lite_run_config
    from relationfield.labels.format import default_labels_dir

    labels = args.labels or default_labels_dir(args.capture)
    config = lite_run_config(args.capture, labels, args.output, args.warmup + args.steps)
    for assignment in args.set:
        _override(config, assignment)
    config.set_timestamp()
    with offline_safe_lpips():
        trainer = Trainer(config)
        trainer.setup()
    pipeline, model = trainer.pipeline, trainer.pipeline.model
    phases: dict[str, list[float]] = defaultdict(list)
    modules: dict[str, list[float]] = defaultdict(list)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _hook_modules(model, modules)
            if args.operators:
                profiler.__enter__()
        _callbacks(trainer, step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        marks = [time.perf_counter()]
        ray_bundle, batch = pipeline.datamanager.next_train(step)
        marks.append(time.perf_counter())
        outputs = model(ray_bundle)
        marks.append(time.perf_counter())
        metrics = model.get_metrics_dict(outputs, batch)
        loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
        marks.append(time.perf_counter())
        trainer.optimizers.zero_grad_all()
        loss.backward()
        marks.append(time.perf_counter())
        trainer.optimizers.optimizer_step_all()
        trainer.optimizers.scheduler_step_all(step)
        _callbacks(trainer, step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        marks.append(time.perf_counter())
        if step >= args.warmup:
            for name, start, end in zip(("data", "forward", "loss", "backward", "optimiser"), marks, marks[1:]):
                phases[name].append(end - start)
    if args.operators:
        profiler.__exit__(None, None, None)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.operators))
    report = {
        "threads": torch.get_num_threads(),
        "overrides": args.set,
        "step_ms": 1000 * statistics.median([sum(parts) for parts in zip(*phases.values())]),
        "phases_ms": {name: 1000 * statistics.median(values) for name, values in phases.items()},
        "module_forward_ms": {
            name: 1000 * sum(values) / args.steps for name, values in modules.items()
        },  # per step (a module may run more than once per step)
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
