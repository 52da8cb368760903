"""Images of a relation query for the README, made through the viewer's own code path.

Loads a run, picks the reference the way the viewer's "Pick reference" click does (the ray through one
pixel of a training view), types a relation query and renders that view with the model's camera render,
which is what ns-viewer shows. Writes OUTPUT: the rendered RGB, ``relation_relevancy`` and
``relation_composited`` side by side.

With ``--browser``, it also serves the run in nerfstudio's viewer (in this process, on 127.0.0.1), opens it
in headless Chromium (/usr/bin/chromium), moves the view to the training camera, selects the
``relation_composited`` output and saves a screenshot of the whole page (panel included) next to OUTPUT
(``*_viewer.png``).

The reference pixel is the one that best matches ``--reference`` (an object query on the same view), or
``--pixel ROW COL``.

With ``--find TEXT`` it instead screenshots a "Find" query (a referring query such as "box standing on box",
or an object query): it serves the run in the viewer, opens it in headless Chromium and types TEXT into the
panel's "Find" text box through the browser (DevTools ``Input.insertText`` into the focused box, so the
query goes through viser's text callback and the box's debounce exactly as a user's typing does). Once the
answer is in the status line and its highlight is drawn, it hides the scene graph that the first query
built (its per-object colours would cover the render; ``--find-scene-graph`` keeps it), moves the view to a
training camera (its pose and vertical field of view) that shows the answer and its references (``--view
N``, or the view that shows them whole in the page's viewport, unoccluded, large and apart: see
:func:`showing_view`), waits for a full-resolution render and saves a screenshot of the whole page (panel
and status line included) to OUTPUT, downscaled to ``--find-width`` pixels wide (256 colours above
``--find-max-kb``). The relation options are unused.

Usage:

    python scripts/viewer_screenshot.py --load-config outputs/.../config.yml --relation "standing on" \
        --reference floor --output docs/viewer_relation.png --browser
    python scripts/viewer_screenshot.py --load-config outputs/.../config.yml --find "box standing on box" \
        --browser-resolution 512 --output docs/viewer_find.png
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
VIEW_REACH = 0.8
"""--find: a chosen view shows the found instances within this fraction of the half viewport from its centre."""
SIGHT_TOLERANCE = 0.2
"""--find: the ray to an instance's centroid must hit within this fraction of its extent of its points."""


@dataclass
class Args:
    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output: Path = Path("viewer_relation.png")
    """PNG to write (rgb | relation_relevancy | relation_composited)."""
    relation: str = "standing on"
    """Relation query (phrases after ';' are extra negatives)."""
    reference: str = "floor"
    """Object query whose best-matching pixel of the view is clicked as the reference."""
    pixel: tuple[int, int] | None = None
    """Click this (row, column) of the view instead of searching for --reference."""
    view: int | None = None
    """Training view to render (default: 0; with --find, one that shows the answer and its references)."""
    reference_mode: str = "point"
    """point or object (the instance cluster under the click)."""
    threshold: float = 0.5
    """Relevancy threshold of relation_composited."""
    scale: int = 3
    """Nearest-neighbour upscaling of OUTPUT (training views are small)."""
    browser: bool = False
    """Also screenshot the live viewer page in headless Chromium."""
    browser_resolution: int = 256
    """The viewer's "Max res" for the browser screenshot (renders are slow on a CPU)."""
    browser_timeout: float = 300.0
    """Seconds to wait for the viewer to render the query in the browser."""
    find: str | None = None
    """Type this into the viewer's "Find" box and screenshot the page to OUTPUT (instead of a relation query)."""
    find_timeout: float = 900.0
    """Seconds to wait for the "Find" answer (the first one builds the scene graph: minutes on a CPU)."""
    find_width: int = 1000
    """Width in pixels of the --find screenshot (downscaled from the browser window)."""
    find_max_kb: int = 400
    """Above this size the --find screenshot is written as a 256-colour PNG."""
    find_scene_graph: bool = False
    """Keep the scene graph that the first "Find" builds drawn in the 3D view (hidden: it covers the render)."""


def best_pixel(controls, camera, text: str) -> tuple[int, int]:
    """The pixel of the view with the highest object relevancy for ``text``."""
    controls.set_object_query(text)
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
    outputs = controls.query.model.get_outputs_for_camera(camera)
    relevancy = controls.relevancy_maps(bundle, outputs)["object"]
    controls.set_object_query("")
    row, col = np.unravel_index(int(relevancy.argmax()), tuple(relevancy.shape))
    return int(row), int(col)


def panels(pipeline, camera, scale: int) -> np.ndarray:
    """rgb | relation_relevancy | relation_composited of the viewer's camera render, as uint8."""
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(camera)
    names = ("rgb", "relation_relevancy", "relation_composited")
    if not all(name in outputs for name in names):
        raise SystemExit(pipeline.model.viewer_controls.status.content)
    image = np.concatenate([outputs[name].clamp(0, 1).cpu().numpy() for name in names], axis=1)
    return (image * 255).round().astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)


class DevTools:
    """The smallest Chrome DevTools Protocol client: one page, request/response calls."""

    def __init__(self, user_data: Path, url: str, timeout: float) -> None:
        from websockets.sync.client import connect

        deadline = time.monotonic() + timeout
        port_file = user_data / "DevToolsActivePort"
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise SystemExit("Chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        page = None
        while page is None:
            if time.monotonic() > deadline:
                raise SystemExit("Chromium did not open the viewer page")
            pages = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next((p for p in pages if p.get("type") == "page" and p.get("url", "").startswith(url)), None)
            time.sleep(0.2)
        self.connection = connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.connection.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.connection.recv(timeout=60))
            if reply.get("id") == self.next_id:
                return reply.get("result", {})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def rendered_size(viewer) -> int:
    """The longer side of the last image the viewer sent (from its "Resolution: WxHpx" line)."""
    line = viewer.stats_markdown.content.split("Resolution:")[-1].strip()
    sizes = [int(part) for part in line.removesuffix("px").split("x") if part.isdigit()]
    return max(sizes, default=0)


@contextlib.contextmanager
def served(pipeline, args: Args) -> Iterator[tuple[Any, DevTools, Any]]:
    """Serve the run in nerfstudio's viewer and open it in headless Chromium: (viewer, devtools, client)."""
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.viewer.viewer import Viewer

    port = free_port()
    config = ViewerConfig(websocket_host="127.0.0.1", websocket_port=port)
    viewer = Viewer(
        config,
        log_filename=args.load_config.parent / config.relative_log_filename,
        datapath=pipeline.datamanager.get_datapath(),
        pipeline=pipeline,
        train_lock=threading.Lock(),
    )  # attaches the model's viewer controls (their query and reference are kept)
    viewer.init_scene(train_dataset=pipeline.datamanager.train_dataset, train_state="completed")
    viewer.control_panel._max_res.value = args.browser_resolution
    url = f"http://127.0.0.1:{port}/"
    user_data = Path(tempfile.mkdtemp(prefix="chromium-"))
    command = [
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
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1500,1500",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        url,
    ]
    chromium = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        devtools = DevTools(user_data, url, args.browser_timeout)
        wait_until(lambda: len(viewer.viser_server.get_clients()) > 0, args.browser_timeout, "the page to connect")
        client = next(iter(viewer.viser_server.get_clients().values()))
        yield viewer, devtools, client
    finally:
        if chromium.poll() is None:
            os.killpg(chromium.pid, signal.SIGTERM)
        chromium.wait(timeout=10)
        for machine in viewer.render_statemachines.values():
            machine.running = False
            machine.join(timeout=60)
        viewer.viser_server.stop()


def move_to_view(viewer, client, view: int) -> None:
    """Put the page's camera at training view ``view`` (the nearest one the viewer drew a frustum for)."""
    frustum = viewer.camera_handles[min(viewer.camera_handles, key=lambda i: abs(i - view))]
    client.camera.position, client.camera.wxyz = frustum.position, frustum.wxyz


def wait_for_full_render(viewer, args: Args) -> None:
    time.sleep(2.0)
    full = args.browser_resolution
    wait_until(lambda: rendered_size(viewer) == full, args.browser_timeout, "a full-resolution render")
    time.sleep(3.0)  # the frame reaches the page


def screenshot(devtools: DevTools) -> bytes:
    return base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])


def browser_screenshot(pipeline, args: Args, output: Path) -> None:
    """Serve the run in nerfstudio's viewer, show relation_composited in headless Chromium, screenshot it."""
    with served(pipeline, args) as (viewer, devtools, client):
        move_to_view(viewer, client, args.view or 0)
        output_dropdown = viewer.control_panel._output_render
        wait_until(lambda: "relation_composited" in output_dropdown.options, args.browser_timeout, "a first render")
        output_dropdown.value = "relation_composited"
        viewer.set_camera_visibility(False)
        wait_for_full_render(viewer, args)
        output.write_bytes(screenshot(devtools))


FOCUS_TEXT_BOX = """
(() => {
  const label = %s;
  const leaves = [...document.querySelectorAll("body *")].filter(
    (e) => e.childElementCount === 0 && e.textContent.trim() === label);
  for (const leaf of leaves) {
    for (let node = leaf.parentElement, depth = 0; node && depth < 6; node = node.parentElement, depth++) {
      const inputs = node.querySelectorAll("input[type=text], input:not([type]), textarea");
      if (inputs.length === 1) {
        inputs[0].scrollIntoView({block: "center"});
        inputs[0].focus();
        inputs[0].select();
        return document.activeElement === inputs[0];
      }
    }
  }
  return false;
})()
"""


def type_into(devtools: DevTools, label: str, text: str) -> None:
    """Focus the GUI text box labelled ``label`` on the page and type ``text`` into it (as the keyboard does)."""
    focused = devtools.call("Runtime.evaluate", expression=FOCUS_TEXT_BOX % json.dumps(label), returnByValue=True)
    if not focused.get("result", {}).get("value"):
        raise SystemExit(f"no text box labelled {label!r} on the viewer page")
    devtools.call("Input.insertText", text=text)


def showing_view(model, cameras, instances: list[torch.Tensor], fov: float, aspect: float) -> int:
    """The training view that shows the instances (points [N, 3], nerfstudio frame) whole, large and apart.

    The page's camera is put at the view's pose with vertical field of view ``fov`` (radians) and the
    viewport's ``aspect`` (width / height); positions are in its normalised coordinates (the border at 1).
    A view's reach is how far from the viewport's centre the instances' points project (the largest, over
    the instances, of the 98th percentile of ``max(|x|, |y|)``; infinite when a point is behind the camera).
    Of the views whose reach is at most ``VIEW_REACH``, the one of highest ``distance ** 2 / size`` wins
    (distance: the largest between two centroids; size: the instances' mean apparent extent), i.e. where they
    look large and apart: looking down on two stacked boxes shows them overlapping, a side view shows both.
    One instance: the view where it looks largest. Without a framed view, the one of least reach. The ray to
    each centroid must first hit that instance (nothing in front of it), else the next view is taken.
    """
    c2w = cameras.camera_to_worlds.float()  # [V, 3, 4], OpenGL axes: x right, y up, looking along -z
    half = float(np.tan(fov / 2))

    def project(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [P, 3] -> ndc [V, P, 2], depth [V, P]
        local = torch.einsum("vji,vpj->vpi", c2w[:, :, :3], points[None].float() - c2w[:, None, :, 3])  # R^T (p-t)
        depth = -local[..., 2]
        ndc = torch.stack([local[..., 0] / (half * aspect), local[..., 1] / half], dim=-1)
        return ndc / depth.clamp(min=1e-6)[..., None], depth

    reach, size = torch.zeros(len(c2w)), torch.zeros(len(c2w))
    for points in instances:
        sample = points[torch.linspace(0, len(points) - 1, min(len(points), 2000)).long()]
        ndc, depth = project(sample)
        spread = ndc.abs().amax(dim=-1).quantile(0.98, dim=1)
        reach = torch.maximum(reach, spread.where((depth > 0).all(dim=1), torch.tensor(float("inf"))))
        extent = (ndc.quantile(0.98, dim=1) - ndc.quantile(0.02, dim=1)).amax(dim=-1)  # [V]
        size += extent.clamp(min=1e-6) / len(instances)
    centroids = torch.stack([points.float().mean(dim=0) for points in instances])
    if len(instances) > 1:
        ndc, _ = project(centroids)
        score = torch.cdist(ndc, ndc).amax(dim=(1, 2)) ** 2 / size
    else:
        score = size
    framed = (reach <= VIEW_REACH).tolist()
    order = sorted(range(len(c2w)), key=lambda v: (not framed[v], -float(score[v]) if framed[v] else float(reach[v])))
    for view in order:
        if not bool(torch.isfinite(reach[view])):
            break
        if all(in_sight(model, c2w[view, :, 3], centroids[k], instances[k]) for k in range(len(instances))):
            return view
    raise SystemExit("no training view shows all the found instances unoccluded; pass --view N")


def in_sight(model, eye: torch.Tensor, centroid: torch.Tensor, points: torch.Tensor) -> bool:
    """Whether the ray from ``eye`` towards ``centroid`` first hits the instance of ``points`` (its surface)."""
    from relationfield.viewer.render import surface_point

    hit = surface_point(model, eye, centroid - eye)
    if hit is None:
        return False
    extent = float((points.max(dim=0).values - points.min(dim=0).values).max())
    return float((points.float() - hit.cpu()).norm(dim=-1).min()) <= SIGHT_TOLERANCE * extent


def save_page(png: bytes, output: Path, width: int, max_kb: int) -> None:
    """The screenshot downscaled to ``width``; as a 256-colour PNG when full colour exceeds ``max_kb``."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    output.parent.mkdir(parents=True, exist_ok=True)
    image.save(output, optimize=True)
    if output.stat().st_size > max_kb * 1024:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            output, optimize=True
        )


def find_screenshot(pipeline, args: Args) -> None:
    """Type ``args.find`` into the viewer's "Find" box in headless Chromium and screenshot the answer."""
    from relationfield.viewer.referring_box import FOUND_GROUP, instance_points

    assert args.find is not None
    controls = pipeline.model.viewer_controls
    box = controls._referring
    started = time.monotonic()
    with served(pipeline, args) as (viewer, devtools, client):
        output_dropdown = viewer.control_panel._output_render
        wait_until(lambda: "rgb" in output_dropdown.options, args.browser_timeout, "a first render")
        type_into(devtools, "Find", args.find)
        submitted = args.find.strip()

        def answered() -> bool:  # the box answered the whole text (its timer thread is done)
            timer = box._timer
            return box._asked is not None and box._asked.strip() == submitted and not (timer and timer.is_alive())

        wait_until(answered, args.find_timeout, f"the answer to {args.find!r}")
        if box.answer is None:
            raise SystemExit(f"no answer: {controls.status.content}")
        wait_until(lambda: bool(controls._scene_handles.get(FOUND_GROUP)), 30, "the highlight")
        answered_s = time.monotonic() - started
        answer = box.answer
        assert answer.best is not None and controls.query is not None and controls.extraction is not None
        if not args.find_scene_graph:
            for handle in controls._scene_handles.get("scene_graph", []):
                handle.visible = False
        cameras = pipeline.datamanager.train_dataset.cameras
        client.camera.fov = float(2 * torch.atan(cameras.cy[0, 0] / cameras.fy[0, 0]))  # the training views' own
        shown = list(dict.fromkeys([answer.best.node, *answer.references]))
        if args.view is None:
            objects = instance_points(controls.query, controls.extraction)
            instances = [objects[node] for node in shown]
            with viewer.train_lock:  # the viewer's renders take it too: one render of the model at a time
                view = showing_view(pipeline.model, cameras, instances, client.camera.fov, client.camera.aspect)
        else:
            view = args.view
        viewer.set_camera_visibility(False)
        move_to_view(viewer, client, view)
        wait_for_full_render(viewer, args)
        png = screenshot(devtools)
    save_page(png, args.output, args.find_width, args.find_max_kb)
    print(f"answered in {answered_s:.0f} s; highlighted node {answer.best.node}; instances {shown}; view {view}")
    print(f"status: {controls.status.content}")
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB) in {time.monotonic() - started:.0f} s")


def main(args: Args) -> None:
    from relationfield.query import load_pipeline

    if args.find is not None and not CHROMIUM.is_file():
        raise SystemExit(f"--find needs {CHROMIUM} (apt-get install chromium)")
    pipeline = load_pipeline(args.load_config)
    if args.find is not None:
        find_screenshot(pipeline, args)
        return
    controls = pipeline.model.viewer_controls
    controls.attach(pipeline, run_dir=args.load_config.parent)
    view = args.view or 0
    camera = pipeline.datamanager.train_dataset.cameras[view : view + 1]
    row, col = args.pixel if args.pixel is not None else best_pixel(controls, camera, args.reference)
    rays = camera.generate_rays(camera_indices=0)
    controls.set_reference_mode(args.reference_mode)
    if controls.on_click(rays.origins[row, col], rays.directions[row, col]) is None:
        raise SystemExit(f"pixel ({row}, {col}) of view {view} shows no surface: {controls.status.content}")
    controls.set_relation_query(args.relation)
    controls.set_threshold(args.threshold)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panels(pipeline, camera, args.scale)).save(args.output)
    print(f"clicked pixel ({row}, {col}) of view {view}; wrote {args.output}")
    if args.browser:
        if not CHROMIUM.is_file():
            raise SystemExit(f"--browser needs {CHROMIUM} (apt-get install chromium)")
        shot = args.output.with_name(f"{args.output.stem}_viewer.png")
        browser_screenshot(pipeline, args, shot)
        print(f"wrote {shot}: the viewer page showing relation_composited")


if __name__ == "__main__":
    main(tyro.cli(Args))
