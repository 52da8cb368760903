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

Usage:

    python scripts/viewer_screenshot.py --load-config outputs/.../config.yml --relation "standing on" \
        --reference floor --output docs/viewer_relation.png --browser
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")


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
    view: int = 0
    """Training view to render."""
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


def browser_screenshot(pipeline, args: Args, output: Path) -> None:
    """Serve the run in nerfstudio's viewer, show relation_composited in headless Chromium, screenshot it."""
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
        frustum = viewer.camera_handles[min(viewer.camera_handles, key=lambda i: abs(i - args.view))]
        client.camera.position, client.camera.wxyz = frustum.position, frustum.wxyz
        output_dropdown = viewer.control_panel._output_render
        wait_until(lambda: "relation_composited" in output_dropdown.options, args.browser_timeout, "a first render")
        output_dropdown.value = "relation_composited"
        viewer.set_camera_visibility(False)
        time.sleep(2.0)
        full = args.browser_resolution
        wait_until(lambda: rendered_size(viewer) == full, args.browser_timeout, "a full-resolution render")
        time.sleep(3.0)  # the frame reaches the page
        png = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        output.write_bytes(png)
    finally:
        if chromium.poll() is None:
            os.killpg(chromium.pid, signal.SIGTERM)
        chromium.wait(timeout=10)
        for machine in viewer.render_statemachines.values():
            machine.running = False
            machine.join(timeout=60)
        viewer.viser_server.stop()


def main(args: Args) -> None:
    from relationfield.query import load_pipeline

    pipeline = load_pipeline(args.load_config)
    controls = pipeline.model.viewer_controls
    controls.attach(pipeline, run_dir=args.load_config.parent)
    camera = pipeline.datamanager.train_dataset.cameras[args.view : args.view + 1]
    row, col = args.pixel if args.pixel is not None else best_pixel(controls, camera, args.reference)
    rays = camera.generate_rays(camera_indices=0)
    controls.set_reference_mode(args.reference_mode)
    if controls.on_click(rays.origins[row, col], rays.directions[row, col]) is None:
        raise SystemExit(f"pixel ({row}, {col}) of view {args.view} shows no surface: {controls.status.content}")
    controls.set_relation_query(args.relation)
    controls.set_threshold(args.threshold)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panels(pipeline, camera, args.scale)).save(args.output)
    print(f"clicked pixel ({row}, {col}) of view {args.view}; wrote {args.output}")
    if args.browser:
        if not CHROMIUM.is_file():
            raise SystemExit(f"--browser needs {CHROMIUM} (apt-get install chromium)")
        shot = args.output.with_name(f"{args.output.stem}_viewer.png")
        browser_screenshot(pipeline, args, shot)
        print(f"wrote {shot}: the viewer page showing relation_composited")


if __name__ == "__main__":
    main(tyro.cli(Args))
