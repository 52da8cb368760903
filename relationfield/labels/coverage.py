"""How much of a capture's ground truth its labels state: a ceiling on what can be learned from them.

A label model that states only some relations per frame (``label-gt --realism``, like a vision model asked
through Set-of-Mark) never states some ground-truth triples in any frame. A method that learns relations
from the labels alone has no evidence for those. :func:`stated_share` replays the seeded label model on the
capture's frames and counts the ground-truth triples (subject, object, predicate) that at least one frame
states, directly or as the converse on the reverse pair ("B smaller than A" for "A bigger than B"; the
export fuses the two directions the same way).
"""

from __future__ import annotations

from pathlib import Path

from relationfield.labels.gt_labeler import (
    MIN_MASK_PIXELS,
    instance_paths,
    read_frame_names,
    read_ground_truth,
    read_instance_map,
)
from relationfield.labels.realism import RealismConfig, realism_config
from relationfield.labels.realistic_labeler import RealisticLabeler
from relationfield.vocab import CONVERSES

__all__ = ["Triple", "stated_share", "stated_triples"]

Triple = tuple[int, int, str]
"""(subject id, object id, predicate): ground-truth object ids, canonical predicate spelling."""


def stated_triples(data_dir: Path, realism: str | RealismConfig = "none", seed: int = 0) -> tuple[set, set]:
    """The ground truth's triples, and the triples that the labels of ``realism`` (``label-gt``'s seed
    ``seed``) state in at least one frame, before wording (predicates in the vocabulary's spelling)."""
    data_dir = Path(data_dir)
    truth = read_ground_truth(data_dir)
    names = read_frame_names(data_dir)
    rates = realism_config(realism) if isinstance(realism, str) else realism
    labeler = RealisticLabeler.start(truth.labels, truth.relations, rates, seed, min_mask_pixels=MIN_MASK_PIXELS)
    stated: set[Triple] = set()
    for index, (name, path) in enumerate(zip(names, instance_paths(data_dir, names))):
        plan = labeler.plan(index, name, read_instance_map(path))
        for statement in plan.statements:
            subject, obj = plan.objects[statement.subject], plan.objects[statement.object]
            stated.update((subject, obj, predicate) for predicate in statement.predicates)
    triples = {(s, o, p) for (s, o), predicates in truth.relations.items() for p in predicates}
    return triples, stated


def stated_share(data_dir: Path, realism: str | RealismConfig = "none", seed: int = 0) -> float:
    """Share of the ground-truth triples stated in some frame, directly or as the reverse pair's converse."""
    truth, stated = stated_triples(data_dir, realism, seed)
    covered = [t for t in truth if t in stated or (t[1], t[0], CONVERSES.get(t[2], "")) in stated]
    return len(covered) / len(truth) if truth else 1.0
