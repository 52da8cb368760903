"""The chat client of ``relationfield ask``: the ``relations`` stage's client, asked text-only questions.

:class:`GraphClient` is a :class:`~relationfield.preprocess.vision_client.VisionClient`, so it shares the
stage's handling of everything but the answer: transport retries with backoff
(:mod:`relationfield.preprocess.retries`), the ``response_format`` fallback (json_schema -> json_object ->
the prompt alone, remembered), one more try with twice the output tokens for a reply cut off at the limit,
401/403/404 as :class:`~relationfield.preprocess.vision_client.FatalRequestError`, and the API key scrubbed
from every reason. What differs is the answer: it is a :class:`~relationfield.ask.reply.GraphReply`, and a
malformed one gets exactly one correction request (showing the model its reply and the reason), not the
retry budget, before :class:`AskFailed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relationfield.ask.reply import GraphReply, parse_reply, reply_format
from relationfield.errors import UserError
from relationfield.preprocess.answer import ResponseMode, ValidationError
from relationfield.preprocess.cost import Usage

# The stage's reply helpers, reused as they are rather than copied.
from relationfield.preprocess.vision_client import (
    FatalRequestError,
    FrameResult,
    VisionClient,
    _finish_reason,
    _Frame,
    _reply_text,
    _usage_of,
)

__all__ = ["AskFailed", "FatalRequestError", "GraphClient"]


class AskFailed(UserError):
    """No valid answer came back (malformed twice, or the server failed); the message says why."""


def _correction(reply: str, reason: str) -> list[dict[str, Any]]:
    """Messages that show the model its invalid reply and ask once more."""
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That reply is not valid: {reason}. Answer again with the JSON object only, in the form "
            '{"answer": "...", "node_ids": [...], "referring": [...]}, using node ids from the graph.',
        },
    ]


class GraphClient(VisionClient):
    """Asks an OpenAI-compatible server questions about a scene graph (text messages, no image)."""

    def _response_format(self, mode: ResponseMode, tags: Sequence[int]) -> dict[str, Any] | None:
        """The answer form's ``response_format`` (``tags``: unused, there is no image here)."""
        return reply_format(mode)

    def ask_graph(self, messages: list[dict[str, Any]]) -> tuple[GraphReply, FrameResult]:
        """Send ``messages`` until a valid answer comes back; the answer and the attempts' record
        (``attempts``, ``usage``, scrubbed ``raw`` replies).

        Raises:
            AskFailed: the reply was malformed twice, cut off twice, or the server kept failing.
            FatalRequestError: the server refused the request (401/403/404).
        """
        import openai  # lazy: the CLI imports this module to build `relationfield --help`

        frame = _Frame(base=messages, budget=self.options.max_tokens, messages=messages)
        result = FrameResult(status="failed", reason=None, attempts=0, usage=Usage(), answer=None)
        corrected = False
        while True:
            mode = self.mode
            result.attempts += 1
            try:
                response = self._create(frame, mode, ())
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
                raise FatalRequestError(self._fatal_message(error)) from None
            except openai.APIError as error:
                if self._after_error(error, mode, frame, result):  # backoff, fallback and budget as the stage
                    continue
                raise AskFailed(f"no answer from the server: {result.reason}") from None
            result.usage.add(_usage_of(response))
            text = ""
            try:
                text = self.mask_secret(_reply_text(response))
                result.raw.append(text)
                reply = parse_reply(text)
            except ValidationError as error:
                if _finish_reason(response) == "length":
                    if self._after_cutoff(frame, result):
                        continue
                    raise AskFailed(str(result.reason)) from None
                if corrected:
                    raise AskFailed(self._malformed(error.reason, text)) from None
                corrected = True  # one correction: a model that errs twice is not helped by a third try
                frame.messages = frame.base + _correction(text, error.reason) if text else frame.base
                continue
            result.status = "ok"
            return reply, result

    def _malformed(self, reason: str, text: str) -> str:
        last = repr(self.scrub(text)) if text else "(no text)"
        return (
            f"the model's answer was malformed twice (after one correction request): {self.scrub(reason)}; "
            f"its last reply: {last}"
        )
