"""The evaluation report: :class:`EvalResult`, as JSON (``eval.json``) and markdown (``eval.md``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relationfield.errors import UserError
from relationfield.evaluation.matching import MATCHING_IOU, Match

EVAL_FORMAT = "relationfield-eval"
EVAL_VERSION = 1


@dataclass(frozen=True)
class EvalResult:
    """Recalls (``k -> recall``; ``None`` when the denominator is 0) and the counts behind them."""

    object_recall: dict[int, float | None]
    predicate_recall: dict[int, float | None]
    relation_recall: dict[int, float | None]
    num_gt_objects: int
    num_matched_objects: int
    num_gt_triplets: int
    num_gt_pairs: int
    num_evaluated_links: int
    num_pred_nodes: int
    num_pred_links: int
    num_ignored_objects: int
    num_ignored_triplets: int
    mean_iou: float | None
    gt_format: str
    matching: str
    min_iou: float
    ignore_labels: tuple[str, ...]
    scan: str | None
    matches: tuple[Match, ...]

    def counts(self) -> dict[str, int]:
        """The counts, by name (the same names as in :meth:`to_json`)."""
        return {
            "gt_objects": self.num_gt_objects,
            "matched_objects": self.num_matched_objects,
            "gt_triplets": self.num_gt_triplets,
            "gt_pairs": self.num_gt_pairs,
            "evaluated_links": self.num_evaluated_links,
            "pred_nodes": self.num_pred_nodes,
            "pred_links": self.num_pred_links,
            "ignored_gt_objects": self.num_ignored_objects,
            "ignored_gt_triplets": self.num_ignored_triplets,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (recall keys are strings: ``{"1": 0.5, ...}``)."""
        return {
            "format": EVAL_FORMAT,
            "version": EVAL_VERSION,
            "settings": {
                "gt_format": self.gt_format,
                "matching": self.matching,
                "min_iou": self.min_iou,
                "ignore_labels": list(self.ignore_labels),
                "scan": self.scan,
            },
            "recall": {
                "object": _recall_to_json(self.object_recall),
                "predicate": _recall_to_json(self.predicate_recall),
                "relation": _recall_to_json(self.relation_recall),
            },
            "mean_iou": self.mean_iou,
            "counts": self.counts(),
            "matches": [{"gt_id": m.gt_id, "node_id": m.node_id, "iou": m.iou} for m in self.matches],
        }

    def to_markdown(self) -> str:
        """A small markdown report: one table of recalls (in %) and one of counts."""
        rows = [
            ("Object", self.object_recall),
            ("Predicate", self.predicate_recall),
            ("Relation (triplet)", self.relation_recall),
        ]
        lines = ["| metric | recall (%) |", "|---|---|"]
        for name, recall in rows:
            ks = " / ".join(f"R@{k}" for k in recall)
            values = " / ".join(_format_percent(v) for v in recall.values())
            lines.append(f"| {name} {ks} | {values} |")
        mean_iou = "n/a" if self.mean_iou is None else f"{self.mean_iou:.3f}"
        lines.append(f"| Mean IoU of matches | {mean_iou} |")
        lines += ["", "| count | value |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in self.counts().items()]
        ignored = ", ".join(self.ignore_labels) if self.ignore_labels else "none"
        lines += [
            "",
            f"Ground truth: {self.gt_format}{'' if self.scan is None else f' (scan {self.scan})'}; "
            f"matching: {self.matching}"
            f"{f' (min IoU {self.min_iou:g})' if self.matching == MATCHING_IOU else ''}; "
            f"ignored labels: {ignored}.",
        ]
        return "\n".join(lines) + "\n"


def _recall_to_json(recall: Mapping[int, float | None]) -> dict[str, float | None]:
    return {str(k): v for k, v in recall.items()}


def _format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def write_report(output_dir: Path, result: EvalResult) -> None:
    """Write ``eval.json`` and ``eval.md`` into ``output_dir`` (created if needed)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "eval.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        (output_dir / "eval.md").write_text(result.to_markdown(), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the evaluation to {output_dir}: {exc}") from exc
