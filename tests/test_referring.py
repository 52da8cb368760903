"""Referring queries: the parser, the scoring rule on hand-made scores, and the query's graph cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from relationfield.errors import UserError
from relationfield.graph_cache import cache_dir, checkpoint_key, find_graph, record_export
from relationfield.referring import ReferringQuery, parse_referring, rank_referring
from relationfield.scene_graph import SceneGraph, SceneNode, write_scene_graph
from relationfield.vocab import predicate_vocab

VOCAB = predicate_vocab()


# ---------------------------------------------------------------- parser
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mug standing on desk", ("mug", "standing on", "desk")),
        ("the pillow lying on the rug", ("pillow", "lying on", "rug")),
        ("Chair close by the sofa", ("Chair", "close by", "sofa")),
        ("a box standing on #3", ("box", "standing on", "#3")),
        ("chair", ("chair", None, None)),
    ],
)
def test_parse_splits_at_the_vocabulary_predicate(text, expected):
    parsed = parse_referring(text, VOCAB)
    assert (parsed.subject, parsed.predicate, parsed.reference) == expected


def test_parse_prefers_the_longest_predicate_and_the_runs_own_texts():
    assert parse_referring("cup on top of table", ["on", "on top of"]).predicate == "on top of"
    # "resting on" is not a 3DSSG predicate, but a run whose labels used it can be asked with it
    parsed = parse_referring("mug resting on the desk", [*VOCAB, "resting on"])
    assert (parsed.subject, parsed.predicate, parsed.reference) == ("mug", "resting on", "desk")
    # whole words only: "on" does not match inside "onion"
    assert parse_referring("onion", ["on"]).predicate is None


def test_parse_takes_explicit_parts_and_node_ids():
    parsed = parse_referring("", VOCAB, subject="mug", predicate="resting on", reference="#12")
    assert parsed == ReferringQuery("mug", "resting on", "#12")
    assert parsed.reference_node == 12
    # an old-style relation query: the text is the predicate, the reference comes from --reference
    parsed = parse_referring("standing on", VOCAB, reference="table")
    assert (parsed.subject, parsed.predicate, parsed.reference) == (None, "standing on", "table")


@pytest.mark.parametrize(
    ("text", "parts", "message"),
    [
        ("", {}, "empty query"),
        ("mug", {"reference": "desk"}, "no predicate"),
        ("mug standing on", {}, "no reference"),
        ("mug standing on #x", {}, "node id"),
    ],
)
def test_parse_errors(text, parts, message):
    with pytest.raises(UserError, match=message):
        parse_referring(text, VOCAB, **parts)


# ---------------------------------------------------------------- scoring
# Two identical mugs (1 on the desk 3, 2 on the cabinet 4), a second desk 5 and a lamp 6.
SUBJECT = {1: 0.9, 2: 0.9, 3: 0.1, 4: 0.1, 5: 0.1, 6: 0.3}
DESK = {1: 0.1, 2: 0.1, 3: 0.8, 4: 0.3, 5: 0.78, 6: 0.1}
ON = {(1, 3): 0.9, (2, 4): 0.9, (6, 5): 0.95}


def relation(candidate: int, ref: int) -> float:
    return ON.get((candidate, ref), 0.05)


def test_the_relation_picks_the_right_twin():
    answer = rank_referring(ReferringQuery("mug", "standing on", "desk"), SUBJECT, SUBJECT.get, DESK.get, relation)
    best = answer.best
    assert best is not None and best.node == 1 and best.reference == 3
    assert best.combined == pytest.approx(0.9 * 0.9)
    second = answer.ranked[1]
    assert second.node == 2 and second.combined == pytest.approx(0.9 * 0.05)
    # the lamp stands on desk 5 but is not a mug: it is not a candidate
    lamp = next(item for item in answer.ranked if item.node == 6)
    assert not lamp.candidate and lamp.combined == 0.0
    # every instance that matches the reference text is a reference: both desks
    assert answer.references == [3, 5]


def test_a_node_id_reference_is_the_only_reference():
    answer = rank_referring(ReferringQuery("mug", "standing on", "#4"), SUBJECT, SUBJECT.get, DESK.get, relation)
    assert answer.references == [4] and answer.best.node == 2


def test_twins_that_relate_to_each_other():
    # two boxes, 7 stacked on 8: both are subjects and references, each scored towards the other
    boxes = {7: 0.9, 8: 0.9}
    answer = rank_referring(
        ReferringQuery("box", "standing on", "box"), boxes, boxes.get, boxes.get, lambda c, r: 0.8 if c == 7 else 0.1
    )
    assert answer.references == [7, 8]
    assert [(i.node, i.reference) for i in answer.ranked] == [(7, 8), (8, 7)]


def test_an_object_query_ranks_by_subject_score():
    answer = rank_referring(ReferringQuery("lamp"), SUBJECT, {**SUBJECT, 6: 0.95}.get, DESK.get, relation)
    assert answer.best.node == 6 and answer.references == []


def test_an_untrained_field_costs_a_bounded_number_of_relation_evaluations():
    # every instance looks like the subject and the reference: at most 8 candidates x 4 references are scored
    calls = []
    flat = dict.fromkeys(range(30), 0.5)
    answer = rank_referring(
        ReferringQuery("mug", "standing on", "desk"), flat, flat.get, flat.get, lambda c, r: calls.append((c, r)) or 0.5
    )
    assert len(answer.references) == 4 and sum(item.candidate for item in answer.ranked) == 8
    assert len(calls) <= 8 * 4 and len(answer.ranked) == 30


def test_an_unknown_node_id_is_a_clear_error():
    with pytest.raises(UserError, match="no object #9"):
        rank_referring(ReferringQuery("mug", "standing on", "#9"), SUBJECT, SUBJECT.get, DESK.get, relation)


# ---------------------------------------------------------------- graph cache
def _run(tmp_path: Path, step: int = 100) -> Path:
    run = tmp_path / "run"
    (run / "nerfstudio_models").mkdir(parents=True, exist_ok=True)
    (run / "config.yml").write_text("method_name: relationfield-lite\n")
    (run / "nerfstudio_models" / f"step-{step:09d}.ckpt").write_bytes(b"x" * step)
    return run / "config.yml"


def _graph_files(directory: Path) -> None:
    node = SceneNode(1, "mug", [("mug", 1.0)], (0.0, 0.0, 0.0), (-0.1, -0.1, -0.1), (0.1, 0.1, 0.1), 2)
    points = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [2.0, 2.0, 2.0]])
    write_scene_graph(SceneGraph(nodes=[node], links=[]), directory, points, np.array([1, 1, -1]))


def test_an_export_of_the_run_is_found_and_a_newer_checkpoint_is_not_served_it(tmp_path):
    config = _run(tmp_path)
    assert find_graph(config) is None
    _graph_files(tmp_path / "export")
    record_export(config, tmp_path / "export")
    found = find_graph(config)
    assert found is not None and found.source == "export"
    instances = found.instances(SimpleNamespace(to_model=lambda points: points))  # world frame kept as is
    assert list(instances) == [1] and len(instances[1]) == 2
    before = checkpoint_key(config)
    _run(tmp_path, step=200)  # training went on: a newer checkpoint
    assert checkpoint_key(config) != before
    assert find_graph(config) is None


def test_the_query_cache_is_keyed_by_the_checkpoint(tmp_path):
    config = _run(tmp_path)
    _graph_files(cache_dir(config))
    assert find_graph(config).source == "cache"
    checkpoint = config.parent / "nerfstudio_models" / "step-000000100.ckpt"
    checkpoint.write_bytes(b"y" * 300)  # rewritten in place (same name, new content)
    os.utime(checkpoint, ns=(1, 1))
    assert find_graph(config) is None


def test_a_given_graph_folder_needs_its_points(tmp_path):
    config = _run(tmp_path)
    _graph_files(tmp_path / "g")
    assert find_graph(config, tmp_path / "g").source == "graph"
    (tmp_path / "g" / "points.ply").unlink()
    with pytest.raises(UserError, match="points.ply does not exist"):
        find_graph(config, tmp_path / "g")


def test_a_damaged_registry_costs_only_a_lookup(tmp_path):
    config = _run(tmp_path)
    (config.parent / "relationfield_exports.json").write_text("{not json")
    assert find_graph(config) is None
    _graph_files(tmp_path / "export")
    record_export(config, tmp_path / "export")
    assert json.loads((config.parent / "relationfield_exports.json").read_text())["exports"][0]["checkpoint"]
    assert find_graph(config).source == "export"
