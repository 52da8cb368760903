"""The vision-language-model client of ``relationfield relations``: request, retries, validation, cost.

One call of :meth:`VisionClient.ask` turns a Set-of-Mark image and its prompt into a validated
:class:`Answer` (or a failure with a reason), through any OpenAI-compatible chat-completions server
(OpenAI, vLLM, Ollama, LM Studio, ...), with the official ``openai`` client.

Answer format
    The model is asked for ``{"objects": [{"tag": 1, "name": "sofa"}, ...], "relations": [{"subject":
    1, "object": 2, "predicates": ["standing on"]}, ...]}``, first as a strict JSON schema
    (``response_format={"type": "json_schema", ...}``). A server that rejects that with a 400/422
    naming ``response_format`` is asked with ``{"type": "json_object"}`` next and then with the prompt
    alone; the fallback is remembered for the rest of the run.

Validation (:func:`parse_answer`, applied whatever the server promised)
    The reply must be a JSON object (```json fences are stripped) with the lists ``objects`` and
    ``relations``. A tag is an integer or a string of ASCII digits (``3`` and ``"3"`` are tag 3;
    ``"3a"``, ``3.0``, ``true`` and ``"#3"`` are rejected) and must be one of the frame's masks. Names
    and predicates are non-empty strings; a relation needs two different tags and at least one
    predicate. A tag named twice, a self-relation, an unknown tag or an empty predicate list makes the
    whole reply invalid (:class:`ValidationError`), and the frame is asked again (with the reason) up to
    the retry budget. Duplicate predicates and repeated pairs are merged.

Retries
    429, 408, 409, 5xx, timeouts and connection errors are retried with exponential backoff and jitter
    (``Retry-After`` / ``retry-after-ms`` is honoured when the server sends it); invalid replies are
    retried at once. Transport failures and invalid replies share one budget: a frame gets at most
    ``retries + 1`` failed attempts. Other 4xx answers fail the frame; 401/403/404 stop the run
    (:class:`FatalRequestError`): every further frame would fail the same way.

Credentials
    The key comes from ``OPENAI_API_KEY`` only. Without it, a base URL on this machine or a private
    network (vLLM, Ollama) gets the placeholder key ``EMPTY``; the OpenAI API (the default) is a
    :class:`UserError`. The key is never written anywhere: reasons and raw replies are scrubbed of it.
"""

from __future__ import annotations

import base64
import email.utils
import io
import ipaddress
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from PIL import Image

from relationfield.errors import UserError

Detail = Literal["low", "high", "auto"]
ResponseMode = Literal["json_schema", "json_object", "plain"]
RESPONSE_MODES: tuple[ResponseMode, ...] = ("json_schema", "json_object", "plain")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
#: Key sent to local servers (vLLM, Ollama) when ``OPENAI_API_KEY`` is not set.
DUMMY_API_KEY = "EMPTY"

#: USD per million (input, output) tokens. Dated snapshots (``gpt-4o-2024-08-06``) use their family's row.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}

#: Completion tokens assumed per frame by the dry-run estimate (a frame's answer is typically 150-500).
ASSUMED_OUTPUT_TOKENS = 400
#: Tokens added by the chat format around one user message with an image (role markers etc.).
MESSAGE_OVERHEAD_TOKENS = 10
#: Characters of an error body kept in a reason or a raw reply.
_MAX_ERROR_CHARS = 500
_RETRYABLE_STATUS = (408, 409, 429)

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


# --------------------------------------------------------------------------------------------- answer


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


def parse_tag(value: Any, where: str) -> int:
    """A tag: an ``int`` (not ``bool``) or a string of ASCII digits; anything else is invalid."""
    if isinstance(value, bool):
        raise ValidationError(f"{where} is {json.dumps(value)}, not an integer tag")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValidationError(f"{where} is {json.dumps(value)}, not an integer tag")


def _check_tag(value: Any, where: str, tags: Sequence[int]) -> int:
    tag = parse_tag(value, where)
    if tag not in tags:
        raise ValidationError(f"{where} is tag {tag}, which is not in the image (tags: {_tag_list(tags)})")
    return tag


def _tag_list(tags: Iterable[int]) -> str:
    return ", ".join(str(tag) for tag in sorted(tags))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where} must be a non-empty string, got {json.dumps(value)}")
    return " ".join(value.split())


def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    if key not in data:
        raise ValidationError(f'the reply has no "{key}" list')
    entries = data[key]
    if not isinstance(entries, list):
        raise ValidationError(f'"{key}" must be a list, got {type(entries).__name__}')
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValidationError(f"{key}[{index}] must be an object, got {json.dumps(entry)}")
    return entries


def _field(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ValidationError(f'{where} has no "{key}"')
    return entry[key]


def _parse_objects(entries: list[dict[str, Any]], tags: Sequence[int]) -> dict[int, str]:
    objects: dict[int, str] = {}
    for index, entry in enumerate(entries):
        where = f"objects[{index}]"
        tag = _check_tag(_field(entry, "tag", where), f"{where}.tag", tags)
        name = _text(_field(entry, "name", where), f"{where}.name")
        if tag in objects and objects[tag].lower() != name.lower():
            raise ValidationError(f"tag {tag} is named twice ({objects[tag]!r} and {name!r})")
        objects[tag] = name
    if tags and not objects:
        raise ValidationError("the reply names none of the tagged objects")
    return objects


def _parse_predicates(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list of strings, got {json.dumps(value)}")
    predicates: list[str] = []
    for index, item in enumerate(value):
        text = _text(item, f"{where}[{index}]").lower()
        if text not in predicates:
            predicates.append(text)
    if not predicates:
        raise ValidationError(f"{where} is empty")
    return predicates


def _parse_relations(entries: list[dict[str, Any]], tags: Sequence[int]) -> tuple[Relation, ...]:
    merged: dict[tuple[int, int], list[str]] = {}
    for index, entry in enumerate(entries):
        where = f"relations[{index}]"
        subject = _check_tag(_field(entry, "subject", where), f"{where}.subject", tags)
        obj = _check_tag(_field(entry, "object", where), f"{where}.object", tags)
        if subject == obj:
            raise ValidationError(f"{where} relates tag {subject} to itself")
        predicates = _parse_predicates(_field(entry, "predicates", where), f"{where}.predicates")
        known = merged.setdefault((subject, obj), [])
        known.extend(p for p in predicates if p not in known)
    return tuple(Relation(s, o, tuple(p)) for (s, o), p in merged.items())


def parse_answer(text: str | None, tags: Sequence[int]) -> Answer:
    """Validate a reply against the frame's ``tags`` (see the module docstring for the rules).

    Raises:
        ValidationError: the reply is not a valid answer; ``reason`` says why.
    """
    if text is None or not text.strip():
        raise ValidationError("the reply is empty")
    body = strip_fences(text)
    try:
        data = json.loads(body)
    except ValueError as error:
        raise ValidationError(f"the reply is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValidationError(f"the reply must be a JSON object, got {type(data).__name__}")
    tag_set = sorted(set(int(tag) for tag in tags))
    objects = _parse_objects(_entries(data, "objects"), tag_set)
    relations = _parse_relations(_entries(data, "relations"), tag_set)
    return Answer(objects=objects, relations=relations)


# ----------------------------------------------------------------------------------- usage and cost


@dataclass
class Usage:
    """Token counts reported by the server (summed over requests)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts to this one."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_json(self) -> dict[str, int]:
        """``{"prompt_tokens": INT, "completion_tokens": INT}``."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def model_prices(
    model: str, price_input: float | None = None, price_output: float | None = None
) -> tuple[float, float] | None:
    """USD per million (input, output) tokens of ``model``; ``None`` when unknown.

    ``price_input`` / ``price_output`` override the table (both are needed for a model it lacks).
    A dated snapshot uses the longest table entry it starts with (``gpt-4o-mini-2024-07-18`` ->
    ``gpt-4o-mini``).
    """
    known = None
    families = [name for name in PRICES_PER_MILLION if model == name or model.startswith(name + "-")]
    if families:
        known = PRICES_PER_MILLION[max(families, key=len)]
    input_price = price_input if price_input is not None else (known[0] if known else None)
    output_price = price_output if price_output is not None else (known[1] if known else None)
    if input_price is None or output_price is None:
        return None
    return float(input_price), float(output_price)


def estimate_cost(usage: Usage, prices: tuple[float, float] | None) -> float | None:
    """USD cost of ``usage`` at ``prices`` (per million tokens); ``None`` when the prices are unknown."""
    if prices is None:
        return None
    return (usage.prompt_tokens * prices[0] + usage.completion_tokens * prices[1]) / 1_000_000


def format_cost(cost: float | None) -> str:
    """``$0.0123`` or ``unknown``."""
    return "unknown" if cost is None else f"${cost:.4f}"


#: (base, per 512-px tile) image tokens where a model differs from the gpt-4o rule (85, 170): gpt-4o-mini
#: bills images at about the same price as gpt-4o by counting many more tokens.
IMAGE_TOKEN_RULES: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}


def _image_rule(model: str) -> tuple[int, int]:
    families = [name for name in IMAGE_TOKEN_RULES if model == name or model.startswith(name + "-")]
    return IMAGE_TOKEN_RULES[max(families, key=len)] if families else (85, 170)


def image_tokens(width: int, height: int, detail: Detail, model: str = "gpt-4o") -> int:
    """Input tokens OpenAI bills for an image.

    ``low``: the base (85 for gpt-4o). ``high`` (and ``auto``, counted as the upper bound ``high``):
    the image is scaled to fit 2048 x 2048, then down so its shorter side is at most 768 (images are not
    enlarged), and costs base + per-tile tokens for each 512-px tile (85 + 170 n for gpt-4o;
    :data:`IMAGE_TOKEN_RULES` for models that count differently).
    """
    base, per_tile = _image_rule(model)
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return base + per_tile * tiles


def text_tokens(text: str) -> int:
    """Rough token count of English text (about four characters per token)."""
    return math.ceil(len(text) / 4)


def request_tokens(prompt: str, width: int, height: int, detail: Detail, model: str = "gpt-4o") -> int:
    """Estimated input tokens of one request: prompt text, image and message overhead."""
    return text_tokens(prompt) + image_tokens(width, height, detail, model) + MESSAGE_OVERHEAD_TOKENS


# ------------------------------------------------------------------------------------ connection


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine or a private network (where servers rarely check keys)."""
    host = (urlparse(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".local") or host.endswith(".localhost") or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def resolve_connection(base_url: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(base_url, api_key)``: ``--base-url``, else ``OPENAI_BASE_URL``, else the OpenAI API; the key
    from ``OPENAI_API_KEY`` (``EMPTY`` for local servers without one).

    Raises:
        UserError: no key is set and the server is not local.
    """
    url = (base_url or environ.get(BASE_URL_ENV) or "").strip() or DEFAULT_BASE_URL
    if urlparse(url).scheme not in ("http", "https"):
        raise UserError(f"the base URL must start with http:// or https://, got {url!r}")
    key = (environ.get(API_KEY_ENV) or "").strip()
    if key:
        return url, key
    if is_local_url(url):
        return url, DUMMY_API_KEY
    raise UserError(
        f"no API key: set the environment variable {API_KEY_ENV} (export {API_KEY_ENV}=...) to ask {url}, "
        f"or point --base-url (or {BASE_URL_ENV}) at a local OpenAI-compatible server such as vLLM or Ollama. "
        "The key is read from the environment only and never written to disk."
    )


def make_openai_client(base_url: str, api_key: str, timeout: float) -> Any:
    """An ``openai.OpenAI`` client without its own retries (:class:`VisionClient` retries)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


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


def build_messages(prompt: str, image_url: str, detail: Detail) -> list[dict[str, Any]]:
    """The chat messages of one frame: a user message with the prompt text and the image."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": image_url, "detail": detail}},
            ],
        }
    ]


# -------------------------------------------------------------------------------------- retries


class FatalRequestError(Exception):
    """The server refuses every request (bad key, no access, unknown model or URL): stop the run."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a frame is asked again."""

    retries: int = 3
    """Failed attempts allowed beyond the first (transport errors and invalid replies together)."""
    base_delay: float = 1.0
    """Backoff before the first retry, in seconds; doubled for each further failure."""
    max_delay: float = 60.0
    """Upper bound of one backoff (and of an honoured Retry-After)."""
    jitter: float = 0.5
    """Relative jitter: a delay d becomes uniform in [d (1 - jitter), d (1 + jitter)]."""

    def delay(self, failure: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failure``-th failed attempt (1-based)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_delay))
        base = self.base_delay * (2.0 ** (failure - 1))
        spread = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return max(0.0, min(base * spread, self.max_delay))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a server asks for: ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when is not None else None


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


class VisionClient:
    """Asks an OpenAI-compatible server about Set-of-Mark images; safe to share between threads."""

    def __init__(
        self,
        client: Any,
        model: str,
        detail: Detail = "high",
        temperature: float | None = 0.0,
        policy: RetryPolicy | None = None,
        secret: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        """``client``: an ``openai.OpenAI`` (or look-alike); ``secret``: text scrubbed from anything kept."""
        self.client = client
        self.model = model
        self.detail: Detail = detail
        self.temperature = temperature
        self.policy = policy if policy is not None else RetryPolicy()
        self.sleep = sleep
        self._secret = secret if secret and secret != DUMMY_API_KEY else None
        self._mode: ResponseMode = "json_schema"
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

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

    def _create(self, messages: list[dict[str, Any]], mode: ResponseMode) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        fmt = response_format(mode)
        if fmt is not None:
            kwargs["response_format"] = fmt
        return self.client.chat.completions.create(**kwargs)

    def _describe(self, error: Exception) -> str:
        import openai

        if isinstance(error, openai.APITimeoutError):
            return "the request timed out"
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            return f"connection error ({type(cause).__name__ if cause else 'no response'})"
        if isinstance(error, openai.APIStatusError):
            return self.scrub(f"HTTP {error.status_code}: {_error_message(error)}")
        return self.scrub(f"{type(error).__name__}: {error}")

    def _is_retryable(self, error: Exception) -> bool:
        import openai

        if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError)):
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in _RETRYABLE_STATUS or error.status_code >= 500
        return False

    def ask(self, prompt: str, image_url: str, tags: Sequence[int]) -> FrameResult:
        """Ask about one image until a valid answer comes back or the retry budget is spent.

        Raises:
            FatalRequestError: the server refused the request in a way no retry can fix (401/403/404).
        """
        import openai

        base = build_messages(prompt, image_url, self.detail)
        messages = base
        result = FrameResult(status="failed", reason=None, attempts=0, usage=Usage(), answer=None)
        failures = 0
        while True:
            mode = self.mode
            result.attempts += 1
            try:
                response = self._create(messages, mode)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
                raise FatalRequestError(self._fatal_message(error)) from None
            except openai.APIError as error:
                description = self._describe(error)
                result.raw.append(description)
                if (
                    isinstance(error, openai.APIStatusError)
                    and error.status_code in (400, 422)
                    and mode != "plain"
                    and _mentions_response_format(error)
                    and self._downgrade(mode)
                ):
                    continue
                failures += 1
                result.reason = description
                if not self._is_retryable(error) or failures > self.policy.retries:
                    return result
                headers = getattr(getattr(error, "response", None), "headers", None)
                self.sleep(self.policy.delay(failures, retry_after_seconds(headers), self._rng))
                continue
            result.usage.add(_usage_of(response))
            text = ""
            try:
                text = _reply_text(response)
                result.raw.append(self.mask_secret(text))
                answer = parse_answer(text, tags)
            except ValidationError as error:
                if not text:
                    result.raw.append(f"({error.reason})")
                failures += 1
                result.reason = f"invalid reply: {self.scrub(error.reason)}"
                if failures > self.policy.retries:
                    return result
                messages = base + _correction(text, error.reason) if text else base
                continue
            result.status, result.reason, result.answer = "ok", None, answer
            return result

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
