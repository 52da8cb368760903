"""Random draws shared by the layouts: rounded sizes, colours and surface appearances.

Values are rounded to 3 decimals (millimetres for lengths) so that scene files stay short and equal
draws give equal model signatures.
"""

from __future__ import annotations

import colorsys

import numpy as np

from relationfield.synth.geometry import Vec3
from relationfield.synth.models import Appearance, PatternKind

PATTERNS: tuple[PatternKind, ...] = ("checker", "stripes", "noise")
"""The patterns a random appearance chooses from when none is given."""


def rounded_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw from [lo, hi), rounded to 3 decimals."""
    return round(float(rng.uniform(lo, hi)), 3)


def random_colour(
    rng: np.random.Generator,
    hue: tuple[float, float] = (0.0, 1.0),
    sat: tuple[float, float] = (0.3, 0.75),
    val: tuple[float, float] = (0.45, 0.9),
) -> Vec3:
    """An RGB colour drawn uniformly in the given hue, saturation and value ranges."""
    h = float(rng.uniform(*hue)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, float(rng.uniform(*sat)), float(rng.uniform(*val)))
    return (round(r, 3), round(g, 3), round(b, 3))


def random_appearance(
    rng: np.random.Generator,
    colour: Vec3 | None = None,
    pattern: PatternKind | None = None,
    scale: tuple[float, float] = (0.05, 0.25),
    contrast: tuple[float, float] = (0.2, 0.45),
) -> Appearance:
    """An appearance with the given (or a random) pattern and albedo, and a random scale and contrast."""
    kind = pattern if pattern is not None else PATTERNS[int(rng.integers(len(PATTERNS)))]
    return Appearance(
        albedo=colour if colour is not None else random_colour(rng),
        pattern=kind,
        scale=round(float(rng.uniform(*scale)), 3),
        contrast=round(float(rng.uniform(*contrast)), 3),
    )
