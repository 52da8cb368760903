"""Writing a converted scan as a capture this package reads: the layout of ``relationfield.synth``'s captures.

::

    transforms.json                 nerfstudio format, OPENCV model, camera-to-world in the OpenGL convention
    images/<stem>.png               8-bit RGB
    depth/<stem>.png                16-bit depth along the camera axis in millimetres, 0 = none
    ground_truth/scene_graph.json   objects (id, label, aabb) and relationships [[subject, object, predicate]]
    ground_truth/instances/<stem>.png  16-bit object id per pixel (0 = none), ray cast from the annotated mesh
    ground_truth/points.ply         points sampled on the annotated mesh's objects, each with its object id as
                                    ``node`` (what ``relationfield eval --matching points`` matches nodes to)

The world frame is the dataset's own (no recentring); nerfstudio's dataparser normalises it for training as
usual. A converter builds :class:`ConvertedFrame` objects and hands them to :class:`CaptureWriter`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import trimesh
from PIL import Image

from relationfield.errors import UserError

T = TypeVar("T")

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world matrix by this flips its y and z axes (OpenCV <-> OpenGL cameras)."""

SURFACE_POINTS = 200_000
"""Points sampled on the annotated objects for ``ground_truth/points.ply`` (a few per cm^2 of a room's objects)."""

OUTPUTS = ("transforms.json", "images", "depth", "ground_truth")
"""What a capture holds; an existing capture is replaced only with ``overwrite``."""


@dataclass(frozen=True)
class CaptureSummary:
    """What every converter reports about the capture it wrote."""

    output: Path
    """The capture directory."""
    frames: int
    """Frames written."""
    skipped: int
    """Frames of the stride selection skipped because their pose was not finite (or its rotation degenerate)."""
    objects: int
    """Ground-truth objects written."""
    relationships: int
    """Ground-truth relationships written."""


@dataclass(frozen=True)
class ConvertedFrame:
    """One frame of a scan, in the dataset's world frame."""

    stem: str
    """File name without extension (``frame_000000``)."""
    image: np.ndarray
    """``[H, W, 3]`` uint8 RGB."""
    intrinsics: tuple[float, float, float, float]
    """``(fx, fy, cx, cy)`` in pixels of ``image``."""
    camera_to_world: np.ndarray
    """``[4, 4]`` camera-to-world matrix in the convention named by ``convention``."""
    depth: np.ndarray | None = None
    """``[H', W']`` depth along the camera axis in metres (0 or not finite: none); any resolution."""
    convention: Literal["opencv", "opengl"] = "opencv"
    """Camera axes of ``camera_to_world``: OpenCV (x right, y down, looking along +z) or OpenGL (y up, -z)."""

    @property
    def opengl_pose(self) -> np.ndarray:
        """The camera-to-world matrix in nerfstudio's (OpenGL) convention."""
        pose = np.asarray(self.camera_to_world, dtype=np.float64)
        return pose @ OPENCV_TO_OPENGL if self.convention == "opencv" else pose


@dataclass
class AnnotatedMesh:
    """A scan's mesh with an object id per face (0: no object), for instance maps and boxes."""

    mesh: trimesh.Trimesh
    face_objects: np.ndarray
    """``[F]`` int64 object id of each face."""
    _intersector: Any = field(default=None, repr=False)

    def aabbs(self) -> dict[int, tuple[list[float], list[float]]]:
        """``{object id: (min, max)}`` of each object's vertices."""
        boxes = {}
        for obj in np.unique(self.face_objects):
            if obj > 0:
                vertices = self.mesh.vertices[np.unique(self.mesh.faces[self.face_objects == obj])]
                boxes[int(obj)] = (vertices.min(axis=0).tolist(), vertices.max(axis=0).tolist())
        return boxes

    def object_points(self, count: int = SURFACE_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """``count`` points spread over the objects' faces by area (seeded), and each one's object id."""
        labelled = np.flatnonzero(self.face_objects > 0)
        if len(labelled) == 0:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
        part = self.mesh.submesh([labelled], append=True, repair=False)
        points, faces = trimesh.sample.sample_surface(part, count, seed=0)
        return np.asarray(points), self.face_objects[labelled][np.asarray(faces)]

    def instance_map(self, frame: ConvertedFrame, height: int, width: int) -> np.ndarray:
        """``[height, width]`` uint16 object id seen through each pixel centre of ``frame``'s camera."""
        return self.cast(frame, height, width)[1]

    def cast(self, frame: ConvertedFrame, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``[height, width]`` depth along the camera axis in metres (0: no hit) and uint16 object ids, through
        the pixel centres of ``frame``'s camera at that size."""
        from relationfield.synth.render import make_intersector

        if self._intersector is None:
            self._intersector = make_intersector(self.mesh)
        fx, fy, cx, cy = frame.intrinsics
        scale_x, scale_y = width / frame.image.shape[1], height / frame.image.shape[0]
        v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
        directions = np.stack([(u / scale_x - cx) / fx, -(v / scale_y - cy) / fy, -np.ones_like(u)], -1)
        pose = frame.opengl_pose
        directions = directions.reshape(-1, 3) @ pose[:3, :3].T
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        origin = pose[:3, 3]
        faces, rays, locations = self._intersector.intersects_id(
            np.broadcast_to(origin, directions.shape), directions, multiple_hits=False, return_locations=True
        )
        forward = -pose[:3, 2] / np.linalg.norm(pose[:3, 2])
        depth = np.zeros(height * width)
        ids = np.zeros(height * width, dtype=np.int64)
        depth[rays] = (np.asarray(locations) - origin) @ forward
        ids[rays] = self.face_objects[np.asarray(faces, dtype=np.int64)]
        return depth.reshape(height, width), ids.reshape(height, width).astype(np.uint16)


class CaptureWriter:
    """Writes a capture frame by frame, then its ground truth and ``transforms.json``."""

    def __init__(self, output: Path, overwrite: bool = False) -> None:
        self.output = Path(output)
        existing = [name for name in OUTPUTS if (self.output / name).exists()]
        if existing and not overwrite:
            raise UserError(
                f"{self.output} already holds a capture ({', '.join(existing)}); pass --overwrite to replace it."
            )
        for name in existing:
            target = self.output / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        for folder in ("images", "depth", "ground_truth/instances"):
            (self.output / folder).mkdir(parents=True, exist_ok=True)
        self.frames: list[dict[str, Any]] = []
        self.camera: tuple[float, ...] | None = None

    def add(self, frame: ConvertedFrame, instances: np.ndarray | None = None) -> None:
        """Write one frame's image, depth and instance map (all frames must share one camera)."""
        height, width = frame.image.shape[:2]
        camera = (*(round(float(v), 6) for v in frame.intrinsics), width, height)
        if self.camera is None:
            self.camera = camera
        elif not np.allclose(camera, self.camera, rtol=1e-4):
            raise UserError(f"Frame {frame.stem} has camera {camera}, the earlier frames {self.camera}.")
        Image.fromarray(np.ascontiguousarray(frame.image, dtype=np.uint8)).save(
            self.output / "images" / f"{frame.stem}.png"
        )
        entry: dict[str, Any] = {
            "file_path": f"images/{frame.stem}.png",
            "transform_matrix": np.round(frame.opengl_pose, 8).tolist(),
        }
        if frame.depth is not None:
            depth = np.nan_to_num(np.asarray(frame.depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            millimetres = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
            Image.fromarray(millimetres).save(self.output / "depth" / f"{frame.stem}.png")
            entry["depth_file_path"] = f"depth/{frame.stem}.png"
        if instances is not None:
            path = self.output / "ground_truth" / "instances" / f"{frame.stem}.png"
            Image.fromarray(np.ascontiguousarray(instances, dtype=np.uint16)).save(path)
        self.frames.append(entry)

    def finish(
        self,
        objects: Sequence[dict[str, Any]],
        relationships: Sequence[Sequence[Any]],
        meta: dict[str, Any],
        mesh: AnnotatedMesh | None = None,
    ) -> Path:
        """Write ``ground_truth/scene_graph.json``, ``ground_truth/points.ply`` (with ``mesh``) and
        ``transforms.json``; returns the capture directory."""
        if not self.frames or self.camera is None:
            raise UserError(f"No frame was converted into {self.output}.")
        if mesh is not None:
            from relationfield.scene_graph.ply import write_ply

            points, ids = mesh.object_points()
            if len(points):
                colours = np.full((len(points), 3), 128, dtype=np.uint8)
                comment = "node: the ground-truth object id (ground_truth/scene_graph.json) of the point's face"
                write_ply(self.output / "ground_truth" / "points.ply", points, colours, ids, comments=[comment])
        fx, fy, cx, cy, width, height = self.camera
        graph = {"meta": meta, "objects": list(objects), "relationships": [list(r) for r in relationships]}
        _write_json(self.output / "ground_truth" / "scene_graph.json", graph)
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": fx,
            "fl_y": fy,
            "cx": cx,
            "cy": cy,
            "w": int(width),
            "h": int(height),
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "frames": self.frames,
        }
        _write_json(self.output / "transforms.json", transforms)
        return self.output


def check_frame_options(stride: Any, max_frames: Any, downscale: Any) -> None:
    """Raise UserError unless stride and downscale are positive integers and max_frames is None or one."""
    for name, value in (("stride", stride), ("downscale", downscale), ("max_frames", max_frames)):
        if name == "max_frames" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


def spread(items: Sequence[T], most: int | None) -> list[T]:
    """At most ``most`` of ``items`` (all when None), evenly spread, first and last kept."""
    if most is None or len(items) <= most:
        return list(items)
    return [items[i] for i in np.round(np.linspace(0, len(items) - 1, most)).astype(int)]


def scene_graph_objects(labels: dict[int, str], boxes: dict[int, tuple[list[float], list[float]]]) -> list[dict]:
    """Ground-truth objects (id, label, aabb) of the labelled objects that have a box."""
    return [
        {"id": int(i), "label": labels[i], "aabb": {"min": boxes[i][0], "max": boxes[i][1]}}
        for i in sorted(labels)
        if i in boxes
    ]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
