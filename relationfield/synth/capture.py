"""Generate a posed capture with ground truth on disk.

Layout of the output directory (read by nerfstudio and by the rest of this package)::

    transforms.json                       nerfstudio format, OPENCV model without distortion,
                                          camera-to-world matrices in the OpenGL convention
    images/frame_00000.png ...            8-bit RGB
    depth/frame_00000.png ...             16-bit z-depth along the camera axis in millimetres, 0 = no hit
    ground_truth/scene_graph.json         objects (id, label, aabb, ...) and relationships
    ground_truth/instances/frame_00000.png  16-bit object id per pixel, 0 = nothing

Everything is in the same world frame: metres, +z up, floor top at z = 0. The files are a pure
function of (seed, layout, num_frames, resolution): no timestamps are written.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from relationfield.errors import UserError
from relationfield.progress import step_progress
from relationfield.synth.cameras import CameraPlanner
from relationfield.synth.layout import LAYOUTS, build_scene
from relationfield.synth.relations import derive_relations
from relationfield.synth.render import HFOV_DEGREES, Intrinsics, Renderer
from relationfield.synth.scene import Scene

GENERATOR_VERSION = 1
MIN_FRAMES = 3
MIN_SIDE = 16
MAX_SIDE = 4096
_OUTPUTS = ("transforms.json", "images", "depth", "ground_truth")


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_capture` wrote."""

    output: Path
    num_frames: int
    num_objects: int
    num_relationships: int
    seconds: float


def _check_inputs(
    output: Path, seed: int, num_frames: int, resolution: tuple[int, int], layout: str, overwrite: bool
) -> tuple[Path, tuple[int, int]]:
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise UserError(f"num_frames must be an integer, got {num_frames!r}")
    if num_frames < MIN_FRAMES:
        raise UserError(f"num_frames must be at least {MIN_FRAMES}, got {num_frames}")
    try:
        width, height = resolution
    except (TypeError, ValueError):
        raise UserError(f"resolution must be a pair (width, height) of integers, got {resolution!r}") from None
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)):
            raise UserError(f"resolution must be a pair (width, height) of integers, got {resolution!r}")
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise UserError(f"resolution sides must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {width}x{height}")
    output = Path(output)
    if output.exists():
        if not output.is_dir():
            raise UserError(f"output {output} exists and is not a directory")
        if any(output.iterdir()) and not overwrite:
            raise UserError(
                f"output directory {output} is not empty; "
                "pass --overwrite (overwrite=True in Python) or choose another directory"
            )
    return output, (int(width), int(height))


def _clear(output: Path) -> None:
    """Remove what an earlier generation wrote (other files are left alone)."""
    for name in _OUTPUTS:
        path = output / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _write_png16(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)).save(path)


def _round(values: Any, digits: int = 6) -> Any:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def _scene_graph(scene: Scene, relations: list[tuple[int, int, str]], seed: int) -> dict[str, Any]:
    room = scene.room
    return {
        "meta": {
            "generator": "relationfield.synth",
            "version": GENERATOR_VERSION,
            "seed": int(seed),
            "layout": scene.layout,
            "units": "metres",
            "up_axis": "+z",
            "floor_z": 0.0,
            "room": {"width": room.width, "depth": room.depth, "height": room.height},
        },
        "objects": [
            {
                "id": o.id,
                "label": o.label,
                "aabb": {"min": _round(o.aabb.min), "max": _round(o.aabb.max)},
                "model": o.model,
                "structural": o.structural,
                "rest": o.rest,
            }
            for o in scene.objects
        ],
        "relationships": [[s, o, p] for s, o, p in relations],
    }


def _transforms(intr: Intrinsics, poses: list[np.ndarray], stems: list[str]) -> dict[str, Any]:
    return {
        "camera_model": "OPENCV",
        "fl_x": intr.fx,
        "fl_y": intr.fy,
        "cx": intr.cx,
        "cy": intr.cy,
        "w": intr.width,
        "h": intr.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": [
            {
                "file_path": f"images/{stem}.png",
                "transform_matrix": _round(pose, 8),
                "depth_file_path": f"depth/{stem}.png",
            }
            for stem, pose in zip(stems, poses)
        ],
    }


def _dump_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def generate_capture(
    output: Path,
    *,
    seed: int = 0,
    num_frames: int = 60,
    resolution: tuple[int, int] = (256, 192),
    layout: str = "living-room",
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Generate a procedural indoor scene, render ``num_frames`` posed views and write them with ground truth.

    ``resolution`` is (width, height) in pixels. Raises :class:`~relationfield.errors.UserError` for an
    unknown layout, fewer than 3 frames, a malformed or too small resolution, or a non-empty output
    directory without ``overwrite``. The output is byte-identical for equal arguments.
    """
    start = time.perf_counter()
    output, (width, height) = _check_inputs(output, seed, num_frames, resolution, layout, overwrite)
    num_frames = int(num_frames)
    layout_seq, camera_seq = np.random.SeedSequence(int(seed)).spawn(2)
    scene = build_scene(layout, np.random.default_rng(layout_seq))
    relations = derive_relations(scene.objects)
    intr = Intrinsics.from_fov(width, height, HFOV_DEGREES)
    renderer = Renderer(scene)
    planner = CameraPlanner(scene, renderer, intr, np.random.default_rng(camera_seq))

    output.mkdir(parents=True, exist_ok=True)
    _clear(output)
    for sub in ("images", "depth", "ground_truth/instances"):
        (output / sub).mkdir(parents=True, exist_ok=True)

    poses: list[np.ndarray] = []
    stems = [f"frame_{i:05d}" for i in range(num_frames)]
    with step_progress(progress, num_frames, f"rendering {layout}") as advance:
        for index, stem in enumerate(stems):
            c2w = planner.camera_for(planner.next_target(), wide=index % 2 == 0)
            frame = renderer.render(c2w, intr)
            planner.record(frame.ids)
            poses.append(c2w)
            Image.fromarray(frame.rgb).save(output / "images" / f"{stem}.png")
            depth_mm = np.clip(np.round(frame.depth * 1000.0), 0, np.iinfo(np.uint16).max)
            _write_png16(output / "depth" / f"{stem}.png", depth_mm)
            _write_png16(output / "ground_truth" / "instances" / f"{stem}.png", frame.ids)
            advance()

    _dump_json(output / "transforms.json", _transforms(intr, poses, stems))
    _dump_json(output / "ground_truth" / "scene_graph.json", _scene_graph(scene, relations, int(seed)))
    return SynthSummary(
        output=output,
        num_frames=num_frames,
        num_objects=len(scene.objects),
        num_relationships=len(relations),
        seconds=time.perf_counter() - start,
    )
