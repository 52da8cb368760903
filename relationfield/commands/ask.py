"""``relationfield ask``: a free-form question about a run's exported scene graph, answered by a chat model."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

from relationfield.ask import (
    DEFAULT_MAX_LINKS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_SCORE,
    DEFAULT_MODEL,
    AskAnswer,
    ClientOptions,
    GraphPrompt,
    PromptOptions,
)
from relationfield.errors import UserError
from relationfield.preprocess.vision_client import MaxTokensField
from relationfield.scene_graph import SceneGraph

if TYPE_CHECKING:
    from relationfield.graph_cache import GraphFiles


@dataclass
class Ask:
    """Ask a chat model (GPT-4o or any OpenAI-compatible server) a free-form question about a run's exported
    scene graph ("what is on the desk?"). Prints the answer and the objects it names. Reads the export only
    (run `relationfield export scene-graph` first); the key comes from OPENAI_API_KEY, as for `relations`."""

    question: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="QUESTION")]
    """The question, in plain words."""
    load_config: Path | None = None
    """config.yml of the run whose export (at its current checkpoint) is asked about."""
    graph: Path | None = None
    """Folder of an export to ask about (scene_graph.json + points.ply) instead of the run's."""
    model: str = DEFAULT_MODEL
    """Model name, as the server knows it (e.g. gpt-4o, gpt-4o-mini, Qwen/Qwen2.5-7B-Instruct)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for vLLM (default: OPENAI_BASE_URL, else OpenAI)."""
    min_score: float = DEFAULT_MIN_SCORE
    """Links whose best predicate (other than "none") scores at most this are left out of the prompt."""
    max_links: int = DEFAULT_MAX_LINKS
    """The most links put into the prompt, strongest first."""
    json: bool = False
    """Print the answer as JSON: answer, node_ids, referring, dropped_ids, usage."""
    dry_run: bool = False
    """Print the messages and an estimate of their tokens; send nothing."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens allowed per reply; a reply cut off there is asked once more with twice as many."""
    max_tokens_field: MaxTokensField = "max_tokens"
    """Request field of --max-tokens: max_tokens (gpt-4o, vLLM, Ollama) or max_completion_tokens (o1, o3, gpt-5)."""
    temperature: float | None = 0.0
    """Sampling temperature (None: leave it to the server)."""
    seed: int | None = 0
    """Sampling seed sent with the request (None: not sent)."""
    retries: int = 3
    """Failed requests allowed beyond the first (server errors, timeouts; a malformed answer gets one correction)."""
    timeout: float = 60.0
    """Seconds to wait for one reply."""
    check_referring: bool = False
    """Load the run (--load-config) and check each referring expression of the answer against the field:
    the instance a referring query picks must be among the answer's objects (a warning otherwise)."""

    def main(self) -> None:
        from relationfield.ask import ask_scene_graph, graph_prompt

        scene = self._scene()
        graph = scene.graph
        options = PromptOptions(self.min_score, self.max_links)
        if self.dry_run:
            self._print_dry_run(graph_prompt(graph, self.question, options))
            return
        check = self._referring_check(scene) if self.check_referring else None
        answer = ask_scene_graph(graph, self.question, self._client_options(), options, check_referring=check)
        for phrase, picked in answer.referring_checks.items():
            if picked not in answer.node_ids:
                answer.warnings.append(f"the field answers {phrase!r} with #{picked}, not among the answer's objects")
        for line in answer.warnings:
            print(f"warning: {line}", file=sys.stderr)
        if self.json:
            print(json.dumps(answer.to_json(), indent=2))
        else:
            print("\n".join(answer_lines(answer, graph)))

    def _client_options(self) -> ClientOptions:
        return ClientOptions(
            model=self.model,
            base_url=self.base_url,
            timeout=self.timeout,
            retries=self.retries,
            max_tokens=self.max_tokens,
            max_tokens_field=self.max_tokens_field,
            temperature=self.temperature,
            seed=self.seed,
        )

    def _referring_check(self, scene: GraphFiles):
        """A check of referring expressions against the loaded run: the node id its referring query picks."""

        from relationfield.query import FieldQuery, answer_referring
        from relationfield.referring import parse_referring
        from relationfield.vocab import predicate_vocab

        if self.load_config is None:
            raise UserError("--check-referring needs --load-config (the run to check the answer against)")
        query = FieldQuery.load(self.load_config)
        objects = scene.instances(query)
        predicates = [*predicate_vocab(), *query.relation_texts()]

        def check(phrase: str) -> int | None:
            best = answer_referring(query, objects, parse_referring(phrase, predicates)).best
            return None if best is None else best.node

        return check

    def _scene(self) -> GraphFiles:
        """The export: --graph, else the run's export (never segmented here)."""
        from relationfield.graph_cache import find_graph

        if self.load_config is None and self.graph is None:
            raise UserError("pass --load-config RUN/config.yml or --graph DIR (a scene-graph export)")
        if self.graph is None and not Path(self.load_config).is_file():
            raise UserError(f"{self.load_config} does not exist (pass the run's config.yml to --load-config)")
        # With --graph the run is not looked at, so its path only needs to be a path.
        found = find_graph(self.load_config or self.graph, self.graph)
        if found is None:
            raise UserError(
                f"no scene graph of {self.load_config} at its current checkpoint: run `relationfield export "
                f"scene-graph --load-config {self.load_config} --output-dir DIR` first (or pass --graph DIR)"
            )
        if not found.graph.links:
            print(
                f"warning: the scene graph in {found.directory} has no links; questions about relations need "
                "`relationfield export scene-graph`",
                file=sys.stderr,
            )
        return found

    def _print_dry_run(self, prompt: GraphPrompt) -> None:
        if self.json:
            print(json.dumps({"messages": prompt.messages, "prompt_tokens": prompt.tokens}, indent=2))
            return
        for message in prompt.messages:
            print(f"[{message['role']}]\n{message['content']}\n")
        print(
            f"Dry run: nothing was sent to {self.model}. {prompt.nodes} nodes and {prompt.links} of "
            f"{prompt.strong_links} links above {self.min_score}; about {prompt.tokens} input tokens "
            f"(four characters per token), at most {self.max_tokens} output tokens."
        )


def answer_lines(answer: AskAnswer, graph: SceneGraph) -> list[str]:
    """The answer as printed: the sentence, the objects it names, the referring expressions it used."""
    lines = [answer.answer]
    for node_id in answer.node_ids:
        node = graph.node(node_id)
        x, y, z = node.centroid
        lines.append(f"  {node.label} #{node.id} at ({x:.2f}, {y:.2f}, {z:.2f})")
    if answer.referring:
        lines.append("  referring: " + "; ".join(answer.referring))
    return lines
