"""Writing the ``embed`` stage's label store: one frame file per planned frame, the predicate table.

The store (:mod:`relationfield.labels.format`) is written with
:class:`~relationfield.labels.writer.LabelWriter` exactly as ``label-gt`` writes it: the predicates of
all relations (plus ``"none"``) embedded with the text encoder; per frame, the segment map, one
semantic embedding per mask (CLIP crops, or the mask's object name embedded with the text encoder),
the relations and the masks' object names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relationfield.encoders import ImageEncoder, TextEncoder
from relationfield.errors import UserError
from relationfield.images import image_size, load_rgb
from relationfield.labels.writer import LabelWriter
from relationfield.preprocess.clip_cache import CachedClipEmbedder
from relationfield.preprocess.crops import CropOptions
from relationfield.preprocess.embed_inputs import FramePlan, iter_frames
from relationfield.progress import item_progress
from relationfield.vocab import NONE_PREDICATE

#: ``(subject, object, predicates)`` of a frame's relations, 1-based mask ids.
RelationList = list[tuple[int, int, tuple[str, ...]]]


def _keep_named(
    segments: np.ndarray, labels: list[str], relations: RelationList
) -> tuple[np.ndarray, list[str], RelationList]:
    """Drop unnamed masks: their pixels become 0, the others get compact ids, relations follow."""
    kept = [k for k, label in enumerate(labels, start=1) if label]
    lut = np.zeros(len(labels) + 1, dtype=np.int64)
    lut[kept] = np.arange(1, len(kept) + 1)
    remapped = [(int(lut[s]), int(lut[o]), p) for s, o, p in relations if lut[s] and lut[o]]
    return lut[segments], [labels[k - 1] for k in kept], remapped


def _frame_image(data_dir: Path, plan: FramePlan, segments: np.ndarray, need_pixels: bool) -> np.ndarray | None:
    """The frame's image (only when ``need_pixels``); checks that it has the segment map's size."""
    path = data_dir / plan.name
    try:
        image = load_rgb(path) if need_pixels else None
        size = image.shape[:2] if image is not None else image_size(path)
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise UserError(f"Cannot read the image {path}: {error}") from None
    if tuple(size) != tuple(segments.shape):
        raise UserError(
            f"The masks of {plan.name} are {segments.shape[1]}x{segments.shape[0]} but the image is "
            f"{size[1]}x{size[0]}; run `relationfield masks --overwrite` for it."
        )
    return image


def recorded_options(
    semantic_source: str, workspace: Path, semantic_name: str, text_name: str, crops: CropOptions
) -> dict[str, Any]:
    """The options recorded in the manifest (what the embeddings depend on; no secrets exist here)."""
    options: dict[str, Any] = {
        "semantic_source": semantic_source,
        "semantic_encoder": semantic_name,
        "text_encoder": text_name,
        "workspace": str(workspace),
    }
    if semantic_source == "clip":
        options.update(
            crop_scales=[float(s) for s in crops.scales],
            crop_margin=float(crops.margin),
            crop_background=crops.background,
        )
    return options


def open_writer(
    labels_dir: Path,
    plans: Sequence[FramePlan],
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None,
    options: dict[str, Any],
    summary: dict[str, Any],
) -> LabelWriter:
    """A :class:`LabelWriter` for the store, its predicate table set from the relations of ``plans``.

    The semantic encoder is ``image_encoder`` (CLIP), or ``text_encoder`` when it is ``None``;
    ``options`` are recorded in the manifest.
    """
    semantic = image_encoder if image_encoder is not None else text_encoder
    predicates = sorted({p for plan in plans for _, _, preds in plan.relations.relations for p in preds})
    table = text_encoder.encode_table([*predicates, NONE_PREDICATE])
    writer = LabelWriter(
        labels_dir,
        semantic_encoder=semantic.name,
        semantic_dim=semantic.dim,
        relation_encoder=text_encoder.name,
        relation_dim=text_encoder.dim,
        producer="embed",
        options=options,
    )
    writer.set_predicate_table(predicates, table)
    summary.update(semantic_encoder=semantic.name, relation_encoder=text_encoder.name, predicates=len(predicates))
    return writer


def write_frames(
    data_dir: Path,
    workspace: Path,
    plans: Sequence[FramePlan],
    writer: LabelWriter,
    text_encoder: TextEncoder,
    clip: CachedClipEmbedder | None,
    summary: dict[str, Any],
    progress: bool,
) -> list[str]:
    """Embed and write every planned frame; returns the names of the frames written.

    Mask embeddings come from ``clip``, or (when it is ``None``) from the masks' object names embedded
    with ``text_encoder``, unnamed masks being dropped.
    """
    names: dict[str, np.ndarray] = {}
    if clip is None:
        names = text_encoder.encode_table(sorted({n for plan in plans for n in plan.relations.objects.values()}))
    labelled: list[str] = []
    bar, advance = item_progress(progress, len(plans), "Embedding")
    with bar:
        for plan, segments in iter_frames(plans, workspace):
            image = _frame_image(data_dir, plan, segments, need_pixels=clip is not None)
            labels = [plan.relations.objects.get(k, "") for k in range(1, plan.num_masks + 1)]
            relations = list(plan.relations.relations)
            if clip is not None:
                embeddings, cached = clip.embed(
                    plan.name, plan.image_hash, plan.masks_hash, image, segments, plan.num_masks
                )
                summary["cached"] += int(cached)
            else:
                segments, labels, relations = _keep_named(segments, labels, relations)
                summary["unnamed_masks"] += plan.num_masks - len(labels)
                embeddings = np.stack([names[n] for n in labels]) if labels else None
            advance(plan.name)
            if not labels:
                summary["empty"] += 1
                continue
            writer.write_frame(plan.name, segments, embeddings, [(s, o, list(p)) for s, o, p in relations], labels)
            labelled.append(plan.name)
            summary["masks"] += len(labels)
            summary["relations"] += len(relations)
    return labelled
