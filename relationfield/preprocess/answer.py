"""The answer a vision-language model gives about one Set-of-Mark image: its format and its validation.

Format
    The model is asked for ``{"objects": [{"tag": 1, "name": "sofa"}, ...], "relations": [{"subject":
    1, "object": 2, "predicates": ["standing on"]}, ...]}``, first as a strict JSON schema
    (:func:`response_format` of ``json_schema``, whose tags may be limited to the frame's own tags by an
    integer ``enum``), then as a plain JSON object, then through the prompt alone
    (:data:`RESPONSE_MODES`, in the order a client falls back through them).

Validation (:func:`parse_answer`, applied whatever the server promised)
    The reply must be a JSON object (```json fences are stripped). A tag is an integer or a string of
    ASCII digits (``3`` and ``"3"`` are tag 3; ``"3a"``, ``3.0``, ``true`` and ``"#3"`` are not tags) and
    must be one of the frame's masks. Names and predicates are non-empty strings; a relation needs two
    different tags and at least one predicate.

    A bad entry is dropped, not the reply: an object or relation with an unknown or malformed tag, a
    self-relation, a relation left without a valid predicate, a malformed entry, a second name for a
    tag (the first is kept), a bad or excluded predicate inside a relation (the relation keeps the
    others) and a missing or non-list ``objects`` / ``relations``. Each drop is described in
    :attr:`Answer.dropped`. Only a reply with nothing valid left (no object and no relation), an empty
    reply, or one that is not a JSON object is invalid (:class:`ValidationError`, whose ``reason`` names
    the first problem found). Duplicate predicates and repeated pairs are merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ResponseMode = Literal["json_schema", "json_object", "plain"]
#: How the answer format is requested, in the order a client falls back through them.
RESPONSE_MODES: tuple[ResponseMode, ...] = ("json_schema", "json_object", "plain")

#: Characters of a reply's value quoted in a reason.
_MAX_VALUE_CHARS = 80


def response_schema(tags: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSON schema of an answer; with ``tags``, every tag field is an integer enum of them."""

    def tag() -> dict[str, Any]:
        return {"type": "integer", "enum": sorted(set(int(t) for t in tags))} if tags else {"type": "integer"}

    return {
        "type": "object",
        "properties": {
            "objects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"tag": tag(), "name": {"type": "string"}},
                    "required": ["tag", "name"],
                    "additionalProperties": False,
                },
            },
            "relations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "subject": tag(),
                        "object": tag(),
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


def response_format(mode: ResponseMode, tags: Sequence[int] | None = None) -> dict[str, Any] | None:
    """The ``response_format`` request field of ``mode`` (``None``: the field is left out); ``tags``:
    limit the schema's tags to these (see :func:`response_schema`)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "set_of_mark_relations", "strict": True, "schema": response_schema(tags)},
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
    """A validated reply: names by tag, relations between tags, and what was dropped from it."""

    objects: dict[int, str]
    relations: tuple[Relation, ...]
    dropped: tuple[str, ...] = ()
    """Why each left-out entry was left out, in reply order (empty when the reply was clean)."""

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


# ------------------------------------------------------------------------------------ entry checks


class _Drop(Exception):
    """An entry of the reply that is left out; the message says why."""


def _quote(value: Any) -> str:
    """``value`` as JSON, cut to a readable length."""
    text = json.dumps(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _tag_list(tags: Iterable[int]) -> str:
    return ", ".join(str(tag) for tag in sorted(tags))


def _entry(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Drop(f"{where} must be an object, got {_quote(value)}")
    return value


def _field(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise _Drop(f'{where} has no "{key}"')
    return entry[key]


def _tag(value: Any, tags: Collection[int], where: str) -> int:
    """A tag: an ``int`` (not ``bool``) or a string of ASCII digits, one of the frame's ``tags``."""
    if isinstance(value, int) and not isinstance(value, bool):
        tag = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        tag = int(value)
    else:
        raise _Drop(f"{where} is {_quote(value)}, not an integer tag")
    if tag not in tags:
        raise _Drop(f"{where} is tag {tag}, which is not in the image (tags: {_tag_list(tags)})")
    return tag


def _text(value: Any, where: str) -> str:
    """A non-empty string, its runs of whitespace collapsed to one space."""
    if not isinstance(value, str) or not value.strip():
        raise _Drop(f"{where} must be a non-empty string, got {_quote(value)}")
    return " ".join(value.split())


def _entries(data: Mapping[str, Any], key: str, dropped: list[str]) -> list[Any]:
    """The list ``data[key]`` (empty, with the problem in ``dropped``, when it is missing or no list)."""
    if key not in data:
        dropped.append(f'the reply has no "{key}" list')
        return []
    values = data[key]
    if not isinstance(values, list):
        dropped.append(f'"{key}" must be a list, got {type(values).__name__}')
        return []
    return values


def _names(values: Sequence[Any], tags: Collection[int], dropped: list[str]) -> dict[int, str]:
    """The valid ``objects`` entries as tag -> name (a tag named again keeps its first name)."""
    names: dict[int, str] = {}
    for index, value in enumerate(values):
        where = f"objects[{index}]"
        try:
            entry = _entry(value, where)
            tag = _tag(_field(entry, "tag", where), tags, f"{where}.tag")
            name = _text(_field(entry, "name", where), f"{where}.name")
        except _Drop as drop:
            dropped.append(str(drop))
            continue
        known = names.setdefault(tag, name)
        if known.lower() != name.lower():
            dropped.append(f"{where} names tag {tag} again ({name!r}; kept {known!r})")
    return names


def _predicates(value: Any, excluded: Collection[str], where: str, dropped: list[str]) -> list[str]:
    """The valid, lower-case predicates of a relation, without repeats (a bad one is dropped alone)."""
    if not isinstance(value, list):
        raise _Drop(f"{where}.predicates must be a list of strings, got {_quote(value)}")
    if not value:
        raise _Drop(f"{where}.predicates is empty")
    kept: list[str] = []
    for index, item in enumerate(value):
        try:
            predicate = _text(item, f"{where}.predicates[{index}]").lower()
        except _Drop as drop:
            dropped.append(str(drop))
            continue
        if predicate in excluded:
            dropped.append(f"{where}.predicates[{index}] is {predicate!r}, which this run excludes")
        elif predicate not in kept:
            kept.append(predicate)
    if not kept:
        raise _Drop(f"{where} has no valid predicate left")
    return kept


def _relations(
    values: Sequence[Any], tags: Collection[int], excluded: Collection[str], dropped: list[str]
) -> tuple[Relation, ...]:
    """The valid ``relations`` entries, repeated (subject, object) pairs merged."""
    merged: dict[tuple[int, int], list[str]] = {}
    for index, value in enumerate(values):
        where = f"relations[{index}]"
        try:
            entry = _entry(value, where)
            subject = _tag(_field(entry, "subject", where), tags, f"{where}.subject")
            target = _tag(_field(entry, "object", where), tags, f"{where}.object")
            if subject == target:
                raise _Drop(f"{where} relates tag {subject} to itself")
            predicates = _predicates(_field(entry, "predicates", where), excluded, where, dropped)
        except _Drop as drop:
            dropped.append(str(drop))
            continue
        known = merged.setdefault((subject, target), [])
        known.extend(p for p in predicates if p not in known)
    return tuple(Relation(s, o, tuple(p)) for (s, o), p in merged.items())


def load_json_object(text: str | None) -> dict[str, Any]:
    """The JSON object of a reply's text (code fences allowed); :class:`ValidationError` says why not."""
    if text is None or not text.strip():
        raise ValidationError("the reply is empty")
    try:
        data = json.loads(strip_fences(text))
    except ValueError as error:
        raise ValidationError(f"the reply is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValidationError(f"the reply must be a JSON object, got {type(data).__name__}")
    return data


def parse_answer(text: str | None, tags: Sequence[int], excluded_predicates: Collection[str] = ()) -> Answer:
    """Validate a reply against the frame's ``tags`` (see the module docstring for the rules).

    Args:
        text: the reply's text.
        tags: the frame's tags.
        excluded_predicates: lower-case predicates this run does not accept (dropped with a reason).

    Raises:
        ValidationError: nothing valid is left of the reply; ``reason`` says why.
    """
    data = load_json_object(text)
    known = frozenset(int(tag) for tag in tags)
    excluded = frozenset(p.lower() for p in excluded_predicates)
    dropped: list[str] = []
    objects = _names(_entries(data, "objects", dropped), known, dropped)
    relations = _relations(_entries(data, "relations", dropped), known, excluded, dropped)
    if not objects and not relations:
        if not dropped:
            raise ValidationError("the reply names none of the tagged objects")
        more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
        raise ValidationError(f"nothing valid is left: {dropped[0]}{more}")
    return Answer(objects, relations, tuple(dropped))
