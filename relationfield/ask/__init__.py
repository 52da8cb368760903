"""Free-form questions about an exported scene graph, answered by an OpenAI-compatible chat model.

1. Prompt (:mod:`~relationfield.ask.prompt`): the graph's nodes and strongest links, compact, and the question.
2. Answer (:mod:`~relationfield.ask.reply`): ``{"answer", "node_ids", "referring"}``, its schema and validation.
3. Client (:mod:`~relationfield.ask.client`): the ``relations`` stage's client (key, base URL, retries,
   ``response_format`` fallback, key scrubbing), with one correction request for a malformed answer.
4. Question (:mod:`~relationfield.ask.question`): :func:`ask_scene_graph`, which ties them together and
   drops node ids the graph does not have.

Typical use (the viewer, tests)::

    answer = ask_scene_graph(graph, "where can I put my cup?", ClientOptions(model="gpt-4o-mini"))
    print(answer.answer, answer.node_ids)
"""

from relationfield.ask.client import AskFailed, GraphClient
from relationfield.ask.prompt import DEFAULT_MAX_LINKS, DEFAULT_MIN_SCORE, GraphPrompt, PromptOptions, graph_prompt
from relationfield.ask.question import DEFAULT_MAX_TOKENS, DEFAULT_MODEL, AskAnswer, ClientOptions, ask_scene_graph
from relationfield.ask.reply import GraphReply, parse_reply

__all__ = [
    "DEFAULT_MAX_LINKS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_MODEL",
    "AskAnswer",
    "AskFailed",
    "ClientOptions",
    "GraphClient",
    "GraphPrompt",
    "GraphReply",
    "PromptOptions",
    "ask_scene_graph",
    "graph_prompt",
    "parse_reply",
]
