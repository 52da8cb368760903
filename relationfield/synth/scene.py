"""Placed objects, the room and the scene they make up.

World frame: metres, +z up, the floor's top surface at z = 0, the room centred on the origin with its
inner wall faces at x = +-width/2 and y = +-depth/2 and the ceiling's underside at z = height.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relationfield.synth.geometry import Aabb, Part, Vec3, part_aabb, parts_aabb
from relationfield.synth.models import Appearance, Model, Rest


@dataclass(frozen=True)
class Surface:
    """A horizontal upward-facing face that can support things: its height and xy rectangle."""

    z: float
    xmin: float
    xmax: float
    ymin: float
    ymax: float


@dataclass(frozen=True)
class SceneObject:
    """An object placed in the world: its parts are in world coordinates.

    The object's own frame is its model's frame turned by ``turns`` quarter turns about +z and moved
    to ``origin``; surface patterns are evaluated in that frame, so identical objects look identical.
    """

    id: int
    label: str
    model: str
    rest: Rest
    parts: tuple[Part, ...]
    appearance: Appearance
    aabb: Aabb
    origin: Vec3 = (0.0, 0.0, 0.0)
    turns: int = 0

    @property
    def structural(self) -> bool:
        return self.rest == "structural"

    def surfaces(self) -> list[Surface]:
        """Top faces of this object's boxes and upright cylinders (their bounding rectangles)."""
        out = []
        for part in self.parts:
            if part.has_flat_top:
                box = part_aabb(part)
                out.append(Surface(box.max[2], box.min[0], box.max[0], box.min[1], box.max[1]))
        return out


@dataclass(frozen=True)
class Room:
    """The free interior of the room: ``width`` along x, ``depth`` along y, ``height`` along z."""

    width: float
    depth: float
    height: float

    def wall_plane(self, wall: int) -> tuple[int, float, float]:
        """For wall 0..3 (-y, +x, +y, -x): (axis index, coordinate of its inner face, inward sign)."""
        return [
            (1, -self.depth / 2, 1.0),
            (0, self.width / 2, -1.0),
            (1, self.depth / 2, -1.0),
            (0, -self.width / 2, 1.0),
        ][wall]

    def wall_length(self, wall: int) -> float:
        return self.width if wall in (0, 2) else self.depth


@dataclass
class Scene:
    """All objects of a generated scene; ids start at 1 in insertion order."""

    room: Room
    layout: str
    objects: list[SceneObject] = field(default_factory=list)

    def add(self, model: Model, quarter_turns: int, centre_xy: tuple[float, float], bottom: float) -> SceneObject:
        """Place ``model`` turned by ``quarter_turns`` with its box centred on ``centre_xy``, bottom at ``bottom``."""
        turned = tuple(p.turned(quarter_turns) for p in model.parts)
        box = parts_aabb(turned)
        offset = (centre_xy[0] - float(box.centre[0]), centre_xy[1] - float(box.centre[1]), bottom - box.min[2])
        return self.add_parts(
            model.label,
            model.signature,
            model.rest,
            tuple(p.moved(offset) for p in turned),
            model.appearance,
            offset,
            quarter_turns % 4,
        )

    def add_parts(
        self,
        label: str,
        model: str,
        rest: Rest,
        parts: tuple[Part, ...],
        look: Appearance,
        origin: Vec3 = (0.0, 0.0, 0.0),
        turns: int = 0,
    ) -> SceneObject:
        """Add an object whose parts are already in world coordinates."""
        obj = SceneObject(len(self.objects) + 1, label, model, rest, parts, look, parts_aabb(parts), origin, turns)
        self.objects.append(obj)
        return obj

    def structure(self, label: str, size: Vec3, centre: Vec3, look: Appearance) -> SceneObject:
        """Add a floor, wall or ceiling slab."""
        part = Part("box", size, centre)
        return self.add_parts(label, f"{label}-{len(self.objects) + 1}", "structural", (part,), look)

    def by_id(self, object_id: int) -> SceneObject:
        return self.objects[object_id - 1]


def footprint_overlap(a: Aabb, b: Aabb, clearance: float = 0.0) -> bool:
    """Whether the xy rectangles of two boxes come closer than ``clearance``."""
    ov = a.overlap(b)
    return bool(ov[0] > -clearance and ov[1] > -clearance)


def rect_aabb(cx: float, cy: float, ex: float, ey: float, z0: float = 0.0, z1: float = 1.0) -> Aabb:
    """A box centred on (cx, cy) with xy extents (ex, ey) between heights z0 and z1."""
    return Aabb((cx - ex / 2, cy - ey / 2, z0), (cx + ex / 2, cy + ey / 2, z1))
