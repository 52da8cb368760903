"""Pairwise pixel sampling: rays come in pairs from the same image, each ray's partner is the other.

A batch is made of per-image blocks (several images per batch, many rays per image) so that both rays
of a pair see the same frame and their masks can be looked up in that frame's relation list. A
configurable fraction of pairs is drawn from labelled relations (a pixel of the subject mask with a
pixel of the object mask), another from "object pairs" (two different masks of the image, each drawn
uniformly among the image's masks, so that a subject meets the image's other objects, not only its
labelled partners: these teach the relation head that "standing on" depends on what it stands on),
and the rest are uniform pixel pairs, which are mostly "none" between large surfaces.

This module needs only torch and a label store (see :mod:`relationfield.labels`); the nerfstudio
adapter lives in :mod:`relationfield.datamanager`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class PairLabels(Protocol):
    """What the sampler needs from a label store."""

    segments: list[Tensor]
    mask_offsets: Tensor
    mask_boxes: Tensor
    relation_frame: Tensor
    relation_subject: Tensor
    relation_object: Tensor

    def relation_lookup(self, subject_global: Tensor, object_global: Tensor) -> Tensor: ...


PAIR_UNIFORM = 0
"""A pair of uniform pixels of one image."""
PAIR_RELATION = 1
"""A pixel of a labelled relation's subject mask and one of its object mask."""
PAIR_OBJECTS = 2
"""Pixels of two different masks of one image, each mask drawn uniformly: mostly unrelated objects."""


@dataclass(frozen=True)
class PairBatch:
    """Sampled rays; all tensors have one entry per ray."""

    image: Tensor
    """Position of the ray's image in the image batch."""
    y: Tensor
    x: Tensor
    partner: Tensor
    """Index (in this batch) of the ray's partner."""
    mask: Tensor
    """Global mask id of the pixel, -1 where unlabelled."""
    relation: Tensor
    """Relation index of (mask(ray) -> mask(partner)), -1 where no relation is labelled."""
    source: Tensor
    """How the pair was drawn: :data:`PAIR_UNIFORM`, :data:`PAIR_RELATION` or :data:`PAIR_OBJECTS`."""

    @property
    def from_relation(self) -> Tensor:
        """True where the pair was drawn from a labelled relation."""
        return self.source == PAIR_RELATION


def sample_in_masks(
    segments: Tensor, local_ids: Tensor, boxes: Tensor, generator: torch.Generator, candidates: int = 24
) -> tuple[Tensor, Tensor, Tensor]:
    """One random pixel inside each requested mask, by rejection sampling in the mask's bounding box.

    Args:
        segments: [H, W] segment-id map of the frame.
        local_ids: [n] local mask ids (1-based).
        boxes: [n, 4] inclusive (y0, x0, y1, x1) boxes of those masks.

    Returns:
        y, x and ``ok`` ([n] bool, False where no candidate hit the mask; y, x are then arbitrary).
    """
    n = local_ids.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0, dtype=torch.bool)
    boxes = boxes.long()
    y0, x0, y1, x1 = boxes.unbind(-1)
    ry = torch.rand(n, candidates, generator=generator)
    rx = torch.rand(n, candidates, generator=generator)
    ys = (y0[:, None] + (ry * (y1 - y0 + 1)[:, None]).long()).clamp(0, segments.shape[0] - 1)
    xs = (x0[:, None] + (rx * (x1 - x0 + 1)[:, None]).long()).clamp(0, segments.shape[1] - 1)
    hit = segments[ys, xs].long() == local_ids[:, None].long()
    ok = hit.any(dim=1)
    first = hit.to(torch.uint8).argmax(dim=1)
    rows = torch.arange(n)
    return ys[rows, first], xs[rows, first], ok


def _segment_to_image(seg_shape, height: int, width: int) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Map segment-map pixels to image pixels (label maps may be stored at another resolution)."""
    seg_h, seg_w = int(seg_shape[0]), int(seg_shape[1])

    def convert(y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        if (seg_h, seg_w) == (height, width):
            return y, x
        iy = ((y.double() + 0.5) * height / seg_h).long().clamp(0, height - 1)
        ix = ((x.double() + 0.5) * width / seg_w).long().clamp(0, width - 1)
        return iy, ix

    return convert


class PairSampler:
    """Draws pair batches from the frames of a label store.

    Args:
        labels: the label store (its frame index = the dataset's image index).
        images_per_batch: how many images one batch is spread over.
        relation_pair_fraction: share of pairs drawn from labelled relations (where the frame has any).
        object_pair_fraction: share of pairs joining two different masks of the image, each mask drawn
            uniformly (the rest are uniform pixel pairs).
        seed: seed of the sampler's own generator (sampling is reproducible for a given seed).
    """

    def __init__(
        self,
        labels: PairLabels,
        images_per_batch: int = 8,
        relation_pair_fraction: float = 0.5,
        seed: int = 0,
        object_pair_fraction: float = 0.0,
    ) -> None:
        if images_per_batch < 1:
            raise ValueError("images_per_batch must be >= 1")
        for name, value in (
            ("relation_pair_fraction", relation_pair_fraction),
            ("object_pair_fraction", object_pair_fraction),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if relation_pair_fraction + object_pair_fraction > 1.0 + 1e-9:
            raise ValueError("relation_pair_fraction + object_pair_fraction must be at most 1")
        self.labels = labels
        self.images_per_batch = images_per_batch
        self.relation_pair_fraction = relation_pair_fraction
        self.object_pair_fraction = object_pair_fraction
        self.generator = torch.Generator().manual_seed(seed)
        num_frames = len(labels.segments)
        order = torch.argsort(labels.relation_frame, stable=True)
        counts = torch.bincount(labels.relation_frame, minlength=num_frames)
        self._relations_sorted = order
        self._relation_starts = torch.cumsum(counts, 0) - counts
        self._relation_counts = counts

    def _randint(self, high: int, size: int) -> Tensor:
        return torch.randint(0, max(high, 1), (size,), generator=self.generator)

    def _frame_relations(self, frame: int) -> Tensor:
        start = int(self._relation_starts[frame])
        return self._relations_sorted[start : start + int(self._relation_counts[frame])]

    def _pairs_in_frame(self, frame: int, num_pairs: int, height: int, width: int) -> tuple[Tensor, ...]:
        """Pixels (ya, xa, yb, xb) and the source (``PAIR_*``) of ``num_pairs`` pairs of one frame."""
        ya, xa = self._randint(height, num_pairs), self._randint(width, num_pairs)
        yb, xb = self._randint(height, num_pairs), self._randint(width, num_pairs)
        source = torch.full((num_pairs,), PAIR_UNIFORM, dtype=torch.long)
        if frame >= len(self.labels.segments):
            return ya, xa, yb, xb, source
        draw = torch.rand(num_pairs, generator=self.generator)
        relations = self._frame_relations(frame)
        chosen = relations[self._randint(len(relations), num_pairs)] if len(relations) else None
        wants_relation = draw < self.relation_pair_fraction
        wants_objects = ~wants_relation & (draw < self.relation_pair_fraction + self.object_pair_fraction)
        if chosen is not None and bool(wants_relation.any()):
            subject, obj = self.labels.relation_subject[chosen], self.labels.relation_object[chosen]
            self._place(frame, wants_relation, subject, obj, (ya, xa, yb, xb), source, PAIR_RELATION, (height, width))
        first = int(self.labels.mask_offsets[frame])
        count = int(self.labels.mask_offsets[frame + 1]) - first
        if count >= 2 and bool(wants_objects.any()):
            # Two different masks of the frame, each uniform over masks: small objects are as likely as the
            # floor, and most pairs are unrelated objects of the same image (what teaches "none").
            subject = first + self._randint(count, num_pairs)
            obj = first + (subject - first + 1 + self._randint(count - 1, num_pairs)) % count
            self._place(frame, wants_objects, subject, obj, (ya, xa, yb, xb), source, PAIR_OBJECTS, (height, width))
        return ya, xa, yb, xb, source

    def _place(self, frame, wanted, subject, obj, pixels, source, kind: int, size: tuple[int, int]) -> None:
        """Put a pixel of mask ``subject[i]`` and one of ``obj[i]`` in every ``wanted`` slot (in place).

        Slots where rejection sampling missed a mask keep their uniform pixels and source.
        """
        slots = torch.nonzero(wanted, as_tuple=True)[0]
        subject, obj = subject[slots], obj[slots]
        segments = self.labels.segments[frame]
        offset = int(self.labels.mask_offsets[frame])
        sy, sx, s_ok = sample_in_masks(segments, subject - offset + 1, self.labels.mask_boxes[subject], self.generator)
        oy, ox, o_ok = sample_in_masks(segments, obj - offset + 1, self.labels.mask_boxes[obj], self.generator)
        ok = s_ok & o_ok
        slots = slots[ok]
        to_image = _segment_to_image(segments.shape, *size)
        ya, xa, yb, xb = pixels
        ya[slots], xa[slots] = to_image(sy[ok], sx[ok])
        yb[slots], xb[slots] = to_image(oy[ok], ox[ok])
        source[slots] = kind

    def mask_ids(
        self, frames: Tensor, y: Tensor, x: Tensor, image_sizes: dict[int, tuple[int, int]] | None = None
    ) -> Tensor:
        """Global mask id of each pixel (-1 where unlabelled).

        ``image_sizes`` maps a frame to the (height, width) that ``y``, ``x`` refer to, when the image is
        not at the label map's resolution.
        """
        image_sizes = image_sizes or {}
        out = torch.full_like(y, -1)
        for frame in torch.unique(frames).tolist():
            select = frames == frame
            if frame >= len(self.labels.segments):
                continue
            segments = self.labels.segments[frame]
            height, width = image_sizes.get(frame, segments.shape)
            sy = (y[select] * segments.shape[0]) // height
            sx = (x[select] * segments.shape[1]) // width
            local = segments[sy.clamp_max(segments.shape[0] - 1), sx.clamp_max(segments.shape[1] - 1)].long()
            out[select] = torch.where(local > 0, int(self.labels.mask_offsets[frame]) + local - 1, -1)
        return out

    def sample(self, frames: Sequence[int], sizes: Sequence[tuple[int, int]], num_rays: int) -> PairBatch:
        """Sample ``num_rays`` rays as pairs from a batch of images.

        Args:
            frames: label-store frame index of each image of the image batch.
            sizes: (height, width) of each image of the image batch.
            num_rays: any positive number; with an odd count the last ray is its own partner.
        """
        if num_rays < 1:
            raise ValueError("num_rays must be >= 1")
        num_images = len(frames)
        num_pairs = num_rays // 2
        blocks = max(1, min(self.images_per_batch, num_images, max(num_pairs, 1)))
        chosen = torch.randperm(num_images, generator=self.generator)[:blocks]
        block_of_pair = torch.arange(num_pairs) % blocks
        image = torch.empty(2 * num_pairs, dtype=torch.long)
        y = torch.empty(2 * num_pairs, dtype=torch.long)
        x = torch.empty(2 * num_pairs, dtype=torch.long)
        source = torch.full((2 * num_pairs,), PAIR_UNIFORM, dtype=torch.long)
        for block in range(blocks):
            pairs = torch.nonzero(block_of_pair == block, as_tuple=True)[0]
            if len(pairs) == 0:
                continue
            position = int(chosen[block])
            height, width = sizes[position]
            ya, xa, yb, xb, kind = self._pairs_in_frame(int(frames[position]), len(pairs), height, width)
            first, second = 2 * pairs, 2 * pairs + 1
            image[first] = image[second] = position
            y[first], x[first], y[second], x[second] = ya, xa, yb, xb
            source[first] = source[second] = kind
        partner = torch.arange(2 * num_pairs) ^ 1  # 0 <-> 1, 2 <-> 3, ...
        if num_rays % 2 == 1:
            position = int(chosen[int(self._randint(blocks, 1))])
            height, width = sizes[position]
            image = torch.cat([image, torch.tensor([position])])
            y = torch.cat([y, self._randint(height, 1)])
            x = torch.cat([x, self._randint(width, 1)])
            partner = torch.cat([partner, torch.tensor([num_rays - 1])])
            source = torch.cat([source, torch.tensor([PAIR_UNIFORM])])
        image_sizes = {int(f): (int(h), int(w)) for f, (h, w) in zip(frames, sizes)}
        frame_of_ray = torch.as_tensor([int(f) for f in frames], dtype=torch.long)[image]
        mask = self.mask_ids(frame_of_ray, y, x, image_sizes)
        relation = torch.full_like(mask, -1)
        both = (mask >= 0) & (mask[partner] >= 0)
        if both.any():
            relation[both] = self.labels.relation_lookup(mask[both], mask[partner][both])
        return PairBatch(image, y, x, partner, mask, relation, source)
