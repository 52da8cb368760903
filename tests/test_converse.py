"""Converse predicates at export: the two directions of a pair agree on comparatives and symmetric predicates."""

from __future__ import annotations

import torch

from relationfield.extraction.converse import CONVERSES, fuse_converses
from relationfield.vocab import predicate_vocab

TEXTS = ["bigger than", "smaller than", "standing on", "close by", "none"]


def test_a_comparative_learned_in_one_direction_reaches_the_other():
    rows = {
        (0, 1): torch.tensor([0.7, 0.0, 0.0, 0.1, 0.2]),  # A bigger than B, clearly
        (1, 0): torch.tensor([0.1, 0.1, 0.4, 0.1, 0.3]),  # B -> A unsure, "standing on" on top
        (0, 2): torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2]),  # no reverse link: unchanged
    }
    fused = fuse_converses(rows, TEXTS, 0.5)
    back = fused[(1, 0)]
    assert torch.isclose(back[1], torch.tensor(0.5 * 0.1 + 0.5 * 0.7))  # smaller than leans on bigger than
    assert torch.isclose(back[0], torch.tensor(0.5 * 0.1 + 0.5 * 0.0))
    assert TEXTS[int(back.argmax())] == "smaller than"
    assert back[2] == rows[(1, 0)][2]  # support has no converse: its own score stays
    assert torch.isclose(fused[(0, 1)][3], torch.tensor(0.1)) and torch.isclose(back[4], torch.tensor(0.25))
    assert torch.equal(fused[(0, 2)], rows[(0, 2)])
    assert torch.equal(fuse_converses(rows, TEXTS, 0.0)[(1, 0)], rows[(1, 0)])  # 0 turns it off


def test_the_converse_table_is_an_involution_over_vocabulary_predicates():
    vocab = set(predicate_vocab()) | {"none"}
    assert set(CONVERSES) <= vocab and set(CONVERSES.values()) <= vocab
    assert all(CONVERSES[CONVERSES[p]] == p for p in CONVERSES)
    assert CONVERSES["bigger than"] == "smaller than" and CONVERSES["close by"] == "close by"
    assert "standing on" not in CONVERSES and "supported by" not in CONVERSES
