"""Tests of the text encoders (offline only: the bundled all-MiniLM-L6-v2; other models are faked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from relationfield.encoders import (
    CLIP_RANDOM_INIT,
    JINA_CODE_REVISION,
    JINA_CODE_REVISION_ENV,
    JINA_MODEL_REVISION,
    JINA_TEXT_ENCODER,
    OFFLINE_TEXT_ENCODER,
    TINY_CLIP_MODEL,
    SentenceTransformerTextEncoder,
    TextEncoder,
    check_text_encoder,
    clear_text_encoder_cache,
    load_text_encoder,
    offline_model_path,
    registry,
    sentence,
)
from relationfield.encoders.jina import loaded_code_revisions
from relationfield.encoders.sentence import split_revision
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


def test_offline_minilm_gives_sentence_transformers_embeddings() -> None:
    from relationfield.encoders.minilm import MiniLMTextEncoder

    encoder = load_text_encoder()
    assert isinstance(encoder, MiniLMTextEncoder)  # the torch-only back end, not sentence-transformers
    texts = ["standing on", "a chair", "the mug on the desk, not the one on the cabinet", "none", "Ünïcode façade"]
    texts += ["word " * 400]  # past max_seq_length: both cut it at 256 tokens
    texts += [f"object number {i}" for i in range(70)]  # more than one batch
    # bit for bit what the sentence-transformers back end gave, so label stores written before are unchanged
    before = SentenceTransformerTextEncoder(OFFLINE_TEXT_ENCODER, _offline_sentence_transformer())
    assert torch.equal(encoder.encode(texts), before.encode(texts))
    assert torch.equal(encoder.encode(texts[:1]), before.encode(texts[:1]))


def test_offline_minilm_loads_without_sentence_transformers() -> None:
    code = (
        "import sys; from relationfield.encoders import load_text_encoder; load_text_encoder(); "
        "print([m for m in ('sentence_transformers', 'transformers', 'sklearn', 'open_clip') if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_minilm_refuses_other_models(tmp_path: Path) -> None:
    import json

    from relationfield.encoders.minilm import BertEncoder, load_minilm

    for name in ("modules.json", "config.json", "sentence_bert_config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((offline_model_path() / name).read_bytes())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="not a mean-pooled transformer"):
        load_minilm("cls-pooled", tmp_path)
    config = json.loads((offline_model_path() / "config.json").read_text())
    with pytest.raises(ValueError, match="lacks 21 BERT weights, e.g. embeddings.word_embeddings.weight"):
        BertEncoder({**config, "num_hidden_layers": 1}).load_bert_weights({})  # 5 embedding + 16 layer names
    with pytest.raises(ValueError, match="GELU"):
        BertEncoder({**config, "hidden_act": "relu"})


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


# --- the self-check of loaded encoders -------------------------------------------------------------------------


def _offline_sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_path()), device="cpu", local_files_only=True)


def _scramble(model, how: str, seed: int = 0):
    """Permute every parameter tensor's entries, or re-draw them as at initialisation (LayerNorm gains 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if how == "permuted":
                flat = parameter.view(-1)
                flat.copy_(flat[torch.randperm(flat.numel(), generator=generator)])
            else:
                std = 0.02 if parameter.dim() > 1 else 0.0
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
                if "LayerNorm.weight" in name:
                    parameter.fill_(1.0)
    return model


def test_self_check_accepts_the_offline_minilm() -> None:
    check_text_encoder(load_text_encoder())


@pytest.mark.parametrize("how", ["permuted", "randomised"])
def test_self_check_rejects_scrambled_weights(how: str) -> None:
    encoder = SentenceTransformerTextEncoder("scrambled-minilm", _scramble(_offline_sentence_transformer(), how))
    with pytest.raises(UserError, match="wrong weights: the text encoder 'scrambled-minilm'.*score"):
        check_text_encoder(encoder)


class _NaNEncoder(TextEncoder):
    name, dim = "nan-encoder", 4

    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        return torch.full((len(texts), self.dim), float("nan"))


def test_self_check_rejects_non_finite_embeddings() -> None:
    with pytest.raises(UserError, match="wrong weights: .*not finite"):
        check_text_encoder(_NaNEncoder())


@pytest.fixture
def fresh_cache():
    """An empty encoder cache before and after the test (tests below put fake models into it)."""
    clear_text_encoder_cache()
    yield
    clear_text_encoder_cache()


def test_loading_runs_the_self_check_once_per_load(monkeypatch, fresh_cache) -> None:
    checked: list[str] = []
    monkeypatch.setattr(registry, "check_text_encoder", lambda encoder: checked.append(encoder.name))
    encoder = load_text_encoder()
    assert load_text_encoder(OFFLINE_TEXT_ENCODER, "cpu") is encoder
    assert checked == [OFFLINE_TEXT_ENCODER]

    def reject(encoder):
        raise UserError("wrong weights: test")

    clear_text_encoder_cache()
    monkeypatch.setattr(registry, "check_text_encoder", reject)
    with pytest.raises(UserError, match="wrong weights"):
        load_text_encoder()
    monkeypatch.setattr(registry, "check_text_encoder", lambda encoder: checked.append(encoder.name))
    assert load_text_encoder() is not encoder  # a rejected encoder was not cached
    assert checked == [OFFLINE_TEXT_ENCODER] * 2


def test_random_clip_encoders_skip_the_self_check(monkeypatch, fresh_cache) -> None:
    checked: list[str] = []
    monkeypatch.setattr(registry, "check_text_encoder", lambda encoder: checked.append(encoder.name))
    load_text_encoder(f"open_clip:{TINY_CLIP_MODEL}/{CLIP_RANDOM_INIT}")
    assert checked == []


# --- load failures and revisions, with sentence_transformers.SentenceTransformer replaced (no network) ----------


class _FakeSentenceTransformer:
    """Records each constructor call; raises the queued errors first, then returns the real offline MiniLM."""

    calls: list[dict] = []
    errors: list[BaseException] = []
    model = None

    def __new__(cls, name, **kwargs):
        cls.calls.append({"name": name, **kwargs})
        if cls.errors:
            raise cls.errors.pop(0)
        return cls.model


@pytest.fixture
def fake_st(monkeypatch, fresh_cache):
    import sentence_transformers

    real = _offline_sentence_transformer()
    monkeypatch.setattr(_FakeSentenceTransformer, "calls", [])
    monkeypatch.setattr(_FakeSentenceTransformer, "errors", [])
    monkeypatch.setattr(_FakeSentenceTransformer, "model", real)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeSentenceTransformer)
    monkeypatch.delenv(JINA_CODE_REVISION_ENV, raising=False)
    return _FakeSentenceTransformer


CACHE_DIR_ERROR = (
    "transformers.models.auto.configuration_auto.AutoConfig.from_pretrained() got multiple values for "
    "keyword argument 'cache_dir'"
)
KNOWN_FAILURES = [
    (TypeError(CACHE_DIR_ERROR), r"sentence-transformers>=5\.1,<5\.4"),
    (AttributeError("'XLMRobertaLoRA' object has no attribute 'all_tied_weights_keys'"), r"'transformers>=4\.41,<5'"),
    (ModuleNotFoundError("No module named 'einops'"), r"Fix: pip install einops"),
    (
        ImportError(
            "This modeling file requires the following packages that were not found in your environment: "
            "einops. Run `pip install einops`"
        ),
        r"Fix: pip install einops",
    ),
]


@pytest.mark.parametrize(
    ("error", "fix"), KNOWN_FAILURES, ids=["cache_dir", "all_tied_weights_keys", "einops", "check"]
)
def test_known_load_failures_name_the_fix(fake_st, error: Exception, fix: str) -> None:
    fake_st.errors.append(error)
    with pytest.raises(UserError, match=fix) as caught:
        load_text_encoder(JINA_TEXT_ENCODER)
    assert caught.value.__cause__ is error
    assert f"Could not load the text encoder {JINA_TEXT_ENCODER!r}: {type(error).__name__}" in str(caught.value)
    assert len(fake_st.calls) == 1  # no second try for a failure that downloading cannot fix


def test_known_failures_are_found_through_re_raises(fake_st) -> None:
    try:
        try:
            raise TypeError(CACHE_DIR_ERROR)
        except TypeError as inner:
            raise RuntimeError("custom module failed") from inner
    except RuntimeError as outer:
        fake_st.errors.append(outer)
    with pytest.raises(UserError, match=r"sentence-transformers>=5\.1,<5\.4"):
        load_text_encoder(JINA_TEXT_ENCODER)


def test_both_failed_tries_are_kept(fake_st, monkeypatch) -> None:
    monkeypatch.setattr(sentence, "hub_offline", lambda: False)
    first, second = OSError("not in the local cache"), ValueError("the download was refused")
    fake_st.errors.extend([first, second])
    with pytest.raises(UserError) as caught:
        load_text_encoder("relationfield-tests/some-model")
    message = str(caught.value)
    assert "ValueError: the download was refused" in message and "OSError: not in the local cache" in message
    assert caught.value.__cause__ is second
    assert [call.get("local_files_only") for call in fake_st.calls] == [True, None]


def test_unknown_failures_become_user_errors(fake_st) -> None:
    error = RuntimeError("remote code exploded")
    fake_st.errors.append(error)
    with pytest.raises(UserError, match="RuntimeError: remote code exploded") as caught:
        load_text_encoder("relationfield-tests/some-model")
    assert caught.value.__cause__ is error


def test_jina_loads_the_pinned_revisions(fake_st) -> None:
    encoder = load_text_encoder(JINA_TEXT_ENCODER)
    assert encoder.name == JINA_TEXT_ENCODER
    (call,) = fake_st.calls
    assert call["name"] == JINA_TEXT_ENCODER and call["revision"] == JINA_MODEL_REVISION
    assert call["trust_remote_code"] is True and call["local_files_only"] is True
    assert call["config_kwargs"] == {"code_revision": JINA_CODE_REVISION}
    assert call["truncate_dim"] == 512


def test_revision_overrides_reach_sentence_transformers(fake_st, monkeypatch) -> None:
    monkeypatch.setenv(JINA_CODE_REVISION_ENV, "code-branch")
    encoder = load_text_encoder(f"{JINA_TEXT_ENCODER}@0123abc")
    assert encoder.name == f"{JINA_TEXT_ENCODER}@0123abc"  # recorded whole, so that it loads the same again
    assert fake_st.calls[-1]["revision"] == "0123abc"
    assert fake_st.calls[-1]["config_kwargs"] == {"code_revision": "code-branch"}

    other = load_text_encoder("some-org/some-model@v1.0")
    assert other.name == "some-org/some-model@v1.0"
    call = fake_st.calls[-1]
    assert call["name"] == "some-org/some-model" and call["revision"] == "v1.0"
    assert "trust_remote_code" not in call


def test_revision_names(tmp_path: Path) -> None:
    assert split_revision("org/model@abc") == ("org/model", "abc")
    assert split_revision("org/model") == ("org/model", None)
    folder = tmp_path / "model@2"
    folder.mkdir()
    assert split_revision(str(folder)) == (str(folder), None)  # an existing directory is never split
    for bad in ("org/model@", "@abc", f"{OFFLINE_TEXT_ENCODER}@abc", f"{tmp_path}@abc"):
        with pytest.raises(UserError, match="revision"):
            split_revision(bad)


def test_loaded_code_revisions_are_read_from_module_names() -> None:
    commit = "2b6bc3f30750b3a9648fe9b63448c09920efe9be"
    remote = type("XLMRobertaLoRA", (torch.nn.Module,), {})
    remote.__module__ = f"transformers_modules.jinaai.xlm-roberta-flash-implementation.{commit}.modeling_lora"
    model = torch.nn.Sequential(remote(), torch.nn.Linear(2, 2))
    assert loaded_code_revisions(model) == {commit}
    assert loaded_code_revisions(torch.nn.Linear(2, 2)) == set()
