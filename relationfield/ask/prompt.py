"""The prompt of ``relationfield ask``: an exported scene graph, written compactly, and the question.

The system message says what the model does and the JSON form of its answer (it is also the only format
guide a server without ``response_format`` support gets). The user message lists the nodes as
``#id label at (x, y, z) size W x D x H`` (world frame, rounded to cm) and the links whose best
predicate other than "none" scores above ``min_score``, strongest first, at most ``max_links`` of them,
as ``A#id predicate B#id (score)``; the question comes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relationfield.errors import UserError
from relationfield.preprocess.cost import EXTRA_MESSAGE_TOKENS, text_tokens
from relationfield.scene_graph import SceneGraph, SceneLink, SceneNode
from relationfield.vocab import NONE_PREDICATE

__all__ = ["DEFAULT_MAX_LINKS", "DEFAULT_MIN_SCORE", "SYSTEM_MESSAGE", "GraphPrompt", "PromptOptions", "graph_prompt"]

DEFAULT_MIN_SCORE = 0.5
"""Links whose best predicate scores at most this are left out of the prompt."""
DEFAULT_MAX_LINKS = 200
"""The most links written into the prompt (about 10 tokens each)."""

SYSTEM_MESSAGE = (
    "You answer questions about a 3D scene from its scene graph. The graph lists objects (nodes: an id, a "
    "label, the centroid and the size of the bounding box in metres, world frame, z up) and scored relations "
    "between them (links: subject predicate object, score in [0, 1]; labels and links are predicted and may "
    "be wrong). Answer with one JSON object only, no other text, in this form: "
    '{"answer": "<the answer, one or two sentences>", "node_ids": [<ids of the objects the answer is about>], '
    '"referring": [<referring expressions you used to pick them, like "mug standing on desk"; may be empty>]}. '
    'Use only node ids from the graph. When the graph cannot answer the question, say so in "answer" and '
    'leave "node_ids" empty.'
)


@dataclass(frozen=True)
class PromptOptions:
    """How much of the graph goes into the prompt."""

    min_score: float = DEFAULT_MIN_SCORE
    """Links whose best predicate (other than "none") scores at most this are left out."""
    max_links: int = DEFAULT_MAX_LINKS
    """The most links written, strongest first."""


@dataclass(frozen=True)
class GraphPrompt:
    """The messages of one question, and what of the graph went into them."""

    messages: list[dict[str, Any]]
    nodes: int
    """Nodes listed."""
    links: int
    """Links listed."""
    strong_links: int
    """Links above ``min_score`` (``links`` is fewer when ``max_links`` cut them)."""

    @property
    def tokens(self) -> int:
        """Estimated input tokens (about four characters per token, plus the chat format's overhead)."""
        return sum(text_tokens(str(m["content"])) + EXTRA_MESSAGE_TOKENS for m in self.messages)


def best_predicate(link: SceneLink) -> tuple[str, float] | None:
    """The link's highest-scoring predicate other than "none" (``None``: it has none)."""
    scores = [(name, float(score)) for name, score in link.predicate_scores if name != NONE_PREDICATE]
    if not scores and link.predicate != NONE_PREDICATE:
        scores = [(link.predicate, float(link.score))]  # a link written without its score table
    return max(scores, key=lambda item: item[1]) if scores else None


def _node_line(node: SceneNode) -> str:
    x, y, z = node.centroid
    size = [hi - lo for lo, hi in zip(node.aabb_min, node.aabb_max)]
    return f"#{node.id} {node.label} at ({x:.2f}, {y:.2f}, {z:.2f}) size {size[0]:.2f} x {size[1]:.2f} x {size[2]:.2f}"


def strong_links(graph: SceneGraph, min_score: float) -> list[tuple[SceneLink, str, float]]:
    """The links above ``min_score`` with their best predicate, strongest first (ties: by ids)."""
    found = []
    for link in graph.links:
        best = best_predicate(link)
        if best is not None and best[1] > min_score:
            found.append((link, *best))
    return sorted(found, key=lambda item: (-item[2], item[0].source, item[0].target))


def _graph_text(graph: SceneGraph, links: Sequence[tuple[SceneLink, str, float]], left_out: int) -> str:
    labels = {node.id: node.label for node in graph.nodes}
    lines = [f"Nodes ({len(graph.nodes)}):", *(_node_line(node) for node in graph.nodes)]
    lines.append(f"Links ({len(links)}{f', {left_out} weaker ones left out' if left_out else ''}):")
    lines += [
        f"{labels[link.source]}#{link.source} {predicate} {labels[link.target]}#{link.target} ({score:.2f})"
        for link, predicate, score in links
    ]
    return "\n".join(lines)


def graph_prompt(graph: SceneGraph, question: str, options: PromptOptions | None = None) -> GraphPrompt:
    """The system and user messages that ask ``question`` about ``graph``.

    Raises:
        UserError: the question is empty or ``max_links`` is negative.
    """
    options = options if options is not None else PromptOptions()
    if not question.strip():
        raise UserError("the question is empty")
    if options.max_links < 0:
        raise UserError("--max-links must be >= 0")
    strong = strong_links(graph, options.min_score)
    kept = strong[: options.max_links]
    text = f"Scene graph:\n{_graph_text(graph, kept, len(strong) - len(kept))}\n\nQuestion: {question.strip()}"
    messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": text}]
    return GraphPrompt(messages, len(graph.nodes), len(kept), len(strong))
