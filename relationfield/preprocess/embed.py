"""The ``embed`` stage: turn the workspace's masks and relations into the label store.

Inputs (see :mod:`relationfield.preprocess.workspace`): every frame of ``transforms.json`` that has
``masks/<stem>.npz`` is labelled; ``relations/<stem>.json`` adds object names and relations when its
status is ``ok`` (frames whose vision-model call failed, or that were never asked, keep their masks
and semantic embeddings but get no relations and no names).

Outputs: the label store (:mod:`relationfield.labels.format`, ``DATA/relationfield`` by default),
written with :class:`~relationfield.labels.writer.LabelWriter` exactly as ``label-gt`` writes it:

* **semantic embeddings** (``--semantic-source clip``, the default): each mask is cut out of its
  image (:func:`mask_crops`: the mask's bounding box plus a margin, the background outside the mask
  greyed or blurred, padded to a square) at several scales; the CLIP image embeddings of the crops
  are averaged and renormalised. The manifest's semantic encoder is the CLIP encoder's name
  (``open_clip:ARCH/PRETRAINED``), so queries are encoded with the CLIP text tower of the same model.
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
by the image hash, the masks, the encoder name and the crop settings, so a re-run (after an
interruption, or with another text encoder) only embeds frames that changed. A re-run rewrites the
same store.

Typical use::

    summary = run_embed(EmbedConfig(data=Path("capture")))
    print(summary_text(summary))
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from relationfield.devices import default_device
from relationfield.encoders import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    JINA_TEXT_ENCODER,
    ImageEncoder,
    TextEncoder,
    clip_encoder_name,
    load_image_encoder,
    load_text_encoder,
)
from relationfield.errors import UserError
from relationfield.images import image_size, load_rgb
from relationfield.labels.format import (
    MAX_MASKS_PER_FRAME,
    default_labels_dir,
    file_sha256,
    mask_boxes,
    normalize_frame_name,
    preview_names,
    save_npz_atomic,
)
from relationfield.labels.writer import LabelWriter
from relationfield.preprocess.relation_jobs import segments_hash
from relationfield.preprocess.workspace import (
    MASKS_DIR,
    capture_frames,
    default_workspace,
    frame_stem,
    masks_path,
    read_json,
    relations_path,
)
from relationfield.progress import item_progress
from relationfield.vocab import NONE_PREDICATE

logger = logging.getLogger(__name__)

SemanticSource = Literal["clip", "text"]
CropBackground = Literal["grey", "blur"]

#: Workspace folder of the per-frame CLIP embedding cache.
EMBEDDINGS_DIR = "embeddings"
DEFAULT_CROP_SCALES: tuple[float, ...] = (1.0, 1.5, 2.0)
DEFAULT_CROP_MARGIN = 0.15
#: Colour outside the mask in a crop: CLIP's mean pixel, which its normalisation maps to about zero.
CROP_GREY: tuple[int, int, int] = (122, 116, 104)
#: Gaussian blur radius of the ``blur`` background, as a fraction of the image's longer side.
BLUR_RADIUS_FRACTION = 0.03
_CACHE_VERSION = 1


@dataclass
class EmbedConfig:
    """Options of the ``embed`` stage."""

    data: Path
    """The nerfstudio capture (the directory holding transforms.json)."""
    text_encoder: str = JINA_TEXT_ENCODER
    """Text encoder of the predicates (and of object names with --semantic-source text): jinaai/jina-embeddings-v3,
    all-MiniLM-L6-v2 (offline), or any sentence-transformers model name or local path."""
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


@dataclass(frozen=True)
class FrameRelations:
    """What one frame's relations file contributes.

    Attributes:
        status: ``"ok"``, ``"failed"`` (the vision-model call failed) or ``"missing"`` (no file).
        objects: local mask id -> normalised object name.
        relations: ``(subject, object, predicates)`` with 1-based local mask ids, each pair once.
        problems: why entries of the file were skipped.
    """

    status: str
    objects: dict[int, str] = field(default_factory=dict)
    relations: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _FramePlan:
    """A frame to label, as found by the scan of the workspace."""

    name: str
    image_hash: str
    masks_hash: str
    num_masks: int
    relations: FrameRelations


# ------------------------------------------------------------------------------------- helpers


def embeddings_path(workspace: Path, name: str) -> Path:
    """Where the CLIP embedding cache of the image ``name`` lives."""
    return Path(workspace) / EMBEDDINGS_DIR / f"{frame_stem(name)}.npz"


def normalize_text(text: str) -> str:
    """A predicate or object name as embedded: lowercased, whitespace collapsed."""
    return " ".join(str(text).split()).lower()


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


def read_masks_file(path: Path) -> tuple[str, str, np.ndarray, int]:
    """``(name, image_hash, segments, number of masks)`` of a masks file.

    The number of masks is the length of ``scores`` (the highest segment id when it is absent).

    Raises:
        UserError: the file is unreadable or malformed.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            name, image_hash = str(data["name"][()]), str(data["image_hash"][()])
            segments = data["segments"]
            num_masks = int(data["scores"].reshape(-1).shape[0]) if "scores" in data.files else -1
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise UserError(f"Cannot read the masks file {path}: {error}; run `relationfield masks` again.") from None
    if segments.ndim != 2 or not np.issubdtype(segments.dtype, np.integer) or segments.size == 0:
        raise UserError(f"The masks file {path} is malformed: segments must be a 2D integer image.")
    top = int(segments.max())
    if num_masks < 0:
        num_masks = top
    if int(segments.min()) < 0 or top > num_masks or num_masks > MAX_MASKS_PER_FRAME:
        raise UserError(
            f"The masks file {path} is malformed: its segments hold ids outside 0..{num_masks} "
            f"(at most {MAX_MASKS_PER_FRAME} masks)."
        )
    return name, image_hash, segments, num_masks


def _as_tag(value: Any) -> int | None:
    """A mask tag given as an int or a digit string, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _predicate_list(value: Any) -> list[str]:
    """The normalised predicates of a relation entry (``none`` and empty ones removed)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    texts = [normalize_text(item) for item in items if isinstance(item, str)]
    return list(dict.fromkeys(text for text in texts if text and text != NONE_PREDICATE))


def _parse_objects(objects: Any, num_masks: int, problems: list[str]) -> dict[int, str]:
    """Tag -> name of a relations file's ``objects`` (bad entries go to ``problems``)."""
    if not isinstance(objects, Mapping):
        if objects not in (None, {}):
            problems.append("'objects' is not a mapping")
        return {}
    names: dict[int, str] = {}
    for key, value in objects.items():
        tag = _as_tag(key)
        if tag is None or not 1 <= tag <= num_masks:
            problems.append(f"object tag {key!r} is not a mask of the masks file")
        elif isinstance(value, str) and normalize_text(value):
            names[tag] = normalize_text(value)
    return names


def _parse_relation_entries(
    entries: Any, num_masks: int, problems: list[str]
) -> list[tuple[int, int, tuple[str, ...]]]:
    """The valid relations of a relations file's ``relations`` (duplicates merged)."""
    if not isinstance(entries, list):
        if entries is not None:
            problems.append("'relations' is not a list")
        return []
    merged: dict[tuple[int, int], list[str]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            problems.append(f"relation {entry!r} is not an object")
            continue
        subject, obj = _as_tag(entry.get("subject")), _as_tag(entry.get("object"))
        predicates = _predicate_list(entry.get("predicates", entry.get("predicate")))
        if subject is None or obj is None:
            problems.append(f"relation {dict(entry)!r} lacks integer subject/object tags")
        elif not (1 <= subject <= num_masks and 1 <= obj <= num_masks):
            problems.append(f"relation ({subject}, {obj}) refers to a mask absent from the masks file")
        elif subject == obj:
            problems.append(f"relation ({subject}, {obj}) relates a mask to itself")
        elif not predicates:
            problems.append(f"relation ({subject}, {obj}) has no predicate")
        else:
            known = merged.setdefault((subject, obj), [])
            known.extend(p for p in predicates if p not in known)
    return [(subject, obj, tuple(predicates)) for (subject, obj), predicates in merged.items()]


def parse_relations(record: Mapping[str, Any], num_masks: int) -> FrameRelations:
    """What an ``ok`` relations record contributes to a frame with ``num_masks`` masks.

    Failed records (``status != "ok"``) contribute nothing. Object names and predicates are
    normalised (:func:`normalize_text`); entries naming masks outside ``1..num_masks``, relating a
    mask to itself or without predicates are skipped and described in ``problems``.
    """
    if record.get("status") != "ok":
        return FrameRelations(status="failed")
    problems: list[str] = []
    objects = _parse_objects(record.get("objects"), num_masks, problems)
    relations = _parse_relation_entries(record.get("relations"), num_masks, problems)
    return FrameRelations(status="ok", objects=objects, relations=relations, problems=problems)


# ---------------------------------------------------------------------------------------- crops


def crop_backdrop(image: np.ndarray, background: str) -> np.ndarray | None:
    """The pixels shown outside masks: the blurred image for ``blur``, ``None`` (flat grey) otherwise."""
    if background != "blur":
        return None
    from PIL import Image, ImageFilter

    radius = max(2.0, BLUR_RADIUS_FRACTION * max(image.shape[:2]))
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)


def square_mask_crop(
    image: np.ndarray,
    segments: np.ndarray,
    mask_id: int,
    box: Sequence[int],
    *,
    size: int,
    scale: float = 1.0,
    margin: float = DEFAULT_CROP_MARGIN,
    backdrop: np.ndarray | None = None,
) -> np.ndarray:
    """One ``uint8 [size, size, 3]`` crop of mask ``mask_id``.

    The square is centred on the mask's bounding box ``box`` (inclusive ``y0, x0, y1, x1``); its side
    is the box's longer side times ``(1 + 2 * margin) * scale``. Pixels outside the mask show
    ``backdrop`` (or :data:`CROP_GREY` when it is ``None``); the parts of the square beyond the image
    are grey. Only the part of the square inside the image is resized, so large squares cost no more
    than the image itself.
    """
    height, width = segments.shape
    y0, x0, y1, x1 = (int(v) for v in box)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = CROP_GREY
    if y0 < 0:
        return canvas
    side = max(1, int(round(max(y1 - y0 + 1, x1 - x0 + 1) * (1.0 + 2.0 * margin) * scale)))
    top = int(np.floor((y0 + y1 + 1) / 2.0 - side / 2.0))
    left = int(np.floor((x0 + x1 + 1) / 2.0 - side / 2.0))
    in_top, in_left = max(top, 0), max(left, 0)
    in_bottom, in_right = min(top + side, height), min(left + side, width)
    if in_bottom <= in_top or in_right <= in_left:
        return canvas
    inside = segments[in_top:in_bottom, in_left:in_right] == mask_id
    fill = backdrop[in_top:in_bottom, in_left:in_right] if backdrop is not None else np.array(CROP_GREY, np.uint8)
    region = np.where(inside[..., None], image[in_top:in_bottom, in_left:in_right], fill).astype(np.uint8)
    factor = size / side
    dst_top = min(size - 1, int(round((in_top - top) * factor)))
    dst_left = min(size - 1, int(round((in_left - left) * factor)))
    dst_height = max(1, min(size, int(round((in_bottom - top) * factor))) - dst_top)
    dst_width = max(1, min(size, int(round((in_right - left) * factor))) - dst_left)
    from PIL import Image

    resized = Image.fromarray(region).resize((dst_width, dst_height), Image.Resampling.BICUBIC)
    canvas[dst_top : dst_top + dst_height, dst_left : dst_left + dst_width] = np.asarray(resized)
    return canvas


def mask_crops(
    image: np.ndarray,
    segments: np.ndarray,
    mask_ids: Sequence[int],
    *,
    size: int,
    scales: Sequence[float] = DEFAULT_CROP_SCALES,
    margin: float = DEFAULT_CROP_MARGIN,
    background: str = "grey",
    boxes: np.ndarray | None = None,
    backdrop: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Square crops of the masks ``mask_ids``: for each mask, one crop per scale (mask-major order).

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        segments: ``[H, W]`` segment map (0 = no mask, ``k`` = mask ``k``).
        mask_ids: 1-based mask ids.
        size: side of the returned crops (the image encoder's input size).
        scales: crop sizes relative to the padded bounding box.
        margin: margin on each side of the bounding box, as a fraction of its longer side.
        background: ``grey`` or ``blur`` (see :func:`crop_backdrop`).
        boxes: precomputed :func:`mask_boxes` of all masks (computed when omitted).
        backdrop: precomputed :func:`crop_backdrop` (computed when omitted).
    """
    if boxes is None:
        boxes = mask_boxes(segments, max([int(k) for k in mask_ids], default=0))
    if backdrop is None:
        backdrop = crop_backdrop(image, background)
    return [
        square_mask_crop(
            image, segments, int(k), boxes[int(k) - 1], size=size, scale=float(s), margin=margin, backdrop=backdrop
        )
        for k in mask_ids
        for s in scales
    ]


def embed_masks(
    encoder: ImageEncoder,
    image: np.ndarray,
    segments: np.ndarray,
    num_masks: int,
    *,
    scales: Sequence[float] = DEFAULT_CROP_SCALES,
    margin: float = DEFAULT_CROP_MARGIN,
    background: str = "grey",
    batch_size: int = 64,
) -> np.ndarray:
    """CLIP embeddings of masks ``1..num_masks``: the renormalised mean over the crops' scales.

    Crops are made and encoded a batch at a time (``batch_size`` crops, whole masks per batch).

    Returns:
        float32 ``[num_masks, encoder.dim]`` with unit-norm rows.
    """
    if num_masks == 0:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    boxes = mask_boxes(segments, num_masks)
    backdrop = crop_backdrop(image, background)
    per_batch = max(1, batch_size // len(scales))
    rows: list[np.ndarray] = []
    for start in range(1, num_masks + 1, per_batch):
        ids = list(range(start, min(num_masks, start + per_batch - 1) + 1))
        crops = mask_crops(
            image, segments, ids, size=encoder.image_size, scales=scales, margin=margin, boxes=boxes, backdrop=backdrop
        )
        features = encoder.encode_images(crops).numpy().astype(np.float32)
        rows.append(features.reshape(len(ids), len(scales), -1).mean(axis=1))
    mean = np.concatenate(rows)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ------------------------------------------------------------------------------------- the scan


def _scan_relations(
    workspace: Path, name: str, image_hash: str, masks_hash: str, num_masks: int, stale: list[str]
) -> FrameRelations:
    """The relations file of a frame, or a record of why it contributes nothing (stale -> ``stale``)."""
    path = relations_path(workspace, name)
    if not path.is_file():
        return FrameRelations(status="missing")
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:
        raise UserError(
            f"Cannot read the relations file {path}: {error}. Delete it and run `relationfield relations` again."
        ) from None
    recorded_name = normalize_frame_name(str(record.get("name", name)))
    same_masks = record.get("masks_hash", masks_hash) == masks_hash
    if recorded_name != name or record.get("image_hash") != image_hash or not same_masks:
        stale.append(name)
        return FrameRelations(status="stale")
    return parse_relations(record, num_masks)


def _scan_workspace(data_dir: Path, workspace: Path, summary: dict[str, Any]) -> list[_FramePlan]:
    """The frames to label (every capture frame with a masks file), after the staleness checks.

    Raises:
        UserError: no masks at all, a missing image, unreadable files, or stale masks / relations.
    """
    plans: list[_FramePlan] = []
    stale_masks: list[str] = []
    stale_relations: list[str] = []
    frames = capture_frames(data_dir)
    summary["frames"] = len(frames)
    for frame in frames:
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            continue
        name = normalize_frame_name(file_path)
        path = masks_path(workspace, name)
        if not path.is_file():
            continue
        image_path = data_dir / name
        if not image_path.is_file():
            raise UserError(f"The image {image_path} of {path} does not exist; the capture is incomplete.")
        masks_name, masks_image_hash, segments, num_masks = read_masks_file(path)
        image_hash = file_sha256(image_path)
        if normalize_frame_name(masks_name) != name or masks_image_hash != image_hash:
            stale_masks.append(name)
            continue
        digest = segments_hash(segments)
        relations = _scan_relations(workspace, name, image_hash, digest, num_masks, stale_relations)
        if relations.problems:
            logger.warning(
                "Skipped %d entries of %s: %s",
                len(relations.problems),
                relations_path(workspace, name),
                "; ".join(relations.problems[:5]),
            )
        plans.append(_FramePlan(name, image_hash, digest, num_masks, relations))
    if not plans and not stale_masks:
        raise UserError(
            f"No frame of {data_dir} has masks in {Path(workspace) / MASKS_DIR}: run `relationfield masks` first."
        )
    _raise_if_stale(stale_masks, stale_relations)
    return plans


def _raise_if_stale(stale_masks: Sequence[str], stale_relations: Sequence[str]) -> None:
    """Stop with the commands to re-run when inputs are stale."""
    lines = []
    if stale_masks:
        lines.append(
            f"{len(stale_masks)} frame(s) changed since they were segmented ({preview_names(list(stale_masks))}): "
            "run `relationfield masks` again (it re-segments changed images), then `relationfield relations`."
        )
    if stale_relations:
        lines.append(
            f"{len(stale_relations)} frame(s) were re-segmented or changed since the vision model described them "
            f"({preview_names(list(stale_relations))}): run `relationfield relations` again (it asks about them "
            "again), or delete their relations/ files to label them without relations."
        )
    if lines:
        raise UserError("Stale preprocessing inputs; the label store was not changed.\n" + "\n".join(lines))


# --------------------------------------------------------------------------------- the writing


def _cache_key(plan: _FramePlan, encoder_name: str, config: EmbedConfig) -> str:
    """The cache key of a frame's CLIP embeddings (everything they depend on)."""
    return json.dumps(
        {
            "version": _CACHE_VERSION,
            "encoder": encoder_name,
            "image_hash": plan.image_hash,
            "masks_hash": plan.masks_hash,
            "scales": [float(s) for s in config.crop_scales],
            "margin": float(config.crop_margin),
            "background": config.crop_background,
        },
        sort_keys=True,
    )


def _read_cache(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Cached embeddings of ``shape`` under ``key``, or ``None`` (absent, other key, unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"][()]) != key:
                return None
            embeddings = np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return embeddings if embeddings.shape == shape and np.all(np.isfinite(embeddings)) else None


def _clip_embeddings(
    plan: _FramePlan,
    image: np.ndarray,
    segments: np.ndarray,
    encoder: ImageEncoder,
    config: EmbedConfig,
    workspace: Path,
    summary: dict[str, Any],
) -> np.ndarray:
    """A frame's CLIP mask embeddings, from the cache when it is current."""
    path = embeddings_path(workspace, plan.name)
    key = _cache_key(plan, encoder.name, config)
    if not config.overwrite:
        cached = _read_cache(path, key, (plan.num_masks, encoder.dim))
        if cached is not None:
            summary["cached"] += 1
            return cached
    embeddings = embed_masks(
        encoder,
        image,
        segments,
        plan.num_masks,
        scales=config.crop_scales,
        margin=config.crop_margin,
        background=config.crop_background,
        batch_size=config.batch_size,
    )
    save_npz_atomic(path, {"key": np.array(key), "embeddings": embeddings})
    return embeddings


def _keep_named(
    segments: np.ndarray,
    labels: list[str],
    relations: list[tuple[int, int, tuple[str, ...]]],
) -> tuple[np.ndarray, list[str], list[tuple[int, int, tuple[str, ...]]]]:
    """Drop unnamed masks: their pixels become 0, the others get compact ids, relations follow."""
    kept = [k for k, label in enumerate(labels, start=1) if label]
    lut = np.zeros(len(labels) + 1, dtype=np.int64)
    lut[kept] = np.arange(1, len(kept) + 1)
    remapped = [(int(lut[s]), int(lut[o]), p) for s, o, p in relations if lut[s] and lut[o]]
    return lut[segments], [labels[k - 1] for k in kept], remapped


def _frame_image(data_dir: Path, plan: _FramePlan, segments: np.ndarray, need_pixels: bool) -> np.ndarray | None:
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


def _encode_table(encoder: TextEncoder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Text -> float32 embedding, each distinct text encoded once."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return {}
    return dict(zip(unique, encoder.encode(unique).numpy().astype(np.float32)))


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


def _iter_frames(plans: Sequence[_FramePlan], workspace: Path) -> Iterator[tuple[_FramePlan, np.ndarray]]:
    """Each plan with its segment map (read again: the scan does not keep them in memory)."""
    for plan in plans:
        _, _, segments, _ = read_masks_file(masks_path(workspace, plan.name))
        yield plan, segments


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
    plans = _scan_workspace(data_dir, workspace, summary)
    for plan in plans:
        summary[f"relations_{plan.relations.status}"] += 1
        summary["skipped_entries"] += len(plan.relations.problems)
    _check_something_to_label(plans, config.semantic_source)

    device = config.device or default_device()
    text_encoder = load_text_encoder(config.text_encoder, device)
    image_encoder: ImageEncoder | None = None
    if config.semantic_source == "clip":
        image_encoder = load_image_encoder(clip_encoder_name(config.clip_model, config.clip_pretrained), device)
    writer = _open_writer(config, labels_dir, workspace, plans, text_encoder, image_encoder, summary)
    labelled = _write_frames(config, data_dir, workspace, plans, writer, text_encoder, image_encoder, summary, progress)
    writer.finalize(data_dir, labelled)
    summary["labelled"] = len(labelled)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


def _check_something_to_label(plans: Sequence[_FramePlan], semantic_source: str) -> None:
    """Raise :class:`UserError` when no frame would keep a mask (checked before the store is touched)."""
    if semantic_source == "clip":
        if not any(plan.num_masks for plan in plans):
            raise UserError(
                "The masks files hold no masks; run `relationfield masks` again (e.g. with lower thresholds)."
            )
    elif not any(plan.relations.objects for plan in plans):
        raise UserError(
            "No mask has an object name, which --semantic-source text needs: run `relationfield relations` "
            "first (or retry its failed frames), or use --semantic-source clip."
        )


def _open_writer(
    config: EmbedConfig,
    labels_dir: Path,
    workspace: Path,
    plans: Sequence[_FramePlan],
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None,
    summary: dict[str, Any],
) -> LabelWriter:
    """A :class:`LabelWriter` for the store, its predicate table set from the relations of ``plans``."""
    semantic = image_encoder if image_encoder is not None else text_encoder
    predicates = sorted({p for plan in plans for _, _, preds in plan.relations.relations for p in preds})
    table = _encode_table(text_encoder, [*predicates, NONE_PREDICATE])
    writer = LabelWriter(
        labels_dir,
        semantic_encoder=semantic.name,
        semantic_dim=semantic.dim,
        relation_encoder=text_encoder.name,
        relation_dim=text_encoder.dim,
        producer="embed",
        options=_recorded_options(config, workspace, semantic.name, text_encoder.name),
    )
    writer.set_predicates(
        predicates,
        np.stack([table[p] for p in predicates]) if predicates else np.zeros((0, text_encoder.dim), np.float32),
        table[NONE_PREDICATE],
    )
    summary.update(semantic_encoder=semantic.name, relation_encoder=text_encoder.name, predicates=len(predicates))
    return writer


def _write_frames(
    config: EmbedConfig,
    data_dir: Path,
    workspace: Path,
    plans: Sequence[_FramePlan],
    writer: LabelWriter,
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None,
    summary: dict[str, Any],
    progress: bool,
) -> list[str]:
    """Embed and write every planned frame; returns the names of the frames written."""
    names: dict[str, np.ndarray] = {}
    if image_encoder is None:
        names = _encode_table(text_encoder, sorted({n for plan in plans for n in plan.relations.objects.values()}))
    labelled: list[str] = []
    bar, advance = item_progress(progress, len(plans), "Embedding")
    with bar:
        for plan, segments in _iter_frames(plans, workspace):
            image = _frame_image(data_dir, plan, segments, need_pixels=image_encoder is not None)
            labels = [plan.relations.objects.get(k, "") for k in range(1, plan.num_masks + 1)]
            relations = list(plan.relations.relations)
            if image_encoder is not None:
                embeddings = _clip_embeddings(plan, image, segments, image_encoder, config, workspace, summary)
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


def _recorded_options(config: EmbedConfig, workspace: Path, semantic_name: str, text_name: str) -> dict[str, Any]:
    """The options recorded in the manifest (what the embeddings depend on; no secrets exist here)."""
    options: dict[str, Any] = {
        "semantic_source": config.semantic_source,
        "semantic_encoder": semantic_name,
        "text_encoder": text_name,
        "workspace": str(workspace),
    }
    if config.semantic_source == "clip":
        options.update(
            crop_scales=[float(s) for s in config.crop_scales],
            crop_margin=float(config.crop_margin),
            crop_background=config.crop_background,
        )
    return options


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
