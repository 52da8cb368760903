"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for tests (no network).

Usage::

    with FakeOpenAI() as server:                       # or FakeOpenAI(responder=callable)
        server.push(error_reply(429, headers={"Retry-After": "0"}), chat_reply(answer_json({1: "sofa"})))
        client = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
        ...
        server.requests[0].image_urls()                  # what the client sent

``POST /v1/chat/completions`` answers with the next queued reply (:meth:`FakeOpenAI.push`); when the
queue is empty it calls ``responder(request_json)``, which returns a :class:`Reply` or a
``(status, body)`` pair (a dict body is sent as JSON, a str body as is). Without either it answers 500.
Every request is recorded (:class:`RecordedRequest`: headers, raw body, parsed JSON) so tests can check
what was sent: the image, the response format and its schema, the system message, the token limit, the
seed, where the API key appeared. :func:`cut_off_reply` plays a reply stopped at the token limit
(``finish_reason`` ``length``).

A responder that answers from a synthetic capture's ground truth can use :func:`request_image`
(the decoded overlay) and :func:`tags_from_prompt` to tell frames apart.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One scripted answer: HTTP status, body (dict -> JSON, str -> raw text), headers, delay in seconds."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class RecordedRequest:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: str
    json: dict[str, Any] | None

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the request (empty when it had none)."""
        return list((self.json or {}).get("messages") or [])

    def prompt_text(self) -> str:
        """The text parts of the first user message, joined."""
        return request_text(self.json or {})

    def image_urls(self) -> list[str]:
        """The image URLs of all messages (``data:`` URLs for inline images)."""
        urls: list[str] = []
        for message in self.messages():
            content = message.get("content")
            if isinstance(content, list):
                urls += [part["image_url"]["url"] for part in content if part.get("type") == "image_url"]
        return urls

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The requested ``response_format`` (``None`` when absent)."""
        return (self.json or {}).get("response_format")

    @property
    def max_tokens(self) -> int | None:
        """The output-token limit sent (``max_tokens``, else ``max_completion_tokens``; ``None``: none)."""
        body = self.json or {}
        return body.get("max_tokens", body.get("max_completion_tokens"))

    def system_text(self) -> str | None:
        """The content of the system message (``None`` when the request has none)."""
        for message in self.messages():
            if message.get("role") == "system":
                return message.get("content")
        return None

    def schema(self) -> dict[str, Any] | None:
        """The JSON schema of a ``json_schema`` response format (``None`` for other formats)."""
        fmt = self.response_format or {}
        return fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None


Responder = Callable[[dict[str, Any]], Reply | tuple[int, Any]]


def completion(
    content: str | None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    model: str = "fake-model",
    refusal: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A chat.completion body whose single choice says ``content`` and stopped for ``finish_reason``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_reply(
    content: str | None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    delay: float = 0.0,
    finish_reason: str = "stop",
) -> Reply:
    """A 200 reply carrying ``content`` and the given usage."""
    body = completion(content, prompt_tokens, completion_tokens, finish_reason=finish_reason)
    return Reply(200, body, delay=delay)


def cut_off_reply(content: str, max_tokens: int, prompt_tokens: int = 100) -> Reply:
    """A reply the server stopped at the token limit: ``content`` cut in half, ``finish_reason`` length."""
    return chat_reply(content[: len(content) // 2], prompt_tokens, max_tokens, finish_reason="length")


def error_reply(
    status: int, message: str = "scripted error", headers: Mapping[str, str] | None = None, param: str | None = None
) -> Reply:
    """An OpenAI-style error reply (``{"error": {"message": ..., "type": ..., "param": ...}}``)."""
    kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    kind = kinds.get(status, "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return Reply(status, body, dict(headers or {}))


def answer_json(objects: Mapping[Any, str], relations: Sequence[tuple[Any, Any, Sequence[str]]] = ()) -> str:
    """A reply text in the requested answer format (tags are used as given, so tests can send bad ones)."""
    return json.dumps(
        {
            "objects": [{"tag": tag, "name": name} for tag, name in objects.items()],
            "relations": [{"subject": s, "object": o, "predicates": list(p)} for s, o, p in relations],
        }
    )


def request_text(request_json: Mapping[str, Any]) -> str:
    """The text parts of the first user message of a chat request."""
    for message in request_json.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(part.get("text", "") for part in content or [] if part.get("type") == "text")
    return ""


def tags_from_prompt(request_json: Mapping[str, Any]) -> list[int]:
    """The tags listed in the prompt ("The tags in this image are: 1, 2, 3.")."""
    match = re.search(r"tags in this image are:\s*([0-9][0-9,\s]*)", request_text(request_json), re.IGNORECASE)
    return [int(tag) for tag in re.findall(r"\d+", match.group(1))] if match else []


def request_image(request_json: Mapping[str, Any]) -> Image.Image:
    """The first inline (``data:`` URL) image of a chat request, decoded."""
    for message in request_json.get("messages") or []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                header, _, payload = part["image_url"]["url"].partition(",")
                if header.startswith("data:") and header.endswith(";base64"):
                    image = Image.open(io.BytesIO(base64.b64decode(payload)))
                    image.load()
                    return image
    raise ValueError("the request holds no inline image")


def echo_responder(request_json: dict[str, Any]) -> Reply:
    """A valid answer for any frame: every tag named ``object k``, and tag 1 "standing on" tag 2."""
    tags = tags_from_prompt(request_json)
    relations = [(tags[0], tags[1], ["standing on"])] if len(tags) >= 2 else []
    return chat_reply(answer_json({tag: f"object {tag}" for tag in tags}, relations))


class FakeOpenAI:
    """The server (see the module docstring); a context manager that starts and stops it."""

    def __init__(self, responder: Responder | None = None, replies: Iterable[Reply] = ()) -> None:
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give the client (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded ``POST /v1/chat/completions`` requests."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/") == CHAT_PATH]

    def push(self, *replies: Reply) -> None:
        """Queue replies, answered in order before the responder is consulted."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> FakeOpenAI:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (later connections are refused)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            scripted = self._queue.popleft() if self._queue else None
        if scripted is not None:
            return scripted
        if request.path.rstrip("/") != CHAT_PATH or request.method != "POST":
            return error_reply(404, f"no route {request.method} {request.path}")
        if self.responder is None:
            return error_reply(500, "the fake server has no scripted reply left")
        answer = self.responder(request.json or {})
        return answer if isinstance(answer, Reply) else Reply(answer[0], answer[1])

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                """Keep test output quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                request = RecordedRequest(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    body,
                    parsed if isinstance(parsed, dict) else None,
                )
                reply = server._next_reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    content_type = "application/json" if not isinstance(reply.body, str) else "text/plain"
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. a timeout test)

            do_POST = _serve
            do_GET = _serve

        return Handler
