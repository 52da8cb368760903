"""How the method holds up under realistic labels: the demo scene labelled at each realism level, trained the
same way, exported and scored against the ground truth with the canonical vocabulary, in one run.

    python scripts/benchmark_realism.py --output /tmp/realism            # none, typical, hard at the demo's budget
    python scripts/benchmark_realism.py --output /tmp/r --steps 30 --frames 8 --resolution 64x48

Each level is a full `relationfield demo --realism LEVEL` in OUTPUT/LEVEL (same scene seed, so the same
capture; finished stages are reused), whose report includes the paper-style relation-guided segmentation
(referring queries about twins) and its CLIP-only baseline. "GT triples stated" is the share of the ground
truth's triples that the level's labels state in at least one frame, directly or as the reverse pair's
converse (:mod:`relationfield.labels.coverage`): what the labels give evidence for. Prints a markdown table,
and a second one of Predicate R@3 by ground-truth predicate per level, and writes them to OUTPUT/realism.md
and OUTPUT/realism.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from relationfield.commands.data import parse_resolution
from relationfield.labels.coverage import stated_share
from relationfield.labels.realism import REALISM_LEVELS


@dataclass
class Args:
    """Benchmark the demo scene under each label realism level."""

    output: Path = Path("outputs/benchmark-realism")
    """Directory for one demo per level (OUTPUT/none, OUTPUT/typical, ...) and the table."""
    levels: tuple[str, ...] = REALISM_LEVELS
    """Realism levels to run, in order (none, typical, hard)."""
    steps: int = 800
    """Training steps per level (the demo's budget)."""
    frames: int = 60
    """Frames of the synthetic capture."""
    resolution: str = "128x96"
    """Image size of the synthetic capture, WIDTHxHEIGHT."""
    seed: int = 0
    """Seed of the synthetic scene (0 is the demo scene)."""
    relation_consensus: bool = False
    """Train with relations pooled over frames (the demo's --relation-consensus)."""


def measure(args: Args, level: str) -> dict[str, Any]:
    """Run the demo at ``level`` and return its figures (fractions), with relation-guided accuracy and
    ``predicate_r3_by_predicate`` (GT predicate -> [triplets, Predicate R@3])."""
    from relationfield.demo import run_demo

    start = time.perf_counter()
    out = args.output / level
    report = run_demo(
        out, steps=args.steps, frames=args.frames, resolution=parse_resolution(args.resolution), seed=args.seed,
        realism=level, consensus=args.relation_consensus,
    )  # fmt: skip
    # The demo's eval.json holds the recalls and the paper-style relation-guided segmentation (referring
    # queries about twins) with its CLIP-only baseline.
    result = json.loads(report.eval_json.read_text(encoding="utf-8"))
    referring = result["referring_segmentation"]
    by_predicate = result["recall"]["predicate_by_predicate"]
    return {
        "stated": stated_share(out / "capture", level),
        "object_r5": result["recall"]["object"]["5"],
        "predicate_r3": result["recall"]["predicate"]["3"],
        "relation_r50": result["recall"]["relation"]["50"],
        "reference_r1": result["reference"]["recall"]["1"],
        "none_precision": result["none_precision"],
        "guided_top1": referring["top1_accuracy"],
        "guided_iou": referring["mean_iou"],
        "baseline_top1": referring["baseline_top1_accuracy"],
        "seconds": time.perf_counter() - start,
        "predicate_r3_by_predicate": {
            p: [entry["triplets"], entry["recall"]["3"]] for p, entry in by_predicate.items()
        },
    }


def table(rows: dict[str, dict[str, float]]) -> str:
    """The markdown table of the figures, in percent."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    lines = [
        "| labels | GT triples stated | Object R@5 | Predicate R@3 | Relation R@50 | Reference R@1 | none precision "
        "| guided top-1 | guided IoU | CLIP-only top-1 | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level, r in rows.items():
        figures = [r["stated"], r["object_r5"], r["predicate_r3"], r["relation_r50"], r["reference_r1"]]
        figures.append(r["none_precision"])
        cells = [pct(v) for v in (*figures, r["guided_top1"], r["guided_iou"], r["baseline_top1"])]
        lines.append(f"| {level} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def predicate_table(rows: dict[str, dict[str, Any]]) -> str:
    """Predicate R@3 of each GT predicate per level, in percent (where the levels lose their predicates)."""
    predicates = sorted({p for r in rows.values() for p in r["predicate_r3_by_predicate"]})
    lines = [f"| predicate | GT triplets | {' | '.join(rows)} |", "|---|---|" + "---|" * len(rows)]
    for p in predicates:
        entries = [r["predicate_r3_by_predicate"].get(p) for r in rows.values()]
        count = next(e[0] for e in entries if e is not None)
        cells = ["n/a" if e is None or e[1] is None else f"{100 * e[1]:.1f}" for e in entries]
        lines.append(f"| {p} | {count} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(args: Args) -> None:
    unknown = [level for level in args.levels if level not in REALISM_LEVELS]
    if unknown:
        raise SystemExit(f"unknown realism level(s) {unknown}; choose from {', '.join(REALISM_LEVELS)}")
    rows = {level: measure(args, level) for level in args.levels}
    text = table(rows) + "\n\nPredicate R@3 by ground-truth predicate (%):\n\n" + predicate_table(rows)
    print(text)
    (args.output / "realism.md").write_text(text + "\n", encoding="utf-8")
    (args.output / "realism.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(tyro.cli(Args))
