"""Reproduce the paper's 3DSSG table on 3RScan scans: convert, label, train, export and evaluate each scan.

For every scan, in OUTPUT/<scan id>/: ``relationfield convert 3rscan`` (capture/), labels (``label-gt`` from the
3DSSG ground truth, or the real preprocessing: ``masks``, ``relations``, ``embed``), ``ns-train`` (runs/),
``relationfield export scene-graph`` with the full 3DSSG vocabularies (its defaults) and every pair (scene_graph/) and
``relationfield eval --protocol --matching points`` (scene_graph/eval.json). A stage whose output exists is
skipped, so an interrupted run resumes. The table (OUTPUT/table.md, the paper's layout, the paper's numbers beside ours)
averages the scans' recalls.

    python scripts/run_3dssg.py --rscan-root 3RScan/ --threedssg 3DSSG/ --scan-list scans.txt --output out/

The paper's ten RIO10 scans: --scan-list scripts/rio10_scans.txt (see the README, "Reproducing the paper").
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

PAPER = {
    "Object R@5": 69.0,
    "Object R@10": 80.0,
    "Predicate R@3": 76.0,
    "Predicate R@5": 82.0,
    "Relation R@50": 73.0,
    "Relation R@100": 74.0,
}
"""RelationField's 3DSSG figures on the RIO10 scans (the paper's table, in %)."""

_RECALLS = {
    "Object R@5": ("object", "5"),
    "Object R@10": ("object", "10"),
    "Predicate R@3": ("predicate", "3"),
    "Predicate R@5": ("predicate", "5"),
    "Relation R@50": ("relation", "50"),
    "Relation R@100": ("relation", "100"),
}


@dataclass
class Run3dssg:
    """Convert, label, train, export and evaluate a list of 3RScan scans; write the paper's table."""

    rscan_root: Path
    """Folder holding one folder per 3RScan scan (named by scan id)."""
    threedssg: Path
    """3DSSG's relationships.json, or the folder holding it."""
    output: Path = Path("outputs/3dssg")
    """Where each scan's capture, run, scene graph and evaluation go, and the table."""
    scans: list[str] = field(default_factory=list)
    """Scan ids to run (added to --scan-list's)."""
    scan_list: Path | None = None
    """A text file with one scan id per line ('#' starts a comment)."""
    labels: Literal["gt", "real"] = "gt"
    """gt: label-gt from the 3DSSG ground truth (no model calls); real: SAM, the vision model and the encoders."""
    method: str = "relationfield"
    """nerfstudio method to train (relationfield on a GPU, relationfield-lite on a CPU)."""
    steps: int | None = None
    """Training steps (default: the method's own)."""
    protocol: Literal["relationfield", "open3dsg", "3dssg"] = "open3dsg"
    """Evaluation protocol (see the README's "Evaluation protocol")."""
    stride: int = 5
    """Keep every stride-th frame of each scan's sequence."""
    downscale: int = 2
    """Shrink the scans' images by this factor."""
    dry_run: bool = False
    """Print the commands instead of running them."""

    def main(self) -> None:
        scans = list(self.scans) + (_read_list(self.scan_list) if self.scan_list else [])
        if not scans:
            sys.exit("error: name scans with --scans or --scan-list")
        rows = {}
        for scan in scans:
            started = time.time()
            for command, done in self.commands(scan):
                if done.exists():
                    continue
                print("+", shlex.join(command), flush=True)
                if not self.dry_run and subprocess.run(command).returncode != 0:
                    sys.exit(f"error: {command[0]} {command[1]} failed for scan {scan}; fix it and rerun to resume")
            result = self.output / scan / "scene_graph" / "eval.json"
            if result.is_file():
                rows[scan] = (_recalls(json.loads(result.read_text())), time.time() - started)
        if rows:
            table = _table(rows, self.protocol)
            (self.output / "table.md").write_text(table, encoding="utf-8")
            print(table)

    def commands(self, scan: str) -> list[tuple[list[str], Path]]:
        """Each stage's command line and the file whose presence means it is done."""
        root = self.output / scan
        capture, runs, graph = root / "capture", root / "runs", root / "scene_graph"
        truth = capture / "ground_truth" / "scene_graph.json"
        config = runs / "rf" / self.method / "main" / "config.yml"
        rf = ["relationfield"]
        stages = [
            (rf + ["convert", "3rscan", "--scan", str(self.rscan_root / scan), "--3dssg", str(self.threedssg)]
             + ["--output", str(capture), "--stride", str(self.stride), "--downscale", str(self.downscale)],
             capture / "transforms.json"),
        ]  # fmt: skip
        if self.labels == "gt":
            stages.append((rf + ["label-gt", "--data", str(capture)], capture / "relationfield" / "manifest.json"))
        else:
            # The stages resume on their own; all three are done once the label store exists.
            store = capture / "relationfield" / "manifest.json"
            stages += [(rf + [stage, "--data", str(capture)], store) for stage in ("masks", "relations", "embed")]
        steps = ["--max-num-iterations", str(self.steps)] if self.steps else []
        stages += [
            (["ns-train", self.method, "--data", str(capture), "--output-dir", str(runs), "--experiment-name", "rf"]
             + ["--timestamp", "main", "--vis", "tensorboard"] + steps, config),
            # The export's default vocabularies are 3DSSG's 160 classes and 26 predicates (and "none"); every score
            # is kept, as top-k lists would cap the recalls.
            (rf + ["export", "scene-graph", "--load-config", str(config), "--output-dir", str(graph), "--all-pairs"]
             + ["--label-top-k", "0", "--predicate-top-k", "0"], graph / "scene_graph.json"),
            # Nodes match 3RScan's instances by point overlap with the annotated mesh's points (convert writes them).
            (rf + ["eval", "--pred", str(graph / "scene_graph.json"), "--gt", str(truth), "--protocol", self.protocol]
             + ["--matching", "points", "--output-dir", str(graph)], graph / "eval.json"),
        ]  # fmt: skip
        return stages


def _read_list(path: Path) -> list[str]:
    """Scan ids of a list file, one per line, '#' comments and blank lines skipped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _recalls(report: dict) -> dict[str, float]:
    """The table's recalls (%) from one eval.json."""
    recall = report["recall"]
    return {name: 100.0 * float(recall[kind][k] or 0.0) for name, (kind, k) in _RECALLS.items()}


def _table(rows: dict[str, tuple[dict[str, float], float]], protocol: str) -> str:
    """Markdown: one row per scan, their mean, and the paper's row."""
    names = list(PAPER)
    lines = ["| scan | " + " | ".join(names) + " | time (s) |", "|---" * (len(names) + 2) + "|"]
    for scan, (recalls, seconds) in rows.items():
        lines.append(f"| {scan} | " + " | ".join(f"{recalls[n]:.1f}" for n in names) + f" | {seconds:.0f} |")
    mean = {n: sum(r[n] for r, _ in rows.values()) / len(rows) for n in names}
    lines.append(f"| mean ({len(rows)} scans, {protocol}) | " + " | ".join(f"{mean[n]:.1f}" for n in names) + " | |")
    lines.append("| paper (RelationField, RIO10) | " + " | ".join(f"{PAPER[n]:.1f}" for n in names) + " | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tyro.cli(Run3dssg).main()
