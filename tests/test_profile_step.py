"""scripts/profile_step.py: times each phase of a training step and each module's forward, with config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def profile_step(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import profile_step

    return profile_step


def test_profile_reports_every_phase_and_the_heads(profile_step, synth_capture, labels_dir, tmp_path):
    args = profile_step.Args(
        capture=synth_capture,
        labels=labels_dir,
        steps=2,
        warmup=1,
        set=["pipeline.model.num_nerf_samples_per_ray=8"],
        output=tmp_path,
    )
    report = profile_step.main(args)
    phases = report["phases_ms"]
    assert set(phases) == {"data", "forward", "loss", "backward", "optimiser"}
    assert all(value > 0 for value in phases.values())
    assert report["step_ms"] == pytest.approx(sum(phases.values()), rel=0.5)  # median of sums vs sum of medians
    modules = report["module_forward_ms"]
    timed = ("proposal_networks.0.mlp_base", "field.mlp_base", "semantic_head.encoding", "relation_head.mlp.layers")
    for name in timed:
        assert modules[name] > 0, name
    assert modules["proposal_sampler"] > modules["proposal_networks.0.mlp_base"]  # the sampler calls the network
    assert report["overrides"] == args.set


def test_an_unknown_override_is_refused(profile_step, synth_capture, labels_dir, tmp_path):
    args = profile_step.Args(capture=synth_capture, labels=labels_dir, set=["pipeline.model.no_such_field=1"])
    with pytest.raises(SystemExit, match="no field 'no_such_field'"):
        profile_step.main(args)
