"""The label store: per-frame masks, their embeddings and relations, shared by preprocessing and training.

* :mod:`relationfield.labels.format` - the on-disk layout and shared helpers (hashing, atomic writes)
* :mod:`relationfield.labels.writer` - :class:`LabelWriter`, :func:`segments_from_masks`
* :mod:`relationfield.labels.reader` - :class:`LabelStore`
* :mod:`relationfield.labels.gt_labeler` - :func:`label_from_ground_truth` for synthetic captures
"""

from relationfield.labels.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    default_labels_dir,
    frame_hash,
    normalize_frame_name,
)
from relationfield.labels.gt_labeler import label_from_ground_truth
from relationfield.labels.reader import LabelStore
from relationfield.labels.writer import LabelWriter, segments_from_masks

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
