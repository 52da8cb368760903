"""A short-trained run's relations depend on their reference (the shared 300-step run of the test capture).

Chance levels: a reference picked at random among the other nodes ranks first with probability
1 / (nodes - 1), about 4% here; a field that ignores z gives the true reference and every other
object the same score (margin 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from relationfield.cli import entrypoint
from relationfield.evaluation import evaluate_files
from relationfield.evaluation.reference import SUPPORT_PREDICATES
from relationfield.scene_graph import read_ply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def all_pairs(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("all_pairs")
    entrypoint(
        ["export", "scene-graph", "--load-config", str(trained_run), "--output-dir", str(out), "--max-views", "10"]
        + ["--all-pairs"]
    )
    return out


def test_moving_z_off_the_support_lowers_the_support_score(trained_run, all_pairs, synth_capture):
    from relationfield.query import FieldQuery
    from relationfield.vocab import NONE_PREDICATE, predicate_vocab

    gt_path = synth_capture / "ground_truth" / "scene_graph.json"
    gt = json.loads(gt_path.read_text())
    node_of = {m.gt_id: m.node_id for m in evaluate_files(all_pairs / "scene_graph.json", gt_path).matches}
    points, point_node = read_ply(all_pairs / "points.ply")
    query = FieldQuery.load(trained_run)
    texts = [*predicate_vocab(), NONE_PREDICATE]
    rng = np.random.default_rng(0)

    def sample(node: int) -> torch.Tensor:
        return query.to_model(torch.from_numpy(points[rng.choice(np.nonzero(point_node == node)[0], 16)]).float())

    margins, firsts = [], []
    for subject, obj, predicate in gt["relationships"]:
        if predicate not in SUPPORT_PREDICATES or subject not in node_of or obj not in node_of:
            continue
        holders = {node_of[o] for s, o, p in gt["relationships"] if s == subject and p == predicate and o in node_of}
        others = [node_of[i] for i in node_of if node_of[i] not in holders | {node_of[subject]}]
        x = sample(node_of[subject])
        feats = [query.relation(x, sample(n)).mean(0) for n in [node_of[obj], *others]]
        probs = query.predicate_probabilities(torch.nn.functional.normalize(torch.stack(feats), dim=-1), texts, 0.05)
        score = probs[:, texts.index(predicate)]
        margins.append(float(score[0] - score[1:].mean()))
        firsts.append(bool((score[0] > score[1:]).all()))
    assert len(margins) >= 8, len(margins)
    # z on the true support scores the predicate far above z on another object (0.35 measured; a field that
    # ignores z gives 0) and ranks it first for most triples (0.68 measured; chance about 1 / len(others))
    assert np.mean(margins) > 0.2, margins
    assert np.mean(firsts) > 0.4, firsts


def test_scene_graph_reference_metrics_beat_chance(all_pairs, synth_capture, capsys):
    entrypoint(
        ["eval", "--pred", str(all_pairs / "scene_graph.json")]
        + ["--gt", str(synth_capture / "ground_truth" / "scene_graph.json"), "--output-dir", str(all_pairs / "eval")]
    )
    table = capsys.readouterr().out
    assert "| Reference R@1 / R@3 |" in table and "| None precision (unrelated pairs) |" in table
    result = json.loads((all_pairs / "eval" / "eval.json").read_text())
    nodes = result["counts"]["pred_nodes"]
    # measured on this 300-step run: support R@1 0.36, R@1 0.48, none precision 0.85 (chance: 1 / (nodes - 1)
    # for the recalls, 1 / 27 predicates for "none" winning; the code before reference-aware training: 0.10)
    assert result["reference"]["support_recall"]["1"] > max(0.25, 5.0 / nodes), result["reference"]
    assert result["reference"]["recall"]["1"] > max(0.35, 5.0 / nodes), result["reference"]
    assert result["none_precision"] > 0.7, result["none_precision"]


def test_viewer_relation_queries_light_up_the_references_subjects(trained_run, all_pairs, synth_capture, capsys):
    """The viewer's code path (FieldQuery relevancy with z on the reference) through `eval --load-config`."""
    entrypoint(
        ["eval", "--pred", str(all_pairs / "scene_graph.json"), "--load-config", str(trained_run)]
        + ["--gt", str(synth_capture / "ground_truth" / "scene_graph.json"), "--output-dir", str(all_pairs / "guided")]
    )
    assert "| Subject R@1 / R@3, support predicates (%) |" in capsys.readouterr().out
    guided = json.loads((all_pairs / "guided" / "eval.json").read_text())["predicate_queries"]
    nodes = json.loads((all_pairs / "guided" / "eval.json").read_text())["counts"]["pred_nodes"]
    support = [t for t in guided["per_triplet"] if t["predicate"] in SUPPORT_PREDICATES]
    assert len(support) >= 8
    # "standing on" the table ranks what stands on the table first, far more often than chance
    assert guided["support_subject_recall"]["1"] > max(0.35, 5.0 / nodes), guided["support_subject_recall"]  # 0.54
    # and leaves the objects unrelated to the reference dark
    assert guided["unrelated_nodes"] > 50 and guided["unrelated_dark"] > 0.8, guided["unrelated_dark"]  # 0.94


def test_referring_queries_pick_the_right_twin(trained_run, all_pairs, synth_capture, capsys):
    """Paper-style relation-guided segmentation beats chance (a random twin) and the CLIP-only baseline,
    and `relationfield query --json` answers from the run's export without segmenting again."""
    from relationfield.evaluation import referring_segmentation
    from relationfield.evaluation.referring_segmentation import twin_queries
    from relationfield.query import FieldQuery

    gt_path = synth_capture / "ground_truth" / "scene_graph.json"
    gt = json.loads(gt_path.read_text())
    matches = {m.gt_id: m.node_id for m in evaluate_files(all_pairs / "scene_graph.json", gt_path).matches}
    points, point_node = read_ply(all_pairs / "points.ply")
    result = referring_segmentation(FieldQuery.load(trained_run), points, point_node, gt, matches)
    count = {}
    for obj in gt["objects"]:
        count[obj["label"]] = count.get(obj["label"], 0) + 1
    chance = float(np.mean([len(h) / count[key[0]] for key, h in twin_queries(gt).items()]))
    summary = result.summary()
    with capsys.disabled():  # the measured figures, for calibrating the thresholds below
        print("referring", summary, "chance", round(chance, 3), "queries", len(result.outcomes))
    assert len(result.outcomes) >= 10
    assert summary["top1_accuracy"] >= chance + 0.15
    # measured: 0.88 against chance 0.62 and the CLIP-only baseline 0.27 (52 queries)
    assert summary["top1_accuracy"] >= summary["baseline_top1_accuracy"] + 0.3

    capsys.readouterr()
    entrypoint(["query", "--load-config", str(trained_run), "box standing on box", "--json", "--top", "3"])
    answer = json.loads(capsys.readouterr().out)
    assert answer["graph"]["source"] == "export"
    assert answer["query"] == {"subject": "box", "predicate": "standing on", "reference": "box"}
    assert len(answer["ranked"]) == 3 and {"id", "label", "centroid", "aabb", "score"} <= set(answer["ranked"][0])
