"""The vision-language-model client of ``relationfield relations``: one Set-of-Mark image in, a validated answer out.

One call of :meth:`VisionClient.ask` turns a Set-of-Mark image and its prompt into a validated
:class:`~relationfield.preprocess.answer.Answer` (or a failure with a reason), through any
OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, LM Studio, ...), with the official
``openai`` client (:func:`~relationfield.preprocess.connection.make_openai_client`).

Answer format
    Asked for first as a strict JSON schema. A server that rejects that with a 400/422 naming
    ``response_format`` is asked with ``{"type": "json_object"}`` next and then with the prompt alone;
    the fallback is remembered for the rest of the run (:data:`~relationfield.preprocess.answer.RESPONSE_MODES`).

Request
    A system message (unless empty), then the prompt and the image; ``seed``, ``temperature`` and the
    output-token limit (:class:`RequestOptions`; the limit travels as ``max_tokens``, or as
    ``max_completion_tokens`` for OpenAI models that refuse the older name) with every request. The
    schema's tags are the frame's own tags (an integer enum) unless ``tag_enum`` is off.

Failures
    An invalid reply (:func:`~relationfield.preprocess.answer.parse_answer`; a reply with some bad
    entries is valid, they are dropped) is asked again at once, with the reason; transport failures are
    retried as :mod:`relationfield.preprocess.retries` says, from the same budget. A reply cut off by the
    token limit (``finish_reason == "length"``, and not valid as it stands) is asked once more with
    twice the limit, outside that budget; cut off again, the frame fails with that reason. Other 4xx
    answers fail the frame; 401/403/404 stop the run (:class:`FatalRequestError`): every further frame
    would fail the same way. The API key is scrubbed from every reason and raw reply.
"""

from __future__ import annotations

import base64
import io
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from relationfield.preprocess.answer import (
    RESPONSE_MODES,
    Answer,
    ResponseMode,
    ValidationError,
    parse_answer,
    response_format,
)
from relationfield.preprocess.connection import API_KEY_ENV, DUMMY_API_KEY
from relationfield.preprocess.cost import Detail, Usage
from relationfield.preprocess.retries import RETRYABLE_STATUS, RetryPolicy, retry_after_seconds

#: Characters of an error body kept in a reason or a raw reply.
_MAX_ERROR_CHARS = 500
#: Output tokens allowed per reply by default: a frame's answer is typically 150-500 tokens, one with 40
#: tags and many relations about 1,500; a model that babbles is cut off there instead of at the context end.
DEFAULT_MAX_TOKENS = 2048
#: Request fields that can carry the output-token limit: ``max_tokens`` (understood by gpt-4o and by
#: vLLM, Ollama, LM Studio, llama.cpp) or ``max_completion_tokens`` (OpenAI's newer name, the only one
#: its reasoning models accept).
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


def image_data_url(image: Image.Image, image_format: Literal["png", "jpeg"] = "png", quality: int = 90) -> str:
    """``image`` as a base64 ``data:`` URL (PNG, or JPEG at ``quality``)."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        image.save(buffer, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def build_messages(prompt: str, image_url: str, detail: Detail, system: str = "") -> list[dict[str, Any]]:
    """The chat messages of one frame: the system message (unless empty), then a user message with the
    prompt text and the image."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": image_url, "detail": detail}},
            ],
        }
    )
    return messages


@dataclass(frozen=True)
class RequestOptions:
    """What every request of a run carries besides the frame's prompt and image."""

    detail: Detail = "high"
    """Image detail requested from the model."""
    temperature: float | None = 0.0
    """Sampling temperature (``None``: left out)."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens allowed per reply (doubled once for a frame whose reply was cut off)."""
    max_tokens_field: MaxTokensField = "max_tokens"
    """The request field that carries ``max_tokens``."""
    seed: int | None = 0
    """Sampling seed (``None``: left out)."""
    system: str = ""
    """System message (empty: none is sent)."""
    tag_enum: bool = True
    """Limit the JSON schema's tags to the frame's tags."""
    excluded_predicates: frozenset[str] = frozenset()
    """Lower-case predicates dropped from the answers."""


class FatalRequestError(Exception):
    """The server refuses every request (bad key, no access, unknown model or URL): stop the run."""


@dataclass
class FrameResult:
    """What asking about one frame came to."""

    status: Literal["ok", "failed"]
    reason: str | None
    attempts: int
    usage: Usage
    answer: Answer | None
    raw: list[str] = field(default_factory=list)


def _mentions_response_format(error: Any) -> bool:
    text = f"{getattr(error, 'message', '')} {getattr(error, 'body', '')}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "response format"))


@dataclass
class _Frame:
    """The state of one frame's attempts."""

    base: list[dict[str, Any]]
    """The frame's messages without corrections."""
    budget: int
    """Output tokens allowed to the next reply."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The messages of the next attempt."""
    failures: int = 0
    """Failed attempts that count against the retry budget."""
    raised: bool = False
    """Whether the budget was already raised after a reply was cut off."""


class VisionClient:
    """Asks an OpenAI-compatible server about Set-of-Mark images; safe to share between threads."""

    def __init__(
        self,
        client: Any,
        model: str,
        options: RequestOptions | None = None,
        policy: RetryPolicy | None = None,
        secret: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter_seed: int | None = None,
    ) -> None:
        """``client``: an ``openai.OpenAI`` (or look-alike); ``secret``: text scrubbed from anything kept;
        ``jitter_seed``: seeds the backoff's jitter (not the model's sampling, see ``options.seed``)."""
        self.client = client
        self.model = model
        self.options = options if options is not None else RequestOptions()
        self.policy = policy if policy is not None else RetryPolicy()
        self.sleep = sleep
        self._secret = secret if secret and secret != DUMMY_API_KEY else None
        self._mode: ResponseMode = "json_schema"
        self._lock = threading.Lock()
        self._rng = random.Random(jitter_seed)

    @property
    def mode(self) -> ResponseMode:
        """How the answer format is requested now (the fallbacks are remembered)."""
        with self._lock:
            return self._mode

    def _downgrade(self, failed: ResponseMode) -> bool:
        """Move past ``failed`` (unless another thread already did); ``False`` when no fallback is left."""
        with self._lock:
            if self._mode != failed:
                return True
            index = RESPONSE_MODES.index(failed)
            if index + 1 >= len(RESPONSE_MODES):
                return False
            self._mode = RESPONSE_MODES[index + 1]
            return True

    def mask_secret(self, text: str) -> str:
        """``text`` with the API key (if it appears) replaced by ``***``."""
        return text.replace(self._secret, "***") if self._secret else text

    def scrub(self, text: str) -> str:
        """``text`` with the API key masked and cut to a readable length (for reasons and errors)."""
        text = self.mask_secret(text)
        return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + "..."

    def _create(self, frame: _Frame, mode: ResponseMode, tags: Sequence[int]) -> Any:
        options = self.options
        kwargs: dict[str, Any] = {"model": self.model, "messages": frame.messages}
        kwargs[options.max_tokens_field] = frame.budget
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if options.seed is not None:
            kwargs["seed"] = options.seed
        fmt = self._response_format(mode, tags)
        if fmt is not None:
            kwargs["response_format"] = fmt
        return self.client.chat.completions.create(**kwargs)

    def _response_format(self, mode: ResponseMode, tags: Sequence[int]) -> dict[str, Any] | None:
        """The request's ``response_format`` for ``mode`` (subclasses asking for another answer form override it)."""
        return response_format(mode, tags if self.options.tag_enum else None)

    def _describe(self, error: Exception) -> str:
        import openai  # lazy: the CLI imports this module to build `relationfield --help`

        if isinstance(error, openai.APITimeoutError):
            return "the request timed out"
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            return f"connection error ({type(cause).__name__ if cause else 'no response'})"
        if isinstance(error, openai.APIStatusError):
            message = _error_message(error)
            sent = self.options.max_tokens_field
            other = "max_completion_tokens" if sent == "max_tokens" else "max_tokens"
            # OpenAI names both when a model refuses one ("... 'max_tokens' ... Use 'max_completion_tokens'").
            named = re.search(rf"\b{sent}\b", message) and re.search(rf"\b{other}\b", message)
            hint = f" (try --max-tokens-field {other})" if error.status_code == 400 and named else ""
            return self.scrub(f"HTTP {error.status_code}: {message}") + hint
        return self.scrub(f"{type(error).__name__}: {error}")

    def _is_retryable(self, error: Exception) -> bool:
        import openai  # lazy: the CLI imports this module to build `relationfield --help`

        if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError)):
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
        return False

    def ask(self, prompt: str, image_url: str, tags: Sequence[int]) -> FrameResult:
        """Ask about one image until a valid answer comes back or the retry budget is spent.

        Raises:
            FatalRequestError: the server refused the request in a way no retry can fix (401/403/404).
        """
        import openai  # lazy: the CLI imports this module to build `relationfield --help`

        base = build_messages(prompt, image_url, self.options.detail, self.options.system)
        frame = _Frame(base=base, budget=self.options.max_tokens, messages=base)
        result = FrameResult(status="failed", reason=None, attempts=0, usage=Usage(), answer=None)
        while True:
            mode = self.mode
            result.attempts += 1
            try:
                response = self._create(frame, mode, tags)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
                raise FatalRequestError(self._fatal_message(error)) from None
            except openai.APIError as error:
                if self._after_error(error, mode, frame, result):
                    continue
                return result
            result.usage.add(_usage_of(response))
            if self._after_reply(response, tags, frame, result):
                continue
            return result

    def _after_error(self, error: Any, mode: ResponseMode, frame: _Frame, result: FrameResult) -> bool:
        """Record a failed request; whether to send another (after the backoff, slept here)."""
        import openai  # lazy: the CLI imports this module to build `relationfield --help`

        description = self._describe(error)
        result.raw.append(description)
        if (
            isinstance(error, openai.APIStatusError)
            and error.status_code in (400, 422)
            and mode != "plain"
            and _mentions_response_format(error)
            and self._downgrade(mode)
        ):
            return True
        frame.failures += 1
        result.reason = description
        if not self._is_retryable(error) or frame.failures > self.policy.retries:
            return False
        headers = getattr(getattr(error, "response", None), "headers", None)
        self.sleep(self.policy.delay(frame.failures, retry_after_seconds(headers), self._rng))
        return True

    def _after_reply(self, response: Any, tags: Sequence[int], frame: _Frame, result: FrameResult) -> bool:
        """Validate a reply into ``result``; whether to ask again (an invalid or cut-off reply)."""
        text = ""
        try:
            text = _reply_text(response)
            result.raw.append(self.mask_secret(text))
            answer = parse_answer(text, tags, self.options.excluded_predicates)
        except ValidationError as error:
            if not text:
                result.raw.append(f"({error.reason})")
            if _finish_reason(response) == "length":
                return self._after_cutoff(frame, result)
            frame.failures += 1
            result.reason = f"invalid reply: {self.scrub(error.reason)}"
            if frame.failures > self.policy.retries:
                return False
            frame.messages = frame.base + _correction(text, error.reason) if text else frame.base
            return True
        result.status, result.reason, result.answer = "ok", None, answer
        return False

    def _after_cutoff(self, frame: _Frame, result: FrameResult) -> bool:
        """A reply cut off by the token limit: ask once more with twice the limit, then give up."""
        field_name = self.options.max_tokens_field
        if frame.raised:
            result.reason = (
                f"the reply was cut off at {field_name}={frame.budget} (finish_reason length) twice, "
                f"the second time after doubling the limit; raise --max-tokens"
            )
            return False
        result.reason = f"the reply was cut off at {field_name}={frame.budget} (finish_reason length)"
        frame.raised, frame.budget, frame.messages = True, frame.budget * 2, frame.base
        return True

    def _fatal_message(self, error: Any) -> str:
        status = getattr(error, "status_code", "?")
        hint = {
            401: f"the server rejected the API key: check {API_KEY_ENV}",
            403: "the API key has no access to this model or endpoint",
            404: f"the server does not know model {self.model!r} (or the base URL is wrong)",
        }.get(status, "the server refused the request")
        return f"{hint} (HTTP {status}: {self.scrub(_error_message(error))})"


def _error_message(error: Any) -> str:
    """The server's own message of an HTTP error (``{"error": {"message": ...}}`` or the raw body)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)
    return str(getattr(error, "message", error))


def _usage_of(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def _finish_reason(response: Any) -> str | None:
    """Why the server stopped generating the reply (``"length"``: it hit the token limit)."""
    choices = getattr(response, "choices", None)
    return getattr(choices[0], "finish_reason", None) if choices else None


def _reply_text(response: Any) -> str:
    """The reply's text (``ValidationError`` when there is none: no choices, a refusal, ...)."""
    if isinstance(response, (str, bytes)):
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        raise ValidationError(f"the server's response is not a chat completion: {text[:200]!r}")
    choices = getattr(response, "choices", None)
    if not choices:
        raise ValidationError("the response has no choices")
    message = choices[0].message
    content = getattr(message, "content", None)
    if content is None:
        refusal = getattr(message, "refusal", None)
        raise ValidationError(f"the model refused: {refusal}" if refusal else "the reply is empty")
    return str(content)


def _correction(reply: str, reason: str) -> list[dict[str, Any]]:
    """Messages that show the model its invalid reply and ask again."""
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That reply is not valid: {reason}. Answer again with the JSON only, "
            "using only the tags in the image.",
        },
    ]
