"""RelationField's viewer panel (:class:`RelationViewerControls`): reference picking, queries, scene graph.

Every GUI callback calls a plain method (:meth:`RelationViewerControls.on_click`, :meth:`~.find`, ...)
so that everything can be driven without a viser server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerClick, ViewerDropdown, ViewerSlider, ViewerText
from torch import Tensor

from relationfield.ask import AskAnswer
from relationfield.errors import UserError
from relationfield.extraction import Extraction, ExtractionConfig, extract_scene_graph, segment
from relationfield.graph_cache import record_export
from relationfield.query import OBJECT_NEGATIVES, RELATION_NEGATIVES, parse_query, sample_reference
from relationfield.referring import ReferringAnswer
from relationfield.scene_graph import SceneLink, drawn_links, write_scene_graph
from relationfield.viewer.ask_box import AskBox
from relationfield.viewer.drawing import draw_reference, draw_scene_graph
from relationfield.viewer.panel_base import PanelBase
from relationfield.viewer.referring_box import ReferringBox
from relationfield.viewer.render import (
    cluster_at,
    composite_relevancy,
    evaluating,
    instance_colors,
    relevancy_colors,
    surface_point,
    surface_relevancy,
)
from relationfield.vocab import object_vocab, predicate_vocab

REFERENCE_MODES: tuple[str, ...] = ("point", "object")
"""Reference: the clicked surface point, or every point of the instance cluster under it."""
SCENE_GRAPH_DIR = "scene_graph"
"""Sub-directory of the run directory that "Export scene graph" writes to."""


class RelationViewerControls(PanelBase):
    """RelationField's viewer panel: reference picking, relation and object queries, the scene graph.

    GUI elements (attribute names sort into the order they are shown in):

    * "Find" (``find_query``): a referring query ("mug standing on desk") or an object query ("chair"),
      answered over the scene graph's instances; the best one is highlighted (see :meth:`find`).
    * "Ask" (``find_question``): a question for a chat model; the answer's objects are highlighted (:meth:`ask`).
    * "Reference" (``pick_mode``): ``point`` uses the clicked surface point as the relation query's z;
      ``object`` uses points of the instance cluster under it.
    * "Pick reference" (``pick_reference``): the next click in the 3D view picks the reference.
    * "Object query" (``query_object``) and "Relation query" (``query_relation``): text; the first phrase is
      the query, further phrases after ";" are extra negatives.
    * "Relevancy threshold" (``query_threshold``): the ``*_composited`` outputs colour pixels above it.
    * "Build scene graph" / "Export scene graph" (``scene_graph_build`` / ``scene_graph_export``).
    * ``status``: what happened last (also sent as a notification when something needs attention).

    Outputs added to the model's camera renders once attached (all float RGB [H, W, 3]): ``instance_rgb``
    always; ``object_relevancy`` and ``object_composited`` with an object query; ``relation_relevancy`` and
    ``relation_composited`` with a relation query and a reference.
    """

    def __init__(self) -> None:
        super().__init__("Type what to find (e.g. 'mug standing on desk'), or pick a reference for a relation query.")
        self.pick_mode = ViewerDropdown(
            "Reference",
            "point",
            list(REFERENCE_MODES),
            cb_hook=lambda e: self.set_reference_mode(e.value),
            hint="point: the clicked surface point; object: the instance cluster under the click",
        )
        self.pick_reference = ViewerButton("Pick reference", cb_hook=lambda _: self.start_pick())
        self._referring = ReferringBox(self)
        self.find_query = self._referring.text
        self._ask = AskBox(self)
        self.find_question = self._ask.text  # the name sorts it right below "Find"
        self.query_object = ViewerText(
            "Object query",
            "",
            cb_hook=lambda e: self._apply_object_query(e.value),
            hint='e.g. "chair"; phrases after ";" are extra negatives',
        )
        self.query_relation = ViewerText(
            "Relation query",
            "",
            cb_hook=lambda e: self._apply_relation_query(e.value),
            hint='relative to the reference, e.g. "standing on"; phrases after ";" are extra negatives',
        )
        self.query_threshold = ViewerSlider(
            "Relevancy threshold", 0.5, 0.0, 1.0, 0.01, hint="composited outputs colour pixels above this"
        )
        self.scene_graph_build = ViewerButton("Build scene graph", cb_hook=lambda _: self.build_scene_graph())
        self.scene_graph_export = ViewerButton("Export scene graph", cb_hook=lambda _: self.export_scene_graph())
        self.extraction_config: ExtractionConfig | None = None
        """Extraction settings (None: the defaults of ``relationfield export scene-graph``)."""
        self.extraction: Extraction | None = None
        self._clusters: tuple[Tensor, np.ndarray] | None = None
        self._clicked: Tensor | None = None
        self._members: Tensor | None = None
        self._mode = "point"
        self._reference: Tensor | None = None
        self._relation_text = ""
        self._object_text = ""

    # ------------------------------------------------------------------ setup
    def attach(self, pipeline: Any, viewer: Any | None = None, run_dir: Path | None = None) -> None:
        """Start answering queries on ``pipeline`` (called by the viewer; tests call it directly).

        Args:
            pipeline: the loaded pipeline whose model owns these controls.
            viewer: nerfstudio's viewer, for drawing in the 3D view and messages; None without a GUI.
            run_dir: where "Export scene graph" writes (default: the viewer's log directory, the run's).
        """
        super().attach(pipeline, viewer, run_dir)
        self._clusters = None
        self.extraction = None
        if self._clicked is not None:
            self._draw_reference()  # a reference picked before the viewer started

    @property
    def reference(self) -> Tensor | None:
        """Reference points [M, 3] (nerfstudio frame) of relation queries, or None before a pick."""
        return self._reference

    @property
    def relation_text(self) -> str:
        """The relation query in use ("" for none)."""
        return self._relation_text

    # ----------------------------------------------------------------- picking
    def start_pick(self) -> None:
        """The "Pick reference" button: the next click in the 3D view sets the reference."""
        if self._require_query() is None:
            return
        server = self._server()
        if server is not None:
            self.viewer_hook.register_pointer_cb("click", self._on_viewer_click)
        self.say("Click a point in the 3D view to use it as the reference.")

    def _on_viewer_click(self, click: ViewerClick) -> None:
        """The viewer's click callback (the origin is already in nerfstudio's frame); picks once."""
        self.viewer_hook.unregister_pointer_cb()
        lock = getattr(self.viewer, "train_lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            self.on_click(click.origin, click.direction)
        rerender = getattr(self.viewer, "_trigger_rerender", None)
        if callable(rerender):
            rerender()

    def on_click(self, origin: Sequence[float], direction: Sequence[float]) -> Tensor | None:
        """Pick the reference on the ray ``origin + t * direction`` (nerfstudio frame).

        Returns:
            The reference points [M, 3], or None when the ray hit no surface (the status says so).
        """
        query = self._require_query()
        if query is None:
            return None
        point = surface_point(query.model, torch.as_tensor(origin), torch.as_tensor(direction))
        if point is None:
            self.say("The click hit no surface; click on an object.", attention=True)
            return None
        self._clicked = point.detach()
        self._update_reference()
        return self._reference

    def set_reference_mode(self, mode: str) -> None:
        """The "Reference" dropdown: ``point`` or ``object``; an existing pick is converted."""
        if mode not in REFERENCE_MODES:
            self.say(f"Unknown reference mode {mode!r}; use one of {', '.join(REFERENCE_MODES)}.", attention=True)
            return
        if self.pick_mode.value != mode:
            self.pick_mode.value = mode
        if mode == self._mode:
            return
        self._mode = mode
        if self._clicked is not None:
            self._update_reference()

    def _update_reference(self) -> None:
        assert self._clicked is not None
        point = self._clicked
        members = None
        if self._mode == "object":
            points, labels = self.instance_clusters()
            members = cluster_at(points, labels, point, self._extraction_config().voxels_per_side)
        self._members = members
        if members is None:
            self._reference = point[None]
            where = ", ".join(f"{v:.3f}" for v in point.tolist())
            note = "" if self._mode == "point" else " (no object cluster there, using the point)"
            self.say(f"Reference: the point ({where}){note}. " + self._query_hint())
        else:
            self._reference = sample_reference(members).to(point.device)
            self.say(f"Reference: an object of {len(members)} surface points. " + self._query_hint())
        self._draw_reference()

    def _query_hint(self) -> str:
        if self._relation_text:
            return f"Relation query: {self._relation_text!r}."
        return "Now type a relation query."

    def instance_clusters(self) -> tuple[Tensor, np.ndarray]:
        """Surface points (nerfstudio frame) and their instance cluster ids, computed once.

        Those of the built scene graph when there is one, else :func:`relationfield.extraction.segment`'s.
        """
        query = self.query
        assert query is not None
        if self.extraction is not None:
            points = query.to_model(torch.from_numpy(self.extraction.points_world).float())
            return points, self.extraction.point_node
        if self._clusters is None:
            self.say("Clustering the surface points into objects (once)...")
            with evaluating(query.model):
                seg = segment(query, self._extraction_config())
            self._clusters = (seg.points.cpu(), seg.labels)
        return self._clusters

    # ----------------------------------------------------------------- queries
    def set_relation_query(self, text: str) -> None:
        """The "Relation query" text: relevancy of everything for this relation to the reference."""
        if self.query_relation.value != text:
            self.query_relation.value = text
        self._apply_relation_query(text)

    def set_object_query(self, text: str) -> None:
        """The "Object query" text: relevancy of everything for this object text."""
        if self.query_object.value != text:
            self.query_object.value = text
        self._apply_object_query(text)

    def find(self, text: str) -> ReferringAnswer | None:
        """The "Find" text: highlight the instance a referring or object query means; None without an answer."""
        return self._referring.find(text)

    def ask(self, question: str) -> AskAnswer | None:
        """The "Ask" text: the chat model's answer, its objects highlighted; None on an error (see the status)."""
        return self._ask.ask(question)

    def set_threshold(self, value: float) -> None:
        """The "Relevancy threshold" of the composited outputs."""
        self.query_threshold.value = float(value)

    def _apply_relation_query(self, text: str) -> None:
        text = text.strip()
        if text == self._relation_text:
            return
        self._relation_text = self._checked(text, RELATION_NEGATIVES, "relation")
        if not self._relation_text:
            return
        if self._reference is None:
            self.say(
                f"Relation query {self._relation_text!r} is set, but there is no reference yet: press "
                "'Pick reference' and click an object in the 3D view.",
                attention=True,
            )
        else:
            outputs = "the relation_relevancy / relation_composited outputs"
            self.say(f"Relation query {self._relation_text!r}: see {outputs}.")

    def _apply_object_query(self, text: str) -> None:
        text = text.strip()
        if text == self._object_text:
            return
        self._object_text = self._checked(text, OBJECT_NEGATIVES, "semantic")
        if self._object_text:
            self.say(f"Object query {self._object_text!r}: see the object_relevancy / object_composited outputs.")

    def _checked(self, text: str, canonical: Sequence[str], space: str) -> str:
        """``text`` if it is a valid query whose texts encode (they are cached for rendering), else ""."""
        if not text:
            return ""
        query = self._require_query()
        if query is None:
            return ""
        try:
            parsed = parse_query(text, canonical)
            query.encode([parsed.positive, *parsed.negatives], space)
        except UserError as error:
            self.say(str(error), attention=True)
            return ""
        return text

    # ----------------------------------------------------------------- outputs
    def relevancy_maps(self, bundle: RayBundle, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Relevancy [H, W] of the active queries ("object", "relation") at each pixel's expected-depth point."""
        if self.query is None:
            return {}
        return surface_relevancy(self.query, bundle, outputs, self._object_text, self._relation_text, self._reference)

    @torch.no_grad()
    def add_outputs(self, bundle: RayBundle, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The model's camera-render hook: add the viewer outputs (nothing until attached)."""
        if not self.attached:
            return outputs
        if "instance" in outputs:
            outputs["instance_rgb"] = instance_colors(outputs["instance"])
        try:
            maps = self.relevancy_maps(bundle, outputs)
        except UserError as error:
            self.say(str(error), attention=True)
            return outputs
        threshold = float(self.query_threshold.value)
        for name, relevancy in maps.items():
            outputs[f"{name}_relevancy"] = relevancy_colors(relevancy)
            outputs[f"{name}_composited"] = composite_relevancy(outputs["rgb"], relevancy, threshold)
        return outputs

    # ------------------------------------------------------------- scene graph
    def _extraction_config(self) -> ExtractionConfig:
        if self.extraction_config is None:
            self.extraction_config = ExtractionConfig()
        return self.extraction_config

    def build_scene_graph(self) -> Extraction | None:
        """The "Build scene graph" button: ``relationfield export scene-graph``'s extraction, drawn in the 3D view."""
        query = self._require_query()
        if query is None:
            return None
        try:
            objects, predicates = object_vocab(), predicate_vocab()
        except UserError as error:
            self.say(str(error), attention=True)
            return None
        self.say("Building the scene graph (rendering paused)...")
        load_config = None if self.run_dir is None else self.run_dir / "config.yml"

        def progress(stage: str, total: int) -> Callable[[int], None]:
            self.say(f"Building the scene graph: {stage} ({total})...")
            return lambda _step: None

        try:
            with evaluating(query.model):
                extraction = extract_scene_graph(
                    query, objects, predicates, self._extraction_config(), progress, load_config
                )
        except UserError as error:
            self.say(str(error), attention=True)
            return None
        self.extraction = extraction
        graph = extraction.graph
        shown = len(self._drawn_links())
        self.say(
            f"Scene graph: {len(graph.nodes)} objects, {shown} relations shown "
            f"({len(graph.links)} pairs scored) in {extraction.seconds:.1f} s."
        )
        self._draw_scene_graph()
        return extraction

    def export_scene_graph(self, output_dir: Path | None = None) -> dict[str, Path] | None:
        """The "Export scene graph" button: the CLI's files (scene_graph.json/png, points.ply) in RUN/scene_graph/.

        Builds the scene graph first if it has not been built.
        """
        if self._require_query() is None:
            return None
        if output_dir is None:
            if self.run_dir is None:
                self.say("No run directory to export to.", attention=True)
                return None
            output_dir = self.run_dir / SCENE_GRAPH_DIR
        result = self.extraction if self.extraction is not None else self.build_scene_graph()
        if result is None:
            return None
        paths = write_scene_graph(result.graph, Path(output_dir), result.points_world, result.point_node)
        config_path = None if self.run_dir is None else self.run_dir / "config.yml"
        if config_path is not None and config_path.is_file():
            record_export(config_path, Path(output_dir))  # `relationfield query` on this run reuses the export
        self.say(f"Wrote {', '.join(str(p) for p in paths.values())}.")
        return paths

    def _drawn_links(self) -> list[SceneLink]:
        """The built scene graph's links that are drawn in the 3D view."""
        return [] if self.extraction is None else drawn_links(self.extraction.graph.links)[0]

    # ----------------------------------------------------------------- drawing
    def _draw_reference(self) -> None:
        """A marker at the clicked point, and the object's points in object mode."""
        point, members = self._clicked, self._members
        assert point is not None
        self._replace_drawing("reference", lambda server, root: draw_reference(server, root, point, members))

    def _draw_scene_graph(self) -> None:
        extraction, query = self.extraction, self.query
        assert extraction is not None and query is not None
        self._replace_drawing("scene_graph", lambda server, root: draw_scene_graph(server, root, extraction, query))
