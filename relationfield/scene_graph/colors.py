"""Colours: distinct, deterministic ones per node id (grey for points in no node), one per predicate family."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

__all__ = ["FAMILY_COLORS", "NOISE_COLOR", "family_color", "node_colors"]

NOISE_COLOR = (128, 128, 128)
"""Colour of points that belong to no node (node id -1)."""

FAMILY_COLORS: dict[str, str] = {
    "support": "#d55e00",
    "attachment": "#0072b2",
    "containment": "#009e73",
    "similarity": "#b4408e",
    "proximity": "#c89400",
    "comparison": "#8c8c8c",
    "other": "#3c3c3c",
}
"""Colour of each predicate family (:data:`relationfield.vocab.PREDICATE_FAMILIES`, plus "other"): the
Okabe-Ito colour-blind-safe hues, the strong ones for the families the picture draws by default."""


def family_color(family: str) -> str:
    """The colour of a predicate family (that of "other" for a family without one)."""
    return FAMILY_COLORS.get(family, FAMILY_COLORS["other"])


_GOLDEN = 0.6180339887498949
_PLASTIC = 0.7548776662466927


def node_colors(ids: Sequence[int]) -> np.ndarray:
    """Distinct, deterministic colours ([n, 3] uint8) for node ids; negative ids (noise) are grey.

    Hue steps by the golden ratio per id; saturation and value vary slowly so that far-apart ids with
    close hues still differ. Repeated ids (e.g. one per point) get the same colour.
    """
    values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(values, return_inverse=True)
    palette = np.array([_id_color(int(i)) for i in unique], dtype=np.uint8).reshape(-1, 3)
    return palette[inverse.reshape(-1)]


def _id_color(node_id: int) -> tuple[int, int, int]:
    """The colour of one node id (grey for negative ids)."""
    if node_id < 0:
        return NOISE_COLOR
    hue = (node_id * _GOLDEN) % 1.0
    saturation = 0.55 + 0.35 * ((node_id * _PLASTIC) % 1.0)
    value = 0.95 - 0.2 * ((node_id // 7) % 2)
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(red * 255), round(green * 255), round(blue * 255))
