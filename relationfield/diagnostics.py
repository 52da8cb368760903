"""What a trained RelationField learned, measured on held-out (eval split) views.

* semantic accuracy: render the semantic features of each held-out frame and label every labelled pixel
  with the nearest text embedding among the capture's mask labels; compare with the pixel's mask label.
* relation accuracy: for each labelled relation of a held-out frame, pair pixels of the subject mask with
  pixels of the object mask (exactly as in training: z is the partner ray's expected-depth point),
  render the relation feature and rank the capture's predicates and "none" by cosine similarity.
  A pair counts as correct when the top-ranked text is one of its predicates, and as "beats none" when
  its best predicate scores above "none". Results are also broken down per predicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class HeadReport:
    """Held-out accuracies; counts make the fractions checkable."""

    semantic_correct: int = 0
    semantic_total: int = 0
    relation_correct: int = 0
    relation_beats_none: int = 0
    relation_total: int = 0
    per_predicate: dict[str, list[int]] = field(default_factory=dict)
    """predicate -> [correct, total] over pairs whose labels contain the predicate."""

    @property
    def semantic_accuracy(self) -> float:
        return self.semantic_correct / max(self.semantic_total, 1)

    @property
    def relation_accuracy(self) -> float:
        return self.relation_correct / max(self.relation_total, 1)

    @property
    def relation_beats_none_rate(self) -> float:
        return self.relation_beats_none / max(self.relation_total, 1)

    def as_dict(self) -> dict:
        return {
            "semantic_accuracy": self.semantic_accuracy,
            "semantic_pixels": self.semantic_total,
            "relation_accuracy": self.relation_accuracy,
            "relation_beats_none": self.relation_beats_none_rate,
            "relation_pairs": self.relation_total,
            "per_predicate_accuracy": {
                name: counts[0] / max(counts[1], 1) for name, counts in sorted(self.per_predicate.items())
            },
        }


def _pixel_samples(segments: Tensor, local_id: int, count: int, generator: torch.Generator) -> Tensor:
    ys, xs = torch.nonzero(segments == local_id, as_tuple=True)
    if len(ys) == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    pick = torch.randint(0, len(ys), (count,), generator=generator)
    return torch.stack([ys[pick], xs[pick]], dim=-1)


@dataclass(frozen=True)
class _Tables:
    """The texts pixels are classified against: the capture's mask labels, its predicates and "none"."""

    name_index: dict[str, int]
    label_table: Tensor | None  # None when the capture has no mask labels
    relation_table: Tensor  # unit embeddings of the predicates, then "none"
    none_index: int


@dataclass(frozen=True)
class _View:
    """One held-out frame: its rays, its per-pixel mask ids, and where its masks start in the label store."""

    bundle: Any
    segments: Tensor
    mask_offset: int


@torch.no_grad()
def evaluate_heads(
    pipeline,
    text_encoder,
    max_frames: int | None = None,
    pixels_per_relation: int = 16,
    seed: int = 0,
) -> HeadReport:
    """Score the semantic and relation heads on the eval split of a trained pipeline.

    Args:
        pipeline: a nerfstudio pipeline with the relationfield data manager and model.
        text_encoder: the encoder the label store was made with (encodes the capture's mask labels).
        max_frames: evaluate at most this many held-out frames.
        pixels_per_relation: subject/object pixel pairs sampled per labelled relation.
    """
    datamanager = pipeline.datamanager
    model = pipeline.model
    labels = datamanager.open_labels()
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    report = HeadReport()
    tables = _text_tables(labels, text_encoder, model.device)

    cameras = datamanager.eval_dataset.cameras
    offset = len(datamanager.train_dataset)
    count = len(cameras) if max_frames is None else min(max_frames, len(cameras))
    for j in range(count):
        frame = offset + j
        if not bool(labels.labelled[frame]):
            continue
        view = _View(
            bundle=cameras.generate_rays(camera_indices=j).to(model.device),
            segments=labels.segments[frame].long(),
            mask_offset=int(labels.mask_offsets[frame]),
        )
        if tables.label_table is not None:
            _score_semantics(model, labels, view, tables, report)
        relations = torch.nonzero(labels.relation_frame == frame, as_tuple=True)[0]
        for r in relations.tolist():
            _score_relation(model, labels, view, r, tables, pixels_per_relation, generator, report)
    return report


def _text_tables(labels, text_encoder, device) -> _Tables:
    """Embeddings of the capture's mask labels (by ``text_encoder``) and of its predicates and "none"."""
    names = sorted({name for name in labels.mask_labels if name})
    label_table = text_encoder.encode(names).to(device) if names else None
    relation_table = torch.cat([labels.predicate_embeddings.float(), labels.none_embedding.float()[None]])
    relation_table = F.normalize(relation_table.to(device), dim=-1)
    return _Tables({name: i for i, name in enumerate(names)}, label_table, relation_table, len(labels.predicates))


def _score_semantics(model, labels, view: _View, tables: _Tables, report: HeadReport) -> None:
    """Label every labelled pixel of one frame with the nearest mask label; count the correct ones."""
    with model.rendering(features=True):
        outputs = model.get_outputs_for_camera_ray_bundle(view.bundle)
    semantic = F.normalize(outputs["semantic"].reshape(-1, outputs["semantic"].shape[-1]), dim=-1)
    predicted = (semantic @ tables.label_table.T).argmax(-1).cpu()
    local = view.segments.reshape(-1)
    labelled = local > 0
    truth = torch.tensor(
        [tables.name_index.get(labels.mask_labels[view.mask_offset + int(k) - 1], -1) for k in local[labelled]],
        dtype=torch.long,
    )
    known = truth >= 0
    report.semantic_correct += int((predicted[labelled][known] == truth[known]).sum())
    report.semantic_total += int(known.sum())


def _score_relation(
    model,
    labels,
    view: _View,
    r: int,
    tables: _Tables,
    pixels_per_relation: int,
    generator: torch.Generator,
    report: HeadReport,
) -> None:
    """Rank the predicates and "none" for subject/object pixel pairs of labelled relation ``r``; count them."""
    subject = int(labels.relation_subject[r]) - view.mask_offset + 1
    obj = int(labels.relation_object[r]) - view.mask_offset + 1
    s_pix = _pixel_samples(view.segments, subject, pixels_per_relation, generator)
    o_pix = _pixel_samples(view.segments, obj, pixels_per_relation, generator)
    if len(s_pix) == 0 or len(o_pix) == 0:
        return
    features = _pair_relation_features(model, view.bundle, s_pix, o_pix)
    scores = F.normalize(features, dim=-1) @ tables.relation_table.T
    positives = [int(p) for p in labels.relation_predicates[r].tolist() if p >= 0]
    top = scores.argmax(-1)
    correct = torch.tensor([int(t) in positives for t in top.tolist()])
    best_positive = scores[:, positives].max(-1).values
    report.relation_correct += int(correct.sum())
    report.relation_beats_none += int((best_positive > scores[:, tables.none_index]).sum())
    report.relation_total += len(correct)
    for p in positives:
        counts = report.per_predicate.setdefault(labels.predicates[p], [0, 0])
        counts[0] += int(correct.sum())
        counts[1] += len(correct)


def _pair_relation_features(model, bundle, subject_pixels: Tensor, object_pixels: Tensor) -> Tensor:
    """Relation features of subject rays whose partners are object rays (the training path)."""
    pixels = torch.cat([subject_pixels, object_pixels])
    rays = bundle[pixels[:, 0].to(bundle.origins.device), pixels[:, 1].to(bundle.origins.device)]
    n = len(subject_pixels)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    rays.metadata = dict(rays.metadata or {})
    rays.metadata["partner"] = partner[:, None].to(rays.origins.device)
    outputs = model(rays)  # forward applies the near/far collider
    return outputs["relation"][:n]


def summarise(report: HeadReport) -> list[tuple[str, str]]:
    """Rows for printing."""
    rows = [
        ("semantic accuracy (held-out pixels)", f"{report.semantic_accuracy:.3f} of {report.semantic_total}"),
        ("relation top-1 accuracy (held-out pairs)", f"{report.relation_accuracy:.3f} of {report.relation_total}"),
        ("relation: best predicate beats none", f"{report.relation_beats_none_rate:.3f}"),
    ]
    for name, (correct, total) in sorted(report.per_predicate.items()):
        rows.append((f"  {name}", f"{correct / max(total, 1):.3f} of {total}"))
    return rows
