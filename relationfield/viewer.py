"""Interactive relation and object queries in nerfstudio's viewer (``ns-viewer``, or ``ns-train``'s viewer).

:class:`RelationViewerControls` is an ``nn.Module`` without parameters that the model creates in
``populate_modules``. nerfstudio's viewer finds its GUI elements (``ViewerElement`` attributes of every
``nn.Module`` reachable from the pipeline) and its ``ViewerControl`` on its own and installs them under
"Custom Elements"; the control's ``_setup`` hands over the viewer, which attaches the pipeline. Until then
(training without a viewer, ``relationfield query``, tests that do not attach) the controls change no
output.

Queries use :class:`relationfield.query.FieldQuery` (the code path of ``relationfield query``): relevancy is
computed at each pixel's expected-depth point, a relation query against the reference point(s) picked by a
click. "Build scene graph" runs :func:`relationfield.extraction.extract_scene_graph` with the default
vocabularies (as ``relationfield export scene-graph``) and "Export scene graph" writes the same files.

Every GUI callback calls a plain method (:meth:`RelationViewerControls.on_click`,
:meth:`RelationViewerControls.set_relation_query`, ...) so that everything can be driven without a viser
server. This module never imports :mod:`relationfield.model` at import time (the model imports it).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.colormaps import apply_float_colormap
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerElement,
    ViewerSlider,
    ViewerText,
)
from torch import Tensor, nn

from relationfield.errors import UserError
from relationfield.query import OBJECT_NEGATIVES, RELATION_NEGATIVES, FieldQuery, parse_query

if TYPE_CHECKING:
    from viser import ViserServer

    from relationfield.extraction import Extraction, ExtractionConfig
    from relationfield.scene_graph import SceneLink

REFERENCE_MODES: tuple[str, ...] = ("point", "object")
"""Reference: the clicked surface point, or every point of the instance cluster under it."""
MIN_ACCUMULATION = 0.5
"""A click (or pixel) whose rendered opacity is lower hit no surface."""
REFERENCE_SAMPLES = 16
"""Points of an object reference used as query positions z (the relation features are averaged)."""
CLICK_PIXEL_AREA = 1e-6
"""Pixel area given to a clicked ray (Nerfacto's field does not depend on it)."""
SCENE_ROOT = "/relationfield"
"""Scene-tree folder of everything these controls draw in the 3D view."""
SCENE_GRAPH_DIR = "scene_graph"
"""Sub-directory of the run directory that "Export scene graph" writes to."""
MAX_DRAWN_LINKS = 150
"""At most this many relations (highest score first) are drawn in the 3D view."""
REFERENCE_COLOR = (255, 90, 30)
LINK_COLOR = (255, 211, 105)


class ViewerMarkdown(ViewerElement[str]):
    """Read-only markdown in the GUI panel (status messages); updating it triggers no callback."""

    def __init__(self, name: str, content: str = "") -> None:
        super().__init__(name)
        self._content = content

    def _create_gui_handle(self, viser_server: ViserServer) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self._content)  # type: ignore[assignment]

    def install(self, viser_server: ViserServer) -> None:
        self._create_gui_handle(viser_server)

    @property
    def content(self) -> str:
        """The current text."""
        return self._content

    @content.setter
    def content(self, text: str) -> None:
        self._content = text
        if self.gui_handle is not None:
            self.gui_handle.content = text  # type: ignore[union-attr]


class _ViewerHook(ViewerControl):
    """nerfstudio calls ``_setup`` with the viewer once the GUI is built; pass it on."""

    def __init__(self, on_setup: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_setup = on_setup

    def _setup(self, viewer: Any) -> None:
        super()._setup(viewer)
        self._on_setup(viewer)


def viser_scale() -> float:
    """Viser scene units per nerfstudio unit (the viewer draws the scene scaled up by this)."""
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    return float(VISER_NERFSTUDIO_SCALE_RATIO)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Evaluation mode for the duration (the viewer also runs while training), restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def relevancy_colors(relevancy: Tensor) -> Tensor:
    """[H, W] relevancy in [0, 1] -> [H, W, 3] turbo colours."""
    return apply_float_colormap(relevancy.clamp(0, 1)[..., None].float(), colormap="turbo")


def composite_relevancy(rgb: Tensor, relevancy: Tensor, threshold: float) -> Tensor:
    """The rendered colours with the relevancy colour map over pixels above ``threshold`` (LERF-style)."""
    span = max(1.0 - threshold, 1e-6)
    colors = relevancy_colors((relevancy - threshold) / span)
    above = (relevancy > threshold)[..., None]
    return torch.where(above, colors, rgb.clamp(0, 1).float())


def instance_colors(features: Tensor, seed: int = 0) -> Tensor:
    """[..., D] instance features -> [..., 3] colours by a fixed random orthonormal projection.

    The projection depends only on D and ``seed``, so an object keeps its colour across views and frames
    (nerfstudio's own PCA colouring of many-channel outputs changes with every render).
    """
    dim = features.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 3, generator=generator))
    projected = F.normalize(features.float(), dim=-1) @ basis.to(features.device) * math.sqrt(dim / 3.0)
    return (0.5 + 0.5 * projected.clamp(-1, 1)).float()


def surface_point(model: nn.Module, origin: Tensor, direction: Tensor) -> Tensor | None:
    """The expected-depth point ([3], nerfstudio frame) of one ray, or None when the ray hits no surface."""
    device = model.device  # type: ignore[attr-defined]
    origins = origin.to(device=device, dtype=torch.float32).reshape(1, 3)
    directions = F.normalize(direction.to(device=device, dtype=torch.float32).reshape(1, 3), dim=-1)
    bundle = RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((1, 1), CLICK_PIXEL_AREA, device=device),
        camera_indices=torch.zeros((1, 1), dtype=torch.long, device=device),
    )
    with evaluating(model), model.rendering(features=False):  # type: ignore[attr-defined,operator]
        outputs = model(bundle)
    if float(outputs["accumulation"].reshape(-1)[0]) < MIN_ACCUMULATION:
        return None
    return (origins + directions * outputs["expected_depth"].reshape(1, 1))[0]


class RelationViewerControls(nn.Module):
    """RelationField's viewer panel: reference picking, relation and object queries, the scene graph.

    GUI elements (attribute names sort into the order they are shown in):

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
        super().__init__()
        self.pick_mode = ViewerDropdown(
            "Reference",
            "point",
            list(REFERENCE_MODES),
            cb_hook=lambda e: self.set_reference_mode(e.value),
            hint="point: the clicked surface point; object: the instance cluster under the click",
        )
        self.pick_reference = ViewerButton("Pick reference", cb_hook=lambda _: self.start_pick())
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
        self.status = ViewerMarkdown("Status", "Pick a reference, then type a relation query.")
        self.viewer_hook = _ViewerHook(self._setup_from_viewer)

        # No attribute may hold the pipeline or the model directly: nn.Module would register it as a
        # submodule (a cycle through the model) and the viewer's discovery would walk into it.
        self.viewer: Any | None = None
        self.run_dir: Path | None = None
        self.extraction_config: ExtractionConfig | None = None
        """Extraction settings (None: the defaults of ``relationfield export scene-graph``)."""
        self.extraction: Extraction | None = None
        self._query: FieldQuery | None = None
        self._clusters: tuple[Tensor, np.ndarray] | None = None
        self._clicked: Tensor | None = None
        self._members: Tensor | None = None
        self._mode = "point"
        self._reference: Tensor | None = None
        self._relation_text = ""
        self._object_text = ""
        self._scene_handles: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ setup
    def attach(self, pipeline: Any, viewer: Any | None = None, run_dir: Path | None = None) -> None:
        """Start answering queries on ``pipeline`` (called by the viewer; tests call it directly).

        Args:
            pipeline: the loaded pipeline whose model owns these controls.
            viewer: nerfstudio's viewer, for drawing in the 3D view and messages; None without a GUI.
            run_dir: where "Export scene graph" writes (default: the viewer's log directory, the run's).
        """
        self._query = FieldQuery(pipeline)
        self.viewer = viewer
        if viewer is not None and getattr(self.viewer_hook, "viewer", None) is not viewer:
            ViewerControl._setup(self.viewer_hook, viewer)  # pointer callbacks need the viser server
        if run_dir is None and viewer is not None and getattr(viewer, "log_filename", None) is not None:
            run_dir = Path(viewer.log_filename).parent
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._clusters = None
        self.extraction = None
        self._scene_handles = {}
        if self._clicked is not None:
            self._draw_reference()  # a reference picked before the viewer started

    def _setup_from_viewer(self, viewer: Any) -> None:
        self.attach(viewer.pipeline, viewer)

    @property
    def attached(self) -> bool:
        """Whether a pipeline is attached (only then are outputs added)."""
        return self._query is not None

    @property
    def query(self) -> FieldQuery | None:
        """The attached pipeline's :class:`FieldQuery` (it loads encoders only when a query is typed)."""
        return self._query

    @property
    def reference(self) -> Tensor | None:
        """Reference points [M, 3] (nerfstudio frame) of relation queries, or None before a pick."""
        return self._reference

    @property
    def relation_text(self) -> str:
        """The relation query in use ("" for none)."""
        return self._relation_text

    @property
    def object_text(self) -> str:
        """The object query in use ("" for none)."""
        return self._object_text

    # --------------------------------------------------------------- messages
    def say(self, message: str, attention: bool = False) -> None:
        """Show ``message`` in the status line (and as a notification when it needs attention)."""
        self.status.content = f"**RelationField:** {message}"
        CONSOLE.log(f"[relationfield viewer] {message}")
        server = self._server()
        if attention and server is not None:
            for client in server.get_clients().values():
                client.add_notification(title="RelationField", body=message, auto_close=8000)

    def _server(self) -> ViserServer | None:
        return getattr(self.viewer, "viser_server", None)

    def _require_query(self) -> FieldQuery | None:
        query = self.query
        if query is None:
            self.say("No trained pipeline is attached to the viewer controls yet.", attention=True)
        return query

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
        members = self._object_points(point) if self._mode == "object" else None
        self._members = members
        if members is None:
            self._reference = point[None]
            where = ", ".join(f"{v:.3f}" for v in point.tolist())
            note = "" if self._mode == "point" else " (no object cluster there, using the point)"
            self.say(f"Reference: the point ({where}){note}. " + self._query_hint())
        else:
            generator = torch.Generator().manual_seed(0)
            picks = torch.randperm(len(members), generator=generator)[:REFERENCE_SAMPLES]
            self._reference = members[picks].to(point.device)
            self.say(f"Reference: an object of {len(members)} surface points. " + self._query_hint())
        self._draw_reference()

    def _query_hint(self) -> str:
        if self._relation_text:
            return f"Relation query: {self._relation_text!r}."
        return "Now type a relation query."

    def _object_points(self, point: Tensor) -> Tensor | None:
        """Surface points of the instance cluster nearest to ``point`` (None if it is in none)."""
        points, labels = self.instance_clusters()
        if len(points) == 0:
            return None
        distances = (points - point.cpu()).norm(dim=-1)
        nearest = int(distances.argmin())
        extent = float((points.max(0).values - points.min(0).values).max())
        config = self._extraction_config()
        tolerance = 3.0 * extent / config.voxels_per_side
        label = int(labels[nearest])
        if label < 0 or float(distances[nearest]) > tolerance:
            return None
        return points[torch.from_numpy(labels == label)]

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
            from relationfield.extraction import segment

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
    @torch.no_grad()
    def relevancy_maps(self, bundle: RayBundle, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Relevancy [H, W] of the active queries ("object", "relation") at each pixel's expected-depth point."""
        query = self.query
        wanted = {
            "object": bool(self._object_text),
            "relation": bool(self._relation_text and self._reference is not None),
        }
        if query is None or not any(wanted.values()) or "expected_depth" not in outputs:
            return {}
        origins = bundle.origins.to(outputs["expected_depth"].device)
        directions = bundle.directions.to(origins.device)
        points = (origins + directions * outputs["expected_depth"]).reshape(-1, 3)
        hit = outputs["accumulation"].reshape(-1) >= MIN_ACCUMULATION
        maps: dict[str, Tensor] = {}
        for name, active in wanted.items():
            if not active:
                continue
            values = torch.zeros(len(points), device=points.device)
            if hit.any():
                if name == "object":
                    scores = query.object_relevancy(points[hit], self._object_text)
                else:
                    assert self._reference is not None
                    scores = query.relation_relevancy(points[hit], self._reference, self._relation_text)
                values[hit] = scores.to(values)
            maps[name] = values.reshape(outputs["expected_depth"].shape[:-1])
        return maps

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
        from relationfield.extraction import ExtractionConfig

        if self.extraction_config is None:
            self.extraction_config = ExtractionConfig()
        return self.extraction_config

    def build_scene_graph(self) -> Extraction | None:
        """The "Build scene graph" button: ``relationfield export scene-graph``'s extraction, drawn in the 3D view."""
        from relationfield.extraction import extract_scene_graph
        from relationfield.vocab import object_vocab, predicate_vocab

        query = self._require_query()
        if query is None:
            return None
        try:
            objects, predicates = object_vocab(), predicate_vocab()
        except UserError as error:
            self.say(str(error), attention=True)
            return None
        self.say("Building the scene graph (rendering paused)...")
        start = time.perf_counter()

        def progress(stage: str, total: int) -> Callable[[int], None]:
            self.say(f"Building the scene graph: {stage} ({total})...")
            return lambda _step: None

        try:
            with evaluating(query.model):
                extraction = extract_scene_graph(query, objects, predicates, self._extraction_config(), progress)
        except UserError as error:
            self.say(str(error), attention=True)
            return None
        seconds = time.perf_counter() - start
        metadata = {"extraction_seconds": round(seconds, 2)}
        if self.run_dir is not None:
            metadata["load_config"] = str(self.run_dir / "config.yml")
        extraction.graph.metadata.update(metadata)
        self.extraction = extraction
        graph = extraction.graph
        shown = len(self._drawn_links())
        self.say(
            f"Scene graph: {len(graph.nodes)} objects, {shown} relations shown "
            f"({len(graph.links)} pairs scored) in {seconds:.1f} s."
        )
        self._draw_scene_graph()
        return extraction

    def export_scene_graph(self, output_dir: Path | None = None) -> dict[str, Path] | None:
        """The "Export scene graph" button: the CLI's files (scene_graph.json/png, points.ply) in RUN/scene_graph/.

        Builds the scene graph first if it has not been built.
        """
        from relationfield.scene_graph import write_scene_graph

        if self._require_query() is None:
            return None
        if output_dir is None:
            if self.run_dir is None:
                self.say("No run directory to export to.", attention=True)
                return None
            output_dir = self.run_dir / SCENE_GRAPH_DIR
        if self.extraction is None and self.build_scene_graph() is None:
            return None
        assert self.extraction is not None
        result = self.extraction
        paths = write_scene_graph(result.graph, Path(output_dir), result.points_world, result.point_node)
        self.say(f"Wrote {', '.join(str(p) for p in paths.values())}.")
        return paths

    def _drawn_links(self) -> list[SceneLink]:
        """Links whose best predicate beats "none", highest score first (at most MAX_DRAWN_LINKS)."""
        if self.extraction is None:
            return []
        links = [link for link in self.extraction.graph.links if not link.none_wins()]
        return sorted(links, key=lambda link: -float(link.score))[:MAX_DRAWN_LINKS]

    # ----------------------------------------------------------------- drawing
    def _replace_drawing(self, group: str, draw: Callable[[ViserServer, str], list[Any]]) -> None:
        """Remove what was drawn under ``group`` and draw it again (no-op without a viser server)."""
        server = self._server()
        if server is None:
            return
        for handle in self._scene_handles.pop(group, []):
            handle.remove()
        self._scene_handles[group] = draw(server, f"{SCENE_ROOT}/{group}")

    def _draw_reference(self) -> None:
        """A marker at the clicked point, and the object's points in object mode."""
        point, members = self._clicked, self._members
        assert point is not None
        scale = viser_scale()

        def draw(server: ViserServer, root: str) -> list[Any]:
            handles = [
                server.scene.add_icosphere(
                    f"{root}/marker",
                    radius=0.08,
                    color=REFERENCE_COLOR,
                    position=tuple(float(v) * scale for v in point.tolist()),
                )
            ]
            if members is not None:
                handles.append(
                    server.scene.add_point_cloud(
                        f"{root}/object", points=members.cpu().numpy() * scale, colors=REFERENCE_COLOR, point_size=0.04
                    )
                )
            return handles

        self._replace_drawing("reference", draw)

    def _draw_scene_graph(self) -> None:
        from relationfield.scene_graph import node_colors

        assert self.extraction is not None and self.query is not None
        graph = self.extraction.graph
        query = self.query
        scale = viser_scale()

        def to_viser(world: Any) -> np.ndarray:
            return (query.to_model(torch.as_tensor(np.asarray(world), dtype=torch.float32)) * scale).numpy()

        centres = {node.id: to_viser([node.centroid])[0] for node in graph.nodes}

        def draw(server: ViserServer, root: str) -> list[Any]:
            handles: list[Any] = []
            if len(self.extraction.points_world):
                handles.append(
                    server.scene.add_point_cloud(
                        f"{root}/points",
                        points=to_viser(self.extraction.points_world),
                        colors=node_colors(self.extraction.point_node),
                        point_size=0.03,
                    )
                )
            for node in graph.nodes:
                label = server.scene.add_label(f"{root}/nodes/{node.id}", node.display_name, position=centres[node.id])
                handles.append(label)
            for link in self._drawn_links():
                source, target = centres[link.source], centres[link.target]
                name = f"{link.source}_{link.target}"
                handles.append(
                    server.scene.add_spline_catmull_rom(
                        f"{root}/links/{name}", positions=np.stack([source, target]), line_width=2.0, color=LINK_COLOR
                    )
                )
                # the predicate sits nearer the subject, so the labels of a->b and b->a do not overlap
                handles.append(
                    server.scene.add_label(
                        f"{root}/predicates/{name}", link.predicate, position=source + 0.4 * (target - source)
                    )
                )
            return handles

        self._replace_drawing("scene_graph", draw)
