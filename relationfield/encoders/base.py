"""The encoder interfaces (:class:`TextEncoder`, :class:`ImageEncoder`) and what every back end shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Texts (or images) per forward pass.
DEFAULT_BATCH_SIZE = 64


class TextEncoder(ABC):
    """Maps texts to L2-normalised embeddings.

    Attributes:
        name: the name :func:`~relationfield.encoders.load_text_encoder` loads this encoder by.
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
        import torch  # lazy: importing the encoders stays cheap

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string")
        texts = [str(text) for text in texts]
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros((0, getattr(self, "dim", 0)), dtype=torch.float32)
        embeddings = self._encode_unique(unique)
        index = {text: row for row, text in enumerate(unique)}
        return embeddings[torch.tensor([index[text] for text in texts], dtype=torch.long)].clone()

    def encode_table(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Text -> float32 embedding (numpy) of each distinct text in ``texts``, each encoded once."""
        unique = list(dict.fromkeys(str(text) for text in texts))
        return dict(zip(unique, self.encode(unique).numpy()))

    @abstractmethod
    def _encode_unique(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm float32 CPU embeddings of distinct, non-empty ``texts``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class ImageEncoder(ABC):
    """Maps images to L2-normalised embeddings.

    Attributes:
        name: the name :func:`~relationfield.encoders.load_image_encoder` loads this encoder by (for
            CLIP also :func:`~relationfield.encoders.load_text_encoder`, which gives the text tower
            of the same space).
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


def hub_offline() -> bool:
    """Whether Hugging Face downloads are forbidden (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    This is huggingface_hub's own flag, so the answer agrees with what its downloads will do (it
    reads the environment once, when huggingface_hub is first imported).
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # without huggingface_hub nothing downloads from the Hub anyway
        return False
    return bool(constants.HF_HUB_OFFLINE)
