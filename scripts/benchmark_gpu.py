"""GPU benchmark: the paper-scale preset (`relationfield`) against nerfacto, peak GPU memory and step time.

One run: a synthetic capture (default 200 frames at 640x480, labelled from its ground truth with the offline
MiniLM encoder, so nothing is downloaded), then each method trained for the same number of steps through
nerfstudio's train loop on the same capture: RelationField with the paper-scale preset, nerfacto with the
same geometry settings and rays per batch (scripts/benchmark_training.py's baseline). Reported per method:
peak GPU memory (torch.cuda.max_memory_allocated, reset before each method), the median step time after
warm-up, and the ratios. Runs on a bare GPU machine from the project's files and its installed wheels:
LPIPS falls back when AlexNet's weights cannot be downloaded, for both methods.

    python scripts/benchmark_gpu.py --output bench-gpu/            # needs CUDA
    python scripts/benchmark_gpu.py --output /tmp/b --dry-run      # 4 frames at 64x48, 3 steps, any device

Writes OUTPUT/results.json and prints it.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_training import _common, _timed_train, nerfacto_like  # noqa: E402


@dataclass
class Args:
    output: Path = Path("bench-gpu")
    """Working directory (capture, runs, results.json)."""
    steps: int = 300
    """Training steps of each method."""
    frames: int = 200
    """Frames of the synthetic capture."""
    resolution: str = "640x480"
    """Image size of the synthetic capture, WIDTHxHEIGHT."""
    seed: int = 0
    """Seed of the synthetic scene."""
    dry_run: bool = False
    """Check the script end to end on any device: 4 frames at 64x48, 3 steps, small batches."""


def _capture(args: Args) -> Path:
    """The labelled synthetic capture, reused only when a previous run wrote it with the same settings and the
    same synth and labelling code (a stamp file records both: the folder's name alone would also match a
    capture made by older code)."""
    from relationfield.commands.data import parse_resolution
    from relationfield.labels.gt_labeler import label_from_ground_truth
    from relationfield.synth import generate_capture

    capture = args.output / f"capture-{args.frames}x{args.resolution}-seed{args.seed}"
    stamp = {"frames": args.frames, "resolution": args.resolution, "seed": args.seed, "code": _capture_code_hash()}
    stamp_path = capture / "benchmark_capture.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return capture
    generate_capture(
        capture, seed=args.seed, num_frames=args.frames, resolution=parse_resolution(args.resolution), overwrite=True
    )
    label_from_ground_truth(capture, progress=False)
    stamp_path.write_text(json.dumps(stamp) + "\n")
    return capture


def _capture_code_hash() -> str:
    """SHA-256 of the sources that make the capture and its labels (relationfield.synth and .labels)."""
    import hashlib

    import relationfield.labels
    import relationfield.synth

    digest = hashlib.sha256()
    for package in (relationfield.synth, relationfield.labels):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _config(name: str, device: str, dry_run: bool):
    """The paper-scale preset on ``device`` (nerfacto's variant of it for ``"nerfacto"``)."""
    from relationfield.config import relationfield_config

    config = relationfield_config()
    config.machine.device_type = device
    if dry_run:
        datamanager = config.pipeline.datamanager
        datamanager.train_num_rays_per_batch = datamanager.eval_num_rays_per_batch = 256
        config.pipeline.model.eval_num_rays_per_chunk = 256
    return nerfacto_like(config) if name == "nerfacto" else config


def main(args: Args) -> int:
    import torch

    from relationfield.compat import offline_safe_lpips

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("benchmark_gpu: no CUDA device (use --dry-run to check the script on this machine)", file=sys.stderr)
        return 2
    if args.dry_run:
        args.frames, args.resolution, args.steps = 4, "64x48", 3
    args.output.mkdir(parents=True, exist_ok=True)
    capture = _capture(args)
    device = "cuda" if cuda else "cpu"
    results: dict = {
        "steps": args.steps,
        "capture": str(capture),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }
    for name in ("relationfield", "nerfacto"):
        config = _config(name, device, args.dry_run)
        _common(config, capture, args.output / "runs", args.steps)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with offline_safe_lpips():  # the GPU machine cannot download AlexNet; neither method needs LPIPS here
            times = _timed_train(config)
        steady = times[min(20, len(times) // 4) :]
        results[name] = {
            "step_seconds": statistics.median(steady),
            "peak_gpu_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "rays_per_batch": config.pipeline.datamanager.train_num_rays_per_batch,
        }
    rf, nf = results["relationfield"], results["nerfacto"]
    results["step_time_ratio"] = rf["step_seconds"] / nf["step_seconds"]
    if cuda:
        results["peak_memory_ratio"] = rf["peak_gpu_memory_mib"] / nf["peak_gpu_memory_mib"]
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
