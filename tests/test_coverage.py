"""The labels' coverage of the ground truth: triples stated in some frame, directly or as a converse."""

from __future__ import annotations

from relationfield.labels.coverage import stated_share, stated_triples
from relationfield.labels.realism import realism_config
from relationfield.vocab import CONVERSES


def test_clean_labels_state_every_covisible_triple_and_realistic_ones_fewer(synth_capture):
    truth, clean = stated_triples(synth_capture, "none")
    assert truth and clean <= truth  # clean labels state only true triples
    typical_truth, typical = stated_triples(synth_capture, "typical", seed=0)
    assert typical_truth == truth and 0 < len(typical & truth) < len(clean)
    assert typical - truth  # hallucinations, confusions and flips state triples the ground truth lacks
    shares = [stated_share(synth_capture, level) for level in ("none", "typical", "hard")]
    assert shares[0] > 0.9 and shares[0] > shares[1] > shares[2] > 0, shares
    assert stated_share(synth_capture, "typical", seed=0) == shares[1]  # seeded: the label store's own draws
    # the converse counts: without it the typical share can only be lower
    direct = len(typical & truth) / len(truth)
    assert direct <= shares[1]
    converse_only = [t for t in truth - typical if (t[1], t[0], CONVERSES.get(t[2], "")) in typical]
    assert abs(shares[1] - (direct + len(converse_only) / len(truth))) < 1e-9


def test_fewer_relations_per_frame_state_less(synth_capture):
    few = realism_config("none", relations_per_frame=2.0)
    many = realism_config("none", relations_per_frame=8.0)
    assert stated_share(synth_capture, few) < stated_share(synth_capture, many) <= stated_share(synth_capture)
