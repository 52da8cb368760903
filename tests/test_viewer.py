"""The viewer's query panel (relationfield.viewer) on the shared short-trained run.

The callbacks are driven programmatically (no browser): a simulated click on the ground-truth floor picks
the reference, "standing on" is typed, and training views are rendered through the model's camera path
(the one the viewer uses); the objects standing on the floor must rank first. A browser test starts
``ns-viewer`` and checks in headless Chromium that the panel is on the page.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from relationfield.viewer import RelationViewerControls

pytestmark = pytest.mark.slow

RELATION = "standing on"
REFERENCE_LABEL = "floor"
SMALL = 0.25
"""Shape checks render training views at this scale (renders are slow on a busy CPU)."""
RELEVANCY_VIEW_STEP = 4
"""The relation query is scored on every 4th training view."""
GUI_LABELS = (
    "Find",
    "Ask",
    "Reference",
    "Pick reference",
    "Object query",
    "Relation query",
    "Relevancy threshold",
    "Build scene graph",
    "Export scene graph",
)
CHROMIUM = Path("/usr/bin/chromium")


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def pipeline(trained_run):
    from relationfield.query import load_pipeline

    return load_pipeline(trained_run)


@pytest.fixture
def controls(pipeline, trained_run, tmp_path) -> RelationViewerControls:
    """Fresh controls on the loaded model, attached as the viewer would (exports go to tmp_path)."""
    pipeline.model.viewer_controls = RelationViewerControls()
    pipeline.model.viewer_controls.attach(pipeline, run_dir=tmp_path)
    return pipeline.model.viewer_controls


def ground_truth(capture: Path) -> tuple[dict[int, str], list[tuple[int, int, str]]]:
    data = json.loads((capture / "ground_truth" / "scene_graph.json").read_text())
    labels = {int(o["id"]): o["label"] for o in data["objects"]}
    return labels, [(int(s), int(o), p) for s, o, p in data["relationships"]]


def instance_map(capture: Path, image_filename: Path) -> np.ndarray:
    path = capture / "ground_truth" / "instances" / f"{Path(image_filename).stem}.png"
    return np.asarray(Image.open(path)).astype(int)


class RelationCase(NamedTuple):
    """A ground-truth relation: ``subjects`` are ``RELATION`` the ``reference``; click it in ``click_view``."""

    labels: dict[int, str]
    reference: int
    subjects: set[int]
    click_view: int


def relation_case(pipeline, capture: Path) -> RelationCase:
    """The floor, the objects standing on it, and the training view that shows the most floor."""
    labels, relations = ground_truth(capture)
    candidates = [i for i, label in labels.items() if label == REFERENCE_LABEL]
    subjects_of = {c: {s for s, o, p in relations if o == c and p == RELATION} for c in candidates}
    reference = max(candidates, key=lambda c: len(subjects_of[c]))
    subjects = subjects_of[reference]
    assert subjects, f"the synthetic scene has something {RELATION} the {REFERENCE_LABEL}"
    dataset = pipeline.datamanager.train_dataset
    visible = [int((instance_map(capture, name) == reference).sum()) for name in dataset.image_filenames]
    return RelationCase(labels, reference, subjects, int(np.argmax(visible)))


def click_ray(pipeline, capture: Path, view: int, object_id: int) -> tuple[Tensor, Tensor]:
    """The camera ray through the pixel of ``object_id`` deepest inside its mask in a training view."""
    from scipy import ndimage

    camera = pipeline.datamanager.train_dataset.cameras[view : view + 1]
    ids = instance_map(capture, pipeline.datamanager.train_dataset.image_filenames[view])
    assert ids.shape == (int(camera.height), int(camera.width))
    depth = ndimage.distance_transform_edt(ids == object_id)
    row, col = np.unravel_index(int(depth.argmax()), depth.shape)
    bundle = camera.generate_rays(camera_indices=0)
    return bundle.origins[row, col], bundle.directions[row, col]


def render_view(pipeline, view: int, scale: float = 1.0):
    """The model's camera render of a training view (the viewer's path), its camera and rays."""
    camera = pipeline.datamanager.train_dataset.cameras[view : view + 1]
    camera.rescale_output_resolution(scale)
    outputs = pipeline.model.get_outputs_for_camera(camera)
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
    return camera, bundle, outputs


def inside_box(world: np.ndarray, capture: Path, object_id: int, margin: float) -> np.ndarray:
    data = json.loads((capture / "ground_truth" / "scene_graph.json").read_text())
    box = next(o["aabb"] for o in data["objects"] if int(o["id"]) == object_id)
    low, high = np.array(box["min"]) - margin, np.array(box["max"]) + margin
    return ((world >= low) & (world <= high)).all(-1)


def assert_float_rgb(outputs: dict[str, Tensor], names, height: int, width: int) -> None:
    for name in names:
        image = outputs[name]
        assert image.shape == (height, width, 3) and image.dtype == torch.float32, name
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0, name


# --------------------------------------------------------------------------- discovery and hook


def test_nerfstudio_discovers_the_panel_and_the_model_stays_thin(pipeline):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    elements = parse_object(pipeline, ViewerElement, "Custom Elements")
    names = {element.name for _, element in elements}
    assert set(GUI_LABELS) <= names
    assert all(path.startswith("Custom Elements/model/viewer_controls/") for path, _ in elements)
    controls = parse_object(pipeline, ViewerControl, "Custom Elements")
    assert [type(c).__name__ for _, c in controls] == ["_ViewerHook"]
    # no parameters, so checkpoints are unchanged
    assert not any("viewer_controls" in key for key in pipeline.model.state_dict())


def test_outputs_unchanged_until_attached_and_no_encoder_before_a_query(pipeline, monkeypatch):
    import relationfield.encoders

    def no_encoder(*_args, **_kwargs):
        raise AssertionError("a text encoder was loaded without a query")

    monkeypatch.setattr(relationfield.encoders, "load_text_encoder", no_encoder)
    pipeline.model.viewer_controls = RelationViewerControls()
    _, _, plain = render_view(pipeline, 0, SMALL)
    assert not any(key.endswith(("_relevancy", "_composited", "_rgb")) and key != "rgb" for key in plain)

    controls = pipeline.model.viewer_controls
    controls.attach(pipeline)
    camera, _, outputs = render_view(pipeline, 0, SMALL)
    height, width = int(camera.height), int(camera.width)
    assert set(outputs) - set(plain) == {"instance_rgb"}
    assert_float_rgb(outputs, ["instance_rgb"], height, width)
    assert controls.query is not None and controls.query._text_cache == {}
    assert pipeline.datamanager.labels is None  # no label store either


def test_a_query_before_a_reference_shows_a_message(controls, pipeline):
    controls.set_relation_query(RELATION)  # no reference picked yet: a message, no exception
    assert controls.relation_text == RELATION and controls.reference is None
    assert "no reference" in controls.status.content and "Pick reference" in controls.status.content
    camera, _, outputs = render_view(pipeline, 0, SMALL)
    assert "relation_relevancy" not in outputs and "relation_composited" not in outputs
    assert controls.query is not None and controls.query._text_cache  # the texts were encoded once

    controls.set_relation_query(";")  # an empty query is a message too
    assert controls.relation_text == "" and "empty query" in controls.status.content

    controls.set_object_query("chair; sofa")
    camera, _, outputs = render_view(pipeline, 0, SMALL)
    names = ["object_relevancy", "object_composited", "instance_rgb"]
    assert_float_rgb(outputs, names, int(camera.height), int(camera.width))


def test_controls_do_nothing_harmful_when_detached():
    controls = RelationViewerControls()
    assert controls.on_click((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)) is None
    controls.set_relation_query(RELATION)
    controls.start_pick()
    assert controls.build_scene_graph() is None and controls.export_scene_graph() is None
    assert "No trained pipeline" in controls.status.content
    controls.status.content = ""
    assert controls.find("mug standing on desk") is None
    assert "No trained pipeline" in controls.status.content
    controls.status.content = ""
    assert controls.ask("what is on the desk?") is None
    assert "No trained pipeline" in controls.status.content


# --------------------------------------------------------------------------- relation query from a click


def test_clicking_the_floor_and_asking_what_stands_on_it(controls, pipeline, synth_capture):
    labels, floor, subjects, click_view = relation_case(pipeline, synth_capture)
    origin, direction = click_ray(pipeline, synth_capture, click_view, floor)
    reference = controls.on_click(origin, direction)
    assert reference is not None and reference.shape == (1, 3)
    world = controls.query.to_world(reference.cpu()).numpy()
    assert inside_box(world, synth_capture, floor, margin=0.15).all(), world
    controls.set_relation_query(RELATION)

    # mean relevancy over each object's pixels in every 4th training view (rendered at half resolution)
    dataset = pipeline.datamanager.train_dataset
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for view in range(0, len(dataset), RELEVANCY_VIEW_STEP):
        camera, bundle, outputs = render_view(pipeline, view, 0.5)
        assert_float_rgb(outputs, ["relation_relevancy", "relation_composited"], int(camera.height), int(camera.width))
        relevancy = controls.relevancy_maps(bundle, outputs)["relation"].cpu().numpy()
        ids = instance_map(synth_capture, dataset.image_filenames[view])[::2, ::2]
        assert ids.shape == relevancy.shape
        for i in np.unique(ids[(ids > 0) & (ids != floor)]).tolist():
            sums[i] = sums.get(i, 0.0) + float(relevancy[ids == i].sum())
            counts[i] = counts.get(i, 0) + int((ids == i).sum())
    mean = {i: sums[i] / counts[i] for i in counts if counts[i] >= 20}
    ranking = sorted(mean, key=lambda i: -mean[i])
    shown = [f"{labels[i]}#{i}{'*' if i in subjects else ''}={mean[i]:.2f}" for i in ranking]
    on_floor = [i for i in ranking if i in subjects]
    others = [i for i in ranking if i not in subjects]
    assert len(on_floor) >= 2 and len(others) >= 2, shown
    # a 300-step CPU run: the most relevant object stands on the clicked floor, and objects standing on it
    # outrank the others more often than chance (the rank statistic, not a relevancy threshold)
    assert ranking[0] in subjects, shown
    wins = np.mean([mean[a] > mean[b] for a in on_floor for b in others])
    assert wins > 0.5, (wins, shown)


def test_a_viewer_click_is_converted_from_viser_units(controls, pipeline, synth_capture):
    """The whole GUI path: button, viser click event (scaled scene), marker drawn in the scene."""
    import viser
    from viser import ScenePointerEvent

    from relationfield.viewer.render import viser_scale

    case = relation_case(pipeline, synth_capture)
    origin, direction = click_ray(pipeline, synth_capture, case.click_view, case.reference)
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        viewer = SimpleNamespace(pipeline=pipeline, viser_server=server, train_lock=threading.Lock(), log_filename=None)
        controls.viewer_hook._setup(viewer)  # what nerfstudio's Viewer does with every ViewerControl
        controls.start_pick()
        callback = server.scene._scene_pointer_cb
        assert callback is not None
        event = ScenePointerEvent(
            client=None,  # type: ignore[arg-type]
            client_id=0,
            event_type="click",
            ray_origin=tuple(float(v) * viser_scale() for v in origin),
            ray_direction=tuple(float(v) for v in direction),
            screen_pos=((0.5, 0.5),),
        )
        callback(event)
        assert server.scene._scene_pointer_cb is None  # one click per "Pick reference"
        # the same point as a pick with the ray in nerfstudio's frame
        direct = RelationViewerControls()
        direct.attach(pipeline)
        expected = direct.on_click(origin, direction)
        assert controls.reference is not None and expected is not None
        assert torch.allclose(controls.reference, expected, atol=1e-4)
        assert len(controls._scene_handles["reference"]) == 1  # the marker
    finally:
        server.stop()


def test_object_reference_and_scene_graph_build_and_export(controls, pipeline, synth_capture, tmp_path):
    import viser

    from relationfield.extraction import ExtractionConfig
    from relationfield.scene_graph import read_scene_graph

    case = relation_case(pipeline, synth_capture)
    controls.extraction_config = ExtractionConfig(max_views=5, max_distance=1.0)
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        controls.attach(pipeline, SimpleNamespace(viser_server=server), run_dir=tmp_path)
        result = controls.build_scene_graph()
        assert result is not None and len(result.graph.nodes) >= 3
        drawn = controls._scene_handles["scene_graph"]
        assert len(drawn) == 1 + len(result.graph.nodes) + 2 * len(controls._drawn_links())

        # object mode: the reference is points of the clicked object's cluster (from the built graph)
        controls.set_reference_mode("object")
        reference = controls.on_click(*click_ray(pipeline, synth_capture, case.click_view, case.reference))
        assert reference is not None and 1 < len(reference) <= 16
        world = controls.query.to_world(reference.cpu()).numpy()
        assert inside_box(world, synth_capture, case.reference, margin=0.15).mean() >= 0.5, world

        paths = controls.export_scene_graph()
        assert paths is not None and set(paths) == {"json", "png", "ply"}
        assert all(p.parent == tmp_path / "scene_graph" and p.stat().st_size > 0 for p in paths.values())
        graph = read_scene_graph(paths["json"])
        assert len(graph.nodes) == len(result.graph.nodes) and "extraction_seconds" in graph.metadata
    finally:
        server.stop()


# --------------------------------------------------------------------------- "Find": referring queries (fakes)
# A fake run whose relevancies the tests choose: node i's points lie at x = i, so a stub FieldQuery method
# tells from the points which node it is scoring. No model, no viser server, no encoder.

SCENE_LABELS = {1: "desk", 2: "mug", 3: "mug", 4: "floor", 5: "lamp"}
OBJECT_SCORES = {"mug": {2: 0.9, 3: 0.85}, "desk": {1: 0.9}, "lamp": {5: 0.8, 1: 0.4, 2: 0.3, 3: 0.2}}
"""Object relevancy per text and node (0.1 elsewhere)."""
RELATION_SCORES = {("standing on", 2, 1): 0.8, ("standing on", 3, 1): 0.3, ("standing on", 3, 4): 0.9}
"""Relation relevancy per (predicate, candidate, reference) (0.1 elsewhere): mug #2 stands on the desk."""


class FakeScene:
    """The part of viser's scene API that the panel draws with; keeps what is on screen by name."""

    def __init__(self) -> None:
        self.shown: dict[str, dict] = {}

    def _add(self, name: str, **kwargs) -> SimpleNamespace:
        self.shown[name] = kwargs
        return SimpleNamespace(remove=lambda: self.shown.pop(name, None))

    def add_point_cloud(self, name: str, **kwargs) -> SimpleNamespace:
        return self._add(name, **kwargs)

    def add_label(self, name: str, text: str, **kwargs) -> SimpleNamespace:
        return self._add(name, text=text, **kwargs)


class FakeServer:
    def __init__(self) -> None:
        self.scene = FakeScene()
        self.notifications: list[str] = []

    def get_clients(self) -> dict:
        return {0: SimpleNamespace(add_notification=lambda title, body, auto_close: self.notifications.append(body))}


def fake_pipeline() -> SimpleNamespace:
    """Just enough of a pipeline for FieldQuery: the heads' names and an identity dataparser transform."""
    from relationfield.query import HEADS

    model = SimpleNamespace(**dict.fromkeys(HEADS), device=torch.device("cpu"))
    outputs = SimpleNamespace(dataparser_transform=torch.eye(4)[:3], dataparser_scale=1.0)
    return SimpleNamespace(model=model, datamanager=SimpleNamespace(train_dataparser_outputs=outputs, labels=None))


def fake_extraction():
    """Five objects of four points each (node i at x = i) and two noise points."""
    from relationfield.extraction import Extraction
    from relationfield.scene_graph import SceneGraph, SceneNode

    points, ids, nodes = [], [], []
    for i, label in SCENE_LABELS.items():
        cloud = np.array([[i, 0.0, 0.0], [i, 0.1, 0.0], [i, 0.0, 0.1], [i, 0.1, 0.1]], dtype=np.float32)
        points.append(cloud)
        ids += [i] * len(cloud)
        low, high = tuple(cloud.min(0).tolist()), tuple(cloud.max(0).tolist())
        nodes.append(SceneNode(i, label, [(label, 0.9)], tuple(cloud.mean(0).tolist()), low, high, len(cloud)))
    points.append(np.array([[9.0, 9.0, 9.0], [8.0, 8.0, 8.0]], dtype=np.float32))
    ids += [-1, -1]
    return Extraction(SceneGraph(nodes=nodes), np.concatenate(points), np.array(ids))


def node_of(points: Tensor) -> int:
    """The fake scene's node of a set of points (all of one node)."""
    ids = points[:, 0].round().long().unique().tolist()
    assert len(ids) == 1, ids
    return int(ids[0])


@pytest.fixture
def fake_controls(monkeypatch, tmp_path) -> tuple[RelationViewerControls, FakeServer]:
    """Controls attached to the fake run and a fake viser server, with the fake scene graph built."""
    server = FakeServer()
    controls = RelationViewerControls()
    controls.attach(fake_pipeline(), SimpleNamespace(viser_server=server), run_dir=tmp_path)
    controls.extraction = fake_extraction()
    query = controls.query
    assert query is not None

    def object_relevancy(points: Tensor, text: str) -> Tensor:
        return torch.full((len(points),), OBJECT_SCORES.get(text, {}).get(node_of(points), 0.1))

    def relation_relevancy(points: Tensor, references: Tensor, text: str) -> Tensor:
        key = (text, node_of(points), node_of(references))
        return torch.full((len(points),), RELATION_SCORES.get(key, 0.1))

    monkeypatch.setattr(query, "object_relevancy", object_relevancy)
    monkeypatch.setattr(query, "relation_relevancy", relation_relevancy)
    return controls, server


def highlighted(server: FakeServer) -> int | None:
    """The node whose points the "Find" highlight shows (None: no highlight)."""
    from relationfield.viewer.render import viser_scale

    shown = server.scene.shown.get("/relationfield/found/points")
    return None if shown is None else node_of(torch.from_numpy(shown["points"] / viser_scale()))


def test_the_find_box_is_shown_first():
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    names = [element.name for _, element in parse_object(RelationViewerControls(), ViewerElement, "Custom")]
    assert names[:3] == ["Find", "Ask", "Reference"] and names.count("Find") == 1


def test_find_answers_a_referring_query_and_highlights_the_winner(fake_controls):
    controls, server = fake_controls
    answer = controls.find("the mug standing on the desk")
    assert answer is not None and answer.best is not None
    assert (answer.query.subject, answer.query.predicate, answer.query.reference) == ("mug", "standing on", "desk")
    assert answer.best.node == 2 and answer.references == [1]
    assert highlighted(server) == 2
    assert server.scene.shown["/relationfield/found/name"]["text"] == "mug #2"
    status = controls.status.content
    # the winner with its combined score (0.9 * 0.8), the other mug as runner-up, the reference used
    assert "mug #2 (0.720)" in status and "runners-up: mug #3 0.255" in status, status
    assert "reference: desk #1" in status, status
    assert "floor #4" not in status and not server.notifications  # non-candidates are no runners-up


def test_find_takes_a_node_id_as_reference_and_plain_object_queries(fake_controls):
    controls, server = fake_controls
    answer = controls.find("mug standing on #4")
    assert answer is not None and answer.references == [4] and answer.best is not None and answer.best.node == 3
    assert highlighted(server) == 3 and "reference: floor #4" in controls.status.content

    answer = controls.find("lamp")  # no predicate: the best-matching object
    assert answer is not None and answer.best is not None and answer.best.node == 5
    assert highlighted(server) == 5
    status = controls.status.content
    assert "lamp #5 (0.800)" in status and "runners-up: desk #1 0.400, mug #2 0.300, mug #3 0.200." in status, status
    assert "reference" not in status


def test_find_builds_the_scene_graph_once_and_only_for_a_well_formed_query(fake_controls, monkeypatch):
    controls, server = fake_controls
    controls.extraction = None
    builds = []

    def build():
        builds.append(1)
        controls.extraction = fake_extraction()
        return controls.extraction

    monkeypatch.setattr(controls, "build_scene_graph", build)
    assert controls.find("standing on") is None  # a predicate without a reference: a message, not a build
    assert "no reference" in controls.status.content and server.notifications and not builds
    assert controls.find("mug standing on desk") is not None and controls.find("lamp") is not None
    assert len(builds) == 1


def test_a_malformed_find_query_is_a_message_and_clears_the_highlight(fake_controls):
    controls, server = fake_controls
    assert controls.find("mug standing on the desk") is not None and highlighted(server) == 2
    for text in ("standing on", "mug standing on #x", "mug standing on #9"):
        assert controls.find(text) is None, text  # a UserError never reaches the viewer
        assert highlighted(server) is None and "**RelationField:**" in controls.status.content
        assert server.notifications[-1] in controls.status.content
    assert "no reference after it" in server.notifications[0]
    assert "'#' followed by digits" in server.notifications[1] and "no object #9" in server.notifications[2]
    assert controls.find("") is None and highlighted(server) is None


def test_typing_in_the_find_box_answers_once_the_text_rests(fake_controls, monkeypatch):
    import relationfield.viewer.referring_box as referring_box

    controls, server = fake_controls
    asked = []
    answer_referring = referring_box.answer_referring

    def counted(query, objects, parsed, config=None):
        asked.append(parsed.text())
        return answer_referring(query, objects, parsed, config)

    monkeypatch.setattr(referring_box, "answer_referring", counted)
    box = controls._referring
    box.delay = 0.5  # far longer than the gaps between these "keystrokes"
    for text in ("l", "la", "lam", "lamp"):
        controls.find_query.cb_hook(SimpleNamespace(value=text))  # what viser calls on every keystroke
    assert box._timer is not None
    box._timer.join(timeout=10)
    assert asked == ["lamp"] and highlighted(server) == 5
    box._submit("lamp")  # the callback of setting the box's value from code: not answered twice
    assert asked == ["lamp"]


def chat_client(*replies: str | Exception) -> SimpleNamespace:
    """An OpenAI-compatible client without a server: its chat completions are ``replies`` in turn (an
    exception is raised); ``requests`` records what was sent."""
    queue, requests = list(replies), []

    def create(**kwargs) -> SimpleNamespace:
        requests.append(kwargs)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        message = SimpleNamespace(content=reply, refusal=None)
        return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop")], usage=None)

    return SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)), requests=requests)


def chat_answer(text: str, node_ids: list, referring: list[str]) -> str:
    return json.dumps({"answer": text, "node_ids": node_ids, "referring": referring})


def highlighted_nodes(server: FakeServer) -> list[int]:
    """The nodes whose points the shared "Find" / "Ask" highlight shows, sorted."""
    from relationfield.viewer.render import viser_scale

    shown = server.scene.shown
    clouds = [v["points"] for k, v in shown.items() if k.startswith("/relationfield/found/") and k.endswith("/points")]
    return sorted(node_of(torch.from_numpy(points / viser_scale())) for points in clouds)


def test_ask_highlights_the_answers_objects_and_warns(fake_controls):
    controls, server = fake_controls
    assert controls.find("lamp") is not None and highlighted_nodes(server) == [5]
    reply = chat_answer("The mug is on the desk.", [2, 99, 1], ["mug standing on desk", "mug standing on #4"])
    controls._ask.client = client = chat_client(reply)
    answer = controls.ask("what is on the desk?")
    assert answer is not None and answer.node_ids == [2, 1] and answer.dropped_ids == [99]
    # each referring expression is checked with the "Find" rule on the field
    assert answer.referring_checks == {"mug standing on desk": 2, "mug standing on #4": 3}
    assert "what is on the desk?" in json.dumps(client.requests[0]["messages"])
    assert highlighted_nodes(server) == [1, 2]  # the lamp's highlight is gone; #99 does not exist
    names = {text["text"] for key, text in server.scene.shown.items() if key.endswith("/name")}
    assert names == {"mug #2", "desk #1"}
    status = controls.status.content
    assert "The mug is on the desk." in status and "objects: mug #2, desk #1." in status, status
    assert "#99" in status and "'mug standing on #4'" in status and "mug #3" in status, status
    assert "'mug standing on desk'" not in status  # its pick is among the objects
    assert controls.find("desk") is not None and highlighted_nodes(server) == [1]  # one highlight at a time


def test_ask_errors_go_to_the_status_line(fake_controls, monkeypatch):
    import httpx
    import openai

    controls, server = fake_controls
    refused = openai.AuthenticationError(
        "bad key", response=httpx.Response(401, request=httpx.Request("POST", "http://x/v1")), body=None
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cases = [
        (None, "no API key"),  # the OpenAI API without a key: nothing is sent
        (chat_client(refused), "HTTP 401"),
        (chat_client("The mug, I think.", '{"answer": "The mug."}'), "malformed twice"),
    ]
    for client, reason in cases:
        assert controls.find("lamp") is not None and highlighted_nodes(server) == [5]
        controls._ask.client = client
        assert controls.ask("what is on the desk?") is None  # a UserError never reaches the viewer
        assert reason in controls.status.content and reason in server.notifications[-1], controls.status.content
        assert highlighted_nodes(server) == [] and controls._ask.answer is None


def test_typing_in_the_ask_box_asks_once_without_holding_the_training_lock(fake_controls, monkeypatch):
    import relationfield.viewer.ask_box as ask_box

    controls, server = fake_controls
    lock = threading.Lock()
    controls.viewer.train_lock = lock
    controls.extraction, builds, checks = None, [], []

    def build():
        assert lock.locked()  # the field's work pauses training
        builds.append(1)
        controls.extraction = fake_extraction()
        return controls.extraction

    def counted(query, objects, parsed, config=None):
        checks.append(lock.locked())
        return answer_referring(query, objects, parsed, config)

    answer_referring = ask_box.answer_referring
    monkeypatch.setattr(controls, "build_scene_graph", build)
    monkeypatch.setattr(ask_box, "answer_referring", counted)
    box = controls._ask
    box.client = chat_client(chat_answer("The mug.", [2], ["mug standing on desk"]))
    create = box.client.chat.completions.create
    locked_during_request = []

    def request(**kwargs):
        locked_during_request.append(lock.locked())  # the viewer renders while the model answers
        return create(**kwargs)

    box.client.chat.completions.create = request
    box.delay = 0.5
    for text in ("w", "wh", "what is on the desk?"):
        controls.find_question.cb_hook(SimpleNamespace(value=text))
    assert box._timer is not None
    box._timer.join(timeout=10)
    assert locked_during_request == [False] and checks == [True] and builds == [1]
    assert box.answer is not None and highlighted_nodes(server) == [2]
    box._submit("what is on the desk?")  # the callback of setting the box's value from code: not asked twice
    assert len(box.client.requests) == 1


def test_export_records_itself_for_cli_queries(fake_controls, tmp_path):
    from relationfield.graph_cache import REGISTRY_FILE, find_graph

    controls, _ = fake_controls
    assert controls.export_scene_graph(tmp_path / "no_config") is not None
    assert not (tmp_path / REGISTRY_FILE).exists()  # no config.yml in the run directory: nothing to record for
    (tmp_path / "config.yml").write_text("method_name: relationfield-lite\n")
    paths = controls.export_scene_graph()
    assert paths is not None and paths["json"].parent == tmp_path / "scene_graph"
    found = find_graph(tmp_path / "config.yml")
    assert found is not None and found.source == "export" and found.directory == (tmp_path / "scene_graph").resolve()
    assert sorted(found.instances(SimpleNamespace(to_model=lambda points: points))) == sorted(SCENE_LABELS)


# --------------------------------------------------------------------------- ns-viewer in a browser


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} before opening port {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


NETWORK_GUARD = """
import ipaddress, socket
_connect = socket.socket.connect
def _guarded(self, address):
    if isinstance(address, tuple):
        host = str(address[0]).split("%")[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            with open({log!r}, "a") as log:
                log.write(repr(address) + "\\n")
            raise ConnectionRefusedError("no network in tests")
    return _connect(self, address)
socket.socket.connect = _guarded
"""


class Processes:
    """Subprocesses started by a test, each in its own process group, all ended in the finalizer."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        handle = open(log, "wb")
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        handle.close()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()


def chromium_command(user_data: Path, url: str) -> list[str]:
    return [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing but loopback resolves
        "--window-size=1400,1000",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        url,
    ]


def page_text(user_data: Path, url: str, labels, timeout: float) -> str:
    """Poll the page's text over the DevTools protocol until every label is on it (or time runs out)."""
    websockets_sync = pytest.importorskip("websockets.sync.client", reason="needs websockets >= 11 (viser needs it)")
    port_file = user_data / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not port_file.is_file() or not port_file.read_text().strip():
        assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
        time.sleep(0.2)
    devtools = int(port_file.read_text().split()[0])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    target = None
    while target is None:
        assert time.monotonic() < deadline, "Chromium did not open the page"
        pages = json.loads(opener.open(f"http://127.0.0.1:{devtools}/json/list", timeout=10).read())
        target = next((p for p in pages if p.get("type") == "page" and p.get("url", "").startswith(url)), None)
        time.sleep(0.2)
    options = {"max_size": None}
    if "proxy" in inspect.signature(websockets_sync.connect).parameters:
        options["proxy"] = None
    text = ""
    with websockets_sync.connect(target["webSocketDebuggerUrl"], **options) as connection:
        request = 0
        while time.monotonic() < deadline:
            request += 1
            connection.send(
                json.dumps(
                    {
                        "id": request,
                        "method": "Runtime.evaluate",
                        "params": {"expression": "document.body ? document.body.innerText : ''", "returnByValue": True},
                    }
                )
            )
            while True:
                reply = json.loads(connection.recv(timeout=30))
                if reply.get("id") == request:
                    break
            text = str(reply.get("result", {}).get("result", {}).get("value", ""))
            if all(label in text for label in labels):
                return text
            time.sleep(1.0)
    return text


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="headless browser test needs Debian's chromium (/usr/bin/chromium)")
def test_ns_viewer_shows_the_panel_in_a_browser(trained_run, processes, tmp_path):
    ns_viewer = Path(sys.executable).parent / "ns-viewer"
    assert ns_viewer.is_file() or shutil.which("ns-viewer"), "nerfstudio's ns-viewer script is installed"
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    attempts = tmp_path / "network_attempts.txt"
    (guard_dir / "sitecustomize.py").write_text(NETWORK_GUARD.replace("{log!r}", repr(str(attempts))))
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(guard_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    port = free_port()
    viewer = processes.start(
        [
            str(ns_viewer if ns_viewer.is_file() else shutil.which("ns-viewer")),
            "--load-config",
            str(trained_run),
            "--viewer.websocket-host",
            "127.0.0.1",
            "--viewer.websocket-port",
            str(port),
        ],
        tmp_path / "ns-viewer.log",
        env,
    )
    try:
        wait_for_port(port, viewer, timeout=300)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{(tmp_path / 'ns-viewer.log').read_text(errors='replace')[-3000:]}") from error
    url = f"http://127.0.0.1:{port}/"
    user_data = tmp_path / "chromium-profile"
    processes.start(chromium_command(user_data, url), tmp_path / "chromium.log", dict(os.environ))
    text = page_text(user_data, url, GUI_LABELS, timeout=180)
    missing = [label for label in GUI_LABELS if label not in text]
    assert not missing, f"not on the page: {missing}\npage text:\n{text[:3000]}"
    assert viewer.poll() is None, "ns-viewer is still running"
    assert not attempts.exists(), f"ns-viewer tried to reach the network: {attempts.read_text()}"
