"""The answer a vision-language model gives about one Set-of-Mark image: its format and its validation.

Format
    The model is asked for ``{"objects": [{"tag": 1, "name": "sofa"}, ...], "relations": [{"subject":
    1, "object": 2, "predicates": ["standing on"]}, ...]}``, first as a strict JSON schema
    (:func:`response_format` of ``json_schema``), then as a plain JSON object, then through the prompt
    alone (:data:`RESPONSE_MODES`, in the order a client falls back through them).

Validation (:func:`parse_answer`, applied whatever the server promised)
    The reply must be a JSON object (```json fences are stripped) with the lists ``objects`` and
    ``relations``. A tag is an integer or a string of ASCII digits (``3`` and ``"3"`` are tag 3;
    ``"3a"``, ``3.0``, ``true`` and ``"#3"`` are rejected) and must be one of the frame's masks. Names
    and predicates are non-empty strings; a relation needs two different tags and at least one
    predicate. A tag named twice, a self-relation, an unknown tag or an empty predicate list makes the
    whole reply invalid (:class:`ValidationError`, whose ``reason`` names the first problem found).
    Duplicate predicates and repeated pairs are merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo
from pydantic_core import ErrorDetails, PydanticCustomError

ResponseMode = Literal["json_schema", "json_object", "plain"]
#: How the answer format is requested, in the order a client falls back through them.
RESPONSE_MODES: tuple[ResponseMode, ...] = ("json_schema", "json_object", "plain")

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"tag": {"type": "integer"}, "name": {"type": "string"}},
                "required": ["tag", "name"],
                "additionalProperties": False,
            },
        },
        "relations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "integer"},
                    "object": {"type": "integer"},
                    "predicates": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["subject", "object", "predicates"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["objects", "relations"],
    "additionalProperties": False,
}


def response_format(mode: ResponseMode) -> dict[str, Any] | None:
    """The ``response_format`` request field of ``mode`` (``None``: the field is left out)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "set_of_mark_relations", "strict": True, "schema": RESPONSE_SCHEMA},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


class ValidationError(ValueError):
    """A reply that is not a valid answer; ``reason`` says why (it is recorded in the frame's JSON)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Relation:
    """``subject`` -> ``object`` (local mask ids) with one or more predicate phrases."""

    subject: int
    object: int
    predicates: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The workspace form: ``{"subject": 1, "object": 2, "predicates": [...]}``."""
        return {"subject": self.subject, "object": self.object, "predicates": list(self.predicates)}


@dataclass(frozen=True)
class Answer:
    """A validated reply: names by tag and relations between tags."""

    objects: dict[int, str]
    relations: tuple[Relation, ...]

    def objects_json(self) -> dict[str, str]:
        """The workspace form: tag (as a string) -> name, in tag order."""
        return {str(tag): self.objects[tag] for tag in sorted(self.objects)}

    def relations_json(self) -> list[dict[str, Any]]:
        """The workspace form of the relations."""
        return [relation.to_json() for relation in self.relations]


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_fences(text: str) -> str:
    """``text`` without a surrounding Markdown code fence (```json ... ```)."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


# ---------------------------------------------------------------------------- the reply's pydantic model

# Error types of the validators below: the reason of a located error follows the value's place in the
# reply ("objects[0].tag is ..."); a whole-reply reason stands alone ("tag 1 is named twice ...").
_LOCATED = "answer_located"
_WHOLE = "answer_whole"


def _invalid(reason: str, located: bool = True) -> PydanticCustomError:
    # The reason travels in the context: a template would read braces in the model's text as fields.
    return PydanticCustomError(_LOCATED if located else _WHOLE, "{reason}", {"reason": reason})


def _coerce_tag(value: Any) -> int:
    """A tag: an ``int`` (not ``bool``) or a string of ASCII digits (pydantic's lax int takes more)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _invalid(f"is {json.dumps(value)}, not an integer tag")


def _known_tag(tag: int, info: ValidationInfo) -> int:
    tags = info.context["tags"]
    if tag not in tags:
        raise _invalid(f"is tag {tag}, which is not in the image (tags: {_tag_list(tags)})")
    return tag


def _tag_list(tags: Iterable[int]) -> str:
    return ", ".join(str(tag) for tag in sorted(tags))


def _text(value: Any) -> str:
    """A non-empty string, its runs of whitespace collapsed to one space."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"must be a non-empty string, got {json.dumps(value)}")
    return " ".join(value.split())


def _predicates(values: list[str]) -> list[str]:
    """Lower-case predicates without repeats; at least one."""
    predicates = list(dict.fromkeys(value.lower() for value in values))
    if not predicates:
        raise _invalid("is empty")
    return predicates


_Tag = Annotated[int, BeforeValidator(_coerce_tag), AfterValidator(_known_tag)]
_Text = Annotated[str, BeforeValidator(_text)]


class _ReplyObject(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    tag: _Tag
    name: _Text


class _ReplyRelation(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    subject: _Tag
    object: _Tag
    predicates: Annotated[list[_Text], AfterValidator(_predicates)]

    @pydantic.model_validator(mode="after")
    def _two_objects(self) -> _ReplyRelation:
        if self.subject == self.object:
            raise _invalid(f"relates tag {self.subject} to itself")
        return self


class _Reply(BaseModel):
    """The reply as the model sends it (unknown keys are ignored); :func:`parse_answer` merges it."""

    model_config = ConfigDict(strict=True, frozen=True)

    objects: list[_ReplyObject]
    relations: list[_ReplyRelation]

    @pydantic.field_validator("objects")
    @classmethod
    def _one_name_per_tag(cls, objects: list[_ReplyObject], info: ValidationInfo) -> list[_ReplyObject]:
        names: dict[int, str] = {}
        for entry in objects:
            known = names.setdefault(entry.tag, entry.name)
            if known.lower() != entry.name.lower():
                raise _invalid(f"tag {entry.tag} is named twice ({known!r} and {entry.name!r})", located=False)
        if info.context["tags"] and not objects:
            raise _invalid("the reply names none of the tagged objects", located=False)
        return objects

    def answer(self) -> Answer:
        """The reply with repeated (subject, object) pairs merged (a repeated tag keeps its last name)."""
        merged: dict[tuple[int, int], list[str]] = {}
        for relation in self.relations:
            known = merged.setdefault((relation.subject, relation.object), [])
            known.extend(p for p in relation.predicates if p not in known)
        return Answer(
            objects={entry.tag: entry.name for entry in self.objects},
            relations=tuple(Relation(s, o, tuple(p)) for (s, o), p in merged.items()),
        )


def _where(loc: Sequence[int | str]) -> str:
    """``('relations', 0, 'predicates')`` -> ``relations[0].predicates``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _reason(error: ErrorDetails) -> str:
    """The reason of pydantic's ``error``, worded as the reply's author would read it."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    if kind in (_LOCATED, _WHOLE):
        reason = str(error["ctx"]["reason"])
        return f"{_where(loc)} {reason}" if kind == _LOCATED else reason
    if kind == "missing":
        return f'the reply has no "{loc[0]}" list' if len(loc) == 1 else f'{_where(loc[:-1])} has no "{loc[-1]}"'
    if kind == "model_type" and not loc:
        return f"the reply must be a JSON object, got {type(value).__name__}"
    if kind == "model_type":
        return f"{_where(loc)} must be an object, got {json.dumps(value)}"
    if kind == "list_type" and len(loc) == 1:
        return f'"{loc[0]}" must be a list, got {type(value).__name__}'
    if kind == "list_type":
        return f"{_where(loc)} must be a list of strings, got {json.dumps(value)}"
    return f"{_where(loc) or 'the reply'}: {error['msg']}"


def parse_answer(text: str | None, tags: Sequence[int]) -> Answer:
    """Validate a reply against the frame's ``tags`` (see the module docstring for the rules).

    Raises:
        ValidationError: the reply is not a valid answer; ``reason`` says why.
    """
    if text is None or not text.strip():
        raise ValidationError("the reply is empty")
    try:
        data = json.loads(strip_fences(text))
    except ValueError as error:
        raise ValidationError(f"the reply is not valid JSON ({error})") from None
    context = {"tags": sorted(set(int(tag) for tag in tags))}
    try:
        reply = _Reply.model_validate(data, context=context)
    except pydantic.ValidationError as error:
        raise ValidationError(_reason(error.errors(include_url=False)[0])) from None
    return reply.answer()
