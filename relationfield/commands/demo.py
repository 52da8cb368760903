"""``relationfield demo``: the whole method on a synthetic room, offline, with a report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relationfield.commands.data import SynthLayout, parse_resolution
from relationfield.labels.realism import RealismLevel
from relationfield.synth.layout import LAYOUTS


@dataclass
class Demo:
    """The whole method in one command, offline: render a synthetic room, label it from its ground truth,
    train relationfield-lite (CPU, or GPU if present), export the scene graph, evaluate it, print a report."""

    output: Path = Path("outputs/relationfield-demo")
    """Directory for the capture, the run, the scene graph and the evaluation (finished stages are reused)."""
    steps: int = 800
    """Training steps (about 0.25 s each on a 2-core CPU)."""
    frames: int = 60
    """Frames of the synthetic capture."""
    resolution: str = "128x96"
    """Image size of the synthetic capture, WIDTHxHEIGHT."""
    seed: int = 0
    """Seed of the synthetic scene."""
    layout: SynthLayout = LAYOUTS[0]
    """Room layout family."""
    realism: RealismLevel = "none"
    """Labels from the ground truth: perfect (none), or as a real SAM + vision model would give them (typical,
    hard; see label-gt --realism)."""
    relation_consensus: bool = False
    """Train with each pair's relations pooled over frames (the capture's depth gives the objects' identity
    across frames; see the README, "How the model trains")."""
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
            realism=self.realism,
            consensus=self.relation_consensus,
        )
        print(report.to_text())
        if self.viewer:
            open_viewer(report.config)
