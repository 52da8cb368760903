"""Relations agreed across frames: what a pair of objects is taught in the frames that do not state it.

A vision model asked about a frame names a handful of its relations, so a pair it names in one frame goes
unnamed in the next, and an unnamed pair of masks is taught "none". Given which masks of different frames
show the same object (:mod:`relationfield.labels.identity`, grouped here into tracks), the statements
about a pair of tracks are pooled over frames:

* a pair stated in at least ``min_frames`` frames is a relation in every frame that shows both tracks and
  does not state it: its predicates are those stated in at least ``predicate_share`` of its stating frames
  (the most stated one when none is), its text embedding that of a statement with the most stated predicate;
* a pair stated in fewer frames is neither (with ``ignore_rare``): the frames that do not state it do not
  teach it "none" either (one statement is weak evidence, as a made-up relation is, but it is not evidence
  of no relation);
* a pair never stated stays "none", as before.

A frame's own statements are never changed, so labels that state every relation (``label-gt`` without
realism) come out unchanged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from relationfield.labels.identity import MIN_IOU, FrameGeometry, same_object
from relationfield.labels.store import LabelStore

MIN_FRAMES = 2
"""Default number of frames that must state a pair before the other frames are taught it."""

PREDICATE_SHARE = 0.25
"""Default least share of a pair's stating frames that must state a predicate for it to be taught elsewhere."""


@dataclass(frozen=True)
class Consensus:
    """Relations to add to a label store and pairs to leave out of its "none" (global mask ids)."""

    frame: np.ndarray
    """int64 ``[A]``: the frame of each added relation."""
    subject: np.ndarray
    """int64 ``[A]``."""
    object: np.ndarray
    """int64 ``[A]``."""
    predicates: np.ndarray
    """int64 ``[A, K]``: predicate ids, padded with -1."""
    source: np.ndarray
    """int64 ``[A]``: the stated relation whose text embedding each added relation takes."""
    ignored_subject: np.ndarray
    """int64 ``[I]``: pairs taught neither a relation nor "none"."""
    ignored_object: np.ndarray
    """int64 ``[I]``."""

    @property
    def num_added(self) -> int:
        """Number of added relations."""
        return len(self.frame)


def pool_relations(
    store: LabelStore,
    geometry: Callable[[int], FrameGeometry | None],
    min_frames: int = MIN_FRAMES,
    min_iou: float = MIN_IOU,
    predicate_share: float = PREDICATE_SHARE,
    ignore_rare: bool = True,
) -> tuple[LabelStore, Consensus]:
    """The store with its relations pooled over frames (see the module's rules), and what was changed.

    ``geometry(f)`` gives frame ``f``'s depth and camera (None: the frame takes no part).
    """
    segments = [seg.numpy() if bool(store.labelled[f]) else None for f, seg in enumerate(store.segments)]
    counts = (store.mask_offsets[1:] - store.mask_offsets[:-1]).tolist()
    track = tracks(same_object(segments, counts, geometry, min_iou=min_iou))
    consensus = relation_consensus(
        track,
        store.mask_frame.numpy(),
        store.relation_frame.numpy(),
        store.relation_subject.numpy(),
        store.relation_object.numpy(),
        store.relation_predicates.numpy(),
        min_frames,
        predicate_share,
        ignore_rare,
    )
    pooled = store.with_relations(
        *(torch.from_numpy(a) for a in (consensus.frame, consensus.subject, consensus.object)),
        torch.from_numpy(consensus.predicates),
        torch.from_numpy(consensus.source),
        ignored=(torch.from_numpy(consensus.ignored_subject), torch.from_numpy(consensus.ignored_object)),
    )
    return pooled, consensus


def tracks(matches: sparse.spmatrix) -> np.ndarray:
    """Track id of each mask: the connected components of the same-object graph."""
    return connected_components(matches, directed=False)[1].astype(np.int64)


def relation_consensus(
    track: np.ndarray,
    mask_frame: np.ndarray,
    relation_frame: np.ndarray,
    relation_subject: np.ndarray,
    relation_object: np.ndarray,
    relation_predicates: np.ndarray,
    min_frames: int = MIN_FRAMES,
    predicate_share: float = PREDICATE_SHARE,
    ignore_rare: bool = True,
) -> Consensus:
    """Pool the stated relations of each ordered pair of tracks over frames (see the module's rules).

    Args:
        track: ``[M]`` track id of each global mask.
        mask_frame: ``[M]`` frame of each global mask.
        relation_frame, relation_subject, relation_object: ``[R]`` the stated relations.
        relation_predicates: ``[R, K]`` their predicate ids, padded with -1.
        min_frames: frames that must state a pair for it to be taught elsewhere.
        predicate_share: least share of those frames that must state a predicate for it to be taught.
        ignore_rare: whether a pair stated in fewer than ``min_frames`` frames teaches nothing (instead of "none")
            in the frames that do not state it.
    """
    pooled = _pool(
        track, relation_frame, relation_subject, relation_object, relation_predicates, min_frames, predicate_share
    )
    stated = set(zip(relation_subject.tolist(), relation_object.tolist()))
    added: list[tuple[int, int, int, tuple[int, ...], int]] = []
    ignored: list[tuple[int, int]] = []
    for frame, masks in _masks_by_frame(mask_frame).items():
        for subject in masks:
            for obj in masks:
                key = (int(track[subject]), int(track[obj]))
                if subject == obj or key[0] == key[1] or key not in pooled or (subject, obj) in stated:
                    continue
                predicates, source = pooled[key]
                if predicates:
                    added.append((frame, subject, obj, predicates, source))
                elif ignore_rare:
                    ignored.append((subject, obj))
    width = max([len(p) for *_, p, _ in added] + [1])
    table = np.full((len(added), width), -1, dtype=np.int64)
    for row, (*_, predicates, _) in enumerate(added):
        table[row, : len(predicates)] = predicates
    column = np.array(added, dtype=object).reshape(len(added), 5) if added else np.zeros((0, 5), dtype=object)
    pairs = np.array(ignored, dtype=np.int64).reshape(-1, 2)
    return Consensus(
        frame=column[:, 0].astype(np.int64),
        subject=column[:, 1].astype(np.int64),
        object=column[:, 2].astype(np.int64),
        predicates=table,
        source=column[:, 4].astype(np.int64),
        ignored_subject=pairs[:, 0].copy(),
        ignored_object=pairs[:, 1].copy(),
    )


def _pool(
    track: np.ndarray,
    relation_frame: np.ndarray,
    relation_subject: np.ndarray,
    relation_object: np.ndarray,
    relation_predicates: np.ndarray,
    min_frames: int,
    predicate_share: float,
) -> dict[tuple[int, int], tuple[tuple[int, ...], int]]:
    """Per stated pair of tracks: the predicates to teach elsewhere (empty: ignore it) and the source relation."""
    statements: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (subject, obj) in enumerate(zip(relation_subject.tolist(), relation_object.tolist())):
        key = (int(track[subject]), int(track[obj]))
        if key[0] != key[1]:
            statements[key].append(index)
    pooled = {}
    for key, indices in statements.items():
        frames = {int(relation_frame[i]) for i in indices}
        if len(frames) < min_frames:
            pooled[key] = ((), indices[0])
            continue
        votes: Counter[int] = Counter()  # frames stating each predicate
        for frame in frames:
            stated = relation_predicates[[i for i in indices if relation_frame[i] == frame]]
            votes.update({int(p) for p in stated.ravel() if p >= 0})
        top = max(votes.values())
        kept = sorted(p for p, n in votes.items() if n >= predicate_share * len(frames)) or [
            min(p for p, n in votes.items() if n == top)
        ]
        best = max(kept, key=lambda p: (votes[p], -p))
        source = next(i for i in indices if best in relation_predicates[i].tolist())
        pooled[key] = (tuple(kept), source)
    return pooled


def _masks_by_frame(mask_frame: np.ndarray) -> dict[int, list[int]]:
    """The global masks of each frame, in order."""
    frames: dict[int, list[int]] = defaultdict(list)
    for mask, frame in enumerate(mask_frame.tolist()):
        frames[int(frame)].append(mask)
    return frames
