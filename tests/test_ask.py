"""``relationfield ask`` against a fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py).

Covered: the compact prompt (nodes rounded to cm, links above --min-score strongest first, --max-links);
a good answer (sentence and nodes printed, --json); a malformed answer corrected once; malformed twice
(a clear error, non-zero exit); node ids the graph lacks (dropped with a warning); --dry-run (nothing
sent, no key needed); no export of the run (a clear error) and the run's recorded export; the
json_schema fallback; a rejected key (never echoed); the check_referring hook; reply validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_openai import FakeOpenAI, chat_reply, error_reply

from relationfield.ask import ClientOptions, PromptOptions, ask_scene_graph, graph_prompt, parse_reply
from relationfield.ask.reply import ANSWER_SCHEMA, GraphReply
from relationfield.cli import entrypoint
from relationfield.errors import UserError
from relationfield.graph_cache import record_export
from relationfield.preprocess.answer import ValidationError
from relationfield.scene_graph import SceneGraph, SceneLink, SceneNode, write_scene_graph

SECRET = "sk-test-SECRET-must-not-leak-0123456789"
QUESTION = "what stands on the desk?"


def node(node_id: int, label: str, centroid: tuple, half: float) -> SceneNode:
    lo = tuple(c - half for c in centroid)
    hi = tuple(c + half for c in centroid)
    return SceneNode(node_id, label, [(label, 0.75), ("other", 0.125)], centroid, lo, hi, 10)


def link(source: int, target: int, predicate: str, score: float, none: float = 0.05) -> SceneLink:
    return SceneLink(source, target, predicate, score, [(predicate, score), ("none", none)])


def desk_graph() -> SceneGraph:
    """A desk with a mug on it, a chair by it, a lamp weakly on it, and a pair that "none" wins."""
    nodes = [
        node(1, "desk", (1.0, 2.0, 0.375), 0.375),
        node(2, "mug", (1.1, 2.05, 0.801), 0.05),
        node(3, "chair", (0.3, 2.0, 0.45), 0.3),
        node(4, "lamp", (1.3, 2.2, 0.95), 0.1),
    ]
    links = [
        link(2, 1, "standing on", 0.9),
        link(3, 1, "close by", 0.6),
        link(4, 1, "standing on", 0.3),
        link(3, 2, "close by", 0.55, none=0.8),
    ]
    return SceneGraph(nodes=nodes, links=links)


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory) -> Path:
    """An export of :func:`desk_graph` (scene_graph.json and points.ply with node ids)."""
    graph = desk_graph()
    points = np.array([n.centroid for n in graph.nodes for _ in range(5)], dtype=np.float32)
    point_node = np.repeat([n.id for n in graph.nodes], 5)
    directory = tmp_path_factory.mktemp("export")
    write_scene_graph(graph, directory, points, point_node)
    return directory


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def answer(text: str, node_ids: list[Any], referring: list[str] = ()) -> Any:
    return chat_reply(json.dumps({"answer": text, "node_ids": node_ids, "referring": list(referring)}))


def ask_cli(graph_dir: Path, server: FakeOpenAI, *flags: str) -> None:
    entrypoint(["ask", "--graph", str(graph_dir), "--base-url", server.url, "--timeout", "5", *flags, QUESTION])


def options(server: FakeOpenAI, **overrides: Any) -> ClientOptions:
    return ClientOptions(**{"base_url": server.url, "timeout": 5.0, "backoff": 0.001, "max_backoff": 0.01, **overrides})


# ------------------------------------------------------------------------------------------- prompt


def test_prompt_lists_nodes_and_the_strong_links_strongest_first():
    prompt = graph_prompt(desk_graph(), QUESTION)
    system, user = (m["content"] for m in prompt.messages)
    assert '"node_ids"' in system and '"referring"' in system and "JSON" in system
    assert "#2 mug at (1.10, 2.05, 0.80) size 0.10 x 0.10 x 0.10" in user
    links = [line for line in user.splitlines() if "#" in line and line[0] != "#"]
    # the lamp's 0.3 is left out; "none" winning does not hide a predicate above the threshold
    assert links == [
        "mug#2 standing on desk#1 (0.90)",
        "chair#3 close by desk#1 (0.60)",
        "chair#3 close by mug#2 (0.55)",
    ]
    assert user.endswith(f"Question: {QUESTION}")
    assert (prompt.nodes, prompt.links, prompt.strong_links) == (4, 3, 3) and prompt.tokens > 100

    capped = graph_prompt(desk_graph(), QUESTION, PromptOptions(min_score=0.2, max_links=1))
    assert (capped.links, capped.strong_links) == (1, 4)
    assert "Links (1, 3 weaker ones left out):\nmug#2 standing on desk#1 (0.90)\n" in capped.messages[1]["content"]
    with pytest.raises(UserError, match="question is empty"):
        graph_prompt(desk_graph(), "  ")


def test_reply_validation():
    assert parse_reply('```json\n{"answer": " a  mug ", "node_ids": [2, "3", "#4"]}\n```') == GraphReply(
        answer="a mug", node_ids=[2, 3, 4], referring=[]
    )
    for text, reason in [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"answer": "x"}', "node_ids"),
        ('{"answer": "", "node_ids": []}', "answer is empty"),
        ('{"answer": "x", "node_ids": [true]}', "not a node id"),
        ('{"answer": "x", "node_ids": [2.0]}', "not a node id"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            parse_reply(text)
    assert set(ANSWER_SCHEMA["properties"]) == set(GraphReply.model_fields) == set(ANSWER_SCHEMA["required"])


# ------------------------------------------------------------------------------------------- answers


def test_good_answer_prints_the_sentence_and_the_nodes(graph_dir, server, capsys):
    server.push(answer("The mug stands on the desk.", [2, 1], ["mug standing on desk"]))
    ask_cli(graph_dir, server)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "The mug stands on the desk.",
        "  mug #2 at (1.10, 2.05, 0.80)",
        "  desk #1 at (1.00, 2.00, 0.38)",
        "  referring: mug standing on desk",
    ]
    (request,) = server.chat_requests
    assert request.schema() == ANSWER_SCHEMA and request.response_format["json_schema"]["strict"] is True
    assert QUESTION in request.prompt_text() and "mug#2 standing on desk#1" in request.prompt_text()
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["authorization"] == f"Bearer {SECRET}"  # the key is sent, never printed
    assert SECRET not in out + err and err == ""


def test_json_output(graph_dir, server, capsys):
    server.push(answer("The mug.", [2], []))
    ask_cli(graph_dir, server, "--json")
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "answer": "The mug.",
        "node_ids": [2],
        "referring": [],
        "dropped_ids": [],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
    }


def test_malformed_answer_is_corrected_once(graph_dir, server):
    server.push(chat_reply("The mug, I think."), answer("The mug stands on the desk.", [2]))
    result = ask_scene_graph(desk_graph(), QUESTION, options(server))
    assert (result.answer, result.node_ids, result.attempts) == ("The mug stands on the desk.", [2], 2)
    assert result.usage.prompt_tokens == 200
    first, second = server.chat_requests
    assert second.messages()[:2] == first.messages()
    assert second.messages()[2] == {"role": "assistant", "content": "The mug, I think."}
    assert "not valid JSON" in second.messages()[3]["content"]


def test_malformed_answer_twice_is_a_clear_error(graph_dir, server, capsys):
    server.push(chat_reply("The mug, I think."), chat_reply('{"answer": "The mug."}'))
    with pytest.raises(SystemExit) as exit_info:
        ask_cli(graph_dir, server)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "malformed twice" in err and "node_ids" in err and len(server.chat_requests) == 2


def test_unknown_node_ids_are_dropped_with_a_warning(graph_dir, server, capsys):
    server.push(answer("The mug and the kettle.", [2, 7, 2, 9]))
    ask_cli(graph_dir, server, "--json")
    out, err = capsys.readouterr()
    assert json.loads(out)["node_ids"] == [2] and json.loads(out)["dropped_ids"] == [7, 9]
    assert "warning:" in err and "#7, #9" in err and "none of the node ids" not in err

    server.push(answer("The kettle.", [7]))
    result = ask_scene_graph(desk_graph(), QUESTION, options(server))
    assert result.node_ids == [] and result.dropped_ids == [7]
    assert any("none of the node ids the model named is in the graph" in w for w in result.warnings)


def test_dry_run_sends_nothing_and_needs_no_key(graph_dir, server, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    entrypoint(["ask", "--graph", str(graph_dir), "--base-url", "https://api.example.com/v1", "--dry-run", QUESTION])
    out = capsys.readouterr().out
    assert "[system]" in out and "[user]" in out and "mug#2 standing on desk#1 (0.90)" in out
    assert "Dry run: nothing was sent" in out and "input tokens" in out
    ask_cli(graph_dir, server, "--dry-run", "--json")
    dry = json.loads(capsys.readouterr().out)
    assert [m["role"] for m in dry["messages"]] == ["system", "user"] and dry["prompt_tokens"] > 100
    assert server.requests == []


# ------------------------------------------------------------------------------------------- graph and server


def test_run_without_an_export_is_a_clear_error(tmp_path, graph_dir, server, capsys):
    config = tmp_path / "run" / "config.yml"
    config.parent.mkdir()
    config.write_text("{}\n")
    with pytest.raises(UserError, match=r"run `relationfield export scene-graph --load-config .*config.yml"):
        from relationfield.commands.ask import Ask

        Ask(QUESTION, load_config=config, base_url=server.url).main()
    with pytest.raises(SystemExit):
        entrypoint(["ask", QUESTION])
    assert "--load-config" in capsys.readouterr().err
    assert server.requests == []

    record_export(config, graph_dir)  # as `relationfield export scene-graph` does
    server.push(answer("The mug.", [2]))
    entrypoint(["ask", "--load-config", str(config), "--base-url", server.url, QUESTION])
    assert capsys.readouterr().out.startswith("The mug.\n  mug #2")


def test_json_schema_rejection_falls_back(server):
    server.push(error_reply(400, "response_format json_schema is not supported"), answer("The mug.", [2]))
    result = ask_scene_graph(desk_graph(), QUESTION, options(server))
    assert result.response_mode == "json_object" and result.node_ids == [2]
    assert [r.response_format["type"] for r in server.chat_requests] == ["json_schema", "json_object"]


def test_rejected_key_is_never_echoed(graph_dir, server, capsys):
    server.push(error_reply(401, f"Incorrect API key provided: {SECRET}"))
    with pytest.raises(SystemExit):
        ask_cli(graph_dir, server)
    out, err = capsys.readouterr()
    assert "OPENAI_API_KEY" in err and SECRET not in out + err


def test_check_referring_hook_sees_each_expression(server):
    server.push(answer("The mug.", [2], ["mug standing on desk", "cup on table"]))

    def check(phrase: str) -> str:
        if phrase == "cup on table":
            raise UserError("no cup here")
        return f"checked {phrase}"

    result = ask_scene_graph(desk_graph(), QUESTION, options(server), check_referring=check)
    assert result.referring_checks == {"mug standing on desk": "checked mug standing on desk"}
    assert any("'cup on table' could not be checked: no cup here" in w for w in result.warnings)
