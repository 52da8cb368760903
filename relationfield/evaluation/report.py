"""The evaluation report: :class:`EvalResult`, as JSON (``eval.json``) and markdown (``eval.md``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relationfield.errors import UserError
from relationfield.evaluation.matching import MATCHING_IOU, Match
from relationfield.evaluation.protocols import DEFAULT_PROTOCOL, RULES
from relationfield.evaluation.reference import SUPPORT_PREDICATES, ReferenceResult

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
    reference: ReferenceResult
    """Reference R@k and none precision (the metrics that see whether a relation depends on its reference)."""
    protocol: str = DEFAULT_PROTOCOL
    """The protocol whose rules produced the object, predicate and triplet recalls (see :mod:`.protocols`)."""
    num_none_triplets: int | None = None
    """GT "none" triples (unrelated ordered pairs) scored by the protocol; None when it scores none."""
    num_subgraphs: int | None = None
    """Subgraphs the recalls are averaged over; None when they are pooled."""
    predicate_by_predicate: Mapping[str, tuple[int, dict[int, float | None]]] | None = None
    """Predicate R@k of each GT predicate's triplets, with their count (default protocol only, else None)."""

    @property
    def mean_predicate_recall(self) -> dict[int, float | None] | None:
        """Predicate mR@k: Predicate R@k averaged over the GT predicates (each counts once, however many
        triplets it has); None without :attr:`predicate_by_predicate`."""
        if not self.predicate_by_predicate:
            return None
        per = [r for _, r in self.predicate_by_predicate.values()]
        return {k: sum(r[k] or 0.0 for r in per) / len(per) for k in self.predicate_recall}

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
            "gt_unrelated_pairs": self.reference.unrelated_pairs,
            # only the protocols that score "none" triples or average per subgraph report these
            **({} if self.num_none_triplets is None else {"gt_none_triplets": self.num_none_triplets}),
            **({} if self.num_subgraphs is None else {"subgraphs": self.num_subgraphs}),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (recall keys are strings: ``{"1": 0.5, ...}``)."""
        return {
            "format": EVAL_FORMAT,
            "version": EVAL_VERSION,
            "settings": {
                "protocol": self.protocol,
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
                **self._per_predicate_json(),
            },
            "reference": {
                "recall": _recall_to_json(self.reference.recall()),
                "support_recall": _recall_to_json(self.reference.support_recall),
                "support_predicates": sorted(SUPPORT_PREDICATES),
                "per_predicate": {
                    p: {"triplets": n, "recall": _recall_to_json(r)}
                    for p, (n, r) in self.reference.per_predicate().items()
                },
            },
            "none_precision": self.reference.none_precision,
            "mean_iou": self.mean_iou,
            "counts": self.counts(),
            "matches": [{"gt_id": m.gt_id, "node_id": m.node_id, "iou": m.iou} for m in self.matches],
        }

    def _per_predicate_markdown(self) -> list[str]:
        """The per-predicate table: GT triplets, Predicate R@k (default protocol only) and Reference R@k."""
        reference = self.reference.per_predicate()
        by_predicate = self.predicate_by_predicate or {}
        predicate = f" Predicate {' / '.join(f'R@{k}' for k in self.predicate_recall)} (%) |" if by_predicate else ""
        header = f"| predicate | GT triplets |{predicate} Reference R@1 / R@3 (%) |"
        lines = [header, "|---" * header.count(" | ") + "|---|"]
        for p in sorted(set(reference) | set(by_predicate)):
            cells = [str(by_predicate[p][0] if p in by_predicate else reference[p][0])]
            if by_predicate:
                cells.append(_format_recalls(by_predicate[p][1]) if p in by_predicate else "n/a")
            cells.append(_format_recalls(reference[p][1]) if p in reference else "n/a")
            lines.append(f"| {p} | {' | '.join(cells)} |")
        return lines

    def _per_predicate_json(self) -> dict[str, Any]:
        """``predicate_mean`` (mR@k) and ``predicate_by_predicate``, when the protocol gives them."""
        mean = self.mean_predicate_recall
        if mean is None or not self.predicate_by_predicate:
            return {}
        by_predicate = {
            p: {"triplets": n, "recall": _recall_to_json(r)} for p, (n, r) in self.predicate_by_predicate.items()
        }
        return {"predicate_mean": _recall_to_json(mean), "predicate_by_predicate": by_predicate}

    def to_markdown(self) -> str:
        """A small markdown report: a table of recalls (in %), Reference R@k per predicate, and the counts."""
        mean = self.mean_predicate_recall
        rows = [
            ("Object", self.object_recall),
            ("Predicate", self.predicate_recall),
            *([] if mean is None else [("Predicate, mean over predicates", mean)]),
            ("Relation (triplet)", self.relation_recall),
            ("Reference", self.reference.recall()),
            ("Reference, support predicates", self.reference.support_recall),
        ]
        lines = ["| metric | recall (%) |", "|---|---|"]
        for name, recall in rows:
            lines.append(f"| {name} {' / '.join(f'R@{k}' for k in recall)} | {_format_recalls(recall)} |")
        lines.append(f"| None precision (unrelated pairs) | {_format_percent(self.reference.none_precision)} |")
        mean_iou = "n/a" if self.mean_iou is None else f"{self.mean_iou:.3f}"
        lines.append(f"| Mean IoU of matches | {mean_iou} |")
        lines += ["", *self._per_predicate_markdown()]
        lines += ["", "| count | value |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in self.counts().items()]
        ignored = ", ".join(self.ignore_labels) if self.ignore_labels else "none"
        lines += [
            "",
            f"Ground truth: {self.gt_format}{'' if self.scan is None else f' (scan {self.scan})'}; "
            f"matching: {self.matching}"
            f"{f' (min IoU {self.min_iou:g})' if self.matching == MATCHING_IOU else ''}; "
            f"ignored labels: {ignored}.",
            "",
            f"Protocol: {self.protocol} ({RULES[self.protocol].summary}).",
        ]
        return "\n".join(lines) + "\n"


def _recall_to_json(recall: Mapping[int, float | None]) -> dict[str, float | None]:
    return {str(k): v for k, v in recall.items()}


def _format_recalls(recall: Mapping[int, float | None]) -> str:
    return " / ".join(_format_percent(v) for v in recall.values())


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
