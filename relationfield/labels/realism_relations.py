"""Relations of the realistic label model: which relations a vision-language model states about a frame's
masks, and how it gets them wrong (predicates stay canonical here; :mod:`relationfield.labels.wording`
words them).

In this order, each step drawing from its own generator:

1. **candidates**: every ground-truth relation whose two objects have a mask in the frame; a split object's
   relation goes to one of its parts (uniformly), a merged object has no mask of its own and loses its;
2. **selection**: at most K ~ max(1, Poisson(``relations_per_frame``)) of them, drawn without replacement
   with weight ``sqrt(area_s * area_o) / (H * W) * exp(-gap / (CLOSENESS_SCALE * diagonal))`` (salient and
   close pairs first; ``gap`` is the distance between the masks' bounding boxes, 0 when they overlap);
   ``drop_rate`` (``--drop-rate``) then drops each with that probability;
3. **predicates**: a relation with several true predicates keeps one of them with ``single_predicate_rate``;
   with ``confusion_rate`` it is stated with one wrong predicate instead: with ``plausible_confusion_share``
   one of :data:`PLAUSIBLE_CONFUSIONS` of a true predicate (when one of them is not true), else any other
   vocabulary predicate; ``relation_noise`` (``--relation-noise``) swaps in any other predicate of the scene;
4. **hallucinations**: each stated relation is replaced with ``hallucination_rate`` by a made-up one between
   two masks of objects that have no ground-truth relation either way and are not stated yet (drawn with
   the same weights), its predicate drawn from the scene's predicates by how often the scene has them;
5. **flips**: each true stated relation is reversed with ``flip_rate``; when its reverse pair is stated too
   (converse and symmetric predicates), its predicates join that statement's instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from relationfield.labels.realism import RealismConfig
from relationfield.labels.realism_masks import FrameMasks

CLOSENESS_SCALE = 0.1
"""A gap of this fraction of the image diagonal between two masks divides a pair's weight by e."""

PLAUSIBLE_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "standing on": ("lying on", "supported by", "higher than"),
    "lying on": ("standing on", "supported by", "cover"),
    "supported by": ("standing on", "lying on"),
    "higher than": ("standing on", "lying on"),
    "lower than": ("smaller than", "behind"),
    "bigger than": ("smaller than", "higher than"),
    "smaller than": ("bigger than", "lower than"),
    "close by": ("left", "right", "front", "behind"),
    "left": ("right", "close by"),
    "right": ("left", "close by"),
    "front": ("behind", "close by"),
    "behind": ("front", "close by"),
    "inside": ("standing in", "lying in", "standing on"),
    "standing in": ("inside", "standing on"),
    "lying in": ("inside", "lying on"),
    "hanging on": ("attached to", "hanging in"),
    "hanging in": ("hanging on", "inside"),
    "attached to": ("hanging on", "connected to", "part of"),
    "connected to": ("attached to",),
    "leaning against": ("standing on", "attached to"),
    "part of": ("attached to", "belonging to"),
    "belonging to": ("part of",),
    "build in": ("attached to", "inside"),
    "cover": ("lying on",),
    "same as": ("same symmetry as", "close by"),
    "same symmetry as": ("same as",),
}
"""The wrong predicates a vision model plausibly says for each true one (near misses: the kind of support,
above and on top of, the comparatives' direction)."""


@dataclass
class Statement:
    """One relation as the simulated model states it; masks are 0-based indices into the frame's masks."""

    subject: int
    object: int
    predicates: tuple[str, ...]
    """The stated predicates (canonical spelling)."""
    true_predicates: tuple[str, ...] = ()
    """The ground truth of the pair before any flip (empty for a made-up relation)."""
    reduced: bool = False
    confused: bool = False
    hallucinated: bool = False
    flipped: bool = False


@dataclass
class RelationEvents:
    """What the steps did in one frame (``*_draws``: relations a step could have changed)."""

    candidates: int = 0
    limit: int = 0
    """K, the most relations the frame may state (0: no limit)."""
    stated: int = 0
    multi: int = 0
    reduced: int = 0
    confusion_draws: int = 0
    confused: int = 0
    plausible_possible: int = 0
    plausible: int = 0
    hallucination_draws: int = 0
    hallucinated: int = 0
    flip_draws: int = 0
    flipped: int = 0
    flip_merged: int = 0
    """Flips whose reverse pair was stated too (their predicates joined that statement's)."""

    def add(self, other: RelationEvents) -> None:
        """Add ``other``'s counts to these."""
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class SceneRelations:
    """What the steps need to know of the scene: its ground truth and the predicates to draw from."""

    relations: Mapping[tuple[int, int], tuple[str, ...]]
    vocabulary: Sequence[str]
    """Every predicate a confusion may draw (the evaluation vocabulary, without "none")."""
    relation_noise: float = 0.0
    drop_rate: float = 0.0
    predicates: list[str] = field(init=False)
    """The scene's predicates, sorted."""
    frequencies: np.ndarray = field(init=False)
    """How often each of :attr:`predicates` occurs in the scene, summing to 1."""
    related: set[tuple[int, int]] = field(init=False)
    """Every ordered object pair with a ground-truth relation in one direction or the other."""

    def __post_init__(self) -> None:
        counts: dict[str, int] = {}
        for predicates in self.relations.values():
            for predicate in predicates:
                counts[predicate] = counts.get(predicate, 0) + 1
        self.predicates = sorted(counts)
        total = max(sum(counts.values()), 1)
        self.frequencies = np.array([counts[p] / total for p in self.predicates], dtype=np.float64)
        self.related = {pair for s, o in self.relations for pair in ((s, o), (o, s))}


def pair_log_weights(frame: FrameMasks) -> np.ndarray:
    """``[n, n]`` log selection weight of every ordered mask pair (salience plus closeness)."""
    height, width = frame.segments.shape
    n = len(frame.masks)
    boxes = np.zeros((n, 4), dtype=np.float64)  # row start, row stop, column start, column stop
    for k, found in enumerate(ndimage.find_objects(frame.segments.astype(np.int64), max_label=n)):
        if found is not None:
            boxes[k] = (found[0].start, found[0].stop, found[1].start, found[1].stop)
    rows = np.maximum(0.0, np.maximum(boxes[None, :, 0] - boxes[:, None, 1], boxes[:, None, 0] - boxes[None, :, 1]))
    cols = np.maximum(0.0, np.maximum(boxes[None, :, 2] - boxes[:, None, 3], boxes[:, None, 2] - boxes[None, :, 3]))
    gap = np.hypot(rows, cols) / (CLOSENESS_SCALE * float(np.hypot(height, width)))
    areas = np.maximum(frame.areas.astype(np.float64), 1.0) / float(height * width)
    return 0.5 * (np.log(areas)[:, None] + np.log(areas)[None, :]) - gap


def _top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices drawn without replacement with probability proportional to the weights (Gumbel top-k)."""
    keys = log_weights + rng.gumbel(size=len(log_weights))
    return np.argsort(-keys, kind="stable")[:k]


def candidate_statements(frame: FrameMasks, scene: SceneRelations, rng: np.random.Generator) -> list[Statement]:
    """Step 1: the ground-truth relations of the frame's masks (a split object's on one of its parts)."""
    owners: dict[int, list[int]] = {}
    for index, mask in enumerate(frame.masks):
        owners.setdefault(mask.object_id, []).append(index)
    statements = []
    for (subject, obj), predicates in scene.relations.items():
        if subject in owners and obj in owners:
            ends = [
                parts[int(rng.integers(len(parts)))] if len(parts) > 1 else parts[0]
                for parts in (owners[subject], owners[obj])
            ]
            statements.append(Statement(ends[0], ends[1], tuple(predicates), tuple(predicates)))
    return statements


def select_statements(
    statements: list[Statement],
    weights: np.ndarray,
    config: RealismConfig,
    scene: SceneRelations,
    rng: np.random.Generator,
    events: RelationEvents,
) -> list[Statement]:
    """Step 2: at most K statements, salient and close pairs first, then ``drop_rate``."""
    events.candidates += len(statements)
    if config.relations_per_frame > 0 and statements:
        events.limit = max(1, int(rng.poisson(config.relations_per_frame)))
        pair_weights = np.array([weights[s.subject, s.object] for s in statements])
        statements = [statements[i] for i in sorted(_top_k(pair_weights, events.limit, rng))]
    if scene.drop_rate > 0:
        statements = [s for s, u in zip(statements, rng.random(len(statements))) if u >= scene.drop_rate]
    return statements


def _wrong_predicate(
    statement: Statement, config: RealismConfig, scene: SceneRelations, rng: np.random.Generator, events: RelationEvents
) -> str | None:
    """A wrong predicate for ``statement``: a plausible confusion of one of its predicates, or any other."""
    source = statement.predicates[int(rng.integers(len(statement.predicates)))]
    plausible = [p for p in PLAUSIBLE_CONFUSIONS.get(source, ()) if p not in statement.true_predicates]
    events.plausible_possible += int(bool(plausible))
    if plausible and rng.random() < config.plausible_confusion_share:
        events.plausible += 1
        return plausible[int(rng.integers(len(plausible)))]
    others = [p for p in scene.vocabulary if p not in statement.true_predicates]
    return others[int(rng.integers(len(others)))] if others else None


def state_predicates(
    statement: Statement, config: RealismConfig, scene: SceneRelations, rng: np.random.Generator, events: RelationEvents
) -> None:
    """Step 3 for one statement: fewer predicates, a confusion, or ``relation_noise``."""
    reduce, confuse, noise = rng.random(3)
    if len(statement.predicates) > 1:
        events.multi += 1
        if reduce < config.single_predicate_rate:
            statement.predicates = (statement.predicates[int(rng.integers(len(statement.predicates)))],)
            statement.reduced = True
            events.reduced += 1
    events.confusion_draws += 1
    if confuse < config.confusion_rate and (wrong := _wrong_predicate(statement, config, scene, rng, events)):
        statement.predicates, statement.confused = (wrong,), True
        events.confused += 1
    elif noise < scene.relation_noise:
        others = [p for p in scene.predicates if p not in statement.true_predicates]
        if others:
            statement.predicates = (others[int(rng.integers(len(others)))],)


def hallucinate(
    statements: list[Statement],
    frame: FrameMasks,
    weights: np.ndarray,
    config: RealismConfig,
    scene: SceneRelations,
    rng: np.random.Generator,
    events: RelationEvents,
) -> None:
    """Step 4: replace stated relations with made-up ones with ``hallucination_rate``."""
    objects = [mask.object_id for mask in frame.masks]
    free = {
        (a, b)
        for a in range(len(objects))
        for b in range(len(objects))
        if objects[a] != objects[b] and (objects[a], objects[b]) not in scene.related
    }
    free -= {(s.subject, s.object) for s in statements}
    for index in range(len(statements)):
        events.hallucination_draws += 1
        if rng.random() >= config.hallucination_rate or not free or not scene.predicates:
            continue
        pairs = sorted(free)
        a, b = pairs[int(_top_k(np.array([weights[p] for p in pairs]), 1, rng)[0])]
        predicate = scene.predicates[int(rng.choice(len(scene.predicates), p=scene.frequencies))]
        free.discard((a, b))
        statements[index] = Statement(a, b, (predicate,), hallucinated=True)
        events.hallucinated += 1


def flip(statements: list[Statement], rate: float, rng: np.random.Generator, events: RelationEvents) -> list[Statement]:
    """Step 5: reverse true statements with ``rate``; one whose reverse pair is stated too joins its
    predicates to that statement's (a pair is stated once)."""
    by_pair = {(s.subject, s.object): s for s in statements}
    kept = []
    for statement in statements:
        if not statement.hallucinated:
            events.flip_draws += 1
        if statement.hallucinated or rng.random() >= rate:
            kept.append(statement)
            continue
        events.flipped += 1
        del by_pair[(statement.subject, statement.object)]
        reverse = by_pair.get((statement.object, statement.subject))
        if reverse is not None:
            reverse.predicates = tuple(dict.fromkeys((*reverse.predicates, *statement.predicates)))
            events.flip_merged += 1
            continue
        statement.subject, statement.object = statement.object, statement.subject
        statement.flipped = True
        by_pair[(statement.subject, statement.object)] = statement
        kept.append(statement)
    return kept


def state_relations(
    frame: FrameMasks, scene: SceneRelations, config: RealismConfig, rngs: Mapping[str, np.random.Generator]
) -> tuple[list[Statement], RelationEvents]:
    """The relations stated about ``frame``, after every step of the module docstring.

    Args:
        rngs: one generator per step: ``"parts"``, ``"select"``, ``"predicates"``, ``"hallucinate"``, ``"flip"``.
    """
    events = RelationEvents()
    weights = pair_log_weights(frame)
    statements = candidate_statements(frame, scene, rngs["parts"])
    statements = select_statements(statements, weights, config, scene, rngs["select"], events)
    for statement in statements:
        state_predicates(statement, config, scene, rngs["predicates"], events)
    hallucinate(statements, frame, weights, config, scene, rngs["hallucinate"], events)
    statements = flip(statements, config.flip_rate, rngs["flip"], events)
    events.stated = len(statements)
    return statements, events
