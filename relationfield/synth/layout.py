"""The room layouts by name, and drawing a scene of one of them.

A layout draws everything from the generator it is given: room size, which wall the furniture
stands against, how many chairs, pillows, books and boxes there are, where they go, whether a box
is stacked on another one, and all colours and patterns (placement: :mod:`relationfield.synth.placement`).
A layout that does not fit is drawn again from the same generator, so the result is deterministic for
a seed.

Every layout makes at least 10 non-structural objects, including identical duplicates (chairs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from relationfield.synth.living_room import build_living_room
from relationfield.synth.office import build_office
from relationfield.synth.placement import NoRoom
from relationfield.synth.scene import Scene

MAX_ATTEMPTS = 60
"""Draws of a layout before giving up on a generator."""

_BUILDERS: dict[str, Callable[[np.random.Generator], Scene]] = {
    "living-room": build_living_room,
    "office": build_office,
}

LAYOUTS: tuple[str, ...] = tuple(_BUILDERS)
"""The names of the available layouts; the first one is the default."""


def build_scene(layout: str, rng: np.random.Generator) -> Scene:
    """Draw a scene of the named layout from ``rng`` (deterministic for a generator state)."""
    builder = _BUILDERS[layout]
    for _ in range(MAX_ATTEMPTS):
        try:
            return builder(rng)
        except NoRoom:
            continue
    raise RuntimeError(f"could not fit a {layout!r} layout after {MAX_ATTEMPTS} attempts")
