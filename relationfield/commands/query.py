"""``relationfield query``: the objects of a trained run that best match an object or relation query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from relationfield.errors import UserError
from relationfield.progress import rich_progress


@dataclass
class Query:
    """Ask a trained run a question: an object query ("chair") or a relation query ("standing on", with
    --reference naming the object it is relative to). Prints the best-matching objects with scores."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    text: tyro.conf.Positional[str]
    """The query; phrases after ';' become extra negatives (e.g. "chair; sofa")."""
    reference: str | None = None
    """Relation query: the reference object, as text ("table") or as a node id of the scene graph ("#3")."""
    top: int = 5
    """How many objects to print."""
    image: Path | None = None
    """Also write a PNG of the relevancy rendered from a training view (see --view)."""
    view: int = 0
    """Training view rendered for --image."""

    def main(self) -> None:
        from relationfield.extraction import ExtractionConfig, label_nodes, segment
        from relationfield.query import FieldQuery, find_reference, rank_objects, sample_reference
        from relationfield.vocab import object_vocab

        query = FieldQuery.load(self.load_config)
        config = ExtractionConfig()
        bar, progress = rich_progress()
        with bar:
            seg = segment(query, config, progress)
        nodes = {node.id: node for node in label_nodes(query, seg, object_vocab(), config)}
        if not nodes:
            raise UserError("clustering found no objects in this run; train longer or check the labels")
        objects = {i: seg.node_points(i) for i in nodes}
        reference_points = None
        if self.reference is None:
            ranking = rank_objects(query, objects, self.text)
            print(f"Objects matching {self.text!r}:")
        else:
            ref = find_reference(query, objects, self.reference)
            reference_points = objects.pop(ref)
            ranking = rank_objects(query, objects, self.text, sample_reference(reference_points))
            print(f"Objects that are {self.text!r} {nodes[ref].label} #{ref}:")
        for node_id, score in ranking[: self.top]:
            node = nodes[node_id]
            centre = ", ".join(f"{v:.2f}" for v in node.centroid)
            print(f"  {score:.3f}  {node.label} #{node_id}  at ({centre})")
        if self.image is not None:
            self._write_image(query, reference_points)

    def _write_image(self, query, reference_points) -> None:
        from nerfstudio.utils import colormaps
        from PIL import Image

        reference = None if reference_points is None else reference_points.mean(0)
        relevancy = query.render_relevancy(self.view, self.text, reference)
        rgb = colormaps.apply_colormap(relevancy[..., None], colormaps.ColormapOptions("turbo"))
        self.image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.numpy() * 255).astype(np.uint8)).save(self.image)
        print(f"relevancy image: {self.image}")
