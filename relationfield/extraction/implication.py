"""Entailed predicates: what stands on B is supported by B (:data:`relationfield.vocab.IMPLIED`).

A vision model names one predicate per relation, usually the specific one ("standing on"), so the field
learns the general one ("supported by") from the few answers that happen to use it. The export raises a
link's score of an entailed predicate to just under the score of the strongest predicate entailing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from relationfield.vocab import IMPLIED

ENTAILED_SHARE = 0.999
"""An entailed predicate is raised to just under the entailing one, which keeps its rank (ties count against)."""


def fuse_implications(rows: Mapping[tuple[int, int], Tensor], texts: Sequence[str]) -> dict[tuple[int, int], Tensor]:
    """Each pair's predicate scores (columns ``texts``) with every entailed predicate raised to the score of the
    strongest predicate that entails it (rows without such predicates are returned as they are)."""
    index = {text: i for i, text in enumerate(texts)}
    rules = [(index[general], index[specific]) for specific, implied in IMPLIED.items() if specific in index
             for general in implied if general in index]  # fmt: skip
    if not rules:
        return dict(rows)
    fused = {}
    for pair, row in rows.items():
        raised = row.clone()
        for general, specific in rules:
            raised[general] = max(raised[general], row[specific] * ENTAILED_SHARE)
        fused[pair] = raised
    return fused
