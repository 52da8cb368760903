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
