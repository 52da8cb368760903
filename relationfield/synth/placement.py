"""The placement planner: a scene under construction and the floor and wall space already taken.

Placement is by rejection sampling on the floor plan (furniture footprints keep a clearance) and along
the walls (hung objects keep clear of each other and of tall furniture). A placement that cannot fit
raises :class:`NoRoom`; the layout is then drawn again from the same generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from relationfield.synth.draws import rounded_uniform
from relationfield.synth.geometry import Aabb
from relationfield.synth.models import Model
from relationfield.synth.scene import Room, Scene, SceneObject, Surface, footprint_overlap, rect_aabb

WALL_MARGIN = 0.25
"""Nothing is placed closer than this to a room corner along a wall."""

WALL_RESERVE_DISTANCE = 0.4
"""Furniture closer than this to a wall also takes that wall's span up to its top."""

WallSpan = tuple[float, float, float, float]
"""A taken rectangle on a wall: (along_min, along_max, bottom, top)."""

T = TypeVar("T")


class NoRoom(Exception):
    """A placement did not fit; the layout is drawn again."""


def required(placed: T | None) -> T:
    """``placed`` itself; :class:`NoRoom` when a placement the layout cannot do without found no spot."""
    if placed is None:
        raise NoRoom
    return placed


def first_wall(walls: Iterable[int], place: Callable[[int], SceneObject | None]) -> tuple[int, SceneObject] | None:
    """Try ``place`` on each of ``walls`` in turn: the first wall that took the object and the object, or None."""
    for wall in walls:
        placed = place(wall)
        if placed is not None:
            return wall, placed
    return None


@dataclass
class Plan:
    """A scene under construction plus the floor and wall space already taken."""

    rng: np.random.Generator
    """Every random draw of the layout comes from this generator."""
    scene: Scene
    """The scene the placed objects are added to."""
    floor: list[Aabb] = field(default_factory=list)
    """Reserved floor footprints."""
    walls: dict[int, list[WallSpan]] = field(default_factory=dict)
    """Taken spans per wall (0..3)."""

    @property
    def room(self) -> Room:
        return self.scene.room

    # -- floor

    def inside(self, box: Aabb, margin: float) -> bool:
        half_width, half_depth = self.room.width / 2 - margin, self.room.depth / 2 - margin
        return bool(
            box.min[0] >= -half_width
            and box.max[0] <= half_width
            and box.min[1] >= -half_depth
            and box.max[1] <= half_depth
        )

    def free(self, box: Aabb, clearance: float, margin: float = 0.02) -> bool:
        """Whether a footprint lies in the room and keeps ``clearance`` from every reserved footprint."""
        return self.inside(box, margin) and not any(footprint_overlap(box, b, clearance) for b in self.floor)

    def reserve(self, box: Aabb) -> None:
        """Take a floor footprint; furniture close to a wall also takes that wall's span up to its top."""
        self.floor.append(box)
        for wall in range(4):
            axis, coord, _ = self.room.wall_plane(wall)
            along = 1 - axis
            if min(abs(box.min[axis] - coord), abs(box.max[axis] - coord)) < WALL_RESERVE_DISTANCE:
                self.walls.setdefault(wall, []).append((box.min[along], box.max[along], 0.0, box.max[2]))

    def random_spot(
        self, size_x: float, size_y: float, clearance: float, margin: float = 0.3, tries: int = 300
    ) -> tuple[float, float]:
        """A random free centre for a ``size_x`` by ``size_y`` footprint."""
        half_x = self.room.width / 2 - margin - size_x / 2
        half_y = self.room.depth / 2 - margin - size_y / 2
        if half_x <= 0 or half_y <= 0:
            raise NoRoom
        for _ in range(tries):
            cx, cy = float(self.rng.uniform(-half_x, half_x)), float(self.rng.uniform(-half_y, half_y))
            if self.free(rect_aabb(cx, cy, size_x, size_y), clearance):
                return cx, cy
        raise NoRoom

    def place_on_floor(self, model: Model, turns: int, clearance: float, margin: float = 0.3) -> SceneObject:
        size_x, size_y, _ = model.extents(turns)
        cx, cy = self.random_spot(size_x, size_y, clearance, margin)
        placed = self.scene.add(model, turns, (cx, cy), 0.0)
        self.reserve(placed.aabb)
        return placed

    def place_in_corner(self, model: Model, clearance: float) -> SceneObject:
        """Near a random free corner if one is, anywhere free otherwise."""
        size_x, size_y, _ = model.extents(0)
        corners = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)]
        for i in self.rng.permutation(4):
            sx, sy = corners[int(i)]
            cx = sx * (self.room.width / 2 - size_x / 2 - rounded_uniform(self.rng, 0.08, 0.3))
            cy = sy * (self.room.depth / 2 - size_y / 2 - rounded_uniform(self.rng, 0.08, 0.3))
            if self.free(rect_aabb(cx, cy, size_x, size_y), clearance):
                placed = self.scene.add(model, 0, (cx, cy), 0.0)
                self.reserve(placed.aabb)
                return placed
        return self.place_on_floor(model, 0, clearance, margin=0.1)

    # -- walls

    def wall_centre(self, wall: int, model: Model, along: float, gap: float) -> tuple[float, float]:
        """The xy centre of ``model`` (turned to face into the room) with its back ``gap`` from ``wall``."""
        axis, coord, sign = self.room.wall_plane(wall)
        extents = model.extents(wall)
        centre = [0.0, 0.0]
        centre[axis] = coord + sign * (gap + extents[axis] / 2)
        centre[1 - axis] = along
        return centre[0], centre[1]

    def wall_span_free(
        self, wall: int, along_min: float, along_max: float, bottom: float, top: float, margin: float = 0.15
    ) -> bool:
        """Whether a span lies on ``wall`` away from its corners and keeps ``margin`` from every taken span."""
        half = self.room.wall_length(wall) / 2 - WALL_MARGIN
        if along_min < -half or along_max > half:
            return False
        return not any(
            along_min < taken_max + margin
            and taken_min < along_max + margin
            and bottom < taken_top + margin
            and taken_bottom < top + margin
            for taken_min, taken_max, taken_bottom, taken_top in self.walls.get(wall, [])
        )

    def random_along(self, wall: int, length: float) -> float:
        """A random position along ``wall`` for the centre of something ``length`` long."""
        half = self.room.wall_length(wall) / 2 - WALL_MARGIN - length / 2
        if half <= 0:
            raise NoRoom
        return float(self.rng.uniform(-half, half))

    def against_wall(
        self, wall: int, model: Model, gap: float, clearance: float, along: float | None = None, tries: int = 40
    ) -> SceneObject | None:
        """Stand ``model`` on the floor with its back to ``wall``; None when no free spot is found."""
        extents = model.extents(wall)
        length = extents[1 - self.room.wall_plane(wall)[0]]
        for _ in range(tries if along is None else 1):
            at = self.random_along(wall, length) if along is None else along
            cx, cy = self.wall_centre(wall, model, at, gap)
            box = rect_aabb(cx, cy, extents[0], extents[1], 0.0, extents[2])
            fits = self.free(box, clearance, margin=min(gap, 0.02) - 1e-6)
            if fits and self.wall_span_free(wall, at - length / 2, at + length / 2, 0.0, extents[2]):
                placed = self.scene.add(model, wall, (cx, cy), 0.0)
                self.reserve(placed.aabb)
                return placed
        return None

    def on_wall(
        self, wall: int, model: Model, bottom: float, along: float | None = None, tries: int = 40
    ) -> SceneObject | None:
        """Hang or fix ``model`` with its back against ``wall``; None when the wall has no free span."""
        extents = model.extents(wall)
        length = extents[1 - self.room.wall_plane(wall)[0]]
        top = bottom + extents[2]
        if top > self.room.height - 0.1:
            return None
        for _ in range(tries if along is None else 1):
            at = self.random_along(wall, length) if along is None else along
            if self.wall_span_free(wall, at - length / 2, at + length / 2, bottom, top):
                placed = self.scene.add(model, wall, self.wall_centre(wall, model, at, 0.0), bottom)
                self.walls.setdefault(wall, []).append((at - length / 2, at + length / 2, bottom, top))
                return placed
        return None

    def against_first_wall(
        self, walls: Iterable[int], model: Model, gap: float, clearance: float
    ) -> tuple[int, SceneObject] | None:
        """:meth:`against_wall` on the first of ``walls`` with a free spot: that wall and the object, or None."""
        return first_wall(walls, lambda wall: self.against_wall(wall, model, gap, clearance))

    def on_first_wall(
        self, walls: Iterable[int], model: Model, bottom: tuple[float, float], along: float | None = None
    ) -> SceneObject | None:
        """:meth:`on_wall` on the first of ``walls`` with a free span (the height of the bottom is drawn from
        the ``bottom`` range anew for each wall tried); None when none has."""
        found = first_wall(walls, lambda wall: self.on_wall(wall, model, rounded_uniform(self.rng, *bottom), along))
        return None if found is None else found[1]

    # -- on top of things

    def on_surface(self, surface: Surface, items: list[tuple[Model, int]], cols: int, rows: int) -> list[SceneObject]:
        """Put items on a surface, each in its own cell of a cols x rows grid (random cells and jitter)."""
        cells = [(i, j) for i in range(cols) for j in range(rows)]
        if len(items) > len(cells):
            raise NoRoom
        order = self.rng.permutation(len(cells))
        cell_x, cell_y = (surface.xmax - surface.xmin) / cols, (surface.ymax - surface.ymin) / rows
        placed = []
        for (model, turns), cell in zip(items, order):
            i, j = cells[int(cell)]
            size_x, size_y, _ = model.extents(turns)
            slack_x, slack_y = max(0.0, (cell_x - size_x) / 2 - 0.02), max(0.0, (cell_y - size_y) / 2 - 0.02)
            cx = surface.xmin + (i + 0.5) * cell_x + float(self.rng.uniform(-slack_x, slack_x))
            cy = surface.ymin + (j + 0.5) * cell_y + float(self.rng.uniform(-slack_y, slack_y))
            if size_x > cell_x or size_y > cell_y:
                raise NoRoom
            placed.append(self.scene.add(model, turns, (cx, cy), surface.z))
        return placed

    def stack(self, model: Model, turns: int, below: SceneObject, jitter: float = 0.02) -> SceneObject:
        """Put ``model`` on top of ``below``, roughly centred."""
        centre = below.aabb.centre
        dx, dy = self.rng.uniform(-jitter, jitter, size=2)
        placed = self.scene.add(model, turns, (float(centre[0] + dx), float(centre[1] + dy)), below.aabb.max[2])
        self.reserve(placed.aabb)
        return placed
