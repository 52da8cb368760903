"""Reading a label store's ``manifest.json`` and checking that the labels still match the capture's images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PositiveInt, StrictStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from relationfield.errors import StaleLabelsError, UserError
from relationfield.labels.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    combine_hashes,
    file_sha256,
    preview_names,
)

#: How to make a missing or broken label store (the end of the reader's errors).
HOW_TO_MAKE = (
    "Create the labels with `relationfield label-gt` (synthetic captures) or the preprocessing "
    "commands (real captures)."
)
#: How to refresh a stale label store.
HOW_TO_FIX_STALE = (
    "Re-run `relationfield label-gt` (synthetic captures) or the preprocessing commands (real "
    "captures) to label the capture again."
)


def read_manifest(labels_dir: Path) -> dict[str, Any]:
    """Read and validate a label store's ``manifest.json`` (cheap: no frame is read).

    Raises:
        UserError: the store or its manifest is missing, unreadable, of another format version, or
            malformed.
    """
    if not labels_dir.is_dir():
        raise UserError(f"No label store at {labels_dir} (the directory does not exist). {HOW_TO_MAKE}")
    path = labels_dir / MANIFEST_FILE
    if not path.is_file():
        raise UserError(
            f"The label store {labels_dir} has no {MANIFEST_FILE}: labelling never finished or was "
            f"interrupted ({path} is written last). {HOW_TO_MAKE}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"Cannot read the label manifest {path}: {error}. {HOW_TO_MAKE}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f'{path} is not a relationfield label manifest (no "format": "{FORMAT_NAME}").')
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"The label store {labels_dir} has format version {version!r}; this relationfield reads "
            f"version {FORMAT_VERSION}. Label the capture again with this version. {HOW_TO_MAKE}"
        )
    try:
        _ManifestSections.model_validate(manifest)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
        detail = f"{where}: {first['msg']}"
        raise UserError(f"The label manifest {path} is malformed ({detail}). {HOW_TO_MAKE}") from error
    return manifest


class _Encoding(BaseModel):
    """A manifest's ``semantic`` or ``relation`` section."""

    encoder: str
    """The encoder's name (loadable with :func:`relationfield.encoders.load_text_encoder`)."""
    dim: PositiveInt
    """The embedding dimension."""


class _FrameList(BaseModel):
    """A manifest's ``frames`` section."""

    names: list[StrictStr]
    """The covered images, relative to the capture; each once."""
    hash: str
    """:func:`relationfield.labels.format.frame_hash` of the covered images."""

    @field_validator("names")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise PydanticCustomError("duplicates", "contains duplicates")
        return names


class _ManifestSections(BaseModel):
    """The sections of ``manifest.json`` the reader relies on (it keeps the manifest as the plain dict it read)."""

    semantic: _Encoding
    """The mask embeddings' encoder."""
    relation: _Encoding
    """The relation embeddings' encoder."""
    frames: _FrameList
    """The covered images."""


def check_fresh(labels_dir: Path, data_dir: Path, manifest: dict[str, Any], names: list[str]) -> None:
    """Raise :class:`StaleLabelsError` when the capture's images differ from the labelled ones.

    Args:
        labels_dir: the store (for the message).
        data_dir: the capture.
        manifest: the store's manifest.
        names: the manifest's frame names, normalised.
    """
    missing = [name for name in names if not (data_dir / name).is_file()]
    if missing:
        raise StaleLabelsError(
            f"The labels in {labels_dir} do not match the capture {data_dir}: {len(missing)} labelled "
            f"image(s) no longer exist ({preview_names(missing)}). {HOW_TO_FIX_STALE}"
        )
    hashes = [file_sha256(data_dir / name) for name in names]
    if combine_hashes(names, hashes) == manifest["frames"]["hash"]:
        return
    recorded = manifest["frames"].get("file_hashes")
    if isinstance(recorded, list) and len(recorded) == len(names):
        changed = [name for name, old, new in zip(names, recorded, hashes) if old != new]
        detail = f"{len(changed)} of {len(names)} labelled images changed since labelling ({preview_names(changed)})"
    else:
        detail = f"the contents of its {len(names)} labelled images changed since labelling"
    raise StaleLabelsError(
        f"The labels in {labels_dir} are stale for the capture {data_dir}: {detail}. {HOW_TO_FIX_STALE}"
    )
