"""``relationfield query``: the objects of a trained run that answer an object or a referring query."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from relationfield.errors import UserError
from relationfield.progress import rich_progress


@dataclass
class Query:
    """Ask a trained run which object is meant: an object query ("chair") or a referring query ("mug
    standing on desk": SUBJECT PREDICATE REFERENCE, split at the longest predicate of the vocabulary or of
    the run's relation texts). Prints the instances ranked by their combined score, with the subject and
    relation scores it is made of. The run's export is reused when it has one (no rendering); otherwise the
    scene is segmented once and cached next to the run."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    text: tyro.conf.Positional[str] = ""
    """The query; phrases after ';' become extra negatives of the subject (e.g. "chair; sofa")."""
    subject: str | None = None
    """The subject, instead of the one parsed from the text (e.g. "mug")."""
    predicate: str | None = None
    """The predicate, instead of the one parsed from the text (any wording, e.g. "resting on")."""
    reference: str | None = None
    """The reference object: text ("desk") or a node id of the scene graph ("#3")."""
    graph: Path | None = None
    """Folder of an export to use (scene_graph.json + points.ply) instead of finding or making one."""
    top: int = 5
    """How many instances to print."""
    json: bool = False
    """Print the answer as JSON (query, ranked instances with id, label, centroid, aabb and scores)."""
    image: Path | None = None
    """Also write a PNG of the subject's (or the relation's) relevancy rendered from a training view."""
    view: int = 0
    """Training view rendered for --image."""

    def main(self) -> None:

        from relationfield.graph_cache import segmented_scene
        from relationfield.query import FieldQuery, answer_referring
        from relationfield.referring import parse_referring, scores_table
        from relationfield.vocab import predicate_vocab

        if self.top < 1:
            raise UserError("--top must be at least 1")
        start = time.perf_counter()
        # With --json, stdout carries only the answer: nerfstudio's loading messages and the bars go to stderr.
        with contextlib.redirect_stdout(sys.stderr) if self.json else contextlib.nullcontext():
            query = FieldQuery.load(self.load_config)
            parsed = parse_referring(
                self.text, [*predicate_vocab(), *query.relation_texts()], self.subject, self.predicate, self.reference
            )
            bar, progress = rich_progress()
            with bar:
                scene = segmented_scene(query, self.load_config, self.graph, progress=progress)
            objects = scene.instances(query)
            if not objects:
                raise UserError("the run's segmentation has no objects; train longer or check the labels")
            answer = answer_referring(query, objects, parsed)
        seconds = time.perf_counter() - start
        nodes = {node.id: node for node in scene.graph.nodes}
        if self.json:
            print(json.dumps(_answer_json(answer, nodes, scene, seconds, self.top), indent=2))
        else:
            where = {"new": "segmented now, cached in", "cache": "cached", "export": "export", "graph": "--graph"}
            print(f"{parsed.text()!r} ({where[scene.source]} {scene.directory}, {seconds:.1f} s):")
            if answer.references:
                refs = ", ".join(f"{nodes[r].label} #{r}" for r in answer.references)
                print(f"  references: {refs}")
            labels = {i: node.label for i, node in nodes.items()}
            for line in scores_table(answer, labels, self.top):
                print(f"  {line}")
        if self.image is not None:
            self._write_image(query, parsed, objects, answer.references)

    def _write_image(self, query, parsed, objects, references) -> None:
        from nerfstudio.utils import colormaps
        from PIL import Image

        if parsed.is_referring:
            text, reference = parsed.predicate, objects[references[0]].mean(0)
        else:
            text, reference = parsed.subject, None
        relevancy = query.render_relevancy(self.view, text, reference)
        rgb = colormaps.apply_colormap(relevancy[..., None], colormaps.ColormapOptions("turbo"))
        self.image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.numpy() * 255).astype(np.uint8)).save(self.image)
        if not self.json:
            print(f"relevancy image: {self.image}")


def _answer_json(answer, nodes, scene, seconds: float, top: int) -> dict:
    """The machine-readable answer of ``relationfield query --json``."""

    def node_json(item) -> dict:
        node = nodes[item.node]
        return {
            "id": item.node,
            "label": node.label,
            "centroid": [float(v) for v in node.centroid],
            "aabb": {"min": [float(v) for v in node.aabb_min], "max": [float(v) for v in node.aabb_max]},
            "score": round(item.combined, 6),
            "subject_score": round(item.subject, 6),
            "relation_score": round(item.relation, 6),
            "via_reference": item.reference,
            "candidate": item.candidate,
        }

    q = answer.query
    return {
        "query": {"subject": q.subject, "predicate": q.predicate, "reference": q.reference},
        "references": answer.references,
        "ranked": [node_json(item) for item in answer.ranked[:top]],
        "graph": {"source": scene.source, "directory": str(scene.directory)},
        "seconds": round(seconds, 2),
    }
