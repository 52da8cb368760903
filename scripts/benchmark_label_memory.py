"""Host memory of a loaded label store (a figure to report, not a pass/fail test).

For each size (default: 200 and 2,000 frames of 640x480, 40 masks and 10 relations per frame, 512-d
semantic and relation embeddings) writes a synthetic store with random data to a temporary directory,
opens it in a fresh Python process (checking the images' hashes, as training does) and prints the time to
open it, the store's tensor bytes and the process's peak RSS increase.

    python scripts/benchmark_label_memory.py [--frames 200 2000] [--height 480] [--width 640] ...
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1024 * 1024


def write_synthetic_store(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Write images and a random label store under ``root``; returns (capture, labels dir)."""
    from PIL import Image

    from relationfield.labels import LabelWriter

    rng = np.random.default_rng(0)
    data_dir = root / "capture"
    (data_dir / "images").mkdir(parents=True)
    writer = LabelWriter(
        data_dir / "relationfield",
        semantic_encoder="random",
        semantic_dim=args.dim,
        relation_encoder="random",
        relation_dim=args.dim,
        producer="benchmark",
        options=vars(args),
    )
    predicates = [f"predicate {i}" for i in range(args.predicates)]
    table = rng.normal(size=(len(predicates), args.dim)).astype(np.float32)
    writer.set_predicates(predicates, table, rng.normal(size=args.dim).astype(np.float32))

    block = 16
    grid = (-(-args.height // block), -(-args.width // block))
    names = []
    for index in range(args.frames):
        name = f"images/frame_{index:05d}.png"
        Image.fromarray(np.full((8, 8, 3), index % 256, dtype=np.uint8)).save(data_dir / name)
        coarse = rng.integers(1, args.masks + 1, size=grid)
        coarse.reshape(-1)[: args.masks] = np.arange(1, args.masks + 1)  # every mask present
        segments = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[: args.height, : args.width]
        embeddings = rng.normal(size=(args.masks, args.dim)).astype(np.float32)
        pairs = set()
        while len(pairs) < args.relations:
            subject, obj = (int(v) for v in rng.integers(1, args.masks + 1, size=2))
            if subject != obj:
                pairs.add((subject, obj))
        relations = [
            (
                s,
                o,
                [predicates[int(p)] for p in rng.choice(len(predicates), size=int(rng.integers(1, 3)), replace=False)],
            )
            for s, o in sorted(pairs)
        ]
        writer.write_frame(name, segments, embeddings, relations)
        names.append(name)
    return data_dir, writer.finalize(data_dir, names)


def measure_open(labels_dir: Path, data_dir: Path) -> dict[str, float]:
    """Open the store in this process; memory figures in bytes."""
    import torch  # noqa: F401  (imported before the baseline so that it does not count)

    from relationfield.labels import LabelStore

    base_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    store = LabelStore.open(labels_dir, data_dir=data_dir)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "nbytes": store.nbytes(),
        "segments_bytes": sum(s.numel() * s.element_size() for s in store.segments),
        "peak_rss_increase": (peak_kib - base_peak_kib) * 1024,
        "open_seconds": seconds,
        "frames": store.num_frames,
        "masks": store.num_masks,
        "relations": store.num_relations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[200, 2000], help="store sizes to measure, in frames")
    parser.add_argument("--height", type=int, default=480, help="segment map height (pixels)")
    parser.add_argument("--width", type=int, default=640, help="segment map width (pixels)")
    parser.add_argument("--masks", type=int, default=40, help="masks per frame")
    parser.add_argument("--relations", type=int, default=10, help="relations per frame")
    parser.add_argument("--predicates", type=int, default=26, help="predicates in the store's table")
    parser.add_argument("--dim", type=int, default=512, help="semantic and relation embedding dimension")
    parser.add_argument("--open-only", nargs=2, metavar=("LABELS_DIR", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.open_only:
        print(json.dumps(measure_open(Path(args.open_only[0]), Path(args.open_only[1]))))
        return

    for frames in args.frames:
        measure(argparse.Namespace(**{**vars(args), "frames": frames}))


def measure(args: argparse.Namespace) -> None:
    """Write, open (in a fresh process) and report one store size."""
    with tempfile.TemporaryDirectory(prefix="relationfield-label-memory-") as tmp:
        start = time.perf_counter()
        data_dir, labels_dir = write_synthetic_store(Path(tmp), args)
        write_seconds = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in labels_dir.rglob("*") if p.is_file())
        # Open in a fresh process so that the writer's allocations do not hide the reader's peak.
        out = subprocess.run(
            [sys.executable, __file__, "--open-only", str(labels_dir), str(data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])

    print(
        f"label store: {figures['frames']} frames of {args.width}x{args.height}, {figures['masks']} masks, "
        f"{figures['relations']} relations, D_sem = D_rel = {args.dim}"
    )
    print(f"  written in {write_seconds:.1f} s, {disk / MIB:.1f} MiB on disk")
    print(f"  opened in {figures['open_seconds']:.2f} s")
    print(f"  store tensors (nbytes):      {figures['nbytes'] / MIB:8.1f} MiB")
    print(f"    of which segment maps:     {figures['segments_bytes'] / MIB:8.1f} MiB")
    print(f"  peak RSS increase on open:   {figures['peak_rss_increase'] / MIB:8.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
