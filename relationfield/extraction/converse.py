"""Converse and symmetric predicates: "A bigger than B" is "B smaller than A", "A close by B" is "B close by A".

The relation field scores each ordered pair on its own, so the two directions of a pair can disagree; a
label model that names one direction of a pair (a vision model usually does) teaches only that one. The
export therefore lets each link's score of such a predicate lean on the reverse link's score of its
converse: ``p(s, o) <- (1 - w) p(s, o) + w p_converse(o, s)``. Predicates without a converse (support,
containment) keep their own score: "A standing on B" says nothing about a predicate of B towards A.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from relationfield.vocab import CONVERSES

__all__ = ["CONVERSES", "fuse_converses"]


def fuse_converses(
    rows: Mapping[tuple[int, int], Tensor], texts: Sequence[str], weight: float
) -> dict[tuple[int, int], Tensor]:
    """Each ordered pair's predicate probabilities (columns ``texts``) mixed with its reverse pair's
    probabilities of the converse predicates, with weight ``weight``; pairs without a reverse are unchanged."""
    index = {text: i for i, text in enumerate(texts)}
    own = [i for i, text in enumerate(texts) if CONVERSES.get(text) in index]
    other = [index[CONVERSES[texts[i]]] for i in own]
    fused = {}
    for (a, b), row in rows.items():
        reverse = rows.get((b, a))
        if weight <= 0 or reverse is None or not own:
            fused[(a, b)] = row
            continue
        mixed = row.clone()
        mixed[own] = (1 - weight) * row[own] + weight * reverse[other]
        fused[(a, b)] = mixed
    return fused
