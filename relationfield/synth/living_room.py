"""The living-room layout: a sofa with pillows and a picture above, a shelf with books, a table with
chairs, a lamp, a cup and books, a plant, sometimes a tv, a second picture and boxes."""

from __future__ import annotations

import numpy as np

from relationfield.synth import models
from relationfield.synth.draws import random_appearance, random_colour, rounded_uniform
from relationfield.synth.furnishing import (
    book_appearance,
    chairs_around,
    fill_shelf,
    hang_picture,
    place_boxes,
    place_group,
    place_plant,
    random_cup,
    room_shell,
)
from relationfield.synth.models import Model
from relationfield.synth.placement import WALL_MARGIN, NoRoom, Plan, required
from relationfield.synth.scene import Scene, SceneObject


def build_living_room(rng: np.random.Generator) -> Scene:
    """Draw a living room from ``rng``; raises :class:`~relationfield.synth.placement.NoRoom` when it does not fit."""
    plan = room_shell(rng, "living-room", (4.8, 6.4), (4.2, 5.4), (2.5, 2.9))
    sofa_wall = int(rng.integers(4))
    sofa = _place_sofa(plan, sofa_wall)
    _place_pillows(plan, sofa, sofa_wall)
    _hang_picture_above(plan, sofa, sofa_wall)
    other_walls = [w for w in rng.permutation(4).tolist() if w != sofa_wall]
    _place_bookshelf(plan, other_walls)
    table, table_turns = _place_table_and_chairs(plan)
    _dress_table(plan, table, table_turns)
    _maybe_hang_tv_and_picture(plan, other_walls)
    place_plant(plan)
    place_boxes(plan, [])
    return plan.scene


def _place_sofa(plan: Plan, wall: int) -> SceneObject:
    """A sofa against ``wall``, roughly centred along it."""
    rng, room = plan.rng, plan.room
    sofa = models.sofa(rounded_uniform(rng, 1.8, 2.3), random_appearance(rng, scale=(0.08, 0.2), contrast=(0.15, 0.3)))
    length = sofa.extents(wall)[1 - room.wall_plane(wall)[0]]
    along = rounded_uniform(rng, -0.25, 0.25) * max(0.0, room.wall_length(wall) - 2 * WALL_MARGIN - length)
    return required(plan.against_wall(wall, sofa, gap=0.06, clearance=0.3, along=along))


def _place_pillows(plan: Plan, sofa: SceneObject, wall: int) -> None:
    """1-3 identical pillows lying side by side at the back of the sofa's seat."""
    rng = plan.rng
    seat = sofa.surfaces()[0]  # the sofa's first part is its seat base
    axis, _, sign = plan.room.wall_plane(wall)
    pillow = models.pillow(
        rounded_uniform(rng, 0.36, 0.44), rounded_uniform(rng, 0.1, 0.14), random_appearance(rng, scale=(0.05, 0.12))
    )
    count = int(rng.integers(1, 4))
    lo, hi = (seat.xmin, seat.xmax) if axis == 1 else (seat.ymin, seat.ymax)
    back_edge = (seat.ymin if sign > 0 else seat.ymax) if axis == 1 else (seat.xmin if sign > 0 else seat.xmax)
    size = pillow.extents(0)[0]
    slot = (hi - lo) / count
    for i in range(count):
        centre = [0.0, 0.0]
        jitter = rounded_uniform(rng, -1.0, 1.0) * max(0.0, (slot - size) / 2 - 0.03)
        centre[1 - axis] = lo + (i + 0.5) * slot + jitter
        centre[axis] = back_edge + sign * (size / 2 + rounded_uniform(rng, 0.02, 0.08))
        plan.scene.add(pillow, wall, (centre[0], centre[1]), seat.z)


def _hang_picture_above(plan: Plan, sofa: SceneObject, wall: int) -> None:
    """A picture on the sofa's wall, above the sofa and about centred on it."""
    axis = plan.room.wall_plane(wall)[0]
    along = float(sofa.aabb.centre[1 - axis]) + rounded_uniform(plan.rng, -0.15, 0.15)
    top = sofa.aabb.max[2]
    required(hang_picture(plan, [wall], (top + 0.25, top + 0.45), along=along))


def _place_bookshelf(plan: Plan, walls: list[int]) -> None:
    """A shelf fixed to the first of ``walls`` with room for it, with at least two books standing inside."""
    rng = plan.rng
    shelf_model = models.shelf(
        rounded_uniform(rng, 0.8, 1.2),
        rounded_uniform(rng, 0.3, 0.36),
        rounded_uniform(rng, 1.45, 1.9),
        int(rng.integers(3, 5)),
        random_appearance(rng, random_colour(rng, (0.05, 0.12), (0.3, 0.6), (0.3, 0.7)), "stripes", (0.06, 0.12)),
    )
    wall, shelf = required(plan.against_first_wall(walls, shelf_model, gap=0.0, clearance=0.3))
    if len(fill_shelf(plan, shelf, wall, int(rng.integers(2, 5)))) < 2:
        raise NoRoom


def _place_table_and_chairs(plan: Plan) -> tuple[SceneObject, int]:
    """A table with 2-4 identical chairs around it; the table and its quarter turns."""
    rng = plan.rng
    table_model = models.table(
        rounded_uniform(rng, 1.2, 1.6),
        rounded_uniform(rng, 0.8, 0.95),
        rounded_uniform(rng, 0.72, 0.78),
        random_appearance(rng, scale=(0.06, 0.2)),
        random_colour(rng, val=(0.2, 0.5)),
    )
    chair_model = models.chair(
        rounded_uniform(rng, 0.42, 0.48),
        rounded_uniform(rng, 0.44, 0.48),
        rounded_uniform(rng, 0.86, 0.95),
        random_appearance(rng, scale=(0.04, 0.12)),
        random_colour(rng, val=(0.2, 0.5)),
    )
    table_turns = int(rng.integers(2))
    seats = chairs_around(table_model, table_turns, chair_model, int(rng.integers(2, 5)), rng)
    table, _ = place_group(plan, table_model, table_turns, chair_model, seats, clearance=0.35)
    return table, table_turns


def _dress_table(plan: Plan, table: SceneObject, table_turns: int) -> None:
    """A lamp, a cup and 1-3 books on the table top; two or more books are sometimes stacked."""
    rng = plan.rng
    lamp = models.table_lamp(
        rounded_uniform(rng, 0.4, 0.55),
        rounded_uniform(rng, 0.24, 0.3),
        random_appearance(rng, scale=(0.03, 0.08)),
        random_colour(rng, sat=(0.1, 0.4), val=(0.8, 0.95)),
    )
    items: list[tuple[Model, int]] = [(lamp, 0), (random_cup(rng), int(rng.integers(4)))]
    n_books = int(rng.integers(1, 4))
    books = [
        models.book(
            rounded_uniform(rng, 0.14, 0.2),
            rounded_uniform(rng, 0.2, 0.26),
            rounded_uniform(rng, 0.025, 0.045),
            True,
            book_appearance(rng),
        )
        for _ in range(n_books)
    ]
    stacked = n_books >= 2 and rng.random() < 0.6
    loose = books[:1] if stacked else books
    items += [(book, int(rng.integers(4))) for book in loose]
    cols, rows = (3, 2) if table_turns == 0 else (2, 3)
    placed = plan.on_surface(table.surfaces()[0], items, cols, rows)  # the first part is the table top
    if stacked:
        below = placed[2]  # the first book, after the lamp and the cup
        for book in books[1:]:
            below = plan.stack(book, int(rng.integers(4)), below)


def _maybe_hang_tv_and_picture(plan: Plan, tv_walls: list[int]) -> None:
    """Half the time a tv on the first of ``tv_walls`` with room for it; half the time a second picture."""
    rng = plan.rng
    if rng.random() < 0.5:
        tv = models.tv(
            rounded_uniform(rng, 0.8, 1.1),
            rounded_uniform(rng, 0.45, 0.62),
            random_appearance(rng, random_colour(rng, val=(0.1, 0.3)), "noise"),
            random_colour(rng, sat=(0.2, 0.5), val=(0.15, 0.3)),
        )
        plan.on_first_wall(tv_walls, tv, (1.1, 1.3))
    if rng.random() < 0.5:
        hang_picture(plan, rng.permutation(4).tolist(), (1.3, 1.6))
