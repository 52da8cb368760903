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
