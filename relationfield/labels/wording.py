"""Wording of labels: the paraphrases of each predicate and the synonyms of each object name.

The table is ``configs/paraphrases.json`` (package data)::

    {"predicates": {"standing on": ["standing on", "on top of", "resting on", ...], ...},
     "objects": {"sofa": ["sofa", "couch", "settee"], ...}}

Every list starts with the vocabulary's own spelling (the key); the others are what a vision-language model
may say instead. The predicate lists cover every 3DSSG predicate but "none", and no wording belongs to two
predicates, so that a worded label still names exactly one predicate. The object lists cover the labels of
the synthetic scenes (:mod:`relationfield.synth.models`); a text missing from the table keeps its spelling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from relationfield.errors import UserError
from relationfield.vocab import CONFIGS_DIR

PARAPHRASES_FILE = CONFIGS_DIR / "paraphrases.json"


@dataclass(frozen=True)
class WordingTable:
    """Paraphrases of predicates and synonyms of object names, each list led by the canonical spelling."""

    predicates: dict[str, tuple[str, ...]]
    objects: dict[str, tuple[str, ...]]

    def predicate_wordings(self, predicate: str) -> tuple[str, ...]:
        """Every wording of ``predicate``, its own spelling first."""
        return self.predicates.get(predicate, (predicate,))

    def object_names(self, label: str) -> tuple[str, ...]:
        """Every name of the object label ``label``, the label first."""
        return self.objects.get(label, (label,))

    def canonical_predicate(self, wording: str) -> str:
        """The predicate a wording stands for (the wording itself when the table does not know it)."""
        for predicate, wordings in self.predicates.items():
            if wording in wordings:
                return predicate
        return wording


def choose_wording(wordings: tuple[str, ...], rate: float, rng: np.random.Generator) -> str:
    """With probability ``rate`` one of ``wordings[1:]`` (uniformly), else ``wordings[0]``.

    Exactly one uniform draw, plus one integer draw when a paraphrase is chosen, so that the draws of
    later labels do not depend on the table's contents when ``rate`` is 0.
    """
    if rng.random() < rate and len(wordings) > 1:
        return wordings[1 + int(rng.integers(len(wordings) - 1))]
    return wordings[0]


def _entries(table: object, key: str, path: Path) -> dict[str, tuple[str, ...]]:
    """The lists under ``key``, checked: each a list of unique lowercase texts led by its key."""
    section = table.get(key) if isinstance(table, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"The wording table {path} has no {key!r} object.")
    entries: dict[str, tuple[str, ...]] = {}
    for name, wordings in section.items():
        ok = isinstance(wordings, list) and all(isinstance(w, str) and w.strip() == w and w for w in wordings)
        if not ok or not wordings or wordings[0] != name or len(set(wordings)) != len(wordings):
            raise UserError(f"{path}: {key}[{name!r}] must be a list of distinct texts that starts with {name!r}.")
        entries[name] = tuple(wordings)
    return entries


@lru_cache(maxsize=4)
def load_wording_table(path: Path = PARAPHRASES_FILE) -> WordingTable:
    """Read and check a wording table (default: the shipped ``configs/paraphrases.json``).

    Raises:
        UserError: the file is missing or malformed, or a wording belongs to two predicates.
    """
    path = Path(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read the wording table {path}: {error}") from error
    predicates = _entries(table, "predicates", path)
    owners: dict[str, str] = {}
    for predicate, wordings in predicates.items():
        for wording in wordings:
            if owners.setdefault(wording, predicate) != predicate:
                raise UserError(f"{path}: {wording!r} words both {owners[wording]!r} and {predicate!r}.")
    return WordingTable(predicates=predicates, objects=_entries(table, "objects", path))
