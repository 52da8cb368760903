"""The default torch device: the one place that decides between a GPU and the CPU."""

from __future__ import annotations


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch  # here, not at the top: the CLI's --help and the preprocessing plans need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"
