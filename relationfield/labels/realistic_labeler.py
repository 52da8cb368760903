"""The realistic label model applied frame by frame (``label-gt --realism typical|hard``): masks, stated
relations and their wording, then the label store written from them.

Frame ``i`` draws every step from its own generator, ``default_rng([seed, i, 1, step])`` (the steps of
:data:`STEPS`), so that the same seed gives the same store and a rate changes only its own step's draws.
The predicate table holds exactly the wordings the frames use and the mask embeddings are the text
embeddings of the names the frames give (synonyms included), as ``embed --semantic-source text`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from relationfield.labels.realism import RealismConfig
from relationfield.labels.realism_masks import MaskEvents, corrupt_masks, supports_of
from relationfield.labels.realism_relations import RelationEvents, SceneRelations, Statement, state_relations
from relationfield.labels.wording import WordingTable, choose_wording, load_wording_table
from relationfield.labels.writer import LabelWriter
from relationfield.vocab import NONE_PREDICATE, predicate_vocab

if TYPE_CHECKING:
    from relationfield.encoders import TextEncoder

STEPS = ("tiny", "merge", "split", "boundary", "parts", "select", "predicates", "hallucinate", "flip", "names", "words")
"""The generators of a frame, one per step (their order fixes their seeds)."""


@dataclass
class FramePlan:
    """The labels of one frame, ready for :meth:`LabelWriter.write_frame`."""

    name: str
    segments: np.ndarray
    """``[H, W]`` segment map, local mask ``k`` = ``objects[k - 1]``."""
    names: list[str]
    """What each mask is called (a synonym or the label)."""
    objects: list[int]
    """The ground-truth object each mask is labelled as."""
    relations: list[tuple[int, int, tuple[str, ...]]]
    """``(subject, object, wordings)`` with 1-based local mask ids."""
    statements: list[Statement]
    """The relations before wording, with what went wrong with each."""
    mask_events: MaskEvents
    relation_events: RelationEvents


@dataclass
class RealisticLabeler:
    """Plans the frames of a capture under the realistic label model, then writes them."""

    labels: Mapping[int, str]
    scene: SceneRelations
    config: RealismConfig
    seed: int
    min_mask_pixels: int
    wording: WordingTable = field(default_factory=load_wording_table)
    plans: list[FramePlan] = field(default_factory=list)
    unknown_ids: set[int] = field(default_factory=set)
    """Instance ids seen in the maps that the scene graph does not list."""

    @classmethod
    def start(
        cls,
        labels: Mapping[int, str],
        relations: Mapping[tuple[int, int], tuple[str, ...]],
        config: RealismConfig,
        seed: int,
        *,
        min_mask_pixels: int,
        relation_noise: float = 0.0,
        drop_rate: float = 0.0,
    ) -> RealisticLabeler:
        """A labeler of a scene: object labels and ground-truth relations (pair -> predicates)."""
        scene = SceneRelations(relations, predicate_vocab(), relation_noise, drop_rate)
        return cls(dict(labels), scene, config, int(seed), int(min_mask_pixels))

    def plan(self, index: int, name: str, instance_map: np.ndarray) -> FramePlan:
        """The labels of frame ``index`` (image ``name``) from its instance map."""
        counts = np.bincount(instance_map.reshape(-1))
        visible = [i for i in sorted(self.labels) if i < len(counts) and counts[i] >= self.min_mask_pixels]
        self.unknown_ids.update(int(i) for i in np.flatnonzero(counts[1:]) + 1 if int(i) not in self.labels)
        rngs = {step: np.random.default_rng([self.seed, index, 1, k]) for k, step in enumerate(STEPS)}
        supports = supports_of(self.scene.relations, self.labels)
        frame = corrupt_masks(instance_map, visible, self.labels, supports, self.config, rngs)
        statements, events = state_relations(frame, self.scene, self.config, rngs)
        objects = [mask.object_id for mask in frame.masks]
        names = [
            choose_wording(self.wording.object_names(self.labels[i]), self.config.synonym_rate, rngs["names"])
            for i in objects
        ]
        relations = []
        for statement in statements:
            wordings = (
                choose_wording(self.wording.predicate_wordings(p), self.config.paraphrase_rate, rngs["words"])
                for p in statement.predicates
            )
            relations.append((statement.subject + 1, statement.object + 1, tuple(dict.fromkeys(wordings))))
        return FramePlan(name, frame.segments, names, objects, relations, statements, frame.events, events)

    def label(self, index: int, name: str, instance_map: np.ndarray) -> None:
        """Plan frame ``index``; :meth:`write` writes every planned frame."""
        self.plans.append(self.plan(index, name, instance_map))

    def write(self, writer: LabelWriter, encoder: TextEncoder) -> None:
        """Embed the planned frames' names and wordings, set the writer's predicate table, write every frame."""
        predicates = sorted({p for plan in self.plans for _, _, wordings in plan.relations for p in wordings})
        names = sorted({n for plan in self.plans for n in plan.names})
        table = encoder.encode_table(list(dict.fromkeys([*names, *predicates, NONE_PREDICATE])))
        writer.set_predicate_table(predicates, table)
        for plan in self.plans:
            embeddings = (
                np.stack([table[n] for n in plan.names]) if plan.names else np.zeros((0, encoder.dim), np.float32)
            )
            writer.write_frame(plan.name, plan.segments, embeddings, plan.relations, mask_labels=plan.names)
