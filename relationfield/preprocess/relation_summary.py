"""The report of the ``relations`` stage: its summary as the CLI prints it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relationfield.preprocess.cost import ASSUMED_OUTPUT_TOKENS, format_cost
from relationfield.preprocess.workspace import failure_lines


def summary_text(summary: Mapping[str, Any]) -> str:
    """A human-readable report of the summary of ``run_relations`` (for the CLI)."""
    estimate = summary.get("estimate")
    if summary.get("dry_run") and estimate is not None:
        parts = []
        if estimate["prompt"]:
            parts.append(f"Prompt of the first frame (overlay: {estimate['overlay']}):\n{estimate['prompt']}\n")
        parts.append(
            f"Dry run: would ask {summary['model']} about {estimate['frames']} of {summary['selected']} selected "
            f"frames ({summary['skipped']} already answered). Estimate: {estimate['prompt_tokens']} input tokens, "
            f"~{estimate['completion_tokens']} output tokens ({ASSUMED_OUTPUT_TOKENS} per frame assumed), "
            f"cost {format_cost(estimate['cost'])}. Nothing was sent."
        )
        text = "\n".join(parts)
    else:
        usage = summary["usage"]
        text = (
            f"{summary['model']} on {summary['selected']} selected frames: {summary['done']} done, "
            f"{summary['skipped']} already answered, {summary['empty']} without masks, "
            f"{len(summary['failed'])} failed; "
            f"{summary['attempts']} requests, "
            f"{usage['prompt_tokens']} input + {usage['completion_tokens']} output tokens, "
            f"cost {format_cost(summary['cost'])}. Workspace: {summary['workspace']}"
        )
    dropped = summary.get("dropped") or {}
    if dropped:
        counts = {name: f"{count} dropped" for name, count in dropped.items()}
        frames = f"{len(dropped)} frame" + ("s" if len(dropped) > 1 else "")
        text += (
            f"\nAnswers with bad entries dropped ({sum(dropped.values())} entries in {frames}; the rest of each "
            f'answer is kept, the reasons are under "dropped" in relations/<stem>.json):\n{failure_lines(counts)}'
        )
    if summary["failed"]:
        text += f"\nFailed frames (asked again by the next run):\n{failure_lines(summary['failed'])}"
    return text
