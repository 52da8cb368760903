"""Object models: labelled compositions of primitive parts with an appearance and a resting kind.

A model lives in its own frame: metres, +z up, the bottom of its bounding box at z = 0, centred on
the origin in x and y, its front facing +y. Builders take their dimensions and colours as arguments;
the layouts draw those from the scene's random generator, so reusing one model gives identical
objects (same shape, same colour). Labels come from the 3DSSG object vocabulary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from relationfield.synth.geometry import Part, Vec3, parts_aabb

Rest = Literal["standing", "lying", "hanging", "fixed", "structural"]
"""How an object rests: upright on a support, flat on a support, hung on a wall, fixed to a wall
(and possibly standing on the floor), or part of the room itself."""

PatternKind = Literal["checker", "stripes", "noise", "plain"]


@dataclass(frozen=True)
class Appearance:
    """A view-independent surface description: albedo times a procedural pattern in world space.

    ``scale`` is the pattern period in metres and ``contrast`` the darkening of the dark phase.
    """

    albedo: Vec3
    pattern: PatternKind = "noise"
    scale: float = 0.2
    contrast: float = 0.3


@dataclass(frozen=True)
class Model:
    """A reusable object shape: objects placed from the same model are identical."""

    label: str
    parts: tuple[Part, ...]
    appearance: Appearance
    rest: Rest

    @property
    def signature(self) -> str:
        """A name derived from label, geometry and appearance; equal exactly for identical objects."""
        text = repr(
            (
                self.label,
                self.rest,
                [(p.shape, _r(p.size), _r(p.centre), p.axis, _r(p.colour)) for p in self.parts],
                (_r(self.appearance.albedo), self.appearance.pattern),
                round(self.appearance.scale, 4),
                round(self.appearance.contrast, 4),
            )
        )
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
        return f"{self.label.replace(' ', '_')}-{digest}"

    def extents(self, quarter_turns: int = 0) -> tuple[float, float, float]:
        """Bounding-box extents after turning the model by ``quarter_turns`` x 90 degrees."""
        box = parts_aabb(tuple(p.turned(quarter_turns) for p in self.parts))
        e = box.extents
        return (float(e[0]), float(e[1]), float(e[2]))


def _r(v: Vec3 | None) -> tuple[float, ...] | None:
    return None if v is None else tuple(round(float(x), 4) for x in v)


def _box(size: Vec3, centre: Vec3, colour: Vec3 | None = None) -> Part:
    return Part("box", size, centre, "z", colour)


def _cyl(
    diameter: float, length: float, centre: Vec3, axis: Literal["x", "y", "z"] = "z", colour: Vec3 | None = None
) -> Part:
    size = {"x": (length, diameter, diameter), "y": (diameter, length, diameter), "z": (diameter, diameter, length)}
    return Part("cylinder", size[axis], centre, axis, colour)  # type: ignore[arg-type]


def table(width: float, depth: float, height: float, look: Appearance, leg_colour: Vec3) -> Model:
    """A table: a top on four square legs."""
    top_t, leg, inset = 0.04, 0.06, 0.05
    parts = [_box((width, depth, top_t), (0.0, 0.0, height - top_t / 2))]
    lx, ly = width / 2 - inset - leg / 2, depth / 2 - inset - leg / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((leg, leg, height - top_t), (sx * lx, sy * ly, (height - top_t) / 2), leg_colour))
    return Model("table", tuple(parts), look, "standing")


def round_table(diameter: float, height: float, look: Appearance, base_colour: Vec3) -> Model:
    """A round table: a disc top on a central pole and a foot disc."""
    top_t = 0.04
    parts = (
        _cyl(diameter, top_t, (0.0, 0.0, height - top_t / 2)),
        _cyl(0.08, height - top_t - 0.03, (0.0, 0.0, 0.03 + (height - top_t - 0.03) / 2), colour=base_colour),
        _cyl(0.5, 0.03, (0.0, 0.0, 0.015), colour=base_colour),
    )
    return Model("table", parts, look, "standing")


def desk(width: float, depth: float, height: float, look: Appearance, panel_colour: Vec3) -> Model:
    """A desk: a top on two side panels with a modesty board at the back."""
    top_t, panel = 0.04, 0.04
    h = height - top_t
    parts = (
        _box((width, depth, top_t), (0.0, 0.0, height - top_t / 2)),
        _box((panel, depth - 0.04, h), (-(width / 2 - 0.04 - panel / 2), 0.0, h / 2), panel_colour),
        _box((panel, depth - 0.04, h), (width / 2 - 0.04 - panel / 2, 0.0, h / 2), panel_colour),
        _box((width - 0.16 - 2 * panel, 0.02, h * 0.55), (0.0, -depth / 2 + 0.06, h - h * 0.55 / 2), panel_colour),
    )
    return Model("desk", parts, look, "standing")


def chair(seat: float, seat_height: float, back_height: float, look: Appearance, leg_colour: Vec3) -> Model:
    """A chair: a seat on four legs and a back rest at the rear (front faces +y)."""
    seat_t, leg, back_t = 0.05, 0.04, 0.04
    parts = [_box((seat, seat, seat_t), (0.0, 0.0, seat_height - seat_t / 2))]
    legs_h = seat_height - seat_t
    off = seat / 2 - leg / 2 - 0.01
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((leg, leg, legs_h), (sx * off, sy * off, legs_h / 2), leg_colour))
    back_h = back_height - seat_height
    parts.append(_box((seat, back_t, back_h), (0.0, -seat / 2 + back_t / 2, seat_height + back_h / 2)))
    return Model("chair", tuple(parts), look, "standing")


def office_chair(seat: float, seat_height: float, back_height: float, look: Appearance, base_colour: Vec3) -> Model:
    """A swivel chair: a seat and back on a central column with a round foot."""
    seat_t, back_t = 0.07, 0.05
    col_h = seat_height - seat_t - 0.04
    back_h = back_height - seat_height - 0.05
    parts = (
        _box((seat, seat, seat_t), (0.0, 0.0, seat_height - seat_t / 2)),
        _box((seat * 0.9, back_t, back_h), (0.0, -seat / 2 + back_t / 2, back_height - back_h / 2)),
        _cyl(0.06, col_h, (0.0, 0.0, 0.04 + col_h / 2), colour=base_colour),
        _cyl(0.56, 0.04, (0.0, 0.0, 0.02), colour=base_colour),
    )
    return Model("chair", parts, look, "standing")


def sofa(width: float, look: Appearance) -> Model:
    """A sofa: a seat base between two arms with a back rest (front faces +y)."""
    depth, seat_h, back_h, back_d, arm_w, arm_h = 0.88, 0.42, 0.85, 0.2, 0.16, 0.62
    inner = width - 2 * arm_w
    parts = (
        _box((inner, depth - back_d, seat_h), (0.0, back_d / 2, seat_h / 2)),
        _box((width, back_d, back_h), (0.0, -depth / 2 + back_d / 2, back_h / 2)),
        _box((arm_w, depth, arm_h), (-(width / 2 - arm_w / 2), 0.0, arm_h / 2)),
        _box((arm_w, depth, arm_h), (width / 2 - arm_w / 2, 0.0, arm_h / 2)),
    )
    return Model("sofa", parts, look, "standing")


def shelf(width: float, depth: float, height: float, boards: int, look: Appearance) -> Model:
    """An open shelf: two sides, a back panel and ``boards`` horizontal boards (the last one on top)."""
    side, board_t, back_t, plinth = 0.03, 0.025, 0.015, 0.06
    inner = width - 2 * side
    parts = [
        _box((side, depth, height), (-(width / 2 - side / 2), 0.0, height / 2)),
        _box((side, depth, height), (width / 2 - side / 2, 0.0, height / 2)),
        _box((inner, back_t, height), (0.0, -depth / 2 + back_t / 2, height / 2)),
    ]
    span = height - plinth - board_t
    for i in range(boards):
        bottom = plinth + span * i / (boards - 1)
        parts.append(_box((inner, depth - back_t, board_t), (0.0, back_t / 2, bottom + board_t / 2)))
    return Model("shelf", tuple(parts), look, "fixed")


def book(width: float, depth: float, thickness: float, lying: bool, look: Appearance) -> Model:
    """A book: standing upright (spine along y, thickness along x) or lying flat."""
    if lying:
        part = _box((width, depth, thickness), (0.0, 0.0, thickness / 2))
    else:
        part = _box((thickness, depth, width), (0.0, 0.0, width / 2))
    return Model("book", (part,), look, "lying" if lying else "standing")


def cup(diameter: float, height: float, look: Appearance) -> Model:
    """A cup with a small handle."""
    parts = (
        _cyl(diameter, height, (0.0, 0.0, height / 2)),
        _box((0.015, 0.035, height * 0.55), (diameter / 2 + 0.0075, 0.0, height * 0.5)),
    )
    return Model("cup", parts, look, "standing")


def table_lamp(height: float, shade_diameter: float, look: Appearance, shade_colour: Vec3) -> Model:
    """A lamp: a round base, a thin pole and a cylindrical shade."""
    base_h, shade_h = 0.03, 0.18
    pole_h = height - base_h - shade_h * 0.6
    parts = (
        _cyl(shade_diameter * 0.6, base_h, (0.0, 0.0, base_h / 2)),
        _cyl(0.025, pole_h, (0.0, 0.0, base_h + pole_h / 2)),
        _cyl(shade_diameter, shade_h, (0.0, 0.0, height - shade_h / 2), colour=shade_colour),
    )
    return Model("lamp", parts, look, "standing")


def pillow(size: float, thickness: float, look: Appearance) -> Model:
    """A square pillow lying flat."""
    return Model("pillow", (_box((size, size, thickness), (0.0, 0.0, thickness / 2)),), look, "lying")


def picture(width: float, height: float, look: Appearance, frame_colour: Vec3) -> Model:
    """A framed picture; its back (-y) goes against a wall."""
    depth = 0.03
    parts = (
        _box((width, depth, height), (0.0, 0.0, height / 2), frame_colour),
        _box((width - 0.08, 0.01, height - 0.08), (0.0, depth / 2 + 0.005, height / 2)),
    )
    return Model("picture", parts, look, "hanging")


def clock(diameter: float, look: Appearance, hand_colour: Vec3) -> Model:
    """A round wall clock; its back (-y) goes against a wall."""
    d = 0.045
    parts = (
        _cyl(diameter, d, (0.0, 0.0, diameter / 2), axis="y"),
        _box((0.02, 0.01, diameter * 0.35), (0.0, d / 2 + 0.005, diameter / 2 + diameter * 0.15), hand_colour),
        _box((diameter * 0.28, 0.01, 0.02), (diameter * 0.12, d / 2 + 0.005, diameter / 2), hand_colour),
    )
    return Model("clock", parts, look, "hanging")


def tv(width: float, height: float, look: Appearance, screen_colour: Vec3) -> Model:
    """A flat screen fixed to a wall; its back (-y) goes against the wall."""
    depth = 0.05
    parts = (
        _box((width, depth, height), (0.0, 0.0, height / 2)),
        _box((width - 0.04, 0.006, height - 0.04), (0.0, depth / 2 + 0.003, height / 2), screen_colour),
    )
    return Model("tv", parts, look, "fixed")


def plant(pot_diameter: float, pot_height: float, leaves: Vec3, look: Appearance, leaf_colour: Vec3) -> Model:
    """A potted plant: a cylindrical pot with an ellipsoid of leaves on top."""
    parts = (
        _cyl(pot_diameter, pot_height, (0.0, 0.0, pot_height / 2)),
        Part("sphere", leaves, (0.0, 0.0, pot_height - 0.04 + leaves[2] / 2), "z", leaf_colour),
    )
    return Model("plant", parts, look, "standing")


def box(size: Vec3, look: Appearance, tape_colour: Vec3) -> Model:
    """A cardboard box with a strip of tape over its top."""
    parts = (
        _box(size, (0.0, 0.0, size[2] / 2)),
        _box((size[0] * 0.15, size[1] + 0.004, 0.004), (0.0, 0.0, size[2] + 0.002), tape_colour),
    )
    return Model("box", parts, look, "standing")


def monitor(width: float, height: float, look: Appearance, screen_colour: Vec3) -> Model:
    """A computer monitor: a foot, a neck and a screen (front faces +y)."""
    foot_t, neck_h, depth = 0.02, 0.12, 0.03
    parts = (
        _box((0.22, 0.16, foot_t), (0.0, 0.0, foot_t / 2)),
        _box((0.05, 0.03, neck_h), (0.0, -0.03, foot_t + neck_h / 2)),
        _box((width, depth, height), (0.0, 0.0, foot_t + neck_h + height / 2)),
        _box(
            (width - 0.03, 0.005, height - 0.03), (0.0, depth / 2 + 0.0025, foot_t + neck_h + height / 2), screen_colour
        ),
    )
    return Model("monitor", parts, look, "standing")


def laptop(width: float, depth: float, look: Appearance) -> Model:
    """A closed laptop lying flat."""
    return Model("laptop", (_box((width, depth, 0.022), (0.0, 0.0, 0.011)),), look, "lying")


def cabinet(width: float, depth: float, height: float, look: Appearance, handle_colour: Vec3) -> Model:
    """A closed cabinet with two door handles on its front."""
    parts = (
        _box((width, depth, height), (0.0, 0.0, height / 2)),
        _box((0.02, 0.02, 0.14), (-0.05, depth / 2 + 0.01, height * 0.75), handle_colour),
        _box((0.02, 0.02, 0.14), (0.05, depth / 2 + 0.01, height * 0.75), handle_colour),
    )
    return Model("cabinet", parts, look, "standing")


def trash_can(diameter: float, height: float, look: Appearance) -> Model:
    """A cylindrical trash can with a rim."""
    parts = (
        _cyl(diameter, height - 0.02, (0.0, 0.0, (height - 0.02) / 2)),
        _cyl(diameter + 0.02, 0.02, (0.0, 0.0, height - 0.01)),
    )
    return Model("trash can", parts, look, "standing")
