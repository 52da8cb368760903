"""The office layout: a desk with monitor, cup and laptop, identical swivel chairs at the desk and at a
round table, one or two identical shelves with books, a cabinet with the desk cup's twin on top, a trash
can, a plant, two identical boxes (one on the floor, one stacked on it), a clock and sometimes a picture.

The twins (the cups, the boxes) are told apart only by their relations: "the cup standing on the desk"
vs "the cup standing on the cabinet", "the box standing on the floor" vs "the box standing on the box"."""

from __future__ import annotations

import dataclasses

import numpy as np

from relationfield.synth import models
from relationfield.synth.draws import random_appearance, random_colour, rounded_uniform
from relationfield.synth.furnishing import (
    book_appearance,
    chairs_around,
    fill_shelf,
    hang_picture,
    place_group,
    place_plant,
    random_box,
    random_cup,
    room_shell,
)
from relationfield.synth.models import Model
from relationfield.synth.placement import NoRoom, Plan, required
from relationfield.synth.scene import Scene, SceneObject, Surface, rect_aabb

DESK_GAP = 0.03
"""Distance between the desk's back and its wall."""


def build_office(rng: np.random.Generator) -> Scene:
    """Draw an office from ``rng``; raises :class:`~relationfield.synth.placement.NoRoom` when it does not fit."""
    plan = room_shell(rng, "office", (4.4, 6.0), (3.9, 5.2), (2.6, 3.0))
    desk_wall = int(rng.integers(4))
    desk = _place_desk(plan, desk_wall)
    chair_model = _swivel_chair(rng)
    _place_desk_chair(plan, desk, desk_wall, chair_model)
    _place_monitor(plan, desk, desk_wall)
    cup, cup_turns = _dress_desk(plan, desk, desk_wall)
    _place_meeting_table(plan, chair_model)
    _place_shelves(plan, desk_wall)
    cabinet = _place_cabinet(plan)
    _place_cup_twin(plan, cabinet, cup, cup_turns)
    _place_trash_can(plan)
    place_plant(plan)
    _place_box_stack(plan)
    _hang_clock(plan)
    if rng.random() < 0.6:
        hang_picture(plan, rng.permutation(4).tolist(), (1.2, 1.5))
    return plan.scene


def _place_desk(plan: Plan, wall: int) -> SceneObject:
    rng = plan.rng
    desk = models.desk(
        rounded_uniform(rng, 1.3, 1.7),
        rounded_uniform(rng, 0.68, 0.78),
        rounded_uniform(rng, 0.72, 0.76),
        random_appearance(rng, scale=(0.06, 0.2)),
        random_colour(rng, val=(0.25, 0.6)),
    )
    return required(plan.against_wall(wall, desk, gap=DESK_GAP, clearance=0.2))


def _swivel_chair(rng: np.random.Generator) -> Model:
    """The model of every chair in the office."""
    return models.office_chair(
        rounded_uniform(rng, 0.46, 0.52),
        rounded_uniform(rng, 0.46, 0.5),
        rounded_uniform(rng, 0.95, 1.05),
        random_appearance(rng, random_colour(rng, val=(0.2, 0.6)), scale=(0.03, 0.1)),
        random_colour(rng, sat=(0.0, 0.2), val=(0.1, 0.3)),
    )


def _place_desk_chair(plan: Plan, desk: SceneObject, desk_wall: int, chair_model: Model) -> None:
    """A chair in front of the desk, facing it."""
    rng = plan.rng
    axis, _, sign = plan.room.wall_plane(desk_wall)
    turns = (desk_wall + 2) % 4
    front = desk.aabb.max[axis] if sign > 0 else desk.aabb.min[axis]
    extents = chair_model.extents(turns)
    centre = [0.0, 0.0]
    centre[axis] = front + sign * (rounded_uniform(rng, 0.05, 0.2) + extents[axis] / 2)
    centre[1 - axis] = float(desk.aabb.centre[1 - axis]) + rounded_uniform(rng, -0.15, 0.15)
    if not plan.free(rect_aabb(centre[0], centre[1], extents[0], extents[1]), 0.0):
        raise NoRoom
    plan.reserve(plan.scene.add(chair_model, turns, (centre[0], centre[1]), 0.0).aabb)


def _place_monitor(plan: Plan, desk: SceneObject, desk_wall: int) -> None:
    """A monitor at the back of the desk top, facing into the room."""
    rng = plan.rng
    top = desk.surfaces()[0]  # the desk's first part is its top
    monitor = models.monitor(
        rounded_uniform(rng, 0.5, 0.62),
        rounded_uniform(rng, 0.3, 0.36),
        random_appearance(rng, random_colour(rng, val=(0.1, 0.3)), "noise"),
        random_colour(rng, (0.55, 0.7), (0.3, 0.6), (0.2, 0.4)),
    )
    axis, coord, sign = plan.room.wall_plane(desk_wall)
    extents = monitor.extents(desk_wall)
    centre = [0.0, 0.0]
    centre[axis] = coord + sign * (DESK_GAP + rounded_uniform(rng, 0.05, 0.1) + extents[axis] / 2)
    centre[1 - axis] = float(desk.aabb.centre[1 - axis]) + rounded_uniform(rng, -0.2, 0.2)
    plan.scene.add(monitor, desk_wall, (centre[0], centre[1]), top.z)


def _front_half(top: Surface, wall: int) -> Surface:
    """The part of a desk top away from ``wall`` (its front 45 %, clear of the monitor)."""
    x_size, y_size = top.xmax - top.xmin, top.ymax - top.ymin
    edge = {
        0: ("ymin", top.ymin + y_size * 0.55),
        2: ("ymax", top.ymax - y_size * 0.55),
        1: ("xmax", top.xmax - x_size * 0.55),
        3: ("xmin", top.xmin + x_size * 0.55),
    }
    key, value = edge[wall]
    return dataclasses.replace(top, **{key: value})


def _dress_desk(plan: Plan, desk: SceneObject, desk_wall: int) -> tuple[Model, int]:
    """A cup, a laptop and most of the time a lamp or a book in a row on the front of the desk; the cup's
    model and quarter turns."""
    rng = plan.rng
    items: list[tuple[Model, int]] = [(random_cup(rng), int(rng.integers(4)))]
    laptop = models.laptop(
        rounded_uniform(rng, 0.3, 0.34),
        rounded_uniform(rng, 0.21, 0.24),
        random_appearance(rng, random_colour(rng, val=(0.3, 0.7)), "noise", (0.02, 0.05)),
    )
    items.append((laptop, desk_wall))
    extra = rng.random()
    if extra < 0.45:
        lamp = models.table_lamp(
            rounded_uniform(rng, 0.35, 0.5),
            rounded_uniform(rng, 0.2, 0.26),
            random_appearance(rng, scale=(0.03, 0.08)),
            random_colour(rng, sat=(0.1, 0.4), val=(0.8, 0.95)),
        )
        items.append((lamp, 0))
    elif extra < 0.9:
        book = models.book(
            rounded_uniform(rng, 0.14, 0.2),
            rounded_uniform(rng, 0.2, 0.24),
            rounded_uniform(rng, 0.025, 0.045),
            True,
            book_appearance(rng),
        )
        items.append((book, int(rng.integers(4))))
    axis = plan.room.wall_plane(desk_wall)[0]
    cols, rows = (3, 1) if axis == 1 else (1, 3)
    plan.on_surface(_front_half(desk.surfaces()[0], desk_wall), items, cols, rows)
    return items[0]


def _place_meeting_table(plan: Plan, chair_model: Model) -> None:
    """A round table with 2-3 more of the desk's chairs around it."""
    rng = plan.rng
    table_model = models.round_table(
        rounded_uniform(rng, 0.9, 1.1),
        rounded_uniform(rng, 0.72, 0.76),
        random_appearance(rng, scale=(0.06, 0.2)),
        random_colour(rng, sat=(0.0, 0.2), val=(0.15, 0.4)),
    )
    seats = chairs_around(table_model, 0, chair_model, int(rng.integers(2, 4)), rng)
    place_group(plan, table_model, 0, chair_model, seats, clearance=0.3)


def _place_shelves(plan: Plan, desk_wall: int) -> None:
    """One or two identical shelves fixed to walls other than the desk's, with at least two books in all."""
    rng = plan.rng
    shelf_model = models.shelf(
        rounded_uniform(rng, 0.8, 1.1),
        rounded_uniform(rng, 0.3, 0.36),
        rounded_uniform(rng, 1.6, 2.1),
        int(rng.integers(4, 6)),
        random_appearance(rng, random_colour(rng, val=(0.3, 0.8)), "stripes", (0.06, 0.12)),
    )
    other_walls = [w for w in rng.permutation(4).tolist() if w != desk_wall]
    n_shelves = int(rng.integers(1, 3))
    n_books = 0
    for wall in other_walls + other_walls:  # a second shelf may go on the same wall as the first
        if n_shelves == 0:
            break
        shelf = plan.against_wall(wall, shelf_model, gap=0.0, clearance=0.25)
        if shelf is not None:
            n_shelves -= 1
            n_books += len(fill_shelf(plan, shelf, wall, int(rng.integers(2, 5))))
    if n_books < 2:
        raise NoRoom


def _place_cabinet(plan: Plan) -> SceneObject:
    rng = plan.rng
    cabinet = models.cabinet(
        rounded_uniform(rng, 0.6, 0.9),
        rounded_uniform(rng, 0.4, 0.5),
        rounded_uniform(rng, 0.7, 0.95),
        random_appearance(rng, scale=(0.05, 0.15)),
        random_colour(rng, sat=(0.0, 0.1), val=(0.6, 0.9)),
    )
    walls = rng.permutation(4).tolist()
    return required(plan.against_first_wall(walls, cabinet, gap=0.04, clearance=0.25))[1]


def _place_cup_twin(plan: Plan, cabinet: SceneObject, cup: Model, cup_turns: int) -> None:
    """The desk cup's twin (same model) standing somewhere on the cabinet top."""
    # Half a turn more or not: the handle may point the other way, but along the same axis, so that the
    # twins' boxes have equal sizes.
    turns = (cup_turns + 2 * int(plan.rng.integers(2))) % 4
    plan.on_surface(cabinet.surfaces()[0], [(cup, turns)], 1, 1)  # the cabinet's first part is its body


def _place_trash_can(plan: Plan) -> None:
    rng = plan.rng
    can = models.trash_can(
        rounded_uniform(rng, 0.26, 0.34),
        rounded_uniform(rng, 0.35, 0.45),
        random_appearance(rng, random_colour(rng, val=(0.3, 0.7)), "stripes"),
    )
    plan.place_on_floor(can, 0, clearance=0.15, margin=0.1)


def _place_box_stack(plan: Plan) -> None:
    """Two identical boxes, one on the floor and one stacked on it, turned alike so their boxes match."""
    rng = plan.rng
    model = random_box(rng)
    turns = int(rng.integers(4))
    plan.stack(model, turns, plan.place_on_floor(model, turns, clearance=0.25))


def _hang_clock(plan: Plan) -> None:
    rng = plan.rng
    clock = models.clock(
        rounded_uniform(rng, 0.26, 0.36),
        random_appearance(rng, random_colour(rng, sat=(0.0, 0.15), val=(0.8, 0.95)), "noise"),
        random_colour(rng, val=(0.05, 0.2)),
    )
    required(plan.on_first_wall(rng.permutation(4).tolist(), clock, (1.7, 2.0)))
