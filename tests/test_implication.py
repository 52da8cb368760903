"""Entailed predicates at export: "standing on" raises "supported by" to just under itself, never lowers it."""

from __future__ import annotations

import torch

from relationfield.evaluation.ranking import rank
from relationfield.extraction.implication import fuse_implications

TEXTS = ["none", "supported by", "standing on", "lying on", "inside", "lying in", "close by"]


def test_entailed_predicate_is_raised_below_the_entailing_one():
    rows = {
        (0, 1): torch.tensor([0.05, 0.10, 0.70, 0.05, 0.0, 0.0, 0.10]),  # standing on, weak supported by
        (1, 0): torch.tensor([0.10, 0.80, 0.05, 0.00, 0.0, 0.0, 0.05]),  # supported by already above
        (2, 3): torch.tensor([0.30, 0.00, 0.00, 0.10, 0.0, 0.50, 0.10]),  # lying on and lying in
    }
    fused = fuse_implications(rows, TEXTS)
    first = dict(zip(TEXTS, fused[(0, 1)].tolist()))
    assert 0.69 < first["supported by"] < first["standing on"]
    assert rank(first, "standing on") == 1 and rank(first, "supported by") == 2  # the specific keeps its rank
    assert torch.equal(fused[(1, 0)], rows[(1, 0)])  # a higher score is kept
    third = dict(zip(TEXTS, fused[(2, 3)].tolist()))
    assert abs(third["inside"] - 0.4995) < 1e-4 and abs(third["supported by"] - 0.0999) < 1e-4
    assert torch.equal(rows[(0, 1)], torch.tensor([0.05, 0.10, 0.70, 0.05, 0.0, 0.0, 0.10]))  # inputs untouched


def test_vocabularies_without_entailed_predicates_are_unchanged():
    rows = {(0, 1): torch.tensor([0.2, 0.8])}
    assert torch.equal(fuse_implications(rows, ["none", "close by"])[(0, 1)], rows[(0, 1)])
    only_specific = fuse_implications(rows, ["none", "standing on"])  # "supported by" is not exported
    assert torch.equal(only_specific[(0, 1)], rows[(0, 1)])
