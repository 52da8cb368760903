"""Primitive parts, axis-aligned bounding boxes and the triangle meshes built from them.

Every object of a synthetic scene is a union of *parts*: boxes, cylinders and (possibly stretched)
spheres whose axes are aligned with the world axes. Objects are only ever rotated by quarter turns
about the vertical axis, so parts stay axis-aligned and a box part's top face is exactly the
rectangle given by its bounding box. World frame: metres, +z up, the floor's top surface at z = 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import trimesh

Shape = Literal["box", "cylinder", "sphere"]
Axis = Literal["x", "y", "z"]
Vec3 = tuple[float, float, float]

CYLINDER_SECTIONS = 24
SPHERE_SUBDIVISIONS = 2


@dataclass(frozen=True)
class Aabb:
    """An axis-aligned bounding box."""

    min: Vec3
    max: Vec3

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.min) + np.asarray(self.max)) / 2.0

    @property
    def extents(self) -> np.ndarray:
        return np.asarray(self.max) - np.asarray(self.min)

    @property
    def volume(self) -> float:
        return float(np.prod(self.extents))

    def gap(self, other: Aabb) -> float:
        """Euclidean distance between the two boxes (0 when they touch or overlap)."""
        lo = np.asarray(other.min) - np.asarray(self.max)
        hi = np.asarray(self.min) - np.asarray(other.max)
        return float(np.linalg.norm(np.maximum(np.maximum(lo, hi), 0.0)))

    def overlap(self, other: Aabb) -> np.ndarray:
        """Per-axis overlap length (negative: separation)."""
        return np.minimum(self.max, other.max) - np.maximum(self.min, other.min)

    def contains(self, other: Aabb, tol: float = 0.0) -> bool:
        """Whether ``other`` lies within this box grown by ``tol``."""
        return bool(
            np.all(np.asarray(other.min) >= np.asarray(self.min) - tol)
            and np.all(np.asarray(other.max) <= np.asarray(self.max) + tol)
        )

    @staticmethod
    def of_points(points: np.ndarray) -> Aabb:
        lo = points.min(axis=0)
        hi = points.max(axis=0)
        return Aabb(min=_vec(lo), max=_vec(hi))

    @staticmethod
    def union(boxes: list[Aabb]) -> Aabb:
        lo = np.min([b.min for b in boxes], axis=0)
        hi = np.max([b.max for b in boxes], axis=0)
        return Aabb(min=_vec(lo), max=_vec(hi))


@dataclass(frozen=True)
class Part:
    """One primitive of an object.

    ``size`` is the full extent along x, y and z (for a cylinder: diameter, diameter and length along
    ``axis``; a sphere stretched to ``size`` is an ellipsoid). ``colour`` overrides the object's albedo.
    """

    shape: Shape
    size: Vec3
    centre: Vec3
    axis: Axis = "z"
    colour: Vec3 | None = None

    def turned(self, quarter_turns: int) -> Part:
        """This part rotated by ``quarter_turns`` x 90 degrees about the vertical axis through the origin."""
        k = quarter_turns % 4
        x, y, z = self.centre
        for _ in range(k):
            x, y = -y, x
        sx, sy, sz = self.size
        axis = self.axis
        if k % 2 == 1:
            sx, sy = sy, sx
            axis = {"x": "y", "y": "x", "z": "z"}[axis]  # type: ignore[assignment]
        return Part(self.shape, (sx, sy, sz), (x, y, z), axis, self.colour)

    def moved(self, offset: Vec3) -> Part:
        """This part translated by ``offset``."""
        c = tuple(float(a + b) for a, b in zip(self.centre, offset))
        return Part(self.shape, self.size, c, self.axis, self.colour)  # type: ignore[arg-type]

    @property
    def has_flat_top(self) -> bool:
        """Boxes and upright cylinders have a horizontal top face that can support things."""
        return self.shape == "box" or (self.shape == "cylinder" and self.axis == "z")

    def mesh(self) -> trimesh.Trimesh:
        """A closed triangle mesh of this part with outward-facing normals."""
        import trimesh  # here: the scene layouts (and the CLI's --help, which lists them) need no meshes

        if self.shape == "box":
            mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        elif self.shape == "cylinder":
            mesh = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=CYLINDER_SECTIONS)
            if self.axis != "z":
                mesh.apply_transform(_AXIS_FROM_Z[self.axis])
        else:
            mesh = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=0.5)
        scale = np.diag([*self.size, 1.0])
        scale[:3, 3] = self.centre
        mesh.apply_transform(scale)
        return mesh


# proper rotations that take the +z axis to +x and +y respectively
_AXIS_FROM_Z: dict[str, np.ndarray] = {
    "x": np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]]),
    "y": np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]]),
}


def _vec(a: np.ndarray) -> Vec3:
    return (float(a[0]), float(a[1]), float(a[2]))


@functools.lru_cache(maxsize=8192)
def part_aabb(part: Part) -> Aabb:
    """The bounding box of the mesh of ``part`` (cached)."""
    return Aabb.of_points(part.mesh().vertices)


def parts_aabb(parts: tuple[Part, ...]) -> Aabb:
    """The bounding box of the meshes of ``parts``."""
    return Aabb.union([part_aabb(p) for p in parts])
