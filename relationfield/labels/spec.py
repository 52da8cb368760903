"""What the model needs to know of a label store: embedding sizes and encoders (:class:`LabelSpec`).

The data manager reads it from the store's manifest and hands it to the model through the train
dataset's metadata under :data:`LABEL_SPEC_KEY`; both depend on this module, not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relationfield.labels.manifest import read_manifest

LABEL_SPEC_KEY = "relationfield"
"""Key of the :class:`LabelSpec` in the train dataset's metadata (nerfstudio passes it to the model)."""


@dataclass(frozen=True)
class LabelSpec:
    """What the model needs to know of the label store: embedding sizes and encoders."""

    semantic_dim: int
    """Size of the mask (object) embeddings."""
    relation_dim: int
    """Size of the relation embeddings."""
    semantic_encoder: str = ""
    """Text encoder the mask embeddings were made with."""
    relation_encoder: str = ""
    """Text encoder the relation embeddings were made with."""


def read_label_spec(labels_dir: Path) -> LabelSpec:
    """Embedding sizes and encoders from a label store's manifest (cheap: no frames are read)."""
    manifest = read_manifest(Path(labels_dir))
    return LabelSpec(
        semantic_dim=int(manifest["semantic"]["dim"]),
        relation_dim=int(manifest["relation"]["dim"]),
        semantic_encoder=str(manifest["semantic"]["encoder"]),
        relation_encoder=str(manifest["relation"]["encoder"]),
    )
