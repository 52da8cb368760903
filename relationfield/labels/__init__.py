"""The label store: per-frame masks, their embeddings and relations, shared by preprocessing and training.

* :mod:`relationfield.labels.format` - the on-disk layout and shared helpers (hashing, atomic writes)
* :mod:`relationfield.labels.writer` - :class:`LabelWriter`
* :mod:`relationfield.labels.segments` - :func:`segments_from_masks`
* :mod:`relationfield.labels.manifest` - :func:`read_manifest` and the check that labels match the capture
* :mod:`relationfield.labels.frames` - reading one frame file and the predicate table
* :mod:`relationfield.labels.store` - :class:`LabelStore`, the store as training tensors
* :mod:`relationfield.labels.gt_labeler` - :func:`label_from_ground_truth` for synthetic captures
* :mod:`relationfield.labels.realism` - :class:`RealismConfig`, how far those labels fall short of perfect
  (with :mod:`~relationfield.labels.realism_masks`, :mod:`~relationfield.labels.realism_relations`,
  :mod:`~relationfield.labels.wording` and :mod:`~relationfield.labels.realistic_labeler`)
"""

from relationfield.labels.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    default_labels_dir,
    frame_hash,
    normalize_frame_name,
)

# The store and the labeler import torch; load them on first use so that the format helpers (and the
# CLI's --help) stay light.
_LAZY = {
    "label_from_ground_truth": "relationfield.labels.gt_labeler",
    "LabelStore": "relationfield.labels.store",
    "LabelWriter": "relationfield.labels.writer",
    "segments_from_masks": "relationfield.labels.segments",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LabelStore",
    "LabelWriter",
    "default_labels_dir",
    "frame_hash",
    "label_from_ground_truth",
    "normalize_frame_name",
    "segments_from_masks",
]
