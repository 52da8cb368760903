"""LPIPS: RelationField's model falls back when AlexNet cannot be had; other methods keep torchmetrics' own."""

from __future__ import annotations

import subprocess
import sys
from urllib.error import URLError

import pytest
from torchmetrics.image import lpip

from relationfield.compat import MissingLpips, offline_safe_lpips


def test_importing_the_plugin_leaves_torchmetrics_lpips_untouched():
    # a fresh interpreter: what another method sees after nerfstudio imported the plugin's presets
    code = (
        "import torchmetrics.image.lpip as l; c = l.LearnedPerceptualImagePatchSimilarity; "
        "import relationfield.config; import relationfield.model; assert l.LearnedPerceptualImagePatchSimilarity is c"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_offline_without_cached_weights_builds_the_stand_in_and_restores(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = lpip.LearnedPerceptualImagePatchSimilarity
    with offline_safe_lpips():
        built = lpip.LearnedPerceptualImagePatchSimilarity(normalize=True)
    assert isinstance(built, MissingLpips)
    assert lpip.LearnedPerceptualImagePatchSimilarity is original


def test_a_failed_download_falls_back_and_other_errors_do_not(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs)
        raise URLError("no route to download.pytorch.org")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", unreachable)
    with offline_safe_lpips():
        built = lpip.LearnedPerceptualImagePatchSimilarity(normalize=True)
    assert isinstance(built, MissingLpips) and calls == [{"normalize": True}]  # the normal build was tried

    def broken(**_):
        raise TypeError("a bug, not a download failure")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", broken)
    with offline_safe_lpips(), pytest.raises(TypeError):
        lpip.LearnedPerceptualImagePatchSimilarity(normalize=True)
    assert lpip.LearnedPerceptualImagePatchSimilarity is broken
