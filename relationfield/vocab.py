"""Vocabularies (object classes, predicates) and where the shipped ones live.

The defaults are the 3DSSG benchmark's 160 object classes and 26 predicates (``relationfield/configs/``,
shipped as package data so that a wheel has them; the predicate file's first line is "none"). User files
have one entry per line; blank lines and lines starting with "#" are ignored.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from relationfield.errors import UserError

# Package data, found through the import system (a regular install or an editable one alike).
CONFIGS_DIR = Path(str(resources.files("relationfield") / "configs"))
OBJECT_VOCAB = CONFIGS_DIR / "3dssg_objects.txt"
PREDICATE_VOCAB = CONFIGS_DIR / "3dssg_predicates.txt"
NONE_PREDICATE = "none"
"""The predicate meaning "no relation" (first line of the predicate file, last row of the label store's table)."""


_CONVERSE_PAIRS = (
    ("bigger than", "smaller than"),
    ("higher than", "lower than"),
    ("left", "right"),
    ("front", "behind"),
)
_SYMMETRIC = ("close by", "same as", "same symmetry as", "connected to", NONE_PREDICATE)
CONVERSES: dict[str, str] = {
    **{a: b for a, b in _CONVERSE_PAIRS},
    **{b: a for a, b in _CONVERSE_PAIRS},
    **{p: p for p in _SYMMETRIC},
}
"""The converse of each predicate that has one (3DSSG names; symmetric predicates are their own): "A bigger
than B" is "B smaller than A". Support and containment predicates have none."""

IMPLIED: dict[str, tuple[str, ...]] = {
    "standing on": ("supported by",),
    "lying on": ("supported by",),
    "standing in": ("inside",),
    "lying in": ("inside",),
    "hanging in": ("inside",),
}
"""Predicates that a predicate entails (3DSSG names): what stands or lies on B is supported by B, what stands,
lies or hangs in B is inside B. A vision model usually names only the specific one."""


def read_vocab(path: Path, what: str = "vocabulary") -> list[str]:
    """Entries of a vocabulary file, in order, without duplicates; a clear error when empty or missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    entries: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#") and entry not in entries:
            entries.append(entry)
    if not entries:
        raise UserError(f"{what} file {path} is empty")
    return entries


def object_vocab(path: Path | None = None) -> list[str]:
    """Object classes (default: the 160 3DSSG classes)."""
    return read_vocab(path or OBJECT_VOCAB, "object vocabulary")


def predicate_vocab(path: Path | None = None) -> list[str]:
    """Predicates without "none" (default: the 26 3DSSG predicates)."""
    entries = [p for p in read_vocab(path or PREDICATE_VOCAB, "predicate vocabulary") if p.lower() != NONE_PREDICATE]
    if not entries:
        raise UserError(f"predicate vocabulary {path or PREDICATE_VOCAB} has no predicate besides 'none'")
    return entries


# --------------------------------------------------------------------------- predicate families

PREDICATE_FAMILIES: dict[str, tuple[str, ...]] = {
    "support": ("supported by", "standing on", "lying on", "leaning against", "cover", "on", "on top of"),
    "attachment": (
        "attached to",
        "hanging on",
        "connected to",
        "part of",
        "belonging to",
        "build in",
        "built in",
        "mounted on",
    ),
    "containment": ("inside", "standing in", "lying in", "hanging in", "in", "contains"),
    "proximity": (
        "close by",
        "left",
        "right",
        "front",
        "behind",
        "near",
        "next to",
        "beside",
        "in front of",
        "left of",
        "right of",
        "to the left of",
        "to the right of",
    ),
    "comparison": ("bigger than", "smaller than", "higher than", "lower than", "taller than", "shorter than"),
    "similarity": ("same as", "same symmetry as", "same symbol as", "same color as", "same colour as"),
}
"""Predicate families, by what a relation says: one object holding up another (support), fixed to or part of
it (attachment), within it (containment), where it is (proximity), how the two compare in size or height
(comparison), or that they look alike (similarity). Every 3DSSG predicate has a family, as do a few common
wordings; any other predicate is in :data:`OTHER_FAMILY`. The scene-graph picture colours relations by family."""

OTHER_FAMILY = "other"
"""The family of a predicate that no family of :data:`PREDICATE_FAMILIES` lists."""

_FAMILY_OF = {predicate: family for family, predicates in PREDICATE_FAMILIES.items() for predicate in predicates}

ROOM_STRUCTURE_LABELS: tuple[str, ...] = ("floor", "wall", "ceiling", "shower floor", "shower wall")
"""Object classes that are the room itself rather than things in it (the scene-graph picture's outline)."""


def predicate_family(predicate: str) -> str:
    """The family of ``predicate`` (case and surrounding spaces ignored): a key of :data:`PREDICATE_FAMILIES`,
    or :data:`OTHER_FAMILY`."""
    return _FAMILY_OF.get(" ".join(predicate.lower().split()), OTHER_FAMILY)


def is_room_structure(label: str) -> bool:
    """Whether an object class is part of the room (:data:`ROOM_STRUCTURE_LABELS`), case ignored."""
    return " ".join(label.lower().split()) in ROOM_STRUCTURE_LABELS
