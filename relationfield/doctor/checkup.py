"""The whole check-up: every check of this machine and its caches, then one verdict per stage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from relationfield.doctor.report import DoctorReport
from relationfield.doctor.system import (
    EINOPS,
    PACKAGES,
    TINYCUDANN,
    configs_check,
    environment_checks,
    gpu_checks,
    jina_versions_check,
    package_check,
    plugin_check,
)
from relationfield.doctor.verdicts import verdicts
from relationfield.doctor.weights import (
    clip_check,
    hub_cache_dir,
    lpips_check,
    minilm_check,
    sam_check,
    text_encoder_check,
    torch_hub_dir,
)
from relationfield.encoders.base import hub_offline
from relationfield.encoders.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from relationfield.encoders.sentence import JINA_TEXT_ENCODER, OFFLINE_TEXT_ENCODER
from relationfield.preprocess.connection import BASE_URL_ENV, DEFAULT_BASE_URL, is_local_url


def run_doctor(
    sam_checkpoint: Path | None = None,
    text_encoder: str = JINA_TEXT_ENCODER,
    clip_model: str = DEFAULT_CLIP_MODEL,
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED,
    environ: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Check packages, GPU, cached weights and environment, offline, and judge each stage.

    Args:
        sam_checkpoint: the SAM checkpoint ``relationfield masks`` would be given (None: none).
        text_encoder: the text encoder ``relationfield embed`` would load.
        clip_model: the open_clip architecture of ``embed``'s mask embeddings.
        clip_pretrained: its pretrained tag, a checkpoint file, or ``none``.
        environ: where to look for ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (default: ``os.environ``);
            only whether they are set goes into the report.
    """
    environ = os.environ if environ is None else environ
    jina = text_encoder.split("@")[0] == JINA_TEXT_ENCODER  # NAME@REVISION pins a revision
    optional = {TINYCUDANN} | (set() if jina else {EINOPS})
    checks = [package_check(package, package.name in optional) for package in PACKAGES]
    checks += [plugin_check(), configs_check(), *gpu_checks(), sam_check(sam_checkpoint)]
    checks.append(text_encoder_check(text_encoder))
    if jina:
        checks.append(jina_versions_check())
    checks.append(clip_check(clip_model, clip_pretrained))
    if text_encoder != OFFLINE_TEXT_ENCODER:
        checks.append(minilm_check())
    checks.append(lpips_check())
    torch_hub = torch_hub_dir() if any(c.key == "torch" and c.state == "ok" for c in checks) else "(no torch)"
    checks += environment_checks(environ, hub_cache_dir(), torch_hub)
    base_url = environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    report = DoctorReport(tuple(checks))
    return DoctorReport(report.checks, tuple(verdicts(report, text_encoder, is_local_url(base_url), hub_offline())))
