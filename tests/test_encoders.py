"""Tests of the text encoders (offline only: the bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from relationfield.encoders import (
    JINA_TEXT_ENCODER,
    OFFLINE_TEXT_ENCODER,
    TextEncoder,
    load_text_encoder,
    offline_model_path,
)
from relationfield.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light() -> None:
    code = (
        "import sys, relationfield.encoders as e; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'nerfstudio') if m in sys.modules]; "
        "print(heavy)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_offline_minilm() -> None:
    assert (offline_model_path() / "modules.json").is_file()
    encoder = load_text_encoder()
    assert isinstance(encoder, TextEncoder)
    assert encoder.name == OFFLINE_TEXT_ENCODER and encoder.dim == 384
    assert load_text_encoder(OFFLINE_TEXT_ENCODER, "cpu") is encoder  # cached

    texts = ["bigger than", "hanging on", "bigger than", "a wooden chair next to the table"]
    embeddings = encoder.encode(texts)
    assert embeddings.shape == (4, 384)
    assert embeddings.dtype == torch.float32 and embeddings.device.type == "cpu"
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.equal(embeddings[0], embeddings[2])
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert torch.allclose(encoder.encode(("bigger than",))[0], embeddings[0], atol=1e-5)  # batch-independent
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("bigger than")  # type: ignore[arg-type]


def test_unknown_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Could not load"):
        load_text_encoder(str(tmp_path / "no-such-model"))
    with pytest.raises(UserError, match="Could not load"):
        load_text_encoder("relationfield-tests/no-such-model-anywhere")


def test_jina_offline_is_a_user_error() -> None:
    import huggingface_hub.constants as hub_constants

    if (Path(hub_constants.HF_HUB_CACHE) / "models--jinaai--jina-embeddings-v3").exists():
        pytest.skip("jina-embeddings-v3 is cached here; the offline failure cannot be provoked")
    with pytest.raises(UserError, match="HF_HOME"):
        load_text_encoder(JINA_TEXT_ENCODER)
