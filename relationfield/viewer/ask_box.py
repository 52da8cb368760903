"""The viewer's "Ask" box (:class:`AskBox`): a free-form question about the scene for a chat model.

The question goes with the panel's scene graph (built on the first question) to
:func:`relationfield.ask.ask_scene_graph`, with the ``relations`` stage's server and key (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``). Each referring expression of the answer ("pillow lying on sofa") is checked against
the loaded field with the "Find" rule; a pick that is not among the answer's objects is a warning. All
the answer's objects are highlighted in the "Find" highlight's scene group (one highlight at a time).

The chat request runs on the box's timer thread without the viewer's training lock: the viewer renders
while the model thinks. Only the field's work (building the graph, the referring checks) takes the lock.
"""

from __future__ import annotations

from typing import Any

from relationfield.ask import AskAnswer, ClientOptions, PromptOptions, ask_scene_graph
from relationfield.errors import UserError
from relationfield.extraction import Extraction
from relationfield.query import FieldQuery, answer_referring
from relationfield.viewer.drawing import draw_found
from relationfield.viewer.referring_box import (
    FOUND_GROUP,
    DebouncedBox,
    ReferringHost,
    extraction_instances,
    parse_find,
)

HINT = 'a question about the scene, e.g. "what is on the sofa?" (needs OPENAI_API_KEY or OPENAI_BASE_URL)'


def describe_answer(answer: AskAnswer, names: dict[int, str], warnings: list[str]) -> str:
    """The status line: the answer's sentence, its objects, then the warnings."""
    objects = ", ".join(names[node] for node in answer.node_ids) or "none"
    line = f"{answer.answer} — objects: {objects}."
    return line + "".join(f" Warning: {warning}." for warning in warnings)


class AskBox(DebouncedBox):
    """The "Ask" text box of a panel, and what answering it takes (the panel shows ``text``)."""

    def __init__(self, host: ReferringHost, client: Any = None) -> None:
        super().__init__(host, "Ask", HINT)
        self.client = client
        """An ``openai.OpenAI``-compatible client (None: one from the environment, per question)."""
        self.client_options = ClientOptions()
        self.prompt_options = PromptOptions()
        self.answer: AskAnswer | None = None
        """The last answer (None before one, or after an error)."""

    def _answer(self, text: str) -> None:
        self.ask(text)  # no lock here: ask() takes it for the field's work only

    def ask(self, question: str) -> AskAnswer | None:
        """Ask ``question`` and highlight the answer's objects; errors go to the status line, never raised."""
        self._asked = question
        if self.text.value != question:
            self.text.value = question
        self.answer = None
        self.host._replace_drawing(FOUND_GROUP, lambda _server, _root: [])  # an old highlight would mislead
        if not question.strip() or (query := self.host._require_query()) is None:
            return None
        try:
            with self.field_lock():
                extraction = self.host.extraction
                if extraction is None and (extraction := self.host.build_scene_graph()) is None:
                    return None  # the build said why
                objects = extraction_instances(query, extraction)
            self.host.say(f"Asking the chat model {question!r}...")
            answer = ask_scene_graph(
                extraction.graph,
                question,
                self.client_options,
                self.prompt_options,
                client=self.client,
                check_referring=lambda phrase: self._pick(query, objects, phrase),
            )
        except UserError as error:
            self.host.say(str(error), attention=True)
            return None
        self.answer = answer
        self._show(answer, extraction, objects)
        return answer

    def _pick(self, query: FieldQuery, objects: dict[int, Any], phrase: str) -> int:
        """The node the "Find" rule picks for ``phrase`` (``UserError``: none; ask_scene_graph warns)."""
        with self.field_lock():
            found = answer_referring(query, objects, parse_find(query, phrase))
        if found.best is None or not found.best.candidate:
            raise UserError("no object fits it besides the reference")
        return found.best.node

    def _show(self, answer: AskAnswer, extraction: Extraction, objects: dict[int, Any]) -> None:
        """The status line and the highlight of every answer object that has points."""
        names = {node.id: node.display_name for node in extraction.graph.nodes}
        warnings = list(answer.warnings)
        for phrase, node in answer.referring_checks.items():
            if node not in answer.node_ids:
                warnings.append(f"the field picks {names[node]} for {phrase!r}, which is not among the objects")
        self.host.say(describe_answer(answer, names, warnings), attention=bool(warnings))
        shown = [node for node in answer.node_ids if node in objects]

        def draw(server: Any, root: str) -> list[Any]:
            return [h for node in shown for h in draw_found(server, f"{root}/{node}", objects[node], names[node])]

        self.host._replace_drawing(FOUND_GROUP, draw)
