"""SAM behind the :class:`MaskGenerator` interface: what proposes the masks of the ``masks`` stage.

:class:`MaskGenerator` is the interface the stage needs (anything that proposes class-agnostic masks
for an image; tests use ground-truth stubs); :class:`SamMaskGenerator` is SAM's automatic mask
generator behind it, loaded from an official checkpoint with :func:`load_sam`.

Memory: SAM's image encoder always sees the image at 1024 px, and its global-attention blocks build
``[heads, 4096, 4096]`` float32 matrices (about 0.8 GB each for vit_b, several alive at once), whatever
the frame's size; :func:`lean_attention` has them computed a few heads at a time (the same maths).
The masks of each batch of prompts are upsampled to the size of the image given to the generator,
which is why the ``masks`` stage downscales large frames first.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from relationfield.devices import default_device
from relationfield.errors import UserError

SamModelType = Literal["vit_h", "vit_l", "vit_b"]

#: Official SAM checkpoints (github.com/facebookresearch/segment-anything).
SAM_CHECKPOINT_URLS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}

#: Width of each SAM image encoder (the last dimension of ``image_encoder.pos_embed``).
_ENCODER_WIDTHS: dict[int, str] = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}

#: The most bytes one chunk of the image encoder's attention matrices takes (see :func:`lean_attention`).
ATTENTION_CHUNK_BYTES = 128 * 2**20

#: A mask record as SAM's automatic mask generator returns it: ``segmentation`` (bool ``[H, W]``),
#: ``area`` (pixels), ``predicted_iou`` and ``stability_score`` (floats); other keys are kept as is.
MaskRecord = dict[str, Any]


@runtime_checkable
class MaskGenerator(Protocol):
    """Anything that proposes class-agnostic masks for an image.

    ``generate(image, name)`` receives the RGB image (``uint8 [H, W, 3]``) and its path relative to
    the capture as in ``transforms.json`` (normalised, e.g. ``images/frame_00000.png``) and returns
    SAM-style :data:`MaskRecord` s whose ``segmentation`` has the image's size. SAM ignores the name;
    it lets test doubles (or precomputed masks) look up the frame.
    """

    def generate(self, image: np.ndarray, name: str) -> list[MaskRecord]:
        """The mask records of ``image`` (any order, duplicates allowed)."""
        ...


class SamMaskGenerator:
    """SAM's automatic mask generator behind the :class:`MaskGenerator` interface.

    Args:
        model: a ``segment_anything.modeling.Sam`` (already on its device; see
            :meth:`from_checkpoint` to load an official checkpoint). Its image encoder's attention is
            made lean in place (:func:`lean_attention`).
        points_per_side: the prompt grid has ``points_per_side ** 2`` points.
        pred_iou_thresh: drop masks whose predicted IoU is below this.
        stability_score_thresh: drop masks whose stability score is below this.
        min_mask_region_area: remove holes and islands smaller than this many pixels (0: off).
        points_per_batch: prompts run through the model at once. SAM upsamples every prompt's three
            candidate masks to the input image as float32, so one batch takes about
            ``points_per_batch * 3 * 4 * H * W`` bytes (memory vs. speed).
        crop_n_layers: also segment ``4 ** i`` overlapping crops for each layer ``i = 1..crop_n_layers``
            (finer masks of small objects, one more image-encoder pass per crop; 0: the whole image only).
    """

    def __init__(
        self,
        model: Any,
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_mask_region_area: int = 0,
        points_per_batch: int = 16,
        crop_n_layers: int = 0,
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        lean_attention(model)
        self.model = model
        self._generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=int(points_per_side),
            points_per_batch=int(points_per_batch),
            pred_iou_thresh=float(pred_iou_thresh),
            stability_score_thresh=float(stability_score_thresh),
            min_mask_region_area=int(min_mask_region_area),
            crop_n_layers=int(crop_n_layers),
            output_mode="binary_mask",
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Path,
        model_type: SamModelType = "vit_h",
        device: str | None = None,
        **options: Any,
    ) -> SamMaskGenerator:
        """Load an official SAM checkpoint (see :func:`load_sam`) and wrap it; ``options`` go to
        the constructor."""
        return cls(load_sam(checkpoint, model_type, device), **options)

    def generate(self, image: np.ndarray, name: str = "") -> list[MaskRecord]:
        """SAM's mask records of ``image`` (``uint8 [H, W, 3]`` RGB); ``name`` is ignored."""
        del name
        return list(self._generator.generate(np.ascontiguousarray(image)))


def lean_attention(model: Any) -> None:
    """Have the attention of ``model``'s image encoder compute its score matrices a few heads at a time.

    segment-anything's ``Attention`` computes the ``[batch * heads, tokens, tokens]`` scores of all
    heads at once, plus two more copies of that size for the relative positions and the softmax: for
    a global block of vit_b (12 heads, 64 x 64 tokens) about 2.4 GB. Chunked to at most
    :data:`ATTENTION_CHUNK_BYTES` per chunk the result is the same up to float rounding. Applied in
    place to every block of ``model.image_encoder``; applying it again changes nothing.
    """
    for block in getattr(getattr(model, "image_encoder", None), "blocks", ()):
        attention = getattr(block, "attn", None)
        if attention is not None and hasattr(attention, "qkv"):
            attention.forward = types.MethodType(_chunked_attention, attention)


def _chunked_attention(self: Any, x: Any) -> Any:
    """A drop-in ``forward`` of segment-anything's image-encoder ``Attention`` (``x``: ``[B, H, W, C]``),
    computing the attention of at most :data:`ATTENTION_CHUNK_BYTES` of scores at a time."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    batch, height, width, _ = x.shape
    tokens = height * width
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    queries, keys, values = qkv.reshape(3, batch * self.num_heads, tokens, -1).unbind(0)
    attended = values.new_empty(values.shape)
    step = max(1, ATTENTION_CHUNK_BYTES // (tokens * tokens * queries.element_size()))
    for start in range(0, queries.shape[0], step):
        part = slice(start, start + step)
        scores = (queries[part] * self.scale) @ keys[part].transpose(-2, -1)
        if self.use_rel_pos:
            size = (height, width)
            scores = add_decomposed_rel_pos(scores, queries[part], self.rel_pos_h, self.rel_pos_w, size, size)
        attended[part] = scores.softmax(dim=-1) @ values[part]
    heads = attended.view(batch, self.num_heads, height, width, -1)
    return self.proj(heads.permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1))


def missing_checkpoint_message(model_type: str, path: Path | None = None) -> str:
    """Explain where to get a SAM checkpoint and how to pass it."""
    where = "No SAM checkpoint was given" if path is None else f"The SAM checkpoint {path} does not exist"
    urls = "\n".join(f"  {kind}: {url}" for kind, url in SAM_CHECKPOINT_URLS.items())
    return (
        f"{where}. Download one of the official checkpoints:\n{urls}\n"
        f"and pass it with --sam-checkpoint PATH (with --model-type matching it; now {model_type})."
    )


def load_sam(checkpoint: Path, model_type: SamModelType = "vit_h", device: str | None = None) -> Any:
    """Build SAM's ``model_type`` architecture with segment-anything's builder and load ``checkpoint``.

    The state dict is read with ``torch.load(..., map_location="cpu", weights_only=True)`` (a GPU
    checkpoint loads on a CPU-only machine, and nothing but tensors is unpickled). The architecture is
    built on the meta device and the checkpoint's tensors are assigned to it, so the weights are never
    held twice (a randomly initialised copy is never made: 2.5 GB for vit_h); then the model is moved
    to ``device`` (default: :func:`default_device`), in float32 and eval mode.

    Raises:
        UserError: the checkpoint is missing or unreadable, is not a state dict, or does not fit
            ``model_type`` (the message names the type it fits when that can be told).
    """
    import torch
    from segment_anything import sam_model_registry

    checkpoint = Path(checkpoint)
    if model_type not in SAM_CHECKPOINT_URLS:
        raise UserError(f"unknown SAM model type {model_type!r}; choose one of {', '.join(SAM_CHECKPOINT_URLS)}")
    if not checkpoint.is_file():
        raise UserError(missing_checkpoint_message(model_type, checkpoint))
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        raise UserError(f"Cannot read the SAM checkpoint {checkpoint}: {type(error).__name__}: {error}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{checkpoint} is not a SAM checkpoint (expected a state dict of tensors).")
    with torch.device("meta"):  # parameters without storage; the checkpoint's tensors replace them
        model = sam_model_registry[model_type](checkpoint=None)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise UserError(_mismatch_message(checkpoint, model_type, state, error)) from None
    del state
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        raise UserError(f"The SAM checkpoint {checkpoint} leaves part of the {model_type} model unset.")
    device = device or default_device()
    try:
        return model.to(device).float().eval()
    except (RuntimeError, AssertionError, ValueError) as error:  # torch asserts when CUDA is absent
        raise UserError(f"Cannot put SAM on device {device!r}: {error}") from None


def _mismatch_message(checkpoint: Path, model_type: str, state: Mapping[str, Any], error: Exception) -> str:
    """Explain that ``checkpoint`` does not fit ``model_type``, guessing the type it fits."""
    pos_embed = state.get("image_encoder.pos_embed")
    guess = _ENCODER_WIDTHS.get(int(pos_embed.shape[-1])) if pos_embed is not None and pos_embed.ndim else None
    hint = (
        f" It looks like a {guess} checkpoint: pass --model-type {guess}."
        if guess and guess != model_type
        else " Check that it is an official SAM checkpoint and that --model-type matches it."
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"The SAM checkpoint {checkpoint} does not fit --model-type {model_type} ({first_line}).{hint}"
