"""Field types shared by the evaluator's input formats, and how their validation errors read.

The prediction, the ground truth and the node map are validated with pydantic models built from the
types below. Each type's validator raises the sentence that follows the location ("must be a number,
got 'x'"); :func:`validate` prefixes the location, rendered the way a person reads it
(``prediction nodes[3].label_scores[0][1]``), and raises :class:`~relationfield.errors.UserError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from relationfield.errors import UserError

Vec3 = tuple[float, float, float]
Box = tuple[Vec3, Vec3]
Scores = dict[str, float]
"""A score table as the evaluator uses it: ``{normalised name: highest score}``."""
Location = tuple[int | str, ...]
Locate = Callable[[Location], str]
"""Renders a pydantic error location (``("nodes", 3, "id")``) as the words that start the message."""

T = TypeVar("T")


class PlacedError(ValueError):
    """A validator's message that already says where the problem is: it is raised without a location prefix."""


def normalize_name(name: str) -> str:
    """The form labels and predicates are compared in: stripped, lower-case."""
    return name.strip().lower()


# ----------------------------------------------------------------------------------------------
# Field types


def _as_int(value: Any) -> int:
    """An integer id; int-like strings ("12", as in JSON object keys) and integral floats are accepted."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer id, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"must be an integer id, got {value!r}")


def _as_score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    score = float(value)
    if not math.isfinite(score) or score < 0.0:
        raise ValueError(
            f"must be a finite, non-negative score (a probability), got {value!r}; "
            "relation ranking multiplies scores, which needs non-negative values"
        )
    return score


def _as_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return normalize_name(value)


def _as_vec3(value: Any) -> Vec3:
    if not isinstance(value, list):
        raise ValueError(f"must be a JSON list, got {type(value).__name__}")
    if len(value) != 3:
        raise ValueError(f"must have 3 numbers, got {len(value)}")
    # bool is an int to Python, but never a coordinate.
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) for v in value):
        raise ValueError(f"must hold finite numbers, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _as_pairs(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"must be a list of [name, score] pairs, got {type(value).__name__}")
    return list(value)


def _as_pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"must be a [name, score] pair, got {value!r}")
    return (value[0], value[1])


def _best_scores(pairs: list[tuple[str, float]]) -> Scores:
    table: Scores = {}
    for name, score in pairs:
        table[name] = max(score, table.get(name, score))
    return table


def fixed_list(length: int, shape: str) -> BeforeValidator:
    """A JSON list of exactly ``length`` items; ``shape`` shows the expected items in the message."""

    def check(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError(f"must be a JSON list, got {type(value).__name__}")
        if len(value) != length:
            raise ValueError(f"must be {shape}, got {value!r}")
        return value

    return BeforeValidator(check)


NodeId = Annotated[int, BeforeValidator(_as_int)]
"""A node or object id."""
Score = Annotated[float, BeforeValidator(_as_score)]
"""A finite, non-negative score."""
Name = Annotated[str, BeforeValidator(_as_name)]
"""A label or predicate, normalised by :func:`normalize_name`."""
Point = Annotated[Vec3, BeforeValidator(_as_vec3)]
"""Three finite numbers."""
ScoreTable = Annotated[
    list[Annotated[tuple[Name, Score], BeforeValidator(_as_pair)]],
    BeforeValidator(_as_pairs),
    AfterValidator(_best_scores),
]
"""``[[name, score], ...]`` in the file, held as :data:`Scores` (a name listed twice keeps its highest score)."""


class Aabb(BaseModel):
    """An axis-aligned box ``{"min": [x, y, z], "max": [x, y, z]}``."""

    model_config = ConfigDict(frozen=True)

    min: Point
    """The low corner."""
    max: Point
    """The high corner."""

    @model_validator(mode="after")
    def _ordered(self) -> Aabb:
        if any(a > b for a, b in zip(self.min, self.max)):
            raise ValueError(f"has min > max: min={list(self.min)}, max={list(self.max)}")
        return self

    @property
    def box(self) -> Box:
        """The corners as a ``(min, max)`` pair."""
        return (self.min, self.max)


# ----------------------------------------------------------------------------------------------
# Errors


def path_locator(prefix: str, whole: str) -> Locate:
    """Locations as paths below ``prefix`` (``prefix nodes[3].aabb.min``); the empty location is ``whole``."""

    def locate(loc: Location) -> str:
        if not loc:
            return whole
        text = prefix
        for i, part in enumerate(loc):
            text += f"[{part}]" if isinstance(part, int) else (f" {part}" if i == 0 else f".{part}")
        return text

    return locate


def error_message(error: Any, locate: Locate) -> str:
    """One pydantic error (``loc``, ``type``, ``input``, ...) as a sentence that says where it is."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "missing":
        return f"{locate(loc[:-1])} has no {loc[-1]!r}"
    where = locate(loc)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where} must be a JSON object, got {type(error['input']).__name__}"
    if kind in ("list_type", "tuple_type"):
        return f"{where} must be a JSON list, got {type(error['input']).__name__}"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, PlacedError):
        return str(cause)
    if isinstance(cause, ValueError):
        return f"{where} {cause}"
    return f"{where}: {error['msg']}"


def validate(schema: type[T] | TypeAdapter[T], data: Any, locate: Locate) -> T:
    """``data`` validated by a pydantic model or type adapter; the first error raised as a UserError."""
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data)
        return schema.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise UserError(error_message(exc.errors()[0], locate)) from exc
