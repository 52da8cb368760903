"""Referring queries ("the mug standing on the desk"): parsing, and the scoring rule that picks the instance.

A referring query names a SUBJECT, a PREDICATE and a REFERENCE. :func:`parse_referring` splits a sentence
at the longest predicate phrase it contains (the predicate vocabulary and the run's own relation texts;
whole words, case-insensitive), and drops leading articles from the two ends; a sentence without a
predicate is a plain object query. A reference may be a node id ("#3").

Scoring (:func:`rank_referring`), with every score in [0, 1]:

* **subject score** ``s_i``: the mean object relevancy of SUBJECT over instance i's points (1 for every
  instance when the query names no subject);
* **references** R: every instance whose mean object relevancy for REFERENCE is at least
  ``reference_share`` x the best one's (with two tables, "the mug on a table" may be on either), at most
  ``max_references`` of them (the best), or the one node a "#id" names;
* **candidates**: the instances whose subject score is at least ``subject_share`` x the best one's and
  that have a reference other than themselves ("the box standing on the box": both boxes are references
  and candidates, each scored towards the other), at most ``max_candidates`` of them (the best subject
  scores: an untrained field scores everything alike, and each candidate costs a relation evaluation per
  reference);
* **relation score** ``r_i``: the highest, over the references j in R other than i, of the mean relation
  relevancy of PREDICATE at i's points with the query position z on j's points; **combined**
  ``c_i = s_i * r_i``. Candidates are ranked by ``c_i`` (ties by ``s_i``, then by id),
  the other instances after them.

This module is plain Python: the relevancies come from callables, so the same rule serves the field
(:func:`relationfield.query.answer_referring`), the evaluation and hand-made scores in tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from relationfield.errors import UserError

__all__ = ["ReferringConfig", "ReferringQuery", "ScoredInstance", "parse_referring", "rank_referring"]

ARTICLES: tuple[str, ...] = ("the", "a", "an", "some", "that", "this")
"""Words dropped from the start of the subject and the reference ("the pillow" -> "pillow")."""


@dataclass(frozen=True)
class ReferringQuery:
    """A parsed query: an object query when ``predicate`` is None."""

    subject: str | None
    """What to find ("mug"); None: any instance."""
    predicate: str | None = None
    """The relation to the reference ("standing on"); None: a plain object query."""
    reference: str | None = None
    """The reference: text ("desk") or a node id ("#3")."""

    @property
    def is_referring(self) -> bool:
        return self.predicate is not None

    @property
    def reference_node(self) -> int | None:
        """The node id of a "#id" reference, else None."""
        ref = self.reference or ""
        return int(ref[1:]) if ref.startswith("#") and ref[1:].isdigit() else None

    def text(self) -> str:
        return " ".join(part for part in (self.subject, self.predicate, self.reference) if part)


@dataclass(frozen=True)
class ReferringConfig:
    """Knobs of the scoring rule (see the module doc)."""

    subject_share: float = 0.8
    """Candidates: instances whose subject score is at least this share of the best subject score."""
    reference_share: float = 0.9
    """References: instances whose reference score is at least this share of the best reference score."""
    max_candidates: int = 8
    """At most this many candidates (the best subject scores): each costs a relation evaluation per reference."""
    max_references: int = 4
    """At most this many references (the best reference scores)."""


@dataclass(frozen=True)
class ScoredInstance:
    """One instance of a referring query's answer, with its combined and component scores."""

    node: int
    combined: float
    """``subject * relation`` for candidates, 0 for the other instances."""
    subject: float
    relation: float
    """Best relation relevancy towards a reference (0 when not scored)."""
    reference: int | None
    """The reference node that gave ``relation``."""
    candidate: bool


@dataclass
class ReferringAnswer:
    """Instances ranked best first, and the references the relation was scored against."""

    query: ReferringQuery
    ranked: list[ScoredInstance]
    references: list[int] = field(default_factory=list)

    @property
    def best(self) -> ScoredInstance | None:
        return self.ranked[0] if self.ranked else None


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = phrase.lower().split()
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)")


def _strip_articles(text: str) -> str:
    words = text.split()
    while words and words[0].lower() in ARTICLES:
        words = words[1:]
    return " ".join(words)


def parse_referring(
    text: str,
    predicates: Iterable[str],
    subject: str | None = None,
    predicate: str | None = None,
    reference: str | None = None,
) -> ReferringQuery:
    """Parse ``"SUBJECT PREDICATE REFERENCE"`` against ``predicates``, or take the parts given explicitly.

    Explicit parts win over the parsed ones. Errors (``UserError``) for an empty query, a reference with no
    predicate, a predicate with no reference, and a malformed "#id".
    """
    text = (text or "").strip()
    parsed_subject, parsed_predicate, parsed_reference = text or None, None, None
    if text and predicate is None:
        found = _longest_predicate(text, predicates)
        if found is not None:
            start, end, parsed_predicate = found
            parsed_subject = text[:start].strip() or None
            parsed_reference = text[end:].strip() or None
    subject = subject if subject is not None else parsed_subject
    predicate = predicate if predicate is not None else parsed_predicate
    reference = reference if reference is not None else parsed_reference
    subject = _strip_articles(subject) or None if subject else None
    reference = _strip_articles(reference) or None if reference else None
    if predicate is not None and not predicate.strip():
        predicate = None
    if subject is None and predicate is None:
        raise UserError(f"empty query {text!r}: write what to find, e.g. 'mug' or 'mug standing on desk'")
    if reference is not None and predicate is None:
        raise UserError(
            f"query {text!r} names a reference ({reference!r}) but no predicate from the vocabulary; "
            "write one (e.g. 'mug standing on desk') or pass --predicate"
        )
    if predicate is not None and reference is None:
        raise UserError(f"query {text!r} has the predicate {predicate!r} but no reference after it (e.g. '... desk')")
    if reference is not None and reference.startswith("#") and not reference[1:].isdigit():
        raise UserError(f"reference {reference!r}: a node id is '#' followed by digits, e.g. '#3'")
    return ReferringQuery(subject, predicate.strip() if predicate else None, reference)


def _longest_predicate(text: str, predicates: Iterable[str]) -> tuple[int, int, str] | None:
    """(start, end, predicate) of the longest predicate phrase in ``text`` (leftmost among equals)."""
    lowered = text.lower()
    best: tuple[int, int, str] | None = None
    for phrase in sorted({p.strip() for p in predicates if p.strip()}, key=lambda p: (-len(p.split()), -len(p))):
        match = _phrase_pattern(phrase).search(lowered)
        if match is None:
            continue
        length = match.end() - match.start()
        if best is None or length > best[1] - best[0] or (length == best[1] - best[0] and match.start() < best[0]):
            best = (match.start(), match.end(), phrase)
    return best


def rank_referring(
    query: ReferringQuery,
    nodes: Iterable[int],
    subject_score: Callable[[int], float],
    reference_score: Callable[[int], float],
    relation_score: Callable[[int, int], float],
    config: ReferringConfig | None = None,
) -> ReferringAnswer:
    """Rank ``nodes`` for a referring query (see the module doc for the rule).

    Args:
        subject_score: node -> mean object relevancy of the subject text.
        reference_score: node -> mean object relevancy of the reference text (unused for "#id").
        relation_score: (candidate, reference) -> mean relation relevancy of the predicate.
    """
    config = config or ReferringConfig()
    nodes = sorted(set(nodes))
    subject = {n: (float(subject_score(n)) if query.subject else 1.0) for n in nodes}
    if not query.is_referring:
        ranked = [ScoredInstance(n, subject[n], subject[n], 0.0, None, True) for n in nodes]
        return ReferringAnswer(query, sorted(ranked, key=lambda s: (-s.combined, s.node)))
    references = _references(query, nodes, reference_score, config)
    best_subject = max(subject.values(), default=0.0)
    shortlist = set(sorted(nodes, key=lambda n: (-subject[n], n))[: config.max_candidates])
    ranked = []
    for node in nodes:
        partners = [ref for ref in references if ref != node]
        weak = best_subject <= 0 or subject[node] < config.subject_share * best_subject
        if not partners or weak or node not in shortlist:
            ranked.append(ScoredInstance(node, 0.0, subject[node], 0.0, None, False))
            continue
        relation, via = max(((float(relation_score(node, ref)), ref) for ref in partners), key=lambda r: r[0])
        ranked.append(ScoredInstance(node, subject[node] * relation, subject[node], relation, via, True))
    ranked.sort(key=lambda s: (not s.candidate, -s.combined, -s.subject, s.node))
    return ReferringAnswer(query, ranked, references)


def _references(
    query: ReferringQuery, nodes: list[int], reference_score: Callable[[int], float], config: ReferringConfig
) -> list[int]:
    node = query.reference_node
    if node is not None:
        if node not in nodes:
            raise UserError(f"no object #{node}; ids are {nodes}")
        return [node]
    if not nodes:
        raise UserError("the scene has no objects to refer to")
    scores = {n: float(reference_score(n)) for n in nodes}
    best = max(scores.values())
    close = sorted((n for n in nodes if scores[n] >= config.reference_share * best), key=lambda n: (-scores[n], n))
    return sorted(close[: config.max_references])


def scores_table(answer: ReferringAnswer, labels: Mapping[int, str] | None = None, top: int = 5) -> list[str]:
    """Printable lines of the ``top`` ranked instances (label #id, combined, subject and relation scores)."""
    labels = labels or {}
    lines = []
    for item in answer.ranked[:top]:
        name = f"{labels.get(item.node, 'object')} #{item.node}"
        if answer.query.is_referring:
            via = f" (to #{item.reference})" if item.reference is not None else ""
            lines.append(f"{item.combined:.3f}  {name}  subject {item.subject:.3f}  relation {item.relation:.3f}{via}")
        else:
            lines.append(f"{item.combined:.3f}  {name}")
    return lines
