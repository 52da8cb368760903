"""The viewer's "Find" box (:class:`ReferringBox`): a referring query ("mug standing on desk") or an object query.

The query is parsed by :func:`relationfield.referring.parse_referring` against the predicate vocabulary and
the run's relation texts, and answered by :func:`relationfield.query.answer_referring` over the instances of
the panel's scene graph (built on the first query), as ``relationfield query`` answers it. The best
instance is highlighted in the 3D view; the status line names it, the runners-up and the references.

viser sends a text box's value on every keystroke, so the box answers once the text has rested for
``SUBMIT_DELAY_S`` (a half-typed "m" would otherwise build the scene graph and score every object);
:class:`DebouncedBox` does that for the "Ask" box too (:mod:`relationfield.viewer.ask_box`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor
from viser import ViserServer

from relationfield.errors import UserError
from relationfield.extraction import Extraction
from relationfield.query import FieldQuery, answer_referring, instance_points
from relationfield.referring import ReferringAnswer, ReferringConfig, ReferringQuery, parse_referring
from relationfield.viewer.drawing import draw_found
from relationfield.vocab import predicate_vocab

FOUND_GROUP = "found"
"""Scene group (under the panel's root) of the highlighted answer."""
RUNNERS_UP = 3
"""Instances after the best one named in the status line."""
SUBMIT_DELAY_S = 0.8
"""Seconds the typed text must stay unchanged before it is answered."""


class ReferringHost(Protocol):
    """What the box uses of its panel (:class:`relationfield.viewer.panel.RelationViewerControls`)."""

    extraction: Extraction | None
    viewer: Any | None

    @property
    def query(self) -> FieldQuery | None: ...

    def say(self, message: str, attention: bool = False) -> None: ...

    def build_scene_graph(self) -> Extraction | None: ...

    def _require_query(self) -> FieldQuery | None: ...

    def _replace_drawing(self, group: str, draw: Callable[[ViserServer, str], list[Any]]) -> None: ...


def parse_find(query: FieldQuery, text: str) -> ReferringQuery:
    """``text`` as a referring or object query of this run (raises ``UserError`` for a malformed one)."""
    return parse_referring(text, [*predicate_vocab(), *query.relation_texts()])


def extraction_instances(query: FieldQuery, extraction: Extraction) -> dict[int, Tensor]:
    """Node id -> its points (model frame) for the built scene graph's nodes that have points."""
    node_ids = [node.id for node in extraction.graph.nodes]
    return instance_points(query, node_ids, extraction.points_world, extraction.point_node)


def describe(answer: ReferringAnswer, names: dict[int, str], runners_up: int = RUNNERS_UP) -> str:
    """The status line: the best instance with its combined score, the runners-up and the references."""
    best = answer.best
    assert best is not None
    parsed = answer.query
    line = f"{parsed.text()!r}: {names[best.node]} ({best.combined:.3f})"
    # instances that are no candidate (wrong subject, or no reference besides themselves) score 0: not runners-up
    others = [item for item in answer.ranked[1:] if item.candidate][:runners_up]
    if others:
        line += "; runners-up: " + ", ".join(f"{names[item.node]} {item.combined:.3f}" for item in others)
    if answer.references:
        word = "reference" if len(answer.references) == 1 else "references"
        line += f"; {word}: " + ", ".join(names[node] for node in answer.references)
    return line + "."


class DebouncedBox:
    """A text box answered (:meth:`_answer`) once its text has rested for ``delay`` seconds."""

    def __init__(self, host: ReferringHost, name: str, hint: str) -> None:
        self.host = host
        self.text = ViewerText(name, "", cb_hook=lambda e: self.typed(e.value), hint=hint)
        self.delay = SUBMIT_DELAY_S
        self._timer: threading.Timer | None = None
        self._asked: str | None = None
        """The text answered last (setting the box's value from code calls back with it)."""

    def typed(self, text: str) -> None:
        """The box's callback (every keystroke): answer ``text`` unless more is typed within ``delay``."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.delay, self._submit, args=(text,))
        self._timer.daemon = True
        self._timer.start()

    def field_lock(self) -> AbstractContextManager[Any]:
        """The viewer's training lock (the field must not train while it is queried); a no-op without one."""
        lock = getattr(self.host.viewer, "train_lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    def _submit(self, text: str) -> None:
        if text != self._asked:  # else already answered
            self._answer(text)

    def _answer(self, text: str) -> None:
        """Answer ``text`` (on the timer's thread, not viser's: the viewer keeps rendering meanwhile)."""
        raise NotImplementedError


class ReferringBox(DebouncedBox):
    """The "Find" text box of a panel, and what answering it takes (the panel shows ``text``)."""

    def __init__(self, host: ReferringHost, config: ReferringConfig | None = None) -> None:
        hint = "e.g. 'mug standing on desk', 'the pillow lying on the rug' or 'chair'; '#3' names object 3"
        super().__init__(host, "Find", hint)
        self.config = config
        """Scoring knobs (None: :class:`relationfield.referring.ReferringConfig`'s defaults)."""
        self.answer: ReferringAnswer | None = None
        """The last answer (None before one, or after an error)."""

    def _answer(self, text: str) -> None:
        with self.field_lock():
            self.find(text)

    def find(self, text: str) -> ReferringAnswer | None:
        """Answer ``text`` and highlight the best instance; errors go to the status line, never raised."""
        self._asked = text
        if self.text.value != text:
            self.text.value = text
        self.answer = None
        self.host._replace_drawing(FOUND_GROUP, lambda _server, _root: [])  # an old highlight would mislead
        if not text.strip() or (query := self.host._require_query()) is None:
            return None
        try:
            parsed = parse_find(query, text)  # before building: a typo should not cost a scene graph
            extraction = self.host.extraction
            if extraction is None and (extraction := self.host.build_scene_graph()) is None:
                return None  # the build said why
            objects = extraction_instances(query, extraction)
            if not objects:
                raise UserError("the scene graph has no objects to answer with; train longer or check the labels")
            answer = answer_referring(query, objects, parsed, self.config)
        except UserError as error:
            self.host.say(str(error), attention=True)
            return None
        names = {node.id: node.display_name for node in extraction.graph.nodes}
        best = answer.best
        if best is None or not best.candidate:  # e.g. the only match for the subject is the reference itself
            self.host.say(f"No object fits {parsed.text()!r}: nothing matches besides the reference.", attention=True)
            return None
        self.answer = answer
        self.host.say(describe(answer, names))
        points, name = objects[best.node], names[best.node]
        self.host._replace_drawing(FOUND_GROUP, lambda server, root: draw_found(server, root, points, name))
        return answer
