"""Furniture groups both layouts use: the bare room, books on shelves, chairs around a table, boxes,
a plant, a picture and a cup.

Each function draws its models from the plan's generator in a fixed order (the order is part of what
makes a scene a function of its seed) and places them with :class:`~relationfield.synth.placement.Plan`.
"""

from __future__ import annotations

import numpy as np

from relationfield.synth import models
from relationfield.synth.draws import random_appearance, random_colour, rounded_uniform
from relationfield.synth.geometry import Aabb
from relationfield.synth.models import Appearance, Model
from relationfield.synth.placement import Plan
from relationfield.synth.scene import Room, Scene, SceneObject, Surface, rect_aabb

SLAB = 0.1
"""Thickness of floor, wall and ceiling slabs (outside the free interior)."""

Seat = tuple[tuple[float, float], int]
"""A chair's xy position relative to its table's centre, and its quarter turns."""


def room_shell(
    rng: np.random.Generator,
    layout: str,
    width: tuple[float, float],
    depth: tuple[float, float],
    height: tuple[float, float],
) -> Plan:
    """A room of random size with floor, four walls and a ceiling."""
    room = Room(rounded_uniform(rng, *width), rounded_uniform(rng, *depth), rounded_uniform(rng, *height))
    scene = Scene(room, layout)
    w, d, h, t = room.width, room.depth, room.height, SLAB
    floor_colour = random_colour(rng, (0.05, 0.12), (0.3, 0.6), (0.35, 0.65))
    floor_look = random_appearance(rng, floor_colour, "checker", (0.25, 0.5), (0.15, 0.3))
    scene.structure("floor", (w + 2 * t, d + 2 * t, t), (0.0, 0.0, -t / 2), floor_look)
    wall_colour = random_colour(rng, (0.0, 1.0), (0.05, 0.25), (0.7, 0.9))
    wall_look = random_appearance(rng, wall_colour, "noise", (0.3, 0.6), (0.1, 0.2))
    scene.structure("wall", (w + 2 * t, t, h), (0.0, -d / 2 - t / 2, h / 2), wall_look)
    scene.structure("wall", (t, d, h), (w / 2 + t / 2, 0.0, h / 2), wall_look)
    scene.structure("wall", (w + 2 * t, t, h), (0.0, d / 2 + t / 2, h / 2), wall_look)
    scene.structure("wall", (t, d, h), (-w / 2 - t / 2, 0.0, h / 2), wall_look)
    ceiling_colour = random_colour(rng, (0.0, 1.0), (0.0, 0.08), (0.85, 0.95))
    ceiling_look = random_appearance(rng, ceiling_colour, "noise", (0.4, 0.8), (0.05, 0.12))
    scene.structure("ceiling", (w + 2 * t, d + 2 * t, t), (0.0, 0.0, h + t / 2), ceiling_look)
    return Plan(rng, scene)


def book_appearance(rng: np.random.Generator) -> Appearance:
    """A striped cover in a strong colour."""
    colour = random_colour(rng, sat=(0.4, 0.85), val=(0.35, 0.85))
    return random_appearance(rng, colour, "stripes", (0.04, 0.08), (0.15, 0.35))


def random_cup(rng: np.random.Generator) -> Model:
    return models.cup(
        rounded_uniform(rng, 0.07, 0.09), rounded_uniform(rng, 0.08, 0.11), random_appearance(rng, scale=(0.01, 0.03))
    )


def _shelf_boards(shelf: SceneObject) -> list[Surface]:
    """The boards of a shelf that books can stand on (its top excluded), bottom to top."""
    top = shelf.aabb.max[2]
    boards = [s for s in shelf.surfaces() if s.z < top - 0.1 and (s.xmax - s.xmin) > 0.2 and (s.ymax - s.ymin) > 0.2]
    boards.sort(key=lambda s: s.z)
    return boards


def fill_shelf(plan: Plan, shelf: SceneObject, wall: int, count: int) -> list[SceneObject]:
    """Stand up to ``count`` books on the shelf's boards (below the top), left to right per board."""
    rng = plan.rng
    axis = plan.room.wall_plane(wall)[0]
    along = 1 - axis
    top = shelf.aabb.max[2]
    boards = _shelf_boards(shelf)
    cursor: dict[int, float | None] = {i: None for i in range(len(boards))}  # where the next book starts
    books = []
    for _ in range(count):
        i = int(rng.integers(len(boards)))
        board = boards[i]
        lo, hi = (board.xmin, board.xmax) if along == 0 else (board.ymin, board.ymax)
        deep_lo, deep_hi = (board.ymin, board.ymax) if along == 0 else (board.xmin, board.xmax)
        start = cursor[i] if cursor[i] is not None else lo + rounded_uniform(rng, 0.02, 0.12)
        headroom = min(b.z for b in boards if b.z > board.z) - board.z if board is not boards[-1] else top - board.z
        model = models.book(
            rounded_uniform(rng, 0.18, min(0.28, headroom - 0.08)),
            rounded_uniform(rng, 0.14, min(0.22, deep_hi - deep_lo - 0.02)),
            rounded_uniform(rng, 0.025, 0.05),
            False,
            book_appearance(rng),
        )
        extents = model.extents(wall)
        if start + extents[along] > hi - 0.02:
            continue
        centre = [0.0, 0.0]
        centre[along] = start + extents[along] / 2
        centre[axis] = (deep_lo + deep_hi) / 2
        books.append(plan.scene.add(model, wall, (centre[0], centre[1]), board.z))
        cursor[i] = start + extents[along] + rounded_uniform(rng, 0.0, 0.04)
    return books


def chairs_around(table: Model, table_turns: int, chair: Model, count: int, rng: np.random.Generator) -> list[Seat]:
    """Chair positions (relative to the table centre) and turns, facing the table, for ``count`` chairs."""
    table_x, table_y, _ = table.extents(0)
    _, chair_y, _ = chair.extents(0)
    long_sides = count == 4 and table_x >= 1.3
    slots: list[tuple[float, float, int]] = []  # (x, y, turns) in the table's frame; chair front is +y at 0 turns
    gap = [rounded_uniform(rng, 0.04, 0.18) for _ in range(4)]
    if long_sides:
        for sx in (-1, 1):
            slots.append((sx * table_x / 4, table_y / 2 + gap[0] + chair_y / 2, 2))
            slots.append((sx * table_x / 4, -(table_y / 2 + gap[1] + chair_y / 2), 0))
    else:
        shift = rounded_uniform(rng, -0.1, 0.1) * table_x
        sides = [
            (shift, table_y / 2 + gap[0] + chair_y / 2, 2),
            (-shift, -(table_y / 2 + gap[1] + chair_y / 2), 0),
            (table_x / 2 + gap[2] + chair_y / 2, 0.0, 1),
            (-(table_x / 2 + gap[3] + chair_y / 2), 0.0, 3),
        ]
        slots = sides[:count]
    seats = []
    for x, y, turns in slots[:count]:
        for _ in range(table_turns):
            x, y = -y, x
        seats.append(((x, y), (turns + table_turns) % 4))
    return seats


def place_group(
    plan: Plan, main: Model, main_turns: int, chair: Model, seats: list[Seat], clearance: float
) -> tuple[SceneObject, list[SceneObject]]:
    """Place a table-like model with chairs around it where the whole group fits."""
    size_x, size_y, _ = main.extents(main_turns)
    boxes = [rect_aabb(0.0, 0.0, size_x, size_y)]
    for (x, y), turns in seats:
        chair_x, chair_y, _ = chair.extents(turns)
        boxes.append(rect_aabb(x, y, chair_x, chair_y))
    group = Aabb.union(boxes)
    group_centre = group.centre
    gx, gy = plan.random_spot(float(group.extents[0]), float(group.extents[1]), clearance, margin=0.35)
    ox, oy = gx - float(group_centre[0]), gy - float(group_centre[1])
    table = plan.scene.add(main, main_turns, (ox, oy), 0.0)
    chairs = [plan.scene.add(chair, turns, (ox + x, oy + y), 0.0) for (x, y), turns in seats]
    for placed in [table, *chairs]:
        plan.reserve(placed.aabb)
    return table, chairs


def random_box(rng: np.random.Generator) -> Model:
    """A cardboard box of random size."""
    size = (rounded_uniform(rng, 0.3, 0.5), rounded_uniform(rng, 0.25, 0.4), rounded_uniform(rng, 0.2, 0.35))
    cardboard = random_colour(rng, (0.07, 0.12), (0.35, 0.6), (0.55, 0.8))
    look = random_appearance(rng, cardboard, "noise", (0.05, 0.15), (0.1, 0.25))
    return models.box(size, look, random_colour(rng, (0.1, 0.15), (0.1, 0.3), (0.75, 0.9)))


def place_boxes(plan: Plan, surfaces: list[SceneObject]) -> None:
    """0-2 identical boxes: the first on the floor or on one of ``surfaces``, a second stacked on it or on the floor."""
    rng = plan.rng
    count = int(rng.integers(0, 3))
    if count == 0:
        return
    model = random_box(rng)
    turns = int(rng.integers(4))
    extents = model.extents(turns)
    below = surfaces[int(rng.integers(len(surfaces)))] if surfaces and rng.random() < 0.5 else None
    if below is not None and extents[0] < below.aabb.extents[0] and extents[1] < below.aabb.extents[1]:
        first = plan.stack(model, turns, below)
    else:
        first = plan.place_on_floor(model, turns, clearance=0.25)
    if count == 2:
        if rng.random() < 0.6:
            plan.stack(model, int(rng.integers(4)), first)
        else:
            plan.place_on_floor(model, int(rng.integers(4)), clearance=0.25)


def place_plant(plan: Plan) -> SceneObject:
    """A potted plant near a free corner."""
    rng = plan.rng
    pot = rounded_uniform(rng, 0.22, 0.34)
    leaves = (rounded_uniform(rng, 0.4, 0.6), rounded_uniform(rng, 0.4, 0.6), rounded_uniform(rng, 0.45, 0.8))
    model = models.plant(
        pot,
        rounded_uniform(rng, 0.25, 0.4),
        leaves,
        random_appearance(rng, random_colour(rng, val=(0.4, 0.7)), "stripes"),
        random_colour(rng, (0.25, 0.4), (0.5, 0.8), (0.35, 0.65)),
    )
    return plan.place_in_corner(model, clearance=0.2)


def hang_picture(
    plan: Plan, walls: list[int], bottom: tuple[float, float], along: float | None = None
) -> SceneObject | None:
    """Hang a random picture on the first of ``walls`` with room for it; None when none has."""
    rng = plan.rng
    model = models.picture(
        rounded_uniform(rng, 0.5, 1.0),
        rounded_uniform(rng, 0.4, 0.7),
        random_appearance(rng, scale=(0.04, 0.15), contrast=(0.3, 0.6)),
        random_colour(rng, val=(0.2, 0.5)),
    )
    return plan.on_first_wall(walls, model, bottom, along)
