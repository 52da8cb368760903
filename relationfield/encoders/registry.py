"""Encoder names and loading by name: :func:`load_text_encoder`, :func:`load_image_encoder` and their cache."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from relationfield.encoders.base import ImageEncoder, TextEncoder
from relationfield.encoders.clip import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    TINY_CLIP_MODEL,
    ClipImageEncoder,
    ClipModel,
    ClipTextEncoder,
    build_clip_model,
)
from relationfield.encoders.clip_weights import CLIP_RANDOM_INIT, is_random_init, looks_like_path
from relationfield.encoders.jina import load_jina
from relationfield.encoders.selfcheck import check_text_encoder
from relationfield.encoders.sentence import (
    JINA_TEXT_ENCODER,
    OFFLINE_TEXT_ENCODER,
    load_named_model,
    load_offline_minilm,
    split_revision,
)
from relationfield.errors import UserError

CLIP_ENCODER_PREFIX = "open_clip:"
DEFAULT_CLIP_ENCODER = f"{CLIP_ENCODER_PREFIX}{DEFAULT_CLIP_MODEL}/{DEFAULT_CLIP_PRETRAINED}"


def is_clip_encoder_name(name: str) -> bool:
    """Whether ``name`` names an open_clip encoder (``open_clip:ARCH/PRETRAINED``)."""
    return str(name).startswith(CLIP_ENCODER_PREFIX)


def clip_encoder_name(model: str = DEFAULT_CLIP_MODEL, pretrained: str = DEFAULT_CLIP_PRETRAINED) -> str:
    """The encoder name of an open_clip model: ``open_clip:MODEL/PRETRAINED``.

    Args:
        model: an architecture of ``open_clip.list_models()`` (e.g. ``ViT-B-16``) or
            :data:`TINY_CLIP_MODEL`.
        pretrained: an open_clip pretrained tag (e.g. ``laion2b_s34b_b88k``), a local checkpoint
            file (recorded as an absolute path so that the name loads from any directory; images
            are then preprocessed with open_clip's defaults for the architecture), or
            :data:`CLIP_RANDOM_INIT`.

    Raises:
        UserError: an empty or malformed part.
    """
    model, pretrained = str(model).strip(), str(pretrained).strip()
    if not model or "/" in model or ":" in model:
        raise UserError(
            f"The CLIP model must be an open_clip architecture such as {DEFAULT_CLIP_MODEL!r}, got {model!r}."
        )
    if not pretrained:
        raise UserError(
            "The CLIP weights must be an open_clip pretrained tag (e.g. "
            f"{DEFAULT_CLIP_PRETRAINED!r}), a checkpoint file, or {CLIP_RANDOM_INIT!r}."
        )
    if is_random_init(pretrained):
        pretrained = CLIP_RANDOM_INIT
    elif looks_like_path(pretrained):
        pretrained = str(Path(pretrained).expanduser().resolve())
    return f"{CLIP_ENCODER_PREFIX}{model}/{pretrained}"


def parse_clip_encoder_name(name: str) -> tuple[str, str]:
    """``(architecture, pretrained)`` of an ``open_clip:ARCH/PRETRAINED`` name.

    Raises:
        UserError: ``name`` is not a well-formed open_clip encoder name.
    """
    if not is_clip_encoder_name(name):
        raise UserError(f"{name!r} is not an open_clip encoder name ({CLIP_ENCODER_PREFIX}ARCH/PRETRAINED).")
    arch, _, pretrained = name[len(CLIP_ENCODER_PREFIX) :].partition("/")
    if not arch or not pretrained:
        raise UserError(
            f"open_clip encoder names look like {DEFAULT_CLIP_ENCODER!r} or "
            f"'{CLIP_ENCODER_PREFIX}{TINY_CLIP_MODEL}/{CLIP_RANDOM_INIT}', got {name!r}."
        )
    return arch, pretrained


def load_text_encoder(name: str = OFFLINE_TEXT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Load a text encoder by name, reusing an already loaded one for the same ``(name, device)``.

    Every newly loaded encoder passes :func:`~relationfield.encoders.selfcheck.check_text_encoder` before it is
    returned, so that wrong weights fail here instead of filling a label store with meaningless embeddings
    (the deliberately random open_clip encoders, ``PRETRAINED`` ``none`` and the tiny architecture, skip it).

    Args:
        name: :data:`OFFLINE_TEXT_ENCODER`, :data:`JINA_TEXT_ENCODER` (at its pinned revision, see
            :mod:`relationfield.encoders.jina`), an open_clip name ``open_clip:ARCH/PRETRAINED`` (the CLIP
            text tower), or any sentence-transformers model name or local model directory. A Hugging Face
            Hub name may end in ``@REVISION`` (a commit hash, branch or tag) to load that revision, e.g.
            ``jinaai/jina-embeddings-v3@<commit>``; the encoder keeps the whole name, so a label store made
            with it records the revision and queries load the same one.
        device: torch device the model runs on (outputs are always on the CPU).

    Raises:
        UserError: the model cannot be loaded (not installed, not cached and no network, a known version
            incompatibility, whose fix the message names), or it fails the self-check ("wrong weights").
    """
    return _text_encoder(name, device)  # positional, so that defaults and keywords share one cache entry


def load_image_encoder(name: str = DEFAULT_CLIP_ENCODER, device: str = "cpu") -> ImageEncoder:
    """Load an image encoder by name, reusing an already loaded one for the same ``(name, device)``.

    Args:
        name: ``open_clip:ARCH/PRETRAINED`` (see :func:`clip_encoder_name`); the text tower of the
            same model is ``load_text_encoder(name, device)``.
        device: torch device the model runs on (outputs are always on the CPU).

    Raises:
        UserError: not an image encoder name, or the model cannot be loaded (unknown architecture
            or tag, weights not cached while offline, unreadable checkpoint, ...).
    """
    if not is_clip_encoder_name(name):
        raise UserError(
            f"{name!r} is not an image encoder; image encoders are open_clip models named "
            f"{CLIP_ENCODER_PREFIX}ARCH/PRETRAINED, e.g. {DEFAULT_CLIP_ENCODER!r}."
        )
    return _image_encoder(name, device)


def clear_text_encoder_cache() -> None:
    """Forget the loaded text and image encoders (their memory is freed once nothing else
    references them)."""
    for cached in (_text_encoder, _image_encoder, _clip_model):
        cached.cache_clear()


# The caches below may be filled from several threads (viewer callbacks, preprocessing workers).
# functools.cache (an unbounded lru_cache) keeps its table consistent under threads and never
# returns a half-built entry: a failed load raises and caches nothing. Two threads missing the same
# key at once may both build the model; the table then keeps one and the other caller uses its own
# copy, which wastes a load but is never wrong, so no lock serialises the (slow) loads.


@cache
def _text_encoder(name: str, device: str) -> TextEncoder:
    """The text encoder of ``(name, device)``, loaded and self-checked on first use."""
    encoder = _build_text_encoder(name, device)
    if not _is_random_clip(name):
        check_text_encoder(encoder)
    return encoder


def _build_text_encoder(name: str, device: str) -> TextEncoder:
    """Load the text encoder of ``name`` (see :func:`load_text_encoder`)."""
    if is_clip_encoder_name(name):
        return ClipTextEncoder(_clip_model(name, device))
    if name == OFFLINE_TEXT_ENCODER:
        return load_offline_minilm(device)
    model, revision = split_revision(name)
    if model == JINA_TEXT_ENCODER:
        return load_jina(device, revision)
    return load_named_model(model, device, revision)


def _is_random_clip(name: str) -> bool:
    """Whether ``name`` is an open_clip encoder without trained weights by design (random init or the tiny
    test architecture), which the self-check would rightly reject."""
    if not is_clip_encoder_name(name):
        return False
    arch, pretrained = parse_clip_encoder_name(name)
    return arch == TINY_CLIP_MODEL or is_random_init(pretrained)


@cache
def _image_encoder(name: str, device: str) -> ImageEncoder:
    """The image encoder of the open_clip name ``name`` on ``device``, loaded on first use."""
    return ClipImageEncoder(_clip_model(name, device))


@cache
def _clip_model(name: str, device: str) -> ClipModel:
    """The :class:`ClipModel` of ``(name, device)`` that both towers share, loaded on first use."""
    arch, pretrained = parse_clip_encoder_name(name)
    return build_clip_model(name, arch, pretrained, device)
