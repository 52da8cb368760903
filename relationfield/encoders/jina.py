"""jina-embeddings-v3, the paper's text encoder: loaded at pinned revisions of the model and of its remote code.

The model repository (weights, ``custom_st.py``) is pinned by :data:`JINA_MODEL_REVISION`; another revision is
loaded by naming it in the encoder name, ``jinaai/jina-embeddings-v3@REVISION`` (the name is recorded in the label
store, so that queries load the same revision again). The XLM-RoBERTa implementation lives in a second repository,
:data:`JINA_CODE_REPOSITORY`, named by the model's ``auto_map``; its revision is :data:`JINA_CODE_REVISION`, or the
environment variable :data:`JINA_CODE_REVISION_ENV` when set.

sentence-transformers hands a ``code_revision`` in ``model_kwargs`` to the import of the model repository's own
``custom_st.py`` and drops it there, so the revision of the code repository can only reach transformers through
``config_kwargs``: it pins the configuration class. The model class itself is resolved from the code repository's
default branch; :func:`load_jina` logs a warning when the loaded code is not the pinned commit. Which library
versions load the remote code correctly is in :mod:`relationfield.encoders.load_errors`.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

from relationfield.encoders.base import TextEncoder
from relationfield.encoders.load_errors import jina_version_note
from relationfield.encoders.sentence import (
    JINA_TASK,
    JINA_TEXT_ENCODER,
    JINA_TRUNCATE_DIM,
    OFFLINE_TEXT_ENCODER,
    SentenceTransformerTextEncoder,
    load_sentence_transformer,
    with_revision,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: Commit of jinaai/jina-embeddings-v3 that the default name loads, so that the weights and custom_st.py cannot
#: change under a label store (the commit several public projects pin; see the report of issue 11).
JINA_MODEL_REVISION = "f1944de8402dcd5f2b03f822a4bc22a7f2de2eb9"
#: The repository of the model's XLM-RoBERTa code, as its config.json's auto_map names it.
JINA_CODE_REPOSITORY = "jinaai/xlm-roberta-flash-implementation"
#: Commit of the code repository to load (the one paired with JINA_MODEL_REVISION in public pins and caches).
JINA_CODE_REVISION = "2b6bc3f30750b3a9648fe9b63448c09920efe9be"
#: Environment variable that overrides JINA_CODE_REVISION (a commit hash, branch or tag of the code repository).
JINA_CODE_REVISION_ENV = "RELATIONFIELD_JINA_CODE_REVISION"
# A full commit hash, the form in which the remote code's revision shows in its module's name.
_COMMIT = re.compile(r"[0-9a-f]{40}")


def jina_code_revision() -> str:
    """The revision of :data:`JINA_CODE_REPOSITORY` to load: :data:`JINA_CODE_REVISION_ENV` if set, else the pin."""
    return os.environ.get(JINA_CODE_REVISION_ENV, "").strip() or JINA_CODE_REVISION


def jina_download_hint(revision: str) -> str:
    """How to get jina-embeddings-v3 at ``revision`` into the Hugging Face cache, for errors."""
    return (
        "The model (and its remote code) loads from the local Hugging Face cache. Download it once with internet "
        'access (python -c "from sentence_transformers import SentenceTransformer; '
        f"SentenceTransformer('{JINA_TEXT_ENCODER}', revision='{revision}', trust_remote_code=True, "
        f"config_kwargs={{'code_revision': '{jina_code_revision()}'}})\"), or set HF_HOME to a cache that holds it. "
        f"Without it, use the offline encoder {OFFLINE_TEXT_ENCODER!r}."
    )


def load_jina(device: str, revision: str | None = None) -> TextEncoder:
    """jina-embeddings-v3 (512-d Matryoshka truncation, ``text-matching`` LoRA adapter).

    Args:
        device: torch device.
        revision: the model repository's revision; ``None`` loads :data:`JINA_MODEL_REVISION` under the
            plain name :data:`~relationfield.encoders.sentence.JINA_TEXT_ENCODER`, anything else is loaded
            under the name ``jinaai/jina-embeddings-v3@REVISION``.

    Raises:
        UserError: the model cannot be loaded; the message names the fix for the known incompatibilities.
    """
    note = jina_version_note()
    if note:
        logger.warning("%s", note)
    pinned = revision or JINA_MODEL_REVISION
    model = load_sentence_transformer(
        JINA_TEXT_ENCODER,
        device,
        revision=pinned,
        trust_remote_code=True,
        truncate_dim=JINA_TRUNCATE_DIM,
        config_kwargs={"code_revision": jina_code_revision()},
        hint="\n".join(part for part in (jina_download_hint(pinned), note) if part),
    )
    _warn_if_code_differs(model)
    encode_kwargs: dict[str, Any] = {"task": JINA_TASK}
    if JINA_TASK in (getattr(model, "prompts", None) or {}):
        encode_kwargs["prompt_name"] = JINA_TASK
    return SentenceTransformerTextEncoder(with_revision(JINA_TEXT_ENCODER, revision), model, encode_kwargs)


def loaded_code_revisions(model: Any) -> set[str]:
    """The commits of :data:`JINA_CODE_REPOSITORY` whose code ``model``'s modules run (transformers names a
    remote module ``transformers_modules.<org>.<repo>.<commit>.<file>``); empty when that cannot be told."""
    found: set[str] = set()
    for module in getattr(model, "modules", lambda: [])():
        parts = type(module).__module__.split(".")
        if parts[0] == "transformers_modules" and any("flash" in part for part in parts):
            found.update(part for part in parts if _COMMIT.fullmatch(part))
    return found


def _warn_if_code_differs(model: SentenceTransformer) -> None:
    """Log a warning when the loaded XLM-RoBERTa code is not the pinned commit (see the module docstring)."""
    expected = jina_code_revision()
    found = loaded_code_revisions(model)
    if found and found != {expected} and _COMMIT.fullmatch(expected):
        logger.warning(
            "jina-embeddings-v3 runs code of %s at %s, not the pinned %s (sentence-transformers cannot pass a "
            "code revision to the model class); the encoder's self-check still guards its outputs.",
            JINA_CODE_REPOSITORY,
            ", ".join(sorted(found)),
            expected,
        )
