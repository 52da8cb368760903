"""Mask corruptions of the realistic label model: what SAM makes of the objects of a frame.

From the ground-truth instance map, one mask per visible object, then in this order (each step draws from
its own generator, so that one rate changes no other step's draws):

1. **tiny masks missed**: a mask under ``tiny_area_fraction`` of the image is dropped with ``tiny_drop_rate``;
2. **merges**: a small object (its mask smaller than its support's) that is ``standing on``, ``lying on`` or
   ``supported by`` a non-structural object with a mask in the frame joins that mask with ``merge_rate``
   (the merged mask is labelled as the support: SAM's whole mask of a cup on a table);
3. **part splits**: the mask of a multi-part object (:data:`MULTI_PART_LABELS`) of at least
   :data:`MIN_SPLIT_PIXELS` pixels is cut in two with ``split_rate``, perpendicular to its principal axis
   or by a horizontal cut (half the time each), both parts keeping the object's label (the prompt asks the
   model to name the object a part belongs to);
4. **boundaries**: each mask is eroded or dilated (half the time each) by 1..``boundary_pixels`` pixels with
   ``boundary_rate`` (:mod:`scipy.ndimage`, 4-connected);
5. **the cap**: at most ``max_masks`` masks, the largest first (as ``relationfield masks`` keeps).

The masks are then rasterised with :func:`~relationfield.labels.segments.segments_from_masks`, as the
``masks`` stage rasterises SAM's (a nested mask wins the pixels it shares; pixels two masks dispute, such as a
dilated boundary over a neighbour's mask, stay unlabelled), and masks left without pixels are gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from relationfield.labels.realism import RealismConfig
from relationfield.labels.segments import segments_from_masks

STRUCTURAL_LABELS = frozenset({"floor", "wall", "ceiling"})
"""Labels of the room itself: never merged into, never merged."""
SUPPORT_PREDICATES = ("standing on", "lying on", "supported by")
"""Predicates that make the object the subject's support (what a merge joins it to)."""
MULTI_PART_LABELS = frozenset({"chair", "table", "desk", "sofa", "shelf", "lamp", "plant", "monitor", "picture", "tv"})
"""Labels of the synthetic models built from visibly different parts (seat and back, top and legs, pot and
leaves, frame and canvas, ...), the ones SAM may split."""
MIN_SPLIT_PIXELS = 32
"""Masks smaller than this are never split (each part keeps at least :data:`MIN_PART_PIXELS`)."""
MIN_PART_PIXELS = 4
_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(eq=False)
class SimMask:
    """One mask as the simulated segmenter gives it."""

    pixels: np.ndarray
    """bool ``[H, W]``."""
    object_id: int
    """The ground-truth object the mask is labelled as (the support, for a merged mask)."""
    members: tuple[int, ...]
    """Every object whose pixels the mask holds (more than one after a merge)."""
    part: int = 0
    """0 for a whole object, 1 and 2 for the parts of a split one."""
    boundary: int = 0
    """Pixels the boundary was moved: > 0 dilated, < 0 eroded."""

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.pixels))


@dataclass
class MaskEvents:
    """What the corruptions did to one frame (``*_candidates``: masks a step could have changed)."""

    tiny_candidates: int = 0
    tiny_dropped: int = 0
    merge_candidates: int = 0
    merged: int = 0
    split_candidates: int = 0
    split: int = 0
    boundary_candidates: int = 0
    boundary_edited: int = 0
    capped: int = 0

    def add(self, other: MaskEvents) -> None:
        """Add ``other``'s counts to these."""
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class FrameMasks:
    """A frame's corrupted masks, rasterised: local mask ``k`` is ``masks[k - 1]``."""

    segments: np.ndarray
    """``[H, W]`` segment map (0: no mask)."""
    masks: list[SimMask]
    """The masks that kept pixels, in order (their ``pixels`` before rasterisation)."""
    areas: np.ndarray
    """int64 ``[n]``: each mask's pixels in ``segments``."""
    events: MaskEvents = field(default_factory=MaskEvents)


def supports_of(relations: Mapping[tuple[int, int], tuple[str, ...]], labels: Mapping[int, str]) -> dict[int, int]:
    """Object id -> the non-structural object it stands, lies or is supported on (the first such pair)."""
    supports: dict[int, int] = {}
    for (subject, obj), predicates in relations.items():
        if any(p in SUPPORT_PREDICATES for p in predicates) and labels.get(obj) not in STRUCTURAL_LABELS:
            supports.setdefault(subject, obj)
    return supports


def drop_tiny(masks: list[SimMask], config: RealismConfig, rng: np.random.Generator, events: MaskEvents) -> None:
    """Step 1: drop tiny masks with ``tiny_drop_rate`` (one draw per tiny mask)."""
    if not masks:
        return
    limit = config.tiny_area_fraction * masks[0].pixels.size
    for mask in list(masks):
        if mask.area < limit:
            events.tiny_candidates += 1
            if rng.random() < config.tiny_drop_rate:
                masks.remove(mask)
                events.tiny_dropped += 1


def merge_into_supports(
    masks: list[SimMask], supports: Mapping[int, int], rate: float, rng: np.random.Generator, events: MaskEvents
) -> None:
    """Step 2: join small objects' masks to their support's, smallest first (one draw per candidate)."""
    for mask in sorted(masks, key=lambda m: (m.area, m.object_id)):
        holder = next((m for m in masks if supports.get(mask.object_id) in m.members and m is not mask), None)
        if holder is None or mask.area >= holder.area:
            continue
        events.merge_candidates += 1
        if rng.random() < rate:
            holder.pixels = holder.pixels | mask.pixels
            holder.members = (*holder.members, *mask.members)
            masks.remove(mask)
            events.merged += 1


def split_in_two(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut a mask in two: perpendicular to its principal axis or horizontally, at 35-65 % of its extent."""
    rows, cols = np.nonzero(pixels)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    if rng.random() < 0.5:
        centred = points - points.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        position = centred @ vectors[:, -1]  # along the principal axis
    else:
        position = points[:, 0]  # a horizontal cut: top part and bottom part
    cut = np.quantile(position, rng.uniform(0.35, 0.65))
    first = position <= cut
    if min(int(first.sum()), int((~first).sum())) < MIN_PART_PIXELS:
        return None
    parts = np.zeros((2, *pixels.shape), dtype=bool)
    parts[0, rows[first], cols[first]] = True
    parts[1, rows[~first], cols[~first]] = True
    return parts[0], parts[1]


def split_parts(
    masks: list[SimMask], labels: Mapping[int, str], rate: float, rng: np.random.Generator, events: MaskEvents
) -> list[SimMask]:
    """Step 3: split multi-part objects' masks with ``rate`` (one draw per candidate, then the cut's)."""
    result = []
    for mask in masks:
        candidate = labels.get(mask.object_id) in MULTI_PART_LABELS and mask.area >= MIN_SPLIT_PIXELS
        events.split_candidates += int(candidate)
        parts = split_in_two(mask.pixels, rng) if candidate and rng.random() < rate else None
        if parts is None:
            result.append(mask)
            continue
        events.split += 1
        result.extend(SimMask(part, mask.object_id, mask.members, index) for index, part in enumerate(parts, 1))
    return result


def edit_boundaries(masks: list[SimMask], config: RealismConfig, rng: np.random.Generator, events: MaskEvents) -> None:
    """Step 4: erode or dilate boundaries with ``boundary_rate`` (three draws per mask)."""
    for mask in masks:
        events.boundary_candidates += 1
        edit, grow, pixels = rng.random(), rng.random() < 0.5, int(rng.integers(1, config.boundary_pixels + 1))
        if edit >= config.boundary_rate:
            continue
        operation = ndimage.binary_dilation if grow else ndimage.binary_erosion
        mask.pixels = operation(mask.pixels, structure=_CROSS, iterations=pixels)
        mask.boundary = pixels if grow else -pixels
        events.boundary_edited += 1


def corrupt_masks(
    instance_map: np.ndarray,
    visible: list[int],
    labels: Mapping[int, str],
    supports: Mapping[int, int],
    config: RealismConfig,
    rngs: Mapping[str, np.random.Generator],
) -> FrameMasks:
    """A frame's masks after every step of the module docstring.

    Args:
        instance_map: ``[H, W]`` object ids (0: none).
        visible: the objects labelled in the frame, ascending.
        labels: object id -> label.
        supports: object id -> its support (:func:`supports_of`).
        config: the rates.
        rngs: one generator per step: ``"tiny"``, ``"merge"``, ``"split"``, ``"boundary"``.
    """
    events = MaskEvents()
    masks = [SimMask(instance_map == object_id, object_id, (object_id,)) for object_id in visible]
    drop_tiny(masks, config, rngs["tiny"], events)
    merge_into_supports(masks, supports, config.merge_rate, rngs["merge"], events)
    masks = split_parts(masks, labels, config.split_rate, rngs["split"], events)
    edit_boundaries(masks, config, rngs["boundary"], events)
    if config.max_masks and len(masks) > config.max_masks:
        largest = sorted(range(len(masks)), key=lambda i: (-masks[i].area, i))[: config.max_masks]
        events.capped = len(masks) - config.max_masks
        masks = [masks[i] for i in sorted(largest)]
    stack = np.stack([m.pixels for m in masks]) if masks else np.zeros((0, *instance_map.shape), dtype=bool)
    segments, kept = segments_from_masks(stack)
    areas = np.bincount(segments.reshape(-1).astype(np.int64), minlength=len(kept) + 1)[1:]
    return FrameMasks(segments, [masks[int(k)] for k in kept], areas.astype(np.int64), events)
