"""Which links of a scene graph state a relation: those whose predicate scores above "none".

An export scores every candidate pair of objects, "none" (no relation) included, so most links say that
two objects are *not* related. Formats that list relations only (ConceptGraphs' edges, 3DSSG's
relationships) keep a link when its top predicate is not "none", that is when its predicate scores
strictly higher than "none" (a tie is no relation); a link whose scores have no "none" is a relation.
"""

from __future__ import annotations

from relationfield.scene_graph.graph import SceneGraph, SceneLink
from relationfield.vocab import NONE_PREDICATE

__all__ = ["is_relation", "relation_links"]


def is_relation(link: SceneLink) -> bool:
    """Whether the link's predicate scores strictly higher than its "none" score (if it has one)."""
    if link.predicate == NONE_PREDICATE:
        return False
    none = [score for name, score in link.predicate_scores if name == NONE_PREDICATE]
    return not none or link.score > max(none)


def relation_links(graph: SceneGraph) -> list[SceneLink]:
    """The graph's links that state a relation (:func:`is_relation`), in the graph's order."""
    return [link for link in graph.links if is_relation(link)]
