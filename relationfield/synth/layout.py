"""Procedural room layouts.

A layout draws everything from the generator it is given: room size, which wall the furniture
stands against, how many chairs, pillows, books and boxes there are, where they go, whether a box
is stacked on another one, and all colours and patterns. Placement is by rejection sampling on the
floor plan (furniture footprints keep a clearance) and along the walls (hung objects keep clear of
each other and of tall furniture); a layout that does not fit is drawn again from the same
generator, so the result is deterministic for a seed.

Every layout makes at least 10 non-structural objects, including identical duplicates (chairs).
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from relationfield.synth import models
from relationfield.synth.geometry import Aabb, Vec3
from relationfield.synth.models import Appearance, Model, PatternKind
from relationfield.synth.scene import Room, Scene, SceneObject, Surface, footprint_overlap, rect_aabb

SLAB = 0.1
"""Thickness of floor, wall and ceiling slabs (outside the free interior)."""

WALL_MARGIN = 0.25
"""Nothing is placed closer than this to a room corner along a wall."""

_MAX_ATTEMPTS = 60


class _NoRoom(Exception):
    """A placement did not fit; the layout is drawn again."""


# --------------------------------------------------------------------------- appearance helpers


def _colour(
    rng: np.random.Generator,
    hue: tuple[float, float] = (0.0, 1.0),
    sat: tuple[float, float] = (0.3, 0.75),
    val: tuple[float, float] = (0.45, 0.9),
) -> Vec3:
    h = float(rng.uniform(*hue)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, float(rng.uniform(*sat)), float(rng.uniform(*val)))
    return (round(r, 3), round(g, 3), round(b, 3))


def _look(
    rng: np.random.Generator,
    colour: Vec3 | None = None,
    pattern: PatternKind | None = None,
    scale: tuple[float, float] = (0.05, 0.25),
    contrast: tuple[float, float] = (0.2, 0.45),
) -> Appearance:
    kinds: tuple[PatternKind, ...] = ("checker", "stripes", "noise")
    kind = pattern if pattern is not None else kinds[int(rng.integers(len(kinds)))]
    return Appearance(
        albedo=colour if colour is not None else _colour(rng),
        pattern=kind,
        scale=round(float(rng.uniform(*scale)), 3),
        contrast=round(float(rng.uniform(*contrast)), 3),
    )


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 3)


# --------------------------------------------------------------------------- placement


@dataclass
class _Plan:
    """A scene under construction plus the floor and wall space already taken."""

    rng: np.random.Generator
    scene: Scene
    floor: list[Aabb] = field(default_factory=list)
    walls: dict[int, list[tuple[float, float, float, float]]] = field(default_factory=dict)

    @property
    def room(self) -> Room:
        return self.scene.room

    # -- floor

    def inside(self, box: Aabb, margin: float) -> bool:
        w, d = self.room.width / 2 - margin, self.room.depth / 2 - margin
        return bool(box.min[0] >= -w and box.max[0] <= w and box.min[1] >= -d and box.max[1] <= d)

    def free(self, box: Aabb, clearance: float, margin: float = 0.02) -> bool:
        """Whether a footprint lies in the room and keeps ``clearance`` from every reserved footprint."""
        return self.inside(box, margin) and not any(footprint_overlap(box, b, clearance) for b in self.floor)

    def reserve(self, box: Aabb) -> None:
        """Take a floor footprint; furniture close to a wall also takes that wall's span up to its top."""
        self.floor.append(box)
        for wall in range(4):
            axis, coord, _ = self.room.wall_plane(wall)
            along = 1 - axis
            if min(abs(box.min[axis] - coord), abs(box.max[axis] - coord)) < 0.4:
                self.walls.setdefault(wall, []).append((box.min[along], box.max[along], 0.0, box.max[2]))

    def random_spot(
        self, ex: float, ey: float, clearance: float, margin: float = 0.3, tries: int = 300
    ) -> tuple[float, float]:
        """A random free centre for an (ex, ey) footprint."""
        w, d = self.room.width / 2 - margin - ex / 2, self.room.depth / 2 - margin - ey / 2
        if w <= 0 or d <= 0:
            raise _NoRoom
        for _ in range(tries):
            cx, cy = float(self.rng.uniform(-w, w)), float(self.rng.uniform(-d, d))
            if self.free(rect_aabb(cx, cy, ex, ey), clearance):
                return cx, cy
        raise _NoRoom

    def place_on_floor(self, model: Model, turns: int, clearance: float, margin: float = 0.3) -> SceneObject:
        ex, ey, _ = model.extents(turns)
        cx, cy = self.random_spot(ex, ey, clearance, margin)
        obj = self.scene.add(model, turns, (cx, cy), 0.0)
        self.reserve(obj.aabb)
        return obj

    def place_in_corner(self, model: Model, clearance: float) -> SceneObject:
        """Near a random free corner if one is, anywhere free otherwise."""
        ex, ey, _ = model.extents(0)
        corners = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)]
        for i in self.rng.permutation(4):
            sx, sy = corners[int(i)]
            cx = sx * (self.room.width / 2 - ex / 2 - _u(self.rng, 0.08, 0.3))
            cy = sy * (self.room.depth / 2 - ey / 2 - _u(self.rng, 0.08, 0.3))
            if self.free(rect_aabb(cx, cy, ex, ey), clearance):
                obj = self.scene.add(model, 0, (cx, cy), 0.0)
                self.reserve(obj.aabb)
                return obj
        return self.place_on_floor(model, 0, clearance, margin=0.1)

    # -- walls

    def wall_centre(self, wall: int, model: Model, along: float, gap: float) -> tuple[float, float]:
        """The xy centre of ``model`` (turned to face into the room) with its back ``gap`` from ``wall``."""
        axis, coord, sign = self.room.wall_plane(wall)
        ext = model.extents(wall)
        centre = [0.0, 0.0]
        centre[axis] = coord + sign * (gap + ext[axis] / 2)
        centre[1 - axis] = along
        return centre[0], centre[1]

    def wall_span_free(self, wall: int, a0: float, a1: float, z0: float, z1: float, margin: float = 0.15) -> bool:
        half = self.room.wall_length(wall) / 2 - WALL_MARGIN
        if a0 < -half or a1 > half:
            return False
        return not any(
            a0 < b1 + margin and b0 < a1 + margin and z0 < c1 + margin and c0 < z1 + margin
            for b0, b1, c0, c1 in self.walls.get(wall, [])
        )

    def random_along(self, wall: int, length: float) -> float:
        half = self.room.wall_length(wall) / 2 - WALL_MARGIN - length / 2
        if half <= 0:
            raise _NoRoom
        return float(self.rng.uniform(-half, half))

    def against_wall(
        self, wall: int, model: Model, gap: float, clearance: float, along: float | None = None, tries: int = 40
    ) -> SceneObject | None:
        """Stand ``model`` on the floor with its back to ``wall``; None when no free spot is found."""
        ext = model.extents(wall)
        length = ext[1 - self.room.wall_plane(wall)[0]]
        for _ in range(tries if along is None else 1):
            a = self.random_along(wall, length) if along is None else along
            cx, cy = self.wall_centre(wall, model, a, gap)
            box = rect_aabb(cx, cy, ext[0], ext[1], 0.0, ext[2])
            fits = self.free(box, clearance, margin=min(gap, 0.02) - 1e-6)
            if fits and self.wall_span_free(wall, a - length / 2, a + length / 2, 0.0, ext[2]):
                obj = self.scene.add(model, wall, (cx, cy), 0.0)
                self.reserve(obj.aabb)
                return obj
        return None

    def on_wall(
        self, wall: int, model: Model, bottom: float, along: float | None = None, tries: int = 40
    ) -> SceneObject | None:
        """Hang or fix ``model`` with its back against ``wall``; None when the wall has no free span."""
        ext = model.extents(wall)
        length = ext[1 - self.room.wall_plane(wall)[0]]
        if bottom + ext[2] > self.room.height - 0.1:
            return None
        for _ in range(tries if along is None else 1):
            a = self.random_along(wall, length) if along is None else along
            if self.wall_span_free(wall, a - length / 2, a + length / 2, bottom, bottom + ext[2]):
                obj = self.scene.add(model, wall, self.wall_centre(wall, model, a, 0.0), bottom)
                self.walls.setdefault(wall, []).append((a - length / 2, a + length / 2, bottom, bottom + ext[2]))
                return obj
        return None

    # -- on top of things

    def on_surface(self, surface: Surface, items: list[tuple[Model, int]], cols: int, rows: int) -> list[SceneObject]:
        """Put items on a surface, each in its own cell of a cols x rows grid (random cells and jitter)."""
        cells = [(i, j) for i in range(cols) for j in range(rows)]
        if len(items) > len(cells):
            raise _NoRoom
        order = self.rng.permutation(len(cells))
        cw, ch = (surface.xmax - surface.xmin) / cols, (surface.ymax - surface.ymin) / rows
        placed = []
        for (model, turns), cell in zip(items, order):
            i, j = cells[int(cell)]
            ex, ey, _ = model.extents(turns)
            slack_x, slack_y = max(0.0, (cw - ex) / 2 - 0.02), max(0.0, (ch - ey) / 2 - 0.02)
            cx = surface.xmin + (i + 0.5) * cw + float(self.rng.uniform(-slack_x, slack_x))
            cy = surface.ymin + (j + 0.5) * ch + float(self.rng.uniform(-slack_y, slack_y))
            if ex > cw or ey > ch:
                raise _NoRoom
            placed.append(self.scene.add(model, turns, (cx, cy), surface.z))
        return placed

    def stack(self, model: Model, turns: int, below: SceneObject, jitter: float = 0.02) -> SceneObject:
        """Put ``model`` on top of ``below``, roughly centred."""
        c = below.aabb.centre
        dx, dy = self.rng.uniform(-jitter, jitter, size=2)
        obj = self.scene.add(model, turns, (float(c[0] + dx), float(c[1] + dy)), below.aabb.max[2])
        self.reserve(obj.aabb)
        return obj


# --------------------------------------------------------------------------- shared pieces


def _room(
    rng: np.random.Generator,
    layout: str,
    width: tuple[float, float],
    depth: tuple[float, float],
    height: tuple[float, float],
) -> _Plan:
    """A room of random size with floor, four walls and a ceiling."""
    room = Room(_u(rng, *width), _u(rng, *depth), _u(rng, *height))
    scene = Scene(room, layout)
    w, d, h, t = room.width, room.depth, room.height, SLAB
    floor_look = _look(rng, _colour(rng, (0.05, 0.12), (0.3, 0.6), (0.35, 0.65)), "checker", (0.25, 0.5), (0.15, 0.3))
    scene.structure("floor", (w + 2 * t, d + 2 * t, t), (0.0, 0.0, -t / 2), floor_look)
    wall_look = _look(rng, _colour(rng, (0.0, 1.0), (0.05, 0.25), (0.7, 0.9)), "noise", (0.3, 0.6), (0.1, 0.2))
    scene.structure("wall", (w + 2 * t, t, h), (0.0, -d / 2 - t / 2, h / 2), wall_look)
    scene.structure("wall", (t, d, h), (w / 2 + t / 2, 0.0, h / 2), wall_look)
    scene.structure("wall", (w + 2 * t, t, h), (0.0, d / 2 + t / 2, h / 2), wall_look)
    scene.structure("wall", (t, d, h), (-w / 2 - t / 2, 0.0, h / 2), wall_look)
    ceiling_look = _look(rng, _colour(rng, (0.0, 1.0), (0.0, 0.08), (0.85, 0.95)), "noise", (0.4, 0.8), (0.05, 0.12))
    scene.structure("ceiling", (w + 2 * t, d + 2 * t, t), (0.0, 0.0, h + t / 2), ceiling_look)
    return _Plan(rng, scene)


def _book_look(rng: np.random.Generator) -> Appearance:
    return _look(rng, _colour(rng, sat=(0.4, 0.85), val=(0.35, 0.85)), "stripes", (0.04, 0.08), (0.15, 0.35))


def _fill_shelf(plan: _Plan, shelf: SceneObject, wall: int, count: int) -> list[SceneObject]:
    """Stand up to ``count`` books on the shelf's boards (below the top), left to right per board."""
    rng = plan.rng
    axis = plan.room.wall_plane(wall)[0]
    along = 1 - axis
    top = shelf.aabb.max[2]
    boards = [s for s in shelf.surfaces() if s.z < top - 0.1 and (s.xmax - s.xmin) > 0.2 and (s.ymax - s.ymin) > 0.2]
    boards.sort(key=lambda s: s.z)
    cursor: dict[int, float | None] = {i: None for i in range(len(boards))}
    books = []
    for _ in range(count):
        i = int(rng.integers(len(boards)))
        board = boards[i]
        lo, hi = (board.xmin, board.xmax) if along == 0 else (board.ymin, board.ymax)
        n_lo, n_hi = (board.ymin, board.ymax) if along == 0 else (board.xmin, board.xmax)
        start = cursor[i] if cursor[i] is not None else lo + _u(rng, 0.02, 0.12)
        spacing = min(b.z for b in boards if b.z > board.z) - board.z if board is not boards[-1] else top - board.z
        model = models.book(
            _u(rng, 0.18, min(0.28, spacing - 0.08)),
            _u(rng, 0.14, min(0.22, n_hi - n_lo - 0.02)),
            _u(rng, 0.025, 0.05),
            False,
            _book_look(rng),
        )
        ext = model.extents(wall)
        if start + ext[along] > hi - 0.02:
            continue
        centre = [0.0, 0.0]
        centre[along] = start + ext[along] / 2
        centre[axis] = (n_lo + n_hi) / 2
        books.append(plan.scene.add(model, wall, (centre[0], centre[1]), board.z))
        cursor[i] = start + ext[along] + _u(rng, 0.0, 0.04)
    return books


def _chairs_around(
    table: Model, table_turns: int, chair: Model, count: int, rng: np.random.Generator
) -> list[tuple[tuple[float, float], int]]:
    """Chair positions (relative to the table centre) and turns, facing the table, for ``count`` chairs."""
    tw, td, _ = table.extents(0)
    cw, cd, _ = chair.extents(0)
    long_sides = count == 4 and tw >= 1.3
    slots: list[tuple[float, float, int]] = []  # (x, y, turns) in the table's frame; chair front is +y at 0 turns
    gap = [_u(rng, 0.04, 0.18) for _ in range(4)]
    if long_sides:
        for sx in (-1, 1):
            slots.append((sx * tw / 4, td / 2 + gap[0] + cd / 2, 2))
            slots.append((sx * tw / 4, -(td / 2 + gap[1] + cd / 2), 0))
    else:
        shift = _u(rng, -0.1, 0.1) * tw
        sides = [
            (shift, td / 2 + gap[0] + cd / 2, 2),
            (-shift, -(td / 2 + gap[1] + cd / 2), 0),
            (tw / 2 + gap[2] + cd / 2, 0.0, 1),
            (-(tw / 2 + gap[3] + cd / 2), 0.0, 3),
        ]
        slots = sides[:count]
    out = []
    for x, y, turns in slots[:count]:
        for _ in range(table_turns):
            x, y = -y, x
        out.append(((x, y), (turns + table_turns) % 4))
    return out


def _furniture_group(
    plan: _Plan,
    main: Model,
    main_turns: int,
    chair: Model,
    seats: list[tuple[tuple[float, float], int]],
    clearance: float,
) -> tuple[SceneObject, list[SceneObject]]:
    """Place a table-like model with chairs around it where the whole group fits."""
    ex, ey, _ = main.extents(main_turns)
    boxes = [rect_aabb(0.0, 0.0, ex, ey)]
    for (x, y), turns in seats:
        cx, cy, _ = chair.extents(turns)
        boxes.append(rect_aabb(x, y, cx, cy))
    group = Aabb.union(boxes)
    gc = group.centre
    gx, gy = plan.random_spot(float(group.extents[0]), float(group.extents[1]), clearance, margin=0.35)
    ox, oy = gx - float(gc[0]), gy - float(gc[1])
    obj = plan.scene.add(main, main_turns, (ox, oy), 0.0)
    chairs = [plan.scene.add(chair, turns, (ox + x, oy + y), 0.0) for (x, y), turns in seats]
    for o in [obj, *chairs]:
        plan.reserve(o.aabb)
    return obj, chairs


def _boxes(plan: _Plan, surfaces: list[SceneObject]) -> None:
    """0-2 identical boxes: the first on the floor or on one of ``surfaces``, a second stacked on it or on the floor."""
    rng = plan.rng
    count = int(rng.integers(0, 3))
    if count == 0:
        return
    model = models.box(
        (_u(rng, 0.3, 0.5), _u(rng, 0.25, 0.4), _u(rng, 0.2, 0.35)),
        _look(rng, _colour(rng, (0.07, 0.12), (0.35, 0.6), (0.55, 0.8)), "noise", (0.05, 0.15), (0.1, 0.25)),
        _colour(rng, (0.1, 0.15), (0.1, 0.3), (0.75, 0.9)),
    )
    turns = int(rng.integers(4))
    ext = model.extents(turns)
    below = surfaces[int(rng.integers(len(surfaces)))] if surfaces and rng.random() < 0.5 else None
    if below is not None and ext[0] < below.aabb.extents[0] and ext[1] < below.aabb.extents[1]:
        first = plan.stack(model, turns, below)
    else:
        first = plan.place_on_floor(model, turns, clearance=0.25)
    if count == 2:
        if rng.random() < 0.6:
            plan.stack(model, int(rng.integers(4)), first)
        else:
            plan.place_on_floor(model, int(rng.integers(4)), clearance=0.25)


def _plant(plan: _Plan) -> SceneObject:
    """A potted plant near a free corner."""
    rng = plan.rng
    pot = _u(rng, 0.22, 0.34)
    leaves = (_u(rng, 0.4, 0.6), _u(rng, 0.4, 0.6), _u(rng, 0.45, 0.8))
    model = models.plant(
        pot,
        _u(rng, 0.25, 0.4),
        leaves,
        _look(rng, _colour(rng, val=(0.4, 0.7)), "stripes"),
        _colour(rng, (0.25, 0.4), (0.5, 0.8), (0.35, 0.65)),
    )
    return plan.place_in_corner(model, clearance=0.2)


def _picture(
    plan: _Plan, walls: list[int], bottom: tuple[float, float], along: float | None = None
) -> SceneObject | None:
    """Hang a random picture on the first of ``walls`` with room for it; None when none has."""
    rng = plan.rng
    model = models.picture(
        _u(rng, 0.5, 1.0),
        _u(rng, 0.4, 0.7),
        _look(rng, scale=(0.04, 0.15), contrast=(0.3, 0.6)),
        _colour(rng, val=(0.2, 0.5)),
    )
    for wall in walls:
        obj = plan.on_wall(wall, model, _u(rng, *bottom), along)
        if obj is not None:
            return obj
    return None


# --------------------------------------------------------------------------- layouts


def _living_room(rng: np.random.Generator) -> Scene:
    """Sofa with pillows and a picture above, shelf with books, table with chairs, lamp, cup and books,
    a plant, sometimes a tv, a second picture and boxes."""
    plan = _room(rng, "living-room", (4.8, 6.4), (4.2, 5.4), (2.5, 2.9))
    room = plan.room

    # sofa against a wall, pillows lying on its seat, a picture above it
    sofa_wall = int(rng.integers(4))
    sofa_model = models.sofa(_u(rng, 1.8, 2.3), _look(rng, scale=(0.08, 0.2), contrast=(0.15, 0.3)))
    sofa_len = sofa_model.extents(sofa_wall)[1 - room.wall_plane(sofa_wall)[0]]
    sofa_along = _u(rng, -0.25, 0.25) * max(0.0, room.wall_length(sofa_wall) - 2 * WALL_MARGIN - sofa_len)
    sofa = plan.against_wall(sofa_wall, sofa_model, gap=0.06, clearance=0.3, along=sofa_along)
    if sofa is None:
        raise _NoRoom
    seat = sofa.surfaces()[0]  # the sofa's first part is its seat base
    axis, _, sign = room.wall_plane(sofa_wall)
    pillow_model = models.pillow(_u(rng, 0.36, 0.44), _u(rng, 0.1, 0.14), _look(rng, scale=(0.05, 0.12)))
    n_pillows = int(rng.integers(1, 4))
    lo, hi = (seat.xmin, seat.xmax) if axis == 1 else (seat.ymin, seat.ymax)
    back_edge = (seat.ymin if sign > 0 else seat.ymax) if axis == 1 else (seat.xmin if sign > 0 else seat.xmax)
    size = pillow_model.extents(0)[0]
    slot = (hi - lo) / n_pillows
    for i in range(n_pillows):
        c = [0.0, 0.0]
        c[1 - axis] = lo + (i + 0.5) * slot + _u(rng, -1.0, 1.0) * max(0.0, (slot - size) / 2 - 0.03)
        c[axis] = back_edge + sign * (size / 2 + _u(rng, 0.02, 0.08))
        plan.scene.add(pillow_model, sofa_wall, (c[0], c[1]), seat.z)
    sofa_centre = float(sofa.aabb.centre[1 - axis])
    if (
        _picture(
            plan,
            [sofa_wall],
            (sofa.aabb.max[2] + 0.25, sofa.aabb.max[2] + 0.45),
            along=sofa_centre + _u(rng, -0.15, 0.15),
        )
        is None
    ):
        raise _NoRoom

    # a shelf fixed to another wall with books standing inside
    others = [w for w in rng.permutation(4).tolist() if w != sofa_wall]
    shelf_model = models.shelf(
        _u(rng, 0.8, 1.2),
        _u(rng, 0.3, 0.36),
        _u(rng, 1.45, 1.9),
        int(rng.integers(3, 5)),
        _look(rng, _colour(rng, (0.05, 0.12), (0.3, 0.6), (0.3, 0.7)), "stripes", (0.06, 0.12)),
    )
    shelf = None
    for wall in others:
        shelf = plan.against_wall(wall, shelf_model, gap=0.0, clearance=0.3)
        if shelf is not None:
            shelf_wall = wall
            break
    if shelf is None:
        raise _NoRoom
    if len(_fill_shelf(plan, shelf, shelf_wall, int(rng.integers(2, 5)))) < 2:
        raise _NoRoom

    # a table with identical chairs around it; a lamp, a cup and books on the table
    table_model = models.table(
        _u(rng, 1.2, 1.6),
        _u(rng, 0.8, 0.95),
        _u(rng, 0.72, 0.78),
        _look(rng, scale=(0.06, 0.2)),
        _colour(rng, val=(0.2, 0.5)),
    )
    chair_model = models.chair(
        _u(rng, 0.42, 0.48),
        _u(rng, 0.44, 0.48),
        _u(rng, 0.86, 0.95),
        _look(rng, scale=(0.04, 0.12)),
        _colour(rng, val=(0.2, 0.5)),
    )
    table_turns = int(rng.integers(2))
    seats = _chairs_around(table_model, table_turns, chair_model, int(rng.integers(2, 5)), rng)
    table, _ = _furniture_group(plan, table_model, table_turns, chair_model, seats, clearance=0.35)
    items: list[tuple[Model, int]] = [
        (
            models.table_lamp(
                _u(rng, 0.4, 0.55),
                _u(rng, 0.24, 0.3),
                _look(rng, scale=(0.03, 0.08)),
                _colour(rng, sat=(0.1, 0.4), val=(0.8, 0.95)),
            ),
            0,
        ),
        (models.cup(_u(rng, 0.07, 0.09), _u(rng, 0.08, 0.11), _look(rng, scale=(0.01, 0.03))), int(rng.integers(4))),
    ]
    n_books = int(rng.integers(1, 4))
    book_models = [
        models.book(_u(rng, 0.14, 0.2), _u(rng, 0.2, 0.26), _u(rng, 0.025, 0.045), True, _book_look(rng))
        for _ in range(n_books)
    ]
    stacked = n_books >= 2 and rng.random() < 0.6
    loose = book_models[:1] if stacked else book_models
    items += [(m, int(rng.integers(4))) for m in loose]
    cols, rows = (3, 2) if table_turns == 0 else (2, 3)
    placed = plan.on_surface(table.surfaces()[0], items, cols, rows)  # the first part is the table top
    if stacked:
        below = placed[2]
        for m in book_models[1:]:
            below = plan.stack(m, int(rng.integers(4)), below)

    # a wall-mounted tv and a second picture, sometimes
    if rng.random() < 0.5:
        tv_model = models.tv(
            _u(rng, 0.8, 1.1),
            _u(rng, 0.45, 0.62),
            _look(rng, _colour(rng, val=(0.1, 0.3)), "noise"),
            _colour(rng, sat=(0.2, 0.5), val=(0.15, 0.3)),
        )
        for wall in others:
            if plan.on_wall(wall, tv_model, _u(rng, 1.1, 1.3)) is not None:
                break
    if rng.random() < 0.5:
        _picture(plan, rng.permutation(4).tolist(), (1.3, 1.6))

    _plant(plan)
    _boxes(plan, [])
    return plan.scene


def _office(rng: np.random.Generator) -> Scene:
    """Desk with monitor, cup and laptop, identical swivel chairs at the desk and a round table, one or two
    identical shelves with books, cabinet, trash can, plant, clock, sometimes a picture and boxes."""
    plan = _room(rng, "office", (4.4, 6.0), (3.9, 5.2), (2.6, 3.0))
    room = plan.room

    # a desk against a wall with a monitor, a cup, a laptop and maybe a lamp or a book on it; a chair in front
    desk_wall = int(rng.integers(4))
    desk_model = models.desk(
        _u(rng, 1.3, 1.7),
        _u(rng, 0.68, 0.78),
        _u(rng, 0.72, 0.76),
        _look(rng, scale=(0.06, 0.2)),
        _colour(rng, val=(0.25, 0.6)),
    )
    desk = plan.against_wall(desk_wall, desk_model, gap=0.03, clearance=0.2)
    if desk is None:
        raise _NoRoom
    chair_model = models.office_chair(
        _u(rng, 0.46, 0.52),
        _u(rng, 0.46, 0.5),
        _u(rng, 0.95, 1.05),
        _look(rng, _colour(rng, val=(0.2, 0.6)), scale=(0.03, 0.1)),
        _colour(rng, sat=(0.0, 0.2), val=(0.1, 0.3)),
    )
    axis, coord, sign = room.wall_plane(desk_wall)
    front = desk.aabb.max[axis] if sign > 0 else desk.aabb.min[axis]
    cext = chair_model.extents((desk_wall + 2) % 4)
    c = [0.0, 0.0]
    c[axis] = front + sign * (_u(rng, 0.05, 0.2) + cext[axis] / 2)
    c[1 - axis] = float(desk.aabb.centre[1 - axis]) + _u(rng, -0.15, 0.15)
    chair_box = rect_aabb(c[0], c[1], cext[0], cext[1])
    if not plan.free(chair_box, 0.0):
        raise _NoRoom
    plan.reserve(plan.scene.add(chair_model, (desk_wall + 2) % 4, (c[0], c[1]), 0.0).aabb)

    top = desk.surfaces()[0]  # the desk's first part is its top
    mon = models.monitor(
        _u(rng, 0.5, 0.62),
        _u(rng, 0.3, 0.36),
        _look(rng, _colour(rng, val=(0.1, 0.3)), "noise"),
        _colour(rng, (0.55, 0.7), (0.3, 0.6), (0.2, 0.4)),
    )
    mext = mon.extents(desk_wall)
    m = [0.0, 0.0]
    m[axis] = coord + sign * (0.03 + _u(rng, 0.05, 0.1) + mext[axis] / 2)
    m[1 - axis] = float(desk.aabb.centre[1 - axis]) + _u(rng, -0.2, 0.2)
    plan.scene.add(mon, desk_wall, (m[0], m[1]), top.z)
    half = {
        0: ("ymin", top.ymin + (top.ymax - top.ymin) * 0.55),
        2: ("ymax", top.ymax - (top.ymax - top.ymin) * 0.55),
        1: ("xmax", top.xmax - (top.xmax - top.xmin) * 0.55),
        3: ("xmin", top.xmin + (top.xmax - top.xmin) * 0.55),
    }
    key, value = half[desk_wall]
    front_row = dataclasses.replace(top, **{key: value})  # the half of the top away from the wall
    items: list[tuple[Model, int]] = [
        (models.cup(_u(rng, 0.07, 0.09), _u(rng, 0.08, 0.11), _look(rng, scale=(0.01, 0.03))), int(rng.integers(4)))
    ]
    items.append(
        (
            models.laptop(
                _u(rng, 0.3, 0.34), _u(rng, 0.21, 0.24), _look(rng, _colour(rng, val=(0.3, 0.7)), "noise", (0.02, 0.05))
            ),
            desk_wall,
        )
    )
    extra = rng.random()
    if extra < 0.45:
        items.append(
            (
                models.table_lamp(
                    _u(rng, 0.35, 0.5),
                    _u(rng, 0.2, 0.26),
                    _look(rng, scale=(0.03, 0.08)),
                    _colour(rng, sat=(0.1, 0.4), val=(0.8, 0.95)),
                ),
                0,
            )
        )
    elif extra < 0.9:
        items.append(
            (
                models.book(_u(rng, 0.14, 0.2), _u(rng, 0.2, 0.24), _u(rng, 0.025, 0.045), True, _book_look(rng)),
                int(rng.integers(4)),
            )
        )
    if axis == 1:
        plan.on_surface(front_row, items, 3, 1)
    else:
        plan.on_surface(front_row, items, 1, 3)

    # a round meeting table with more of the same chairs
    table_model = models.round_table(
        _u(rng, 0.9, 1.1),
        _u(rng, 0.72, 0.76),
        _look(rng, scale=(0.06, 0.2)),
        _colour(rng, sat=(0.0, 0.2), val=(0.15, 0.4)),
    )
    seats = _chairs_around(table_model, 0, chair_model, int(rng.integers(2, 4)), rng)
    _furniture_group(plan, table_model, 0, chair_model, seats, clearance=0.3)

    # one or two identical shelves fixed to walls, with books
    shelf_model = models.shelf(
        _u(rng, 0.8, 1.1),
        _u(rng, 0.3, 0.36),
        _u(rng, 1.6, 2.1),
        int(rng.integers(4, 6)),
        _look(rng, _colour(rng, val=(0.3, 0.8)), "stripes", (0.06, 0.12)),
    )
    others = [w for w in rng.permutation(4).tolist() if w != desk_wall]
    n_shelves = int(rng.integers(1, 3))
    n_books = 0
    for wall in others + others:
        if n_shelves == 0:
            break
        shelf = plan.against_wall(wall, shelf_model, gap=0.0, clearance=0.25)
        if shelf is not None:
            n_shelves -= 1
            n_books += len(_fill_shelf(plan, shelf, wall, int(rng.integers(2, 5))))
    if n_books < 2:
        raise _NoRoom

    # a cabinet, a trash can, a plant, a clock and maybe a picture and boxes
    cab_model = models.cabinet(
        _u(rng, 0.6, 0.9),
        _u(rng, 0.4, 0.5),
        _u(rng, 0.7, 0.95),
        _look(rng, scale=(0.05, 0.15)),
        _colour(rng, sat=(0.0, 0.1), val=(0.6, 0.9)),
    )
    cabinet = None
    for wall in rng.permutation(4).tolist():
        cabinet = plan.against_wall(wall, cab_model, gap=0.04, clearance=0.25)
        if cabinet is not None:
            break
    if cabinet is None:
        raise _NoRoom
    can = models.trash_can(
        _u(rng, 0.26, 0.34), _u(rng, 0.35, 0.45), _look(rng, _colour(rng, val=(0.3, 0.7)), "stripes")
    )
    plan.place_on_floor(can, 0, clearance=0.15, margin=0.1)
    _plant(plan)
    _boxes(plan, [cabinet])
    clock_model = models.clock(
        _u(rng, 0.26, 0.36),
        _look(rng, _colour(rng, sat=(0.0, 0.15), val=(0.8, 0.95)), "noise"),
        _colour(rng, val=(0.05, 0.2)),
    )
    placed_clock = None
    for wall in rng.permutation(4).tolist():
        placed_clock = plan.on_wall(wall, clock_model, _u(rng, 1.7, 2.0))
        if placed_clock is not None:
            break
    if placed_clock is None:
        raise _NoRoom
    if rng.random() < 0.6:
        _picture(plan, rng.permutation(4).tolist(), (1.2, 1.5))
    return plan.scene


_BUILDERS: dict[str, Callable[[np.random.Generator], Scene]] = {
    "living-room": _living_room,
    "office": _office,
}

LAYOUTS: tuple[str, ...] = tuple(_BUILDERS)
"""The names of the available layouts; the first one is the default."""


def build_scene(layout: str, rng: np.random.Generator) -> Scene:
    """Draw a scene of the named layout from ``rng`` (deterministic for a generator state)."""
    builder = _BUILDERS[layout]
    for _ in range(_MAX_ATTEMPTS):
        try:
            return builder(rng)
        except _NoRoom:
            continue
    raise RuntimeError(f"could not fit a {layout!r} layout after {_MAX_ATTEMPTS} attempts")
