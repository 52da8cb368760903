"""Extraction benchmark: how long scene-graph extraction takes on a trained run, stage by stage, and what
it scores against the ground truth.

Loading the run and the text encoders is timed apart (a fixed cost of every process: importing
sentence-transformers alone takes about 15 s on a 2-core CPU); "extraction" is rendering, clustering,
labelling and relation scoring with the export's default settings, what `relationfield export
scene-graph` does after loading. Each setting in --views is run on the same loaded run, so their times
compare.

Usage, on the demo's run:

    relationfield demo --output demo/
    python scripts/benchmark_extraction.py --load-config demo/runs/demo/relationfield-lite/run/config.yml \\
        --gt demo/capture/ground_truth/scene_graph.json
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class Args:
    load_config: Path
    """config.yml of a trained relationfield or relationfield-lite run."""
    gt: Path | None = None
    """Ground-truth scene_graph.json of the capture: adds the recalls of each setting."""
    views: tuple[str, ...] = ()
    """Extra settings to compare with the default, as MAX_VIEWS:VIEW_PIXELS (e.g. 30:0 40:4096)."""
    output: Path | None = None
    """Write the results as JSON here."""


def main(args: Args) -> None:
    from relationfield.evaluation import evaluate
    from relationfield.extraction import ExtractionConfig, extract_scene_graph
    from relationfield.query import FieldQuery
    from relationfield.vocab import NONE_PREDICATE, object_vocab, predicate_vocab

    objects, predicates = object_vocab(), predicate_vocab()
    start = time.perf_counter()
    query = FieldQuery.load(args.load_config)
    load_run = time.perf_counter() - start
    start = time.perf_counter()
    query.encode(objects, "semantic")
    query.encode([*predicates, NONE_PREDICATE], "relation")
    load_encoders = time.perf_counter() - start
    print(f"loading: run {load_run:.1f} s, text encoders and vocabularies {load_encoders:.1f} s")

    default = ExtractionConfig()
    settings = [(default.max_views, default.view_pixels)]
    for text in args.views:
        views, pixels = (int(v) for v in text.split(":"))
        settings.append((views, pixels))
    gt = json.loads(args.gt.read_text()) if args.gt else None
    results = []
    for views, pixels in settings:
        config = ExtractionConfig(max_views=views, view_pixels=pixels)
        start = time.perf_counter()
        extraction = extract_scene_graph(query, objects, predicates, config)
        seconds = time.perf_counter() - start
        graph = extraction.graph
        row = {
            "max_views": views,
            "view_pixels": pixels,
            "seconds": round(seconds, 1),
            "stages": {k: round(v, 1) for k, v in extraction.timings.items()},
            "points": int(len(extraction.points_world)),
            "nodes": len(graph.nodes),
            "links": len(graph.links),
        }
        if gt is not None:
            result = evaluate(graph.to_json(), gt)
            row["recall"] = {
                "object@5": result.object_recall[5],
                "predicate@3": result.predicate_recall[3],
                "relation@50": result.relation_recall[50],
            }
        results.append(row)
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in row["stages"].items())
        recall = "".join(f", {k} {v * 100:.1f}" for k, v in row.get("recall", {}).items())
        print(f"{views} views at <= {pixels or 'full'} px: {seconds:.1f} s ({stages}); {row['nodes']} nodes{recall}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps({"load_run": load_run, "load_encoders": load_encoders, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
