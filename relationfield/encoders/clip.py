"""open_clip encoders: one loaded CLIP model whose text and image towers share an embedding space, and the tiny
built-in architecture for tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from relationfield.encoders.base import DEFAULT_BATCH_SIZE, ImageEncoder, TextEncoder
from relationfield.encoders.clip_weights import (
    CLIP_LOAD_ERRORS,
    CLIP_RANDOM_INIT,
    CLIP_RANDOM_INIT_SEED,
    clip_download_hint,
    clip_weights,
    is_random_init,
    looks_like_path,
)
from relationfield.errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_CLIP_MODEL = "ViT-B-16"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b88k"
#: A tiny CLIP architecture built into this package (64-d, 64x64 images) for fast tests and smoke
#: runs; it has no pretrained weights: use it with ``none`` or a checkpoint of the same shape.
TINY_CLIP_MODEL = "relationfield-tiny"
_TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "head_width": 32, "layers": 2},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


class ClipModel:
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
        self.lock = threading.Lock()  # one forward pass at a time: both towers may be used from several threads
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
    """The text tower of an open_clip model (see :func:`~relationfield.encoders.load_text_encoder`)."""

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self.name = clip.name
        self.dim = clip.dim

    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_texts(texts)


class ClipImageEncoder(ImageEncoder):
    """The image tower of an open_clip model (see :func:`~relationfield.encoders.load_image_encoder`).

    Images go through the model's own evaluation transform (resize, centre crop, normalisation).
    """

    def __init__(self, clip: ClipModel, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
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


def build_clip_model(name: str, arch: str, pretrained: str, device: str) -> ClipModel:
    """Build the model ``arch``/``pretrained`` (named ``name``) on the CPU, seeded when randomly initialised,
    then move it to ``device``.

    Raises:
        UserError: open_clip is missing, the architecture or weights are unknown or cannot be loaded.
    """
    try:
        import open_clip  # lazy: heavy, and only needed to load
        import torch
    except ImportError as error:
        raise UserError(f"The CLIP encoder {name!r} needs open_clip (pip install open_clip_torch).") from error
    if arch != TINY_CLIP_MODEL and arch not in open_clip.list_models():
        raise UserError(
            f"Unknown open_clip architecture {arch!r} in {name!r}; choose one of open_clip.list_models() "
            f"(e.g. {DEFAULT_CLIP_MODEL}, ViT-L-14) or {TINY_CLIP_MODEL!r}."
        )
    if arch == TINY_CLIP_MODEL and not is_random_init(pretrained) and not looks_like_path(pretrained):
        raise UserError(
            f"{TINY_CLIP_MODEL!r} has no pretrained weights: use '{CLIP_RANDOM_INIT}' or a checkpoint file."
        )
    checkpoint, cfg = clip_weights(arch, pretrained)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(CLIP_RANDOM_INIT_SEED)
            model, tokenizer, preprocess = _create_clip(open_clip, arch, checkpoint, cfg)
        model = model.to(device).eval().requires_grad_(False)
        size = open_clip.get_model_preprocess_cfg(model).get("size", 224)
        image_size = max(size) if isinstance(size, (tuple, list)) else int(size)
        return ClipModel(name, model, tokenizer, preprocess, image_size, device)
    except CLIP_LOAD_ERRORS as error:
        raise UserError(
            f"Could not load the CLIP encoder {name!r}: {error}\n{clip_download_hint(arch, pretrained)}"
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
