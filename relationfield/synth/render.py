"""Headless CPU ray casting of a scene: colour, z-depth and instance ids per pixel.

Rays are cast with trimesh's embree intersector (``embreex``); without it trimesh's pure-numpy
intersector is used after a warning (much slower). Colour is view-independent so a radiance field
can reconstruct it: albedo x a procedural pattern (checker, stripes or value noise, times fine
noise) fixed to the object, i.e. evaluated in the object's own frame so identical objects look
identical, x (ambient + Lambert term of a point light below the ceiling, with hard shadows); no
specular term. Cameras are pinholes in the OpenGL convention used by nerfstudio: the camera looks
down its -Z axis, +Y is up and +X is right; pixel (u, v) is sampled at its centre (u + 0.5, v + 0.5).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import trimesh

from relationfield.synth.scene import Scene

HFOV_DEGREES = 65.0
AMBIENT = 0.32
DIFFUSE = 0.78
DETAIL_SCALE = 0.09
DETAIL_STRENGTH = 0.12
SHADOW_OFFSET = 2e-3
GAMMA = 1 / 2.2


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @staticmethod
    def from_fov(width: int, height: int, hfov_degrees: float = HFOV_DEGREES) -> Intrinsics:
        f = (width / 2.0) / np.tan(np.radians(hfov_degrees) / 2.0)
        return Intrinsics(width, height, float(f), float(f), width / 2.0, height / 2.0)


@dataclass(frozen=True)
class Frame:
    """One rendered view: 8-bit RGB, z-depth in metres (0 = no hit) and object ids (0 = nothing)."""

    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """A 4x4 camera-to-world matrix (OpenGL convention) at ``eye`` looking at ``target``."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    true_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
    return c2w


def make_intersector(mesh: trimesh.Trimesh) -> object:
    """A ray intersector for ``mesh``: embree when installed, else trimesh's slow pure-Python one."""
    if trimesh.ray.has_embree:
        return trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    warnings.warn(
        "embree (embreex) is not available; falling back to trimesh's slow ray intersector",
        RuntimeWarning,
        stacklevel=3,
    )
    return trimesh.ray.ray_triangle.RayMeshIntersector(mesh)


_PATTERN_CODES = {"plain": 0, "checker": 1, "stripes": 2, "noise": 3}


class Renderer:
    """Casts rays into one scene; build once, render many views."""

    def __init__(self, scene: Scene) -> None:
        vertices, faces, face_ids, face_colours = [], [], [], []
        offset = 0
        for obj in scene.objects:
            for part in obj.parts:
                mesh = part.mesh()
                vertices.append(mesh.vertices)
                faces.append(mesh.faces + offset)
                offset += len(mesh.vertices)
                face_ids.append(np.full(len(mesh.faces), obj.id, dtype=np.int64))
                colour = part.colour if part.colour is not None else obj.appearance.albedo
                face_colours.append(np.tile(np.asarray(colour, dtype=np.float64), (len(mesh.faces), 1)))
        self.mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
        self.face_ids = np.concatenate(face_ids)
        self.face_colours = np.concatenate(face_colours)
        self.normals = np.asarray(self.mesh.face_normals, dtype=np.float64)
        self.anchors = np.asarray(self.mesh.triangles[:, 0, :], dtype=np.float64)
        self.intersector = make_intersector(self.mesh)

        # per-object pattern parameters, indexed by object id; they follow from the model signature so
        # identical objects get identical textures in their own frames
        n = len(scene.objects) + 1
        self.pattern = np.zeros(n, dtype=np.int64)
        self.scale = np.ones(n)
        self.contrast = np.zeros(n)
        self.phase = np.zeros((n, 3))
        self.stripe_dir = np.tile([1.0, 0.0, 0.0], (n, 1))
        self.noise_seed = np.zeros(n, dtype=np.int64)
        self.origin = np.zeros((n, 3))
        self.to_local = np.tile(np.eye(3), (n, 1, 1))
        for obj in scene.objects:
            rng = np.random.default_rng(int(hashlib.sha1(obj.model.encode("utf-8")).hexdigest()[:12], 16))
            self.pattern[obj.id] = _PATTERN_CODES[obj.appearance.pattern]
            self.scale[obj.id] = obj.appearance.scale
            self.contrast[obj.id] = obj.appearance.contrast
            self.phase[obj.id] = rng.uniform(0.0, 1.0, size=3)
            direction = rng.normal(size=3)
            self.stripe_dir[obj.id] = direction / np.linalg.norm(direction)
            self.noise_seed[obj.id] = rng.integers(0, 2**31 - 1)
            self.origin[obj.id] = obj.origin
            self.to_local[obj.id] = _quarter_turn(-obj.turns)
        room = scene.room
        self.light = np.array([room.width * 0.12, -room.depth * 0.1, room.height - 0.35])

    # ------------------------------------------------------------------ rays

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First hit per ray: (face index or -1, distance along the unit direction or inf)."""
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        tri = np.asarray(self.intersector.intersects_first(origins, directions), dtype=np.int64)
        dist = np.full(len(origins), np.inf)
        hit = tri >= 0
        if hit.any():
            n = self.normals[tri[hit]]
            denom = np.einsum("ij,ij->i", directions[hit], n)
            num = np.einsum("ij,ij->i", self.anchors[tri[hit]] - origins[hit], n)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(np.abs(denom) > 1e-12, num / denom, 0.0)
            dist[hit] = np.maximum(t, 0.0)
        return tri, dist

    def object_at(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """The id of the first object hit per ray (0 for none)."""
        tri, _ = self.cast(origins, directions)
        return np.where(tri >= 0, self.face_ids[np.maximum(tri, 0)], 0)

    def pixel_rays(self, c2w: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """World-space origins and (unnormalised, camera-z = -1) directions, row-major."""
        u, v = np.meshgrid(np.arange(intr.width) + 0.5, np.arange(intr.height) + 0.5)
        cam = np.stack([(u - intr.cx) / intr.fx, -(v - intr.cy) / intr.fy, -np.ones_like(u)], axis=-1).reshape(-1, 3)
        dirs = cam @ c2w[:3, :3].T
        origins = np.broadcast_to(c2w[:3, 3], dirs.shape).copy()
        return origins, dirs

    # ------------------------------------------------------------------ shading

    def render(self, c2w: np.ndarray, intr: Intrinsics) -> Frame:
        """Render one view."""
        origins, dirs = self.pixel_rays(c2w, intr)
        unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        tri, dist = self.cast(origins, unit)
        hit = tri >= 0
        forward = -c2w[:3, 2]
        depth = np.zeros(len(tri))
        ids = np.zeros(len(tri), dtype=np.int64)
        rgb = np.zeros((len(tri), 3))
        if hit.any():
            t = tri[hit]
            points = origins[hit] + unit[hit] * dist[hit, None]
            depth[hit] = (points - origins[hit]) @ forward
            obj = self.face_ids[t]
            ids[hit] = obj
            normals = self.normals[t]
            shade = self._pattern(points, obj) * self._light(points, normals)
            rgb[hit] = self.face_colours[t] * shade[:, None]
        rgb8 = np.round(np.clip(rgb, 0.0, 1.0) ** GAMMA * 255.0).astype(np.uint8)
        shape = (intr.height, intr.width)
        return Frame(rgb8.reshape(*shape, 3), depth.reshape(shape), ids.reshape(shape))

    def _light(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        to_light = self.light - points
        dist = np.linalg.norm(to_light, axis=1)
        to_light = to_light / np.maximum(dist, 1e-9)[:, None]
        lambert = np.clip(np.einsum("ij,ij->i", normals, to_light), 0.0, 1.0)
        lit = lambert > 0
        if lit.any():
            start = points[lit] + normals[lit] * SHADOW_OFFSET
            _, blocker = self.cast(start, to_light[lit])
            shadowed = blocker < dist[lit] - 2 * SHADOW_OFFSET
            lambert[np.flatnonzero(lit)[shadowed]] = 0.0
        sky = 0.06 * normals[:, 2]
        return AMBIENT + sky + DIFFUSE * lambert

    def _pattern(self, world: np.ndarray, obj: np.ndarray) -> np.ndarray:
        points = np.einsum("nij,nj->ni", self.to_local[obj], world - self.origin[obj])
        scale = self.scale[obj][:, None]
        p = points / scale + self.phase[obj]
        kind = self.pattern[obj]
        value = np.zeros(len(points))
        checker = kind == 1
        if checker.any():
            cells = np.floor(p[checker]).astype(np.int64).sum(axis=1)
            value[checker] = (cells % 2).astype(np.float64)
        stripes = kind == 2
        if stripes.any():
            s = np.einsum("ij,ij->i", p[stripes], self.stripe_dir[obj[stripes]])
            value[stripes] = 0.5 + 0.5 * np.sin(2.0 * np.pi * s)
        noisy = kind == 3
        if noisy.any():
            value[noisy] = value_noise(p[noisy], self.noise_seed[obj[noisy]])
        base = 1.0 - self.contrast[obj] * value
        detail = value_noise(points / DETAIL_SCALE, self.noise_seed[obj] + 7919)
        return base * (1.0 - DETAIL_STRENGTH + 2.0 * DETAIL_STRENGTH * detail)


def _quarter_turn(turns: int) -> np.ndarray:
    """The rotation by ``turns`` x 90 degrees about +z."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][turns % 4]
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """A deterministic hash of integer lattice points to [0, 1)."""
    mask = np.uint64(0xFFFFFFFF)
    h = (ix.astype(np.uint64) * np.uint64(73856093)) ^ (iy.astype(np.uint64) * np.uint64(19349663))
    h = (h ^ (iz.astype(np.uint64) * np.uint64(83492791)) ^ (seed.astype(np.uint64) * np.uint64(2654435761))) & mask
    h = ((h ^ (h >> np.uint64(16))) * np.uint64(0x45D9F3B)) & mask
    h = ((h ^ (h >> np.uint64(16))) * np.uint64(0x45D9F3B)) & mask
    h = h ^ (h >> np.uint64(16))
    return h.astype(np.float64) / 4294967296.0


def value_noise(p: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] with unit lattice spacing."""
    base = np.floor(p)
    f = p - base
    w = f * f * (3.0 - 2.0 * f)
    i = base.astype(np.int64)
    out = np.zeros(len(p))
    for dx in (0, 1):
        wx = w[:, 0] if dx else 1.0 - w[:, 0]
        for dy in (0, 1):
            wy = w[:, 1] if dy else 1.0 - w[:, 1]
            for dz in (0, 1):
                wz = w[:, 2] if dz else 1.0 - w[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out
