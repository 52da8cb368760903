"""The ``embed`` stage: turn the workspace's masks and relations into the label store.

Inputs (see :mod:`relationfield.preprocess.workspace`): every frame of ``transforms.json`` that has
``masks/<stem>.npz`` is labelled; ``relations/<stem>.json`` adds object names and relations when its
status is ``ok`` (frames whose vision-model call failed, or that were never asked, keep their masks
and semantic embeddings but get no relations and no names).

Outputs: the label store (:mod:`relationfield.labels.format`, ``DATA/relationfield`` by default),
written with :class:`~relationfield.labels.writer.LabelWriter` exactly as ``label-gt`` writes it:

* **semantic embeddings** (``--semantic-source clip``, the default): each mask is cut out of its
  image (:func:`~relationfield.preprocess.crops.mask_crops`: the mask's bounding box plus a margin,
  the background outside the mask greyed or blurred, padded to a square) at several scales; the
  CLIP image embeddings of the crops are averaged and renormalised. The manifest's semantic encoder
  is the CLIP encoder's name (``open_clip:ARCH/PRETRAINED``), so queries are encoded with the CLIP
  text tower of the same model.
  With ``--semantic-source text`` the vision model's object names are embedded with the text
  encoder instead (no CLIP weights needed); masks without a name are then dropped (their pixels stay
  unlabelled, relations touching them are dropped) and frames left without masks are not labelled.
* **relation embeddings**: the predicates of each relation (lowercased, whitespace collapsed) form
  the capture's predicate table, embedded with the text encoder (jina-embeddings-v3 by default)
  together with ``"none"``.
* **mask labels**: the vision model's object names, normalised like predicates (empty strings for
  unnamed masks).

Checks: masks whose image changed since segmentation, and relations whose image or masks changed
since the vision model answered, are stale and stop the stage with the command to re-run (an
existing label store is left untouched). Relations that reference masks absent from the masks file,
relate a mask to itself or have no predicate are skipped with a warning.

Resuming: the CLIP embeddings of each frame are cached in ``WORKSPACE/embeddings/<stem>.npz``, keyed
by the image hash, the masks, the encoder name and the crop settings
(:mod:`~relationfield.preprocess.clip_cache`), so a re-run (after an interruption, or with another
text encoder) only embeds frames that changed. A re-run rewrites the same store.

This module holds the stage's options, its entry point and its summary; the scan of the workspace is
in :mod:`~relationfield.preprocess.embed_inputs`, the crops in :mod:`~relationfield.preprocess.crops`
and the writing in :mod:`~relationfield.preprocess.embed_writer`.

Typical use::

    summary = run_embed(EmbedConfig(data=Path("capture")))
    print(summary_text(summary))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from relationfield.devices import default_device
from relationfield.encoders import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    JINA_TEXT_ENCODER,
    ImageEncoder,
    clip_encoder_name,
    load_image_encoder,
    load_text_encoder,
)
from relationfield.errors import UserError
from relationfield.labels.format import default_labels_dir
from relationfield.preprocess.clip_cache import CachedClipEmbedder
from relationfield.preprocess.crops import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SCALES, CropBackground, CropOptions
from relationfield.preprocess.embed_inputs import check_something_to_label, scan_workspace
from relationfield.preprocess.embed_writer import open_writer, recorded_options, write_frames
from relationfield.preprocess.workspace import default_workspace

SemanticSource = Literal["clip", "text"]


@dataclass
class EmbedConfig:
    """Options of the ``embed`` stage."""

    data: Path
    """The nerfstudio capture (the directory holding transforms.json)."""
    text_encoder: str = JINA_TEXT_ENCODER
    """Text encoder of the predicates (and of object names with --semantic-source text): jinaai/jina-embeddings-v3,
    all-MiniLM-L6-v2 (offline), or any sentence-transformers model name or local path; NAME@REVISION loads a
    Hub model at that commit (jina defaults to a pinned one)."""
    clip_model: str = DEFAULT_CLIP_MODEL
    """open_clip architecture of the mask embeddings (open_clip.list_models(), e.g. ViT-B-16, ViT-L-14;
    relationfield-tiny with --clip-pretrained none for smoke tests)."""
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    """open_clip pretrained tag of --clip-model, a local checkpoint file, or 'none' (random weights, tests only)."""
    semantic_source: SemanticSource = "clip"
    """Mask embeddings from CLIP image crops ('clip'), or from the vision model's object names embedded
    with the text encoder ('text'; unnamed masks are dropped)."""
    labels_dir: Path | None = None
    """Where to write the label store (default: DATA/relationfield)."""
    workspace: Path | None = None
    """Preprocessing workspace holding masks/ and relations/ (default: DATA/relationfield_work)."""
    device: str | None = None
    """Torch device of the encoders (default: cuda when available, else cpu)."""
    batch_size: int = 64
    """Mask crops per CLIP forward pass."""
    crop_scales: tuple[float, ...] = DEFAULT_CROP_SCALES
    """Crop sizes relative to the mask's padded bounding box; the crops' embeddings are averaged."""
    crop_margin: float = DEFAULT_CROP_MARGIN
    """Margin added on each side of a mask's bounding box, as a fraction of its longer side."""
    crop_background: CropBackground = "grey"
    """What replaces the pixels outside the mask in a crop: flat grey, or the blurred image."""
    overwrite: bool = False
    """Recompute every frame's CLIP embeddings instead of reusing WORKSPACE/embeddings/."""


def validate_config(config: EmbedConfig) -> None:
    """Check the options that do not need the capture.

    Raises:
        UserError: an option is out of range.
    """
    scales = tuple(config.crop_scales)
    checks = (
        (config.batch_size >= 1, "--batch-size must be >= 1"),
        (len(scales) > 0 and all(float(s) > 0 for s in scales), "--crop-scales must be positive numbers"),
        (0.0 <= config.crop_margin <= 1.0, "--crop-margin must be in [0, 1]"),
        (config.semantic_source in ("clip", "text"), "--semantic-source must be 'clip' or 'text'"),
        (config.crop_background in ("grey", "blur"), "--crop-background must be 'grey' or 'blur'"),
        (bool(str(config.text_encoder).strip()), "--text-encoder must not be empty"),
    )
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def crop_options(config: EmbedConfig) -> CropOptions:
    """The crop options of ``config``."""
    return CropOptions(tuple(float(s) for s in config.crop_scales), float(config.crop_margin), config.crop_background)


def _new_summary(workspace: Path, labels_dir: Path) -> dict[str, Any]:
    """The summary's counters, all zero."""
    keys = (
        "frames",
        "labelled",
        "empty",
        "masks",
        "unnamed_masks",
        "relations",
        "skipped_entries",
        "predicates",
        "cached",
        "relations_ok",
        "relations_failed",
        "relations_missing",
    )
    summary: dict[str, Any] = {key: 0 for key in keys}
    summary.update(workspace=str(workspace), labels_dir=str(labels_dir))
    return summary


def run_embed(config: EmbedConfig, progress: bool = True) -> dict[str, Any]:
    """Write the label store of ``config.data`` from its preprocessing workspace (see the module docstring).

    Args:
        config: the stage's options.
        progress: show a rich progress bar.

    Returns:
        A summary: ``workspace`` and ``labels_dir`` (str), ``semantic_encoder`` and
        ``relation_encoder`` (names), ``frames`` (in the capture), ``labelled`` (frames in the
        store), ``empty`` (frames with a masks file but no mask left, not labelled), ``masks``,
        ``unnamed_masks`` (dropped with ``--semantic-source text``), ``relations``,
        ``skipped_entries`` (invalid entries of relations files), ``predicates``, ``cached`` (frames
        whose CLIP embeddings came from the cache), ``relations_ok`` / ``relations_failed`` /
        ``relations_missing`` (frames by the state of their relations file) and ``seconds``.

    Raises:
        UserError: bad options, no masks, stale or unreadable inputs, an encoder that cannot be
            loaded, or no frame left to label. The existing label store is only replaced once the
            inputs have been checked and the encoders loaded.
    """
    start = time.perf_counter()
    validate_config(config)
    data_dir = Path(config.data)
    workspace = Path(config.workspace) if config.workspace is not None else default_workspace(data_dir)
    labels_dir = Path(config.labels_dir) if config.labels_dir is not None else default_labels_dir(data_dir)
    summary = _new_summary(workspace, labels_dir)
    plans = scan_workspace(data_dir, workspace, summary)
    for plan in plans:
        summary[f"relations_{plan.relations.status}"] += 1
        summary["skipped_entries"] += len(plan.relations.problems)
    check_something_to_label(plans, config.semantic_source)

    device = config.device or default_device()
    text_encoder = load_text_encoder(config.text_encoder, device)
    image_encoder: ImageEncoder | None = None
    clip: CachedClipEmbedder | None = None
    crops = crop_options(config)
    if config.semantic_source == "clip":
        image_encoder = load_image_encoder(clip_encoder_name(config.clip_model, config.clip_pretrained), device)
        clip = CachedClipEmbedder(image_encoder, workspace, crops, config.batch_size, config.overwrite)
    semantic_name = image_encoder.name if image_encoder is not None else text_encoder.name
    options = recorded_options(config.semantic_source, workspace, semantic_name, text_encoder.name, crops)
    writer = open_writer(labels_dir, plans, text_encoder, image_encoder, options, summary)
    labelled = write_frames(data_dir, workspace, plans, writer, text_encoder, clip, summary, progress)
    writer.finalize(data_dir, labelled)
    summary["labelled"] = len(labelled)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


def summary_text(summary: Mapping[str, Any]) -> str:
    """A human-readable report of :func:`run_embed`'s summary (for the CLI)."""
    lines = [
        f"Labelled {summary['labelled']} of {summary['frames']} frames with {summary['masks']} masks and "
        f"{summary['relations']} relations ({summary['predicates']} distinct predicates) in {summary['labels_dir']}.",
        f"Semantic encoder: {summary['semantic_encoder']}; relation encoder: {summary['relation_encoder']}.",
        f"Relations files: {summary['relations_ok']} ok, {summary['relations_failed']} failed, "
        f"{summary['relations_missing']} missing (those frames have masks but no relations).",
    ]
    if summary["relations_failed"] or summary["relations_missing"]:
        lines.append("Run `relationfield relations` again to retry failed frames, then `relationfield embed`.")
    if summary["skipped_entries"]:
        lines.append(f"Skipped {summary['skipped_entries']} invalid relations-file entries (see the warnings).")
    if summary["unnamed_masks"]:
        lines.append(f"Dropped {summary['unnamed_masks']} masks without an object name (--semantic-source text).")
    if summary["empty"]:
        lines.append(f"{summary['empty']} frames had no mask to label and were left out.")
    if summary["cached"]:
        lines.append(f"Reused the cached CLIP embeddings of {summary['cached']} frames.")
    return "\n".join(lines)
