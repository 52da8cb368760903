"""Why does a relation ignore its reference? Measures on a trained run of a synthetic capture.

1. **z sensitivity**: for every ground-truth triple (s, o, p) with matched ends, the relation features
   g(x, z) with x on s's node and z on o's node against z on every other node: their mean cosine
   similarity (1.0: z is ignored), and how much p's probability falls from o to the other nodes.
2. **supervision coverage** (from the capture's instance maps): the share of ordered pairs of
   non-structural objects that are ever in one image together (only those can be a training pair), and
   the expected number of uniform training pairs per step that join two given objects.

    python scripts/diagnose_reference.py --load-config RUN/config.yml --capture CAPTURE --graph EXPORT_DIR

EXPORT_DIR holds the scene_graph.json and points.ply that `relationfield export scene-graph --all-pairs`
wrote for that run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from relationfield.evaluation import evaluate_files
from relationfield.evaluation.reference import STRUCTURAL_LABELS, SUPPORT_PREDICATES
from relationfield.extraction.config import ExtractionConfig
from relationfield.labels.gt_labeler import read_instance_map
from relationfield.query import FieldQuery
from relationfield.scene_graph import read_ply
from relationfield.vocab import NONE_PREDICATE, predicate_vocab


@dataclass
class Diagnose:
    """Measure how much a trained run's relations depend on the reference, and which pairs get supervision."""

    load_config: Path
    """config.yml of the trained run."""
    capture: Path
    """The synthetic capture it was trained on (ground_truth/ with scene_graph.json and instances/)."""
    graph: Path
    """Directory of the run's all-pairs export (scene_graph.json, points.ply)."""
    samples: int = 16
    """Points sampled on the subject and on each reference."""
    rays_per_step: int = 1024
    """Training rays per step (half as many pairs), for the expected uniform pair counts."""
    uniform_share: float = 0.5
    """Share of training pairs that are uniform pixel pairs."""
    seed: int = 0
    """Seed of the point samples."""


def z_sensitivity(args: Diagnose) -> dict[str, float]:
    gt_path = args.capture / "ground_truth" / "scene_graph.json"
    result = evaluate_files(args.graph / "scene_graph.json", gt_path)
    node_of = {m.gt_id: m.node_id for m in result.matches}
    gt = json.loads(gt_path.read_text(encoding="utf-8"))
    points, point_node = read_ply(args.graph / "points.ply")
    query = FieldQuery.load(args.load_config)
    texts = [*predicate_vocab(), NONE_PREDICATE]
    rng = np.random.default_rng(args.seed)
    members = {int(n): np.nonzero(point_node == n)[0] for n in np.unique(point_node) if n >= 0}

    def sample(node: int) -> torch.Tensor:
        picks = rng.choice(members[node], size=args.samples)
        return query.to_model(torch.from_numpy(points[picks]).float())

    cosines, drops, support_cos, support_drops = [], [], [], []
    for subject, obj, predicate in gt["relationships"]:
        if subject not in node_of or obj not in node_of:
            continue
        x = sample(node_of[subject])
        refs = {n: sample(n) for n in members if n != node_of[subject]}
        feats = {n: torch.nn.functional.normalize(query.relation(x, z).mean(0), dim=-1) for n, z in refs.items()}
        true = feats[node_of[obj]]
        others = [f for n, f in feats.items() if n != node_of[obj]]
        probs = query.predicate_probabilities(
            torch.stack([true, *others]), texts, ExtractionConfig().predicate_temperature
        )[:, texts.index(predicate)]
        cos = float(torch.stack([true @ f for f in others]).mean())
        drop = float(probs[0] - probs[1:].mean())
        cosines.append(cos)
        drops.append(drop)
        if predicate in SUPPORT_PREDICATES:
            support_cos.append(cos)
            support_drops.append(drop)
    return {
        "triples": len(cosines),
        "mean cosine, true vs other reference": float(np.mean(cosines)),
        "mean drop of p's probability": float(np.mean(drops)),
        "support triples": len(support_cos),
        "support: mean cosine": float(np.mean(support_cos)) if support_cos else float("nan"),
        "support: mean drop of p's probability": float(np.mean(support_drops)) if support_drops else float("nan"),
    }


def coverage(args: Diagnose) -> dict[str, float]:
    gt = json.loads((args.capture / "ground_truth" / "scene_graph.json").read_text(encoding="utf-8"))
    kept = [o["id"] for o in gt["objects"] if o["label"] not in STRUCTURAL_LABELS]
    related = {(s, o) for s, o, _ in gt["relationships"]}
    maps = sorted((args.capture / "ground_truth" / "instances").glob("*.png"))
    together: dict[tuple[int, int], float] = {}
    for path in maps:
        ids, counts = np.unique(read_instance_map(path), return_counts=True)
        share = dict(zip(ids.tolist(), (counts / counts.sum()).tolist()))
        for a in kept:
            for b in kept:
                if a != b and a in share and b in share:
                    together[(a, b)] = together.get((a, b), 0.0) + share[a] * share[b]
    pairs = [(a, b) for a in kept for b in kept if a != b]
    uniform_pairs = args.rays_per_step / 2 * args.uniform_share
    per_step = {p: uniform_pairs * together.get(p, 0.0) / len(maps) for p in pairs}
    unrelated = [p for p in pairs if p not in related]
    return {
        "ordered non-structural pairs": len(pairs),
        "share ever in one image": sum(p in together for p in pairs) / len(pairs),
        "unrelated pairs": len(unrelated),
        "unrelated: share ever in one image": sum(p in together for p in unrelated) / max(len(unrelated), 1),
        "unrelated: median uniform pairs per step": float(np.median([per_step[p] for p in unrelated])),
        "related: median uniform pairs per step": float(np.median([per_step[p] for p in pairs if p in related])),
    }


def main(args: Diagnose) -> None:
    for name, report in (("supervision coverage", coverage(args)), ("z sensitivity", z_sensitivity(args))):
        print(f"## {name}")
        for key, value in report.items():
            print(f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}")


if __name__ == "__main__":
    main(tyro.cli(Diagnose))
