"""Where the weights of an open_clip encoder come from: a pretrained tag (cached or downloaded), a checkpoint file,
or random initialisation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from relationfield.encoders.base import hub_offline
from relationfield.errors import UserError

logger = logging.getLogger(__name__)

#: The ``PRETRAINED`` part of an open_clip name that asks for random weights (tests, smoke runs).
CLIP_RANDOM_INIT = "none"
#: Seed of the random weights of ``PRETRAINED = none`` (every load draws the same model).
CLIP_RANDOM_INIT_SEED = 0
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
#: open_clip reports unknown configs, failed downloads and mismatched checkpoints with these.
CLIP_LOAD_ERRORS = (OSError, RuntimeError, ValueError, KeyError, ImportError)


def is_random_init(pretrained: str) -> bool:
    """Whether a ``PRETRAINED`` value asks for random weights (:data:`CLIP_RANDOM_INIT`, any case)."""
    return str(pretrained).lower() == CLIP_RANDOM_INIT


def looks_like_path(pretrained: str) -> bool:
    """Whether a ``PRETRAINED`` value is a checkpoint path rather than an open_clip tag."""
    text = str(pretrained)
    return (
        "/" in text
        or "\\" in text
        or text.startswith("~")
        or text.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(text).is_file()
    )


def clip_download_hint(arch: str, pretrained: str) -> str:
    """How to make the weights ``arch``/``pretrained`` available offline."""
    return (
        'Download them once with internet access (python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{arch}', pretrained='{pretrained}')\"), set HF_HOME to a "
        "Hugging Face cache that holds them, or pass the path of a local checkpoint file as the CLIP "
        f"weights. '{CLIP_RANDOM_INIT}' gives random weights (only for tests), and --semantic-source text "
        "embeds object names with the text encoder instead of CLIP."
    )


def clip_weights(arch: str, pretrained: str) -> tuple[str | None, dict[str, Any]]:
    """``(checkpoint file or None for random weights, open_clip pretrained config)``.

    A tag's file is taken from the local cache when it is there, downloaded otherwise (unless
    Hugging Face is in offline mode).

    Raises:
        UserError: a missing checkpoint file, an unknown tag, or weights that cannot be had.
    """
    if is_random_init(pretrained):
        return None, {}
    if looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"The CLIP checkpoint {path} does not exist (or is not a file).")
        return str(path), {}
    import open_clip  # lazy: heavy, and only needed to load

    cfg = dict(open_clip.get_pretrained_cfg(arch, pretrained) or {})
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise UserError(
            f"open_clip has no pretrained weights {pretrained!r} for {arch!r} (its tags: {tags}); "
            f"or pass a checkpoint file, or '{CLIP_RANDOM_INIT}'."
        )
    cached = cached_checkpoint(cfg)
    if cached is not None:
        return cached, cfg
    return _download_checkpoint(open_clip, arch, pretrained, cfg), cfg


def cached_checkpoint(cfg: dict[str, Any]) -> str | None:
    """The local file of an open_clip pretrained config, if it is cached (no network access)."""
    if cfg.get("file"):
        return str(cfg["file"]) if Path(cfg["file"]).is_file() else None
    hub = str(cfg.get("hf_hub") or "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            hub = ""
    if hub:
        repo_id, filename = os.path.split(hub)
        candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for candidate in candidates:
            hit = try_to_load_from_cache(repo_id, candidate)
            if isinstance(hit, str) and Path(hit).is_file():
                return hit
    url = str(cfg.get("url") or "")
    if url:
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _download_checkpoint(open_clip: Any, arch: str, pretrained: str, cfg: dict[str, Any]) -> str:
    """Download the weights of an open_clip pretrained config, unless Hugging Face is offline."""
    hint = clip_download_hint(arch, pretrained)
    if hub_offline():
        raise UserError(
            f"Could not load the CLIP weights {arch}/{pretrained}: they are not in the local cache and "
            f"Hugging Face is in offline mode (HF_HUB_OFFLINE).\n{hint}"
        )
    logger.info("CLIP weights %s/%s are not cached locally; trying to download them.", arch, pretrained)
    try:
        path = open_clip.download_pretrained(cfg)
    except CLIP_LOAD_ERRORS as error:
        raise UserError(f"Could not download the CLIP weights {arch}/{pretrained}: {error}\n{hint}") from error
    if not path:
        raise UserError(f"open_clip gave no file for the CLIP weights {arch}/{pretrained}.\n{hint}")
    return str(path)
