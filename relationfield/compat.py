"""Work-arounds for known incompatibilities between nerfstudio 1.1.5 and its newer dependencies.

* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and nerfstudio 1.1.5 loads its own
  checkpoints with the default. Those checkpoints hold numpy scalars (the learning-rate schedulers'
  ``_last_lr``), which the restricted unpickler refuses, so ``ns-viewer --load-config`` and
  ``eval_setup`` fail with "Weights only load failed". :func:`allow_nerfstudio_checkpoints` adds exactly
  the numpy scalar and dtype reconstructors to torch's allow-list; nothing else is loosened.
* torchmetrics' LPIPS downloads AlexNet weights when constructed. :func:`install_offline_lpips` builds it when
  its weights are already cached and otherwise puts a stand-in there with one log line, so the model
  trains, loads and exports offline.

Both are idempotent and cheap to call again: :mod:`relationfield.config` calls them when nerfstudio imports
it, and code that loads a run (``relationfield.query.load_pipeline``) calls them directly.
"""

from __future__ import annotations

import functools
import logging
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


def lpips_weights_cached() -> bool:
    """True when torchvision's AlexNet weights (needed by LPIPS) are in torch's hub cache."""
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS).is_file()


class MissingLpips:
    """Stands in for LPIPS when it cannot be built offline; the model drops the metric."""

    unavailable = True

    def __call__(self, *_: Any) -> Any:
        import torch

        return torch.tensor(float("nan"))


def install_offline_lpips() -> None:
    """Make constructing torchmetrics' LPIPS safe offline, for every model in this process (idempotent).

    With AlexNet's weights cached (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``) the real
    LPIPS is built as before; otherwise a :class:`MissingLpips` is, with one log line, and no download is
    tried. nerfstudio imports plugins before it builds any model, so this also lets stock ``nerfacto``
    start offline (its LPIPS metric then reads NaN).
    """
    from torchmetrics.image import lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    if getattr(original, "_relationfield_offline_safe", False):
        return

    def build(*args: Any, **kwargs: Any) -> Any:
        if lpips_weights_cached():
            return original(*args, **kwargs)
        LOGGER.warning("LPIPS left out of eval metrics: %s is not cached (no download is tried).", ALEXNET_WEIGHTS)
        return MissingLpips()

    build._relationfield_offline_safe = True  # type: ignore[attr-defined]
    lpip.LearnedPerceptualImagePatchSimilarity = build  # type: ignore[misc]
