"""Convert a Replica sequence in NICE-SLAM's layout (the one RelationField's reference uses) into a capture.

NICE-SLAM's ``src/utils/datasets.py`` (class ``Replica``) and ``configs/Replica/replica.yaml`` define the layout::

    results/frame000000.jpg ...   RGB, 1200x680
    results/depth000000.png ...   16-bit depth along the camera axis, metres x 6553.5 (png_depth_scale)
    traj.txt                      one camera-to-world per line (16 numbers, row-major), OpenCV axes, i-th line for
                                  the i-th frame in name order

The camera is fx = fy = 600, cx = 599.5, cy = 339.5 with pixel centres at integers (NICE-SLAM's rays use pixel
indices); the capture's convention puts them at +0.5, so cx, cy become 600, 340 (RelationField's reference writes
w / 2, h / 2 too). Ground truth comes from Replica's semantic mesh when given or found at
``habitat/mesh_semantic.ply`` (quads with a per-face ``object_id``) with ``habitat/info_semantic.json``
(``objects``: ``id``, ``class_name``); without it the capture has no objects and no instance maps. Replica has no
relationships. The mesh must be in the trajectory's world frame; a converter note says when depths disagree.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from relationfield.convert.capture import AnnotatedMesh, CaptureWriter, ConvertedFrame, check_frame_options
from relationfield.convert.common import (
    DEPTH_AGREEMENT_METRES,
    ID_OFFSET,
    ConvertSummary,
    annotated_mesh,
    check_scene,
    labelled_objects,
    lazy_frames,
    pick_frames,
    read_image,
    read_json,
    read_polygon_mesh,
    summarize,
    write_frames,
)
from relationfield.errors import UserError

WIDTH, HEIGHT = 1200, 680
"""NICE-SLAM's Replica image size."""
FX = FY = 600.0
"""NICE-SLAM's Replica focal lengths in pixels."""
CX, CY = 599.5, 339.5
"""NICE-SLAM's Replica principal point, pixel centres at integers."""
PNG_DEPTH_SCALE = 6553.5
"""Depth PNG units per metre."""
SEMANTIC_MESH = "habitat/mesh_semantic.ply"
SEMANTIC_INFO = "habitat/info_semantic.json"
_FRAME = re.compile(r"^frame(\d+)$")


def list_frames(scene: Path) -> tuple[list[Path], list[Path]]:
    """``results/frame*.jpg`` in name order and the ``results/depth*.png`` with the same number."""
    results = scene / "results"
    if not results.is_dir():
        raise UserError(f"{scene} is not a Replica sequence in NICE-SLAM's layout: {results} does not exist.")
    images = sorted(path for path in results.glob("frame*.jpg") if _FRAME.match(path.stem))
    if not images:
        raise UserError(f"{results} holds no frame*.jpg images.")
    depths = [results / f"depth{_FRAME.match(path.stem).group(1)}.png" for path in images]
    missing = [path for path in depths if not path.is_file()]
    if missing:
        raise UserError(f"Depth map {missing[0]} does not exist (frame {images[depths.index(missing[0])].name}).")
    return images, depths


def read_trajectory(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` camera-to-world matrices of ``traj.txt`` (OpenCV axes)."""
    if not path.is_file():
        raise UserError(f"Replica trajectory {path} does not exist.")
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if len(lines) < count:
        raise UserError(f"{path} has {len(lines)} poses for {count} frames.")
    poses = []
    for number, line in enumerate(lines[:count], start=1):
        try:
            values = [float(value) for value in line.split()]
        except ValueError:
            raise UserError(f"{path}, line {number}: not a list of numbers.") from None
        if len(values) != 16:
            raise UserError(f"{path}, line {number}: {len(values)} numbers, not 16 (a 4x4 matrix).")
        poses.append(np.array(values).reshape(4, 4))
    return poses


def read_depth(path: Path) -> np.ndarray:
    """A depth PNG in metres (0: none), checked to be 16-bit at the camera's size."""
    try:
        with Image.open(path) as image:
            raw = np.asarray(image)
    except OSError as error:
        raise UserError(f"Depth map {path} cannot be read: {error}") from None
    if raw.ndim != 2 or raw.dtype.kind not in "ui":
        raise UserError(f"Depth map {path} is not a single-channel 16-bit PNG.")
    if raw.shape != (HEIGHT, WIDTH):
        raise UserError(f"Depth map {path} is {raw.shape[1]}x{raw.shape[0]}, NICE-SLAM's Replica is {WIDTH}x{HEIGHT}.")
    return raw.astype(np.float64) / PNG_DEPTH_SCALE


def semantic_paths(scene: Path, mesh: Path | None, info: Path | None) -> tuple[Path, Path] | None:
    """The semantic mesh and its info file: given, or found under ``habitat/``; None when there is no mesh."""
    if mesh is None and info is not None:
        raise UserError(f"An info file ({info}) needs its semantic mesh: pass mesh too.")
    if mesh is None:
        if not (scene / SEMANTIC_MESH).is_file():
            return None
        mesh = scene / SEMANTIC_MESH
    mesh = Path(mesh)
    info = Path(info) if info is not None else mesh.parent / "info_semantic.json"
    if not mesh.is_file():
        raise UserError(f"Replica semantic mesh {mesh} does not exist.")
    if not info.is_file():
        raise UserError(f"Replica semantic info {info} does not exist (it names the mesh's object ids).")
    return mesh, info


def read_semantic_mesh(mesh_path: Path, info_path: Path) -> tuple[AnnotatedMesh, dict[int, str]]:
    """The semantic mesh, triangulated, with capture ids (``object_id + 1``) per face, and their class names."""
    vertices, triangles, source, faces = read_polygon_mesh(mesh_path, sides=4, face_properties=("object_id",))
    object_ids = faces["object_id"].astype(np.int64)
    face_objects = np.where(object_ids[source] >= 0, object_ids[source] + ID_OFFSET, 0)
    return annotated_mesh(vertices, triangles, face_objects), read_labels(info_path)


def read_labels(path: Path) -> dict[int, str]:
    """``{capture id: class_name}`` of ``info_semantic.json``'s objects."""
    info = read_json(path, "Replica semantic info")
    objects = info.get("objects") if isinstance(info, dict) else None
    if not isinstance(objects, list):
        raise UserError(f"{path}: expected {{'objects': [{{'id': ..., 'class_name': ...}}, ...]}}.")
    labels: dict[int, str] = {}
    for index, obj in enumerate(objects):
        try:
            source_id, name = int(obj["id"]), str(obj["class_name"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}, objects[{index}]: needs an integer id and a class_name.") from None
        if source_id < 0 or source_id + ID_OFFSET in labels:
            raise UserError(f"{path}, objects[{index}]: id {source_id} is negative or repeated.")
        labels[source_id + ID_OFFSET] = name
    return labels


def _meta(scene: Path, semantic: tuple[Path, Path] | None) -> dict[str, Any]:
    return {
        "converter": "relationfield.convert.replica",
        "dataset": "replica",
        "scene": scene.name,
        "units": "metres",
        "id_offset": ID_OFFSET,
        "depth": "sensor",
        "png_depth_scale": PNG_DEPTH_SCALE,
        "semantic_mesh": None if semantic is None else semantic[0].name,
    }


def convert_replica(
    scene: Path,
    output: Path,
    mesh: Path | None = None,
    info: Path | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    downscale: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> ConvertSummary:
    """Convert a NICE-SLAM-layout Replica sequence (and its semantic mesh, if any) into a capture at ``output``.

    Keeps every ``stride``-th frame with a finite pose, at most ``max_frames``, images and depth shrunk
    ``downscale`` times. With a semantic mesh, objects (id ``object_id + 1``, ``source_id``, class name, box of
    their vertices) and ray-cast instance maps are written; without one, no objects and no instance maps.
    Raises UserError for missing or malformed files, bad arguments and an existing capture without ``overwrite``.
    """
    start = time.perf_counter()
    check_frame_options(stride, max_frames, downscale)
    scene, output = check_scene(scene, output)
    images, depths = list_frames(scene)
    poses = read_trajectory(scene / "traj.txt", len(images))
    indices, invalid = pick_frames(poses, stride, max_frames)
    if not indices:
        raise UserError(f"{scene / 'traj.txt'}: no frame with a valid pose was selected.")
    semantic = semantic_paths(scene, mesh, info)
    caster, objects, notes = None, [], []
    if semantic is None:
        notes.append("no semantic mesh: the ground truth has no objects and there are no instance maps")
    else:
        annotated, labels = read_semantic_mesh(*semantic)
        objects = labelled_objects(annotated, labels)
        caster = annotated

    def load(index: int) -> ConvertedFrame:
        image = read_image(images[index], (WIDTH, HEIGHT))
        intrinsics = (FX, FY, CX + 0.5, CY + 0.5)  # NICE-SLAM's integer pixel centres -> the capture's +0.5
        return ConvertedFrame(images[index].stem, image, intrinsics, poses[index], read_depth(depths[index]))

    writer = CaptureWriter(output, overwrite)
    loop = write_frames(
        writer, lazy_frames(indices, load, downscale), len(indices), caster, False, True, progress, scene.name
    )
    if loop.depth_gaps and float(np.median(loop.depth_gaps)) > DEPTH_AGREEMENT_METRES:
        notes.append(
            f"the semantic mesh's depth differs from the sensor depth by {np.median(loop.depth_gaps):.2f} m "
            "(median): it may not be in the trajectory's world frame"
        )
    writer.finish(objects, [], _meta(scene, semantic), mesh=caster)
    flags = (caster is not None, "sensor")
    return summarize(output, "replica", loop, invalid, objects, flags, start, notes)
