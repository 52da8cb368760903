"""``relationfield doctor``: what this machine has and lacks for each stage, checked offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relationfield.encoders.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from relationfield.encoders.sentence import JINA_TEXT_ENCODER


@dataclass
class Doctor:
    """Check, offline, what each stage needs: package versions, CUDA and tcnn, which weights are in the local
    caches, and whether OPENAI_API_KEY / OPENAI_BASE_URL are set (never their values); then one verdict per
    stage (masks, relations, embed, train, viewer/export), each missing piece named with its fix. Nothing is
    downloaded and no server is contacted. Exits 0 even when pieces are missing (a machine that only trains
    needs no SAM); scripts read the verdicts' "ready" from --json."""

    sam_checkpoint: Path | None = None
    """SAM checkpoint to check (the file relationfield masks would get): whether it exists, and its size."""
    text_encoder: str = JINA_TEXT_ENCODER
    """Text encoder to look for (as relationfield embed --text-encoder)."""
    clip_model: str = DEFAULT_CLIP_MODEL
    """open_clip architecture to look for (as relationfield embed --clip-model)."""
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    """Its pretrained tag, a checkpoint file, or 'none' (as relationfield embed --clip-pretrained)."""
    json: bool = False
    """Print the report as JSON (checks with state, detail and fix; verdicts with status and ready)."""

    def main(self) -> None:
        import json

        from relationfield.doctor import run_doctor

        report = run_doctor(self.sam_checkpoint, self.text_encoder, self.clip_model, self.clip_pretrained)
        print(json.dumps(report.to_json(), indent=2) if self.json else report.to_text())
