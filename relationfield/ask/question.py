"""One free-form question about a scene graph, answered by a chat model: :func:`ask_scene_graph`.

The server, key and request settings are those of the ``relations`` stage: ``base_url``, else
``OPENAI_BASE_URL``, else the OpenAI API; the key from ``OPENAI_API_KEY`` only (``EMPTY`` for a local
server without one), never printed: every reason is scrubbed of it
(:mod:`relationfield.preprocess.connection`, :class:`~relationfield.ask.client.GraphClient`).

Node ids the model names that are not in the graph are dropped with a warning, not an error.
``check_referring`` is the hook for callers that hold a loaded field (the viewer): it is called with each
referring expression the model used and its result is kept in :attr:`AskAnswer.referring_checks`.
``relationfield ask`` reads only the exported graph and passes none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relationfield.ask.client import FatalRequestError, GraphClient
from relationfield.ask.prompt import PromptOptions, graph_prompt
from relationfield.ask.reply import GraphReply
from relationfield.errors import UserError
from relationfield.preprocess.connection import connected_client
from relationfield.preprocess.cost import Usage
from relationfield.preprocess.retries import RetryPolicy
from relationfield.preprocess.vision_client import MaxTokensField, RequestOptions
from relationfield.scene_graph import SceneGraph

__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_MODEL", "AskAnswer", "ClientOptions", "ask_scene_graph"]

DEFAULT_MODEL = "gpt-4o"
"""The model asked by default (the ``relations`` stage's default)."""
DEFAULT_MAX_TOKENS = 1024
"""Output tokens allowed per reply: an answer is a sentence, a few ids and phrases."""


@dataclass(frozen=True)
class ClientOptions:
    """Where the question is sent and how (the ``relations`` stage's settings of the same names)."""

    model: str = DEFAULT_MODEL
    """Model name, as the server knows it."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else OpenAI)."""
    timeout: float = 60.0
    """Seconds to wait for one reply."""
    retries: int = 3
    """Failed requests allowed beyond the first (server errors, timeouts; a malformed answer gets one correction)."""
    backoff: float = 1.0
    """Seconds before the first retry after a server error; doubled for each further one."""
    max_backoff: float = 60.0
    """Longest wait between two attempts."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens allowed per reply (doubled once for a reply cut off there)."""
    max_tokens_field: MaxTokensField = "max_tokens"
    """The request field of ``max_tokens``."""
    temperature: float | None = 0.0
    """Sampling temperature (None: left to the server)."""
    seed: int | None = 0
    """Sampling seed (None: not sent)."""

    def validate(self) -> None:
        """Raises :class:`UserError` naming the first option out of range."""
        checks = (
            (bool(self.model.strip()), "--model must not be empty"),
            (self.timeout > 0, "--timeout must be > 0"),
            (self.retries >= 0, "--retries must be >= 0"),
            (self.backoff >= 0 and self.max_backoff >= 0, "the backoff must be >= 0"),
            (self.max_tokens >= 1, "--max-tokens must be >= 1"),
            (self.max_tokens_field in ("max_tokens", "max_completion_tokens"), "bad --max-tokens-field"),
            (self.temperature is None or 0.0 <= self.temperature <= 2.0, "--temperature must be in [0, 2]"),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message)


@dataclass
class AskAnswer:
    """The model's answer, with its node ids checked against the graph."""

    answer: str
    node_ids: list[int]
    """Ids of the graph's nodes the answer is about (unknown ones dropped, repeats removed)."""
    referring: list[str]
    """The referring expressions the model used ("mug standing on desk"; may be empty)."""
    dropped_ids: list[int] = field(default_factory=list)
    """Ids the model named that the graph does not have."""
    usage: Usage = field(default_factory=Usage)
    warnings: list[str] = field(default_factory=list)
    """Lines for the user: dropped ids, failed referring checks."""
    referring_checks: dict[str, Any] = field(default_factory=dict)
    """``check_referring``'s result per referring expression (empty without the hook)."""
    attempts: int = 0
    """Requests sent."""
    response_mode: str = "json_schema"
    """How the answer format was requested in the end (the fallbacks are remembered)."""

    def to_json(self) -> dict[str, Any]:
        """``{"answer", "node_ids", "referring", "dropped_ids", "usage"}``."""
        return {
            "answer": self.answer,
            "node_ids": list(self.node_ids),
            "referring": list(self.referring),
            "dropped_ids": list(self.dropped_ids),
            "usage": self.usage.to_json(),
        }


def graph_client(options: ClientOptions, client: Any = None) -> GraphClient:
    """The :class:`GraphClient` of ``options`` (``client``: a ready ``openai.OpenAI``, else one from the env)."""
    options.validate()
    client, key = connected_client(options.base_url, options.timeout, client)
    policy = RetryPolicy(retries=options.retries, base_delay=options.backoff, max_delay=options.max_backoff)
    request = RequestOptions(
        temperature=options.temperature,
        max_tokens=options.max_tokens,
        max_tokens_field=options.max_tokens_field,
        seed=options.seed,
    )
    return GraphClient(client, options.model, request, policy=policy, secret=key)


def _checked_ids(reply: GraphReply, graph: SceneGraph) -> tuple[list[int], list[int], list[str]]:
    """(known ids, dropped ids, warnings) of the reply's ids, in the model's order without repeats."""
    known = {node.id for node in graph.nodes}
    named = list(dict.fromkeys(reply.node_ids))
    kept = [i for i in named if i in known]
    dropped = [i for i in named if i not in known]
    warnings = []
    if dropped:
        listed = ", ".join(f"#{i}" for i in dropped)
        warnings.append(f"the model named node ids the graph does not have, dropped: {listed}")
        if not kept:
            warnings.append("none of the node ids the model named is in the graph: the answer points at no object")
    return kept, dropped, warnings


def _check_referring(phrases: list[str], check: Callable[[str], Any] | None, warnings: list[str]) -> dict[str, Any]:
    """``check``'s result per phrase; a phrase it rejects (:class:`UserError`) becomes a warning."""
    results: dict[str, Any] = {}
    for phrase in phrases if check is not None else []:
        try:
            results[phrase] = check(phrase)
        except UserError as error:
            warnings.append(f"referring expression {phrase!r} could not be checked: {error}")
    return results


def ask_scene_graph(
    graph: SceneGraph,
    question: str,
    client_options: ClientOptions | None = None,
    prompt_options: PromptOptions | None = None,
    *,
    client: Any = None,
    check_referring: Callable[[str], Any] | None = None,
) -> AskAnswer:
    """Ask ``question`` about ``graph`` (see the module docstring).

    Args:
        client: an ``openai.OpenAI``-compatible client instead of one built from the options and the env.
        check_referring: called with each referring expression of the answer (e.g. a referring query of
            the loaded field); its results land in :attr:`AskAnswer.referring_checks`.

    Raises:
        UserError: bad options, no API key for the OpenAI API, a refused request (bad key, unknown model),
            or no valid answer (:class:`~relationfield.ask.client.AskFailed`).
    """
    prompt = graph_prompt(graph, question, prompt_options)
    vision = graph_client(client_options if client_options is not None else ClientOptions(), client)
    try:
        reply, record = vision.ask_graph(prompt.messages)
    except FatalRequestError as error:
        raise UserError(str(error)) from None  # already scrubbed of the key
    kept, dropped, warnings = _checked_ids(reply, graph)
    checks = _check_referring(reply.referring, check_referring, warnings)
    return AskAnswer(
        answer=reply.answer,
        node_ids=kept,
        referring=list(reply.referring),
        dropped_ids=dropped,
        usage=record.usage,
        warnings=warnings,
        referring_checks=checks,
        attempts=record.attempts,
        response_mode=vision.mode,
    )
