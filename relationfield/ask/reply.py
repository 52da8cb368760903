"""The model's answer to a question about a scene graph: its JSON form, its schema and its validation.

The form is ``{"answer": str, "node_ids": [int, ...], "referring": [str, ...]}``, asked for as a strict
JSON schema first and then through the same fallbacks as the ``relations`` stage
(:data:`~relationfield.preprocess.answer.RESPONSE_MODES`). Validation (:func:`parse_reply`, whatever the
server promised) strips a Markdown fence, needs a non-empty answer and node ids that are integers or
strings of digits (``3``, ``"3"`` and ``"#3"``, as the prompt writes ids; not ``3.0``, ``true`` or ``"3a"``),
tolerates a missing ``referring`` and extra keys; anything else raises
:class:`~relationfield.preprocess.answer.ValidationError`. Whether the ids exist is not checked here.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from relationfield.preprocess.answer import ResponseMode, ValidationError, load_json_object
from relationfield.preprocess.answer import response_format as plain_response_format

__all__ = ["ANSWER_SCHEMA", "GraphReply", "parse_reply", "reply_format"]

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "node_ids": {"type": "array", "items": {"type": "integer"}},
        "referring": {"type": "array", "items": {"type": "string"}},
    },
    # strict mode wants every property required and no others
    "required": ["answer", "node_ids", "referring"],
    "additionalProperties": False,
}
"""The JSON schema sent as ``response_format`` (the fields of :class:`GraphReply`)."""

#: Validation errors quoted in a reason.
_MAX_ERRORS = 3


class GraphReply(pydantic.BaseModel):
    """A valid answer; ``node_ids`` as the model named them (unknown ids are dropped later)."""

    model_config = pydantic.ConfigDict(extra="ignore")

    answer: str
    node_ids: list[int]
    referring: list[str] = []

    @pydantic.field_validator("node_ids", mode="before")
    @classmethod
    def _ids(cls, values: Any) -> Any:
        return [_node_id(value) for value in values] if isinstance(values, list) else values

    @pydantic.field_validator("answer")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the answer is empty")
        return value

    @pydantic.field_validator("referring")
    @classmethod
    def _phrases(cls, values: list[str]) -> list[str]:
        return [" ".join(v.split()) for v in values if v.strip()]


def _node_id(value: Any) -> int:
    """An id: an ``int`` (not ``bool``) or a string of ASCII digits, maybe after ``#``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value.strip().removeprefix("#") if isinstance(value, str) else ""
    if text.isascii() and text.isdigit():
        return int(text)
    raise ValueError(f"{json.dumps(value)[:40]} is not a node id")


def reply_format(mode: ResponseMode) -> dict[str, Any] | None:
    """The ``response_format`` request field of ``mode`` (``None``: left out)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "scene_graph_answer", "strict": True, "schema": ANSWER_SCHEMA},
        }
    return plain_response_format(mode)  # json_object and plain mean the same for every answer form


def _reason(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors()[:_MAX_ERRORS]:
        where = ".".join(str(part) for part in item["loc"]) or "the reply"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")  # our validators' own words
    more = error.error_count() - _MAX_ERRORS
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_reply(text: str | None) -> GraphReply:
    """Validate a reply's text (see the module docstring).

    Raises:
        ValidationError: the reply is empty, not a JSON object, or not of the answer form; ``reason`` says why.
    """
    data = load_json_object(text)
    try:
        return GraphReply.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValidationError(f"the reply is not of the answer form: {_reason(error)}") from None
