"""Work-arounds for known incompatibilities between nerfstudio 1.1.5 and its newer dependencies.

* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and nerfstudio 1.1.5 loads its own
  checkpoints with the default. Those checkpoints hold numpy scalars (the learning-rate schedulers'
  ``_last_lr``), which the restricted unpickler refuses, so ``ns-viewer --load-config`` and
  ``eval_setup`` fail with "Weights only load failed". :func:`allow_nerfstudio_checkpoints` adds exactly
  the numpy scalar and dtype reconstructors to torch's allow-list; nothing else is loosened.
* torchmetrics' LPIPS downloads AlexNet weights when constructed. RelationField's model builds it inside
  :func:`offline_safe_lpips`, which falls back to a stand-in (one log line) when the weights cannot be had,
  so the model trains, loads and exports offline. Other methods are not affected.

:func:`allow_nerfstudio_checkpoints` is idempotent and cheap to call again: :mod:`relationfield.config` calls
it when nerfstudio imports it, and code that loads a run (``relationfield.query.load_pipeline``) calls it
directly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)


def _numpy_checkpoint_globals() -> list[Any]:
    import numpy as np

    allowed: list[Any] = [np.dtype]
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar"])
        except ImportError:
            continue
        scalar = getattr(module, "scalar", None)
        if scalar is not None and scalar not in allowed:
            allowed.append(scalar)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
            dtype_class = getattr(dtypes, name, None)
            if dtype_class is not None:
                allowed.append(dtype_class)
    return allowed


@functools.cache  # once per process; later calls return at once
def allow_nerfstudio_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read nerfstudio checkpoints (idempotent)."""
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 loads everything anyway
        add_safe_globals(_numpy_checkpoint_globals())


ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
#: Environment variables that put Hugging Face libraries offline; they keep LPIPS from downloading too.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def lpips_weights_cached() -> bool:
    """True when torchvision's AlexNet weights (needed by LPIPS) are in torch's hub cache."""
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS).is_file()


class MissingLpips:
    """Stands in for LPIPS when its weights cannot be had; the model drops the metric."""

    unavailable = True

    def __call__(self, *_: Any) -> Any:
        import torch

        return torch.tensor(float("nan"))


def downloads_forbidden() -> bool:
    """Whether the user asked for offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in OFFLINE_VARIABLES)


@contextlib.contextmanager
def offline_safe_lpips() -> Iterator[None]:
    """Within this block, constructing torchmetrics' LPIPS cannot stop a model from being built.

    The real LPIPS is built when it can be (AlexNet's weights cached, or downloaded as usual); when the
    download fails, or offline mode forbids it and the weights are not cached, a :class:`MissingLpips` is
    built instead, with one log line. Only RelationField's model enters this block (around nerfacto's
    ``populate_modules``); outside it torchmetrics is untouched, so other methods behave as without the plugin.
    """
    from torchmetrics.image import lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity

    def build(*args: Any, **kwargs: Any) -> Any:
        if not lpips_weights_cached() and downloads_forbidden():
            LOGGER.warning("LPIPS left out of eval metrics: %s is not cached and offline mode is on.", ALEXNET_WEIGHTS)
            return MissingLpips()
        try:
            return original(*args, **kwargs)
        except OSError as error:  # urllib's URLError and refused connections are OSErrors
            LOGGER.warning("LPIPS left out of eval metrics: %s could not be downloaded (%s).", ALEXNET_WEIGHTS, error)
            return MissingLpips()

    lpip.LearnedPerceptualImagePatchSimilarity = build  # type: ignore[misc]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]
