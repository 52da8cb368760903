"""The ``relations`` stage against a fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py).

Failure modes covered: malformed / fenced / non-object JSON, missing keys, non-integer tags ("3a",
3.0, true, "#1"), unknown tags, self-relations, empty or non-list predicates, empty names, a tag named
twice, a reply naming nothing (each recorded as the frame's reason once the retry budget is spent,
and asked again by the next run); 429 with Retry-After, 500s until the budget is spent, a slow reply
past the client timeout, a dead server (connection errors), a 400 rejecting json_schema and then
json_object (fallback to the plain prompt, remembered for later frames), another 400 (no retry), a 401
echoing the key (run stops, key not repeated); a run interrupted by Ctrl-C and a server failing
part-way (the next run asks only the rest); --redo by stem or name, an unknown --redo, a failed redo
(the previous answer is kept); changed masks and a changed image (stale masks); a frame without
masks; dry runs (nothing sent, no key needed, token and cost figures); unknown model prices; a missing
key; a local server without a key; no masks at all; the API key never written to the workspace.
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_openai import (
    FakeOpenAI,
    Reply,
    answer_json,
    chat_reply,
    cut_off_reply,
    echo_responder,
    error_reply,
    request_image,
    tags_from_prompt,
)
from PIL import Image

from relationfield.errors import UserError
from relationfield.labels.format import file_sha256, save_npz_atomic
from relationfield.preprocess import relation_requests
from relationfield.preprocess.answer import ValidationError, parse_answer, response_format
from relationfield.preprocess.connection import DUMMY_API_KEY, make_openai_client, resolve_connection
from relationfield.preprocess.cost import Usage, estimate_cost, image_tokens, model_prices
from relationfield.preprocess.overlay import FILL_ALPHA, draw_set_of_mark, interior_points, mask_color, overlay_size
from relationfield.preprocess.prompt import SYSTEM_MESSAGE, VIEWPOINT_PREDICATES, fill_prompt, load_prompt
from relationfield.preprocess.relation_jobs import dropped_lines
from relationfield.preprocess.relation_summary import summary_text
from relationfield.preprocess.relations import RelationsConfig, RelationsFailed, run_relations
from relationfield.preprocess.retries import RetryPolicy, retry_after_seconds
from relationfield.preprocess.vision_client import VisionClient
from relationfield.preprocess.workspace import masks_path, relations_path
from relationfield.vocab import predicate_vocab

SECRET = "sk-test-SECRET-must-not-leak-0123456789"
NUM_FRAMES = 4
CONTRACT_KEYS = {"name", "image_hash", "status", "reason", "model", "attempts", "usage", "objects", "relations", "raw"}


# ------------------------------------------------------------------------------------------ fixtures


def write_masks(capture: Path, workspace: Path) -> list[str]:
    """masks/<stem>.npz (per the workspace contract) from the capture's ground-truth instance maps."""
    frames = json.loads((capture / "transforms.json").read_text())["frames"]
    names = []
    for frame in frames:
        name = frame["file_path"]
        stem = Path(name).stem
        instances = np.asarray(Image.open(capture / "ground_truth" / "instances" / f"{stem}.png"))
        ids = [int(v) for v in np.unique(instances) if v]
        segments = np.zeros(instances.shape, dtype=np.uint8)
        for k, object_id in enumerate(ids, start=1):
            segments[instances == object_id] = k
        save_npz_atomic(
            masks_path(workspace, name),
            {
                "name": np.array(name),
                "image_hash": np.array(file_sha256(capture / name)),
                "segments": segments,
                "scores": np.ones(len(ids), dtype=np.float32),
            },
        )
        names.append(name)
    return names


@pytest.fixture(scope="module")
def base_capture(tmp_path_factory) -> Path:
    """A 4-frame 64x48 synthetic capture with masks in its default workspace (made once)."""
    from relationfield.synth import generate_capture

    capture = tmp_path_factory.mktemp("relations") / "cap"
    generate_capture(capture, seed=0, num_frames=NUM_FRAMES, resolution=(64, 48), progress=False)
    write_masks(capture, capture / "relationfield_work")
    return capture


@pytest.fixture
def capture(base_capture, tmp_path) -> Path:
    """A private copy of the capture (tests write into its workspace)."""
    return Path(shutil.copytree(base_capture, tmp_path / "cap"))


@pytest.fixture
def server():
    """A fake server answering every frame validly (tests may queue other replies first)."""
    with FakeOpenAI(responder=echo_responder) as fake:
        yield fake


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    """The secret key in the environment (tests that need none delete it)."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def config(capture: Path, url: str, **options: Any) -> RelationsConfig:
    """Fast settings: tiny backoff, short timeout."""
    defaults: dict[str, Any] = dict(base_url=url, backoff=0.001, max_backoff=0.01, timeout=5.0, concurrency=2)
    defaults.update(options)
    return RelationsConfig(data=capture, **defaults)


def record(capture: Path, name: str) -> dict[str, Any]:
    """The relations JSON of ``name``."""
    return json.loads(relations_path(capture / "relationfield_work", name).read_text())


def names_of(capture: Path) -> list[str]:
    """The capture's image names, in order."""
    return [f["file_path"] for f in json.loads((capture / "transforms.json").read_text())["frames"]]


def run_failing(cfg: RelationsConfig) -> dict[str, Any]:
    """Run a stage in which no frame gets an answer; the summary the failure carries."""
    with pytest.raises(RelationsFailed) as error:
        run_relations(cfg, progress=False)
    assert summary_text(error.value.summary) in str(error.value)
    return error.value.summary


def tags_of(capture: Path, name: str) -> list[int]:
    """The mask ids present in a frame's masks file."""
    with np.load(masks_path(capture / "relationfield_work", name)) as data:
        return [int(v) for v in np.unique(data["segments"]) if v]


# ------------------------------------------------------------------------------------------- overlay


def test_overlay_numbers_each_mask_at_its_interior_point():
    image = np.full((40, 60, 3), 128, np.uint8)
    segments = np.zeros((40, 60), np.uint8)
    yy, xx = np.mgrid[:40, :60]
    radius = np.hypot(yy - 20, xx - 20)
    segments[(radius >= 8) & (radius < 16)] = 1  # a ring: its centre is a hole
    segments[5:35, 45:55] = 2
    points = interior_points(segments)
    assert set(points) == {1, 2}
    assert segments[points[1]] == 1 and segments[points[2]] == 2  # inside the ring, not in the hole
    overlay = draw_set_of_mark(image, segments)
    assert overlay.size == overlay_size(60, 40) == (540, 360)  # upscaled by a whole factor (512 / 60 -> 9)
    pixels = np.asarray(overlay)
    row, col = points[2]
    mark = pixels[row * 9 + 4 - 12 : row * 9 + 4 + 12, col * 9 + 4 - 12 : col * 9 + 4 + 12].reshape(-1, 3)
    assert (np.abs(mark.astype(int) - mask_color(2)).sum(axis=1) < 10).any()  # the mark box in mask 2's colour
    assert tuple(pixels[0, 0]) == (128, 128, 128)  # no mask: untouched
    with pytest.raises(ValueError):
        draw_set_of_mark(image, segments[:-1])


def test_overlay_of_a_large_image_is_shrunk_and_keeps_every_mark():
    image = np.zeros((300, 600, 3), np.uint8)
    segments = np.zeros((300, 600), np.uint16)
    segments[20:180, 20:300] = 1
    segments[200:201, 400:401] = 300  # one pixel: vanishes when shrunk, its mark must not
    overlay = np.asarray(draw_set_of_mark(image, segments, max_long_side=256))
    assert overlay.shape == (128, 256, 3) and overlay_size(600, 300, max_long_side=256) == (256, 128)
    near = overlay[200 * 128 // 300 - 10 : 200 * 128 // 300 + 10, 400 * 256 // 600 - 15 : 400 * 256 // 600 + 15]
    assert (np.abs(near.reshape(-1, 3).astype(int) - mask_color(300)).sum(axis=1) < 10).any()


def test_overlay_tints_lightly_and_outlines_opaquely():
    red = np.array([200, 40, 40])
    image = np.zeros((48, 64, 3), np.uint8) + red.astype(np.uint8)
    segments = np.zeros((48, 64), np.uint8)
    segments[8:40, 8:56] = 1
    overlay = np.asarray(draw_set_of_mark(image, segments, min_long_side=64, font_size=12)).astype(int)
    color = np.array(mask_color(1))
    inside = overlay[12, 12]  # in the mask, away from its outline and its mark
    assert np.abs(inside - ((1 - FILL_ALPHA) * red + FILL_ALPHA * color)).max() <= 1
    assert np.abs(inside - red).max() <= 0.15 * 255 + 1  # the object's own colour shows through
    assert (overlay[8, 8:56] == color).all() and (overlay[9, 8:56] == color).all()  # a 2-px opaque outline
    assert (overlay[0, 0] == red).all()


# ---------------------------------------------------------------------------------------- validation


def test_parse_answer_accepts_valid_replies():
    text = (
        '```json\n{"objects": [{"tag": 1, "name": " Sofa "}, {"tag": "2", "name": "floor"}],'
        ' "relations": [{"subject": 1, "object": "2", "predicates": ["Standing on", "standing on"]},'
        ' {"subject": 1, "object": 2, "predicates": ["lying on"]}]}\n```'
    )
    answer = parse_answer(text, [1, 2, 3])
    assert answer.objects_json() == {"1": "Sofa", "2": "floor"}
    assert answer.relations_json() == [{"subject": 1, "object": 2, "predicates": ["standing on", "lying on"]}]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ('{"objects": [', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"relations": []}', 'no "objects"'),
        ('{"objects": [{"name": "a"}], "relations": []}', 'has no "tag"'),
        ('{"objects": [7], "relations": []}', "objects[0] must be an object, got 7"),
        (answer_json({"3a": "sofa"}), '"3a", not an integer tag'),
        (answer_json({3.0: "sofa"}), "3.0, not an integer tag"),
        (answer_json({True: "sofa"}), "true, not an integer tag"),
        (answer_json({"#1": "sofa"}), "not an integer tag"),
        (answer_json({9: "sofa"}), "tag 9, which is not in the image"),
        (answer_json({}, [(1, 9, ["on"])]), "relations[0].object is tag 9"),
        (answer_json({}, [(2, 2, ["on"])]), "relates tag 2 to itself"),
        (answer_json({}, [(1, 2, [])]), "predicates is empty"),
        (answer_json({}, [(1, 2, [" "])]), "predicates[0] must be a non-empty string"),
        (
            '{"objects": [], "relations": [{"subject": 1, "object": 2, "predicates": "on"}]}',
            "must be a list of strings",
        ),
        (
            answer_json(
                {9: "x"},
                [(1, 2, ["in front of"])],
            ),
            "tag 9",
        ),
        (answer_json({}), "names none"),
    ],
)
def test_parse_answer_rejects_a_reply_with_nothing_valid(text, reason):
    with pytest.raises(ValidationError) as error:
        parse_answer(text, [1, 2, 3], excluded_predicates={"in front of"})
    assert reason in error.value.reason


@pytest.mark.parametrize(
    "text, objects, relations, dropped",
    [
        ('{"objects": [{"tag": 1, "name": "a"}]}', {"1": "a"}, [], ['the reply has no "relations" list']),
        (
            '{"objects": [{"tag": 1, "name": "a"}, {"tag": 1, "name": "b"}, {"tag": 1, "name": "A"}], "relations": []}',
            {"1": "a"},
            [],
            ["objects[1] names tag 1 again ('b'; kept 'a')"],
        ),
        (
            answer_json({1: "a", 9: "ghost", "x": "y"}, [(1, 9, ["on"]), (2, 2, ["on"]), (1, 2, ["on"])]),
            {"1": "a"},
            [{"subject": 1, "object": 2, "predicates": ["on"]}],
            [
                "objects[1].tag is tag 9, which is not in the image (tags: 1, 2, 3)",
                'objects[2].tag is "x", not an integer tag',
                "relations[0].object is tag 9, which is not in the image (tags: 1, 2, 3)",
                "relations[1] relates tag 2 to itself",
            ],
        ),
        (
            answer_json({1: "a"}, [(1, 2, ["In front of", " ", "close  by"]), (2, 1, ["behind"])]),
            {"1": "a"},
            [{"subject": 1, "object": 2, "predicates": ["close by"]}],
            [
                "relations[0].predicates[0] is 'in front of', which this run excludes",
                'relations[0].predicates[1] must be a non-empty string, got " "',
                "relations[1].predicates[0] is 'behind', which this run excludes",
                "relations[1] has no valid predicate left",
            ],
        ),
        (
            '{"objects": [{"tag": 2, "name": "b"}], "relations": ["oops", {"subject": 1, "predicates": ["on"]}]}',
            {"2": "b"},
            [],
            ['relations[0] must be an object, got "oops"', 'relations[1] has no "object"'],
        ),
    ],
)
def test_parse_answer_drops_bad_entries_and_keeps_the_rest(text, objects, relations, dropped):
    answer = parse_answer(text, [1, 2, 3], excluded_predicates={"in front of", "behind"})
    assert answer.objects_json() == objects
    assert answer.relations_json() == relations
    assert list(answer.dropped) == dropped


def test_parse_answer_keeps_viewpoint_predicates_unless_excluded():
    text = answer_json({1: "a", 2: "b"}, [(1, 2, ["in front of", "close by"])])
    assert parse_answer(text, [1, 2]).relations[0].predicates == ("in front of", "close by")
    assert parse_answer(text, [1, 2], {"in front of"}).relations[0].predicates == ("close by",)


def test_response_schema_limits_the_tags_to_the_frame():
    schema = response_format("json_schema", [3, 1, 2, 3])["json_schema"]["schema"]
    objects = schema["properties"]["objects"]["items"]["properties"]
    relations = schema["properties"]["relations"]["items"]["properties"]
    for tag in (objects["tag"], relations["subject"], relations["object"]):
        assert tag == {"type": "integer", "enum": [1, 2, 3]}
    plain = response_format("json_schema")["json_schema"]["schema"]
    assert plain["properties"]["objects"]["items"]["properties"]["tag"] == {"type": "integer"}
    assert response_format("json_object", [1]) == {"type": "json_object"} and response_format("plain", [1]) is None


# -------------------------------------------------------------------------------------------- prompt


def test_prompt_lists_the_3dssg_predicates_without_viewpoint_ones_unless_asked():
    default, viewpoint = load_prompt(None), load_prompt(None, viewpoint=True)
    predicates = predicate_vocab()
    assert len(predicates) == 26 and set(VIEWPOINT_PREDICATES) == {"left", "right", "front", "behind"}
    for text in (default, viewpoint):
        assert "{predicates}" not in text and '"none"' not in text
        assert all(f'"{p}"' in text for p in predicates if p not in ("left", "right", "front", "behind"))
    for predicate in ("left", "right", "front", "behind", "in front of", "left of", "right of"):
        assert f'"{predicate}"' not in default
    assert all(f'"{p}"' in viewpoint for p in ("left", "right", "front", "behind"))


def test_custom_prompt_without_placeholders_is_used_as_written(tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("Name the objects and relate them with any predicate.\n")
    template = load_prompt(path, viewpoint=True)
    assert template == "Name the objects and relate them with any predicate."
    assert fill_prompt(template, [1, 2]) == f"{template}\n\nThe tags in this image are: 1, 2."


# ------------------------------------------------------------------------------------ tokens and cost


def test_image_tokens_follow_openai_tiling():
    assert image_tokens(512, 384, "high") == 85 + 170 * 1  # what a 256x192 capture is sent as
    assert image_tokens(1920, 1080, "high") == 85 + 170 * 6  # -> 1365x768: 3 x 2 tiles
    assert image_tokens(1024, 1024, "high") == 765  # OpenAI's worked example
    assert image_tokens(4096, 8192, "high") == 85 + 170 * 6  # -> 1024x2048 -> 768x1536: 2 x 3 tiles
    assert image_tokens(1920, 1080, "low") == 85
    assert image_tokens(512, 384, "high", "gpt-4o-mini-2024-07-18") == 2833 + 5667  # mini counts more tokens


def test_prices_and_cost():
    usage = Usage(prompt_tokens=4000, completion_tokens=800)
    assert estimate_cost(usage, model_prices("gpt-4o")) == pytest.approx(0.018)
    assert model_prices("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert model_prices("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert model_prices("Qwen/Qwen2-VL-7B-Instruct") is None
    assert model_prices("Qwen/Qwen2-VL-7B-Instruct", 0.0, 0.0) == (0.0, 0.0)
    assert model_prices("gpt-4o", price_input=5.0) == (5.0, 10.0)


def test_retry_after_headers():
    assert retry_after_seconds({"retry-after": "0"}) == 0.0
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a past date
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds(None) is None
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert policy.delay(1, retry_after=30.0) == 5.0
    assert 0.5 <= policy.delay(1) <= 1.5 and 2.0 <= policy.delay(3) <= 5.0


def test_credentials_come_from_the_environment_only():
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        resolve_connection(None, {})
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        resolve_connection("https://api.example.com/v1", {})
    assert resolve_connection("http://localhost:8000/v1", {}) == ("http://localhost:8000/v1", DUMMY_API_KEY)
    assert resolve_connection(None, {"OPENAI_BASE_URL": "http://192.168.1.5:11434/v1"})[1] == DUMMY_API_KEY
    assert resolve_connection(None, {"OPENAI_API_KEY": "k"}) == ("https://api.openai.com/v1", "k")
    with pytest.raises(UserError, match="http"):
        resolve_connection("localhost:8000", {})


# ------------------------------------------------------------------------------- the client's retries


def test_backoff_honours_retry_after_and_counts_attempts():
    with FakeOpenAI() as fake:
        fake.push(
            error_reply(429, "slow down", {"Retry-After": "0"}),
            error_reply(500, "boom"),
            chat_reply(answer_json({1: "sofa", 2: "floor"}, [(1, 2, ["standing on"])])),
        )
        sleeps: list[float] = []
        client = VisionClient(
            make_openai_client(fake.url, SECRET, 5.0),
            "gpt-4o",
            policy=RetryPolicy(retries=3, base_delay=10.0, max_delay=60.0),
            sleep=sleeps.append,
        )
        result = client.ask("The tags in this image are: 1, 2.", "data:image/png;base64,AA==", [1, 2])
    assert result.status == "ok" and result.attempts == 3 and len(fake.chat_requests) == 3
    assert sleeps[0] == 0.0  # Retry-After: 0 honoured
    assert 10.0 <= sleeps[1] <= 30.0  # second failure: 10 * 2 with +-50 % jitter
    assert result.raw[:2] == ["HTTP 429: slow down", "HTTP 500: boom"]


def test_slow_reply_times_out_and_is_retried():
    with FakeOpenAI() as fake:
        fake.push(chat_reply(answer_json({1: "late"}), delay=3.0), chat_reply(answer_json({1: "sofa"})))
        client = VisionClient(
            make_openai_client(fake.url, SECRET, 1.0),
            "gpt-4o",
            policy=RetryPolicy(retries=1, base_delay=0.0),
            sleep=lambda _s: None,
        )
        result = client.ask("The tags in this image are: 1.", "data:image/png;base64,AA==", [1])
    assert result.status == "ok" and result.attempts == 2 and result.answer.objects == {1: "sofa"}
    assert result.raw[0] == "the request timed out"


def test_reply_at_the_token_limit_is_kept_when_complete_and_asked_again_when_not():
    with FakeOpenAI() as fake:
        fake.push(
            chat_reply(answer_json({1: "sofa"}) + "\n" * 40, finish_reason="length"),  # complete, then whitespace
            chat_reply(None, finish_reason="length"),  # a reasoning model spent the budget before answering
            chat_reply(answer_json({1: "chair"})),
        )
        client = VisionClient(make_openai_client(fake.url, SECRET, 5.0), "gpt-4o", sleep=lambda _s: None)
        kept = client.ask("The tags in this image are: 1.", "data:image/png;base64,AA==", [1])
        again = client.ask("The tags in this image are: 1.", "data:image/png;base64,AA==", [1])
    assert (kept.status, kept.attempts, kept.answer.objects) == ("ok", 1, {1: "sofa"})
    assert (again.status, again.attempts, again.answer.objects) == ("ok", 2, {1: "chair"})
    assert [r.max_tokens for r in fake.chat_requests] == [2048, 2048, 4096]


# -------------------------------------------------------------------------------------- whole stage


def test_run_writes_the_contract_and_never_the_key(capture, server):
    summary = run_relations(config(capture, server.url), progress=False)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (NUM_FRAMES, 0, {})
    assert summary["usage"] == {"prompt_tokens": 100 * NUM_FRAMES, "completion_tokens": 20 * NUM_FRAMES}
    assert summary["cost"] == pytest.approx((400 * 2.5 + 80 * 10.0) / 1e6)
    workspace = capture / "relationfield_work"
    for name in names_of(capture):
        data = record(capture, name)
        assert CONTRACT_KEYS <= set(data)
        tags = tags_of(capture, name)
        assert data["name"] == name and data["image_hash"] == file_sha256(capture / name)
        assert (data["status"], data["reason"], data["model"], data["attempts"]) == ("ok", None, "gpt-4o", 1)
        assert data["usage"] == {"prompt_tokens": 100, "completion_tokens": 20}
        assert data["objects"] == {str(tag): f"object {tag}" for tag in tags}
        assert data["relations"] == [{"subject": tags[0], "object": tags[1], "predicates": ["standing on"]}]
        assert len(data["raw"]) == 1 and json.loads(data["raw"][0])["objects"] and data["dropped"] == []
        with Image.open(workspace / "overlays" / f"{Path(name).stem}.png") as overlay:
            assert overlay.size == (512, 384)
    for request in server.chat_requests:
        body = request.json
        assert body["model"] == "gpt-4o" and body["temperature"] == 0
        assert body["seed"] == 0 and body["max_tokens"] == 2048 and "max_completion_tokens" not in body
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert request.image_urls()[0].startswith("data:image/jpeg;base64,")
        assert request_image(body).size == (512, 384)
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert request.system_text() == SYSTEM_MESSAGE
        assert body["messages"][1]["content"][1]["image_url"]["detail"] == "high"
        tags = tags_from_prompt(body)
        assert tags and request.schema()["properties"]["objects"]["items"]["properties"]["tag"]["enum"] == tags
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        others = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        assert SECRET not in json.dumps(others) and SECRET not in request.body
    for path in workspace.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "cost $0.0018" in summary_text(summary)


def test_request_options_reach_the_server(capture, server):
    first = names_of(capture)[0]
    options = dict(max_frames=1, seed=7, max_tokens=512, max_tokens_field="max_completion_tokens")
    run_relations(config(capture, server.url, system_message="Be terse.", tag_enum=False, **options), progress=False)
    request = server.chat_requests[-1]
    assert request.json["seed"] == 7 and request.json["max_completion_tokens"] == 512
    assert "max_tokens" not in request.json and request.system_text() == "Be terse."
    assert request.schema()["properties"]["relations"]["items"]["properties"]["subject"] == {"type": "integer"}
    run_relations(
        config(capture, server.url, max_frames=1, seed=None, system_message="", redo=(first,)), progress=False
    )
    request = server.chat_requests[-1]
    assert "seed" not in request.json and [m["role"] for m in request.messages()] == ["user"]
    with pytest.raises(UserError, match="--max-tokens"):
        run_relations(config(capture, server.url, max_tokens=0), progress=False)


def test_cut_off_reply_is_asked_again_with_twice_the_tokens(capture, server):
    first = names_of(capture)[0]
    server.push(cut_off_reply(answer_json({tag: "sofa" for tag in tags_of(capture, first)}), 300))
    cfg = config(capture, server.url, concurrency=1, max_frames=1, retries=0, max_tokens=300)
    summary = run_relations(cfg, progress=False)  # the larger budget is not a retry: retries=0 allows it
    assert (summary["done"], summary["failed"]) == (1, {})
    assert [r.max_tokens for r in server.chat_requests] == [300, 600]
    assert [m["role"] for m in server.chat_requests[1].messages()] == ["system", "user"]  # the cut-off text not shown
    data = record(capture, first)
    assert (data["status"], data["attempts"], data["usage"]["completion_tokens"]) == ("ok", 2, 300 + 20)


def test_reply_cut_off_twice_fails_the_frame_with_the_reason(capture, server):
    first = names_of(capture)[0]
    full = answer_json({tag: "sofa" for tag in tags_of(capture, first)})
    server.push(cut_off_reply(full, 300), cut_off_reply(full, 600))
    summary = run_failing(config(capture, server.url, concurrency=1, max_frames=1, retries=3, max_tokens=300))
    assert [r.max_tokens for r in server.chat_requests] == [300, 600]  # not a third time, whatever --retries says
    reason = summary["failed"][first]
    assert "cut off at max_tokens=600 (finish_reason length) twice" in reason and "--max-tokens" in reason
    data = record(capture, first)
    assert (data["status"], data["reason"], data["attempts"]) == ("failed", reason, 2)


def test_partly_bad_answer_keeps_the_valid_entries_and_records_the_dropped(capture, server):
    first = names_of(capture)[0]
    tags = tags_of(capture, first)
    a, b = tags[0], tags[1]
    reply = {
        "objects": [{"tag": a, "name": "sofa"}, {"tag": 99, "name": "ghost"}, "junk"],
        "relations": [
            {"subject": a, "object": b, "predicates": ["standing on"]},
            {"subject": b, "object": b, "predicates": ["same as"]},
        ],
    }
    server.push(chat_reply(json.dumps(reply)))
    summary = run_relations(config(capture, server.url, concurrency=1, max_frames=1, retries=0), progress=False)
    data = record(capture, first)
    assert (data["status"], data["attempts"], len(server.chat_requests)) == ("ok", 1, 1)  # not asked again
    assert data["objects"] == {str(a): "sofa"}
    assert data["relations"] == [{"subject": a, "object": b, "predicates": ["standing on"]}]
    known = ", ".join(str(tag) for tag in tags)
    assert data["dropped"] == [
        f"objects[1].tag is tag 99, which is not in the image (tags: {known})",
        'objects[2] must be an object, got "junk"',
        f"relations[1] relates tag {b} to itself",
    ]
    assert summary["dropped"] == {first: 3} and summary["failed"] == {}
    assert "3 entries in 1 frame" in summary_text(summary) and f"{first}: 3 dropped" in summary_text(summary)


def test_a_babbling_answer_keeps_a_bounded_list_of_drops():
    reasons = [f"relations[{i}] relates tag 1 to itself" for i in range(120)]
    assert dropped_lines(reasons[:3]) == reasons[:3]
    assert dropped_lines(reasons, limit=50) == reasons[:50] + ["... (70 more)"]


def test_viewpoint_predicates_only_under_the_flag(capture):
    def responder(request: dict[str, Any]) -> Reply:
        tags = tags_from_prompt(request)
        return chat_reply(answer_json({tags[0]: "a"}, [(tags[0], tags[1], ["in front of", "close by"])]))

    first = names_of(capture)[0]
    with FakeOpenAI(responder=responder) as fake:
        run_relations(config(capture, fake.url, max_frames=1), progress=False)
        assert '"behind"' not in fake.chat_requests[-1].prompt_text()
        assert record(capture, first)["relations"][0]["predicates"] == ["close by"]
        assert "'in front of', which this run excludes" in record(capture, first)["dropped"][0]
        run_relations(config(capture, fake.url, max_frames=1, viewpoint_predicates=True, redo=(first,)), progress=False)
        assert '"behind"' in fake.chat_requests[-1].prompt_text()
        assert record(capture, first)["relations"][0]["predicates"] == ["in front of", "close by"]
        assert record(capture, first)["dropped"] == []


def test_run_where_every_frame_fails_exits_non_zero_after_its_summary(capture, capsys):
    from relationfield.cli import entrypoint

    argv = ["relations", "--data", str(capture), "--retries", "1", "--backoff", "0", "--timeout", "5"]
    with FakeOpenAI(responder=lambda _request: chat_reply("Sorry, I cannot see any tags.")) as fake:  # babbling
        with pytest.raises(SystemExit) as exit_info:
            entrypoint([*argv, "--base-url", fake.url])
    assert exit_info.value.code == 2 and len(fake.chat_requests) == NUM_FRAMES * 2
    err = capsys.readouterr().err
    assert "no frame got an answer (4 failed)" in err
    assert "0 done" in err and "4 failed" in err and "Failed frames" in err and "not valid JSON" in err
    assert [record(capture, name)["status"] for name in names_of(capture)] == ["failed"] * NUM_FRAMES


def test_invalid_replies_are_retried_then_recorded_with_the_reason(capture, server):
    first = names_of(capture)[0]
    bad = [
        chat_reply("not json at all"),
        chat_reply(answer_json({"3a": "sofa"})),
        chat_reply(answer_json({99: "sofa"})),
        chat_reply(answer_json({}, [(1, 1, ["same as"])])),
    ]
    server.push(*bad)
    summary = run_failing(config(capture, server.url, concurrency=1, retries=3, max_frames=1))
    reason = "invalid reply: nothing valid is left: relations[0] relates tag 1 to itself"
    assert summary["failed"] == {first: reason}
    data = record(capture, first)
    assert (data["status"], data["attempts"], data["objects"], data["relations"]) == ("failed", 4, {}, [])
    assert data["reason"] == reason
    assert data["raw"][0] == "not json at all" and len(data["raw"]) == 4
    assert data["usage"] == {"prompt_tokens": 400, "completion_tokens": 80}
    retry = server.chat_requests[1].json["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "not valid JSON" in retry[3]["content"]
    again = run_relations(config(capture, server.url, max_frames=1), progress=False)  # failed frames are asked again
    assert (again["done"], again["skipped"], again["failed"]) == (1, 0, {})
    assert record(capture, first)["status"] == "ok"


def test_server_errors_exhaust_the_retries(capture):
    with FakeOpenAI(responder=lambda _request: (500, {"error": {"message": "overloaded"}})) as fake:
        summary = run_failing(config(capture, fake.url, retries=2, max_frames=2))
    assert len(fake.chat_requests) == 2 * 3
    assert set(summary["failed"].values()) == {"HTTP 500: overloaded"}
    assert all(record(capture, name)["attempts"] == 3 for name in summary["failed"])


def test_dead_server_records_connection_errors(capture):
    fake = FakeOpenAI()
    url = fake.url
    fake.stop()  # nothing listens on the port any more
    summary = run_failing(config(capture, url, retries=1))
    assert len(summary["failed"]) == NUM_FRAMES and summary["done"] == 0
    assert all(reason.startswith("connection error") for reason in summary["failed"].values())


def test_json_schema_rejection_falls_back_and_is_remembered(capture, server):
    server.push(
        error_reply(400, "response_format json_schema is not supported", param="response_format"),
        error_reply(400, "Invalid response_format type json_object"),
    )
    summary = run_relations(config(capture, server.url, concurrency=1), progress=False)
    assert summary["done"] == NUM_FRAMES and summary["response_mode"] == "plain"
    formats = [r.response_format for r in server.chat_requests]
    assert formats[0]["type"] == "json_schema" and formats[1] == {"type": "json_object"}
    assert formats[2:] == [None] * NUM_FRAMES  # remembered for every later frame
    assert record(capture, names_of(capture)[0])["attempts"] == 3


def test_other_bad_requests_fail_the_frame_without_retries(capture, server):
    server.push(error_reply(400, "image too large"))
    summary = run_failing(config(capture, server.url, concurrency=1, max_frames=1))
    assert list(summary["failed"].values()) == ["HTTP 400: image too large"]
    assert len(server.chat_requests) == 1 and summary["response_mode"] == "json_schema"


def test_a_refused_token_limit_field_names_the_other_one(capture, server):
    message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens'."
    server.push(error_reply(400, message, param="max_tokens"))
    summary = run_failing(config(capture, server.url, max_frames=1))
    assert summary["failed"] == {
        names_of(capture)[0]: f"HTTP 400: {message} (try --max-tokens-field max_completion_tokens)"
    }


def test_rejected_key_stops_the_run_without_echoing_it(capture):
    reply = error_reply(401, f"Incorrect API key provided: {SECRET}")
    with FakeOpenAI(responder=lambda _request: reply) as fake:
        with pytest.raises(UserError) as error:
            run_relations(config(capture, fake.url, concurrency=1), progress=False)
    assert "OPENAI_API_KEY" in str(error.value) and SECRET not in str(error.value)
    assert len(fake.chat_requests) == 1  # the queued frames were not sent
    assert not list((capture / "relationfield_work" / "relations").glob("*.json"))


def test_interrupted_run_resumes_with_the_rest(capture, server, monkeypatch):
    real_bar = relation_requests.item_progress

    def interrupt_after_two(enabled: bool, total: int, description: str):
        done: list[str] = []

        def advance(name: str) -> None:
            done.append(name)
            if len(done) == 2:
                raise KeyboardInterrupt  # Ctrl-C lands in the main thread, between two frames

        return nullcontext(), advance

    monkeypatch.setattr(relation_requests, "item_progress", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_relations(config(capture, server.url, concurrency=1), progress=False)
    relations_dir = capture / "relationfield_work" / "relations"
    assert sorted(p.name for p in relations_dir.iterdir()) == ["frame_00000.json", "frame_00001.json"]  # no temp files
    assert len(server.chat_requests) == 2
    monkeypatch.setattr(relation_requests, "item_progress", real_bar)
    summary = run_relations(config(capture, server.url), progress=False)
    assert (summary["done"], summary["skipped"]) == (2, 2) and len(server.chat_requests) == 2 + 2


def test_server_failing_part_way_then_resume(capture):
    answered = {"n": 0}

    def dies_after_two(request: dict[str, Any]) -> Reply:
        answered["n"] += 1
        return echo_responder(request) if answered["n"] <= 2 else error_reply(503, "gone")

    with FakeOpenAI(responder=dies_after_two) as fake:
        first = run_relations(config(capture, fake.url, concurrency=1, retries=0), progress=False)
    assert first["done"] == 2 and len(first["failed"]) == 2
    assert [record(capture, n)["status"] for n in names_of(capture)] == ["ok", "ok", "failed", "failed"]
    with FakeOpenAI(responder=echo_responder) as fake:
        second = run_relations(config(capture, fake.url), progress=False)
    assert (second["done"], second["skipped"], second["failed"]) == (2, 2, {})
    assert len(fake.chat_requests) == 2 and second["attempts"] == 2


def test_redo_asks_again_by_stem_or_name(capture, server):
    run_relations(config(capture, server.url), progress=False)
    summary = run_relations(
        config(capture, server.url, redo=("frame_00001", "./images/frame_00003.png")), progress=False
    )
    assert (summary["done"], summary["skipped"]) == (2, 2) and len(server.chat_requests) == NUM_FRAMES + 2
    with pytest.raises(UserError, match="frame_00042"):
        run_relations(config(capture, server.url, redo=("frame_00042",)), progress=False)


def test_failed_redo_keeps_the_previous_answer(capture, server):
    name = names_of(capture)[0]
    run_relations(config(capture, server.url, max_frames=1), progress=False)
    server.push(error_reply(500, "boom"))
    summary = run_failing(config(capture, server.url, max_frames=1, retries=0, redo=(name,)))
    assert summary["failed"][name] == "HTTP 500: boom (kept the previous answer)"
    assert record(capture, name)["status"] == "ok"


def test_changed_masks_or_image_are_not_skipped(capture, server):
    run_relations(config(capture, server.url), progress=False)
    workspace = capture / "relationfield_work"
    first, second = names_of(capture)[:2]
    with np.load(masks_path(workspace, first)) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["segments"] = np.where(arrays["segments"] == 1, 2, np.where(arrays["segments"] == 2, 1, arrays["segments"]))
    save_npz_atomic(masks_path(workspace, first), arrays)  # re-segmented: tag numbers changed
    with Image.open(capture / second) as image:
        np_image = np.asarray(image).copy()
    np_image[0, 0] ^= 255
    Image.fromarray(np_image).save(capture / second)  # the image changed after segmentation
    summary = run_relations(config(capture, server.url), progress=False)
    assert (summary["done"], summary["skipped"]) == (1, 2)
    assert "stale" in summary["failed"][second] and "relationfield masks" in summary["failed"][second]


def test_frame_without_masks_is_recorded_without_a_request(capture, server):
    name = names_of(capture)[0]
    path = masks_path(capture / "relationfield_work", name)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["segments"] = np.zeros_like(arrays["segments"])
    save_npz_atomic(path, arrays)
    summary = run_relations(config(capture, server.url), progress=False)
    assert (summary["done"], summary["empty"]) == (NUM_FRAMES - 1, 1) and len(server.chat_requests) == NUM_FRAMES - 1
    data = record(capture, name)
    assert (data["status"], data["attempts"], data["objects"], data["relations"], data["raw"]) == ("ok", 0, {}, [], [])


def test_max_frames_spreads_the_selection(capture, server):
    summary = run_relations(config(capture, server.url, max_frames=2), progress=False)
    assert (summary["frames"], summary["selected"], summary["done"]) == (NUM_FRAMES, 2, 2)
    assert len(server.chat_requests) == 2


def test_dry_run_sends_nothing_and_needs_no_key(capture, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    summary = run_relations(config(capture, None, dry_run=True), progress=False)  # default OpenAI URL, no key
    assert server.requests == [] and summary["attempts"] == 0
    assert not (capture / "relationfield_work" / "relations").exists()
    estimate = summary["estimate"]
    template = load_prompt(None)
    text = sum(-(-len(fill_prompt(template, tags_of(capture, n))) // 4) for n in names_of(capture))
    system = -(-len(SYSTEM_MESSAGE) // 4) + 4
    assert estimate["frames"] == NUM_FRAMES
    assert estimate["prompt_tokens"] == text + NUM_FRAMES * (255 + 10 + system)
    assert estimate["completion_tokens"] == NUM_FRAMES * 400
    assert estimate["cost"] == pytest.approx((estimate["prompt_tokens"] * 2.5 + NUM_FRAMES * 400 * 10) / 1e6)
    assert Path(estimate["overlay"]).is_file() and "{tags}" not in estimate["prompt"]
    assert "{predicates}" not in estimate["prompt"] and '"supported by"' in estimate["prompt"]
    report = summary_text(summary)
    assert "Nothing was sent" in report and estimate["prompt"] in report


def test_unknown_model_cost_is_unknown(capture, server):
    summary = run_relations(config(capture, server.url, model="local-vlm", max_frames=1), progress=False)
    assert summary["cost"] is None and "unknown" in summary_text(summary)
    priced = run_relations(
        config(
            capture,
            server.url,
            model="local-vlm",
            redo=(names_of(capture)[0],),
            max_frames=1,
            price_input=1.0,
            price_output=2.0,
        ),
        progress=False,
    )
    assert priced["cost"] == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)


def test_local_server_without_key_gets_a_placeholder(capture, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    summary = run_relations(config(capture, server.url, max_frames=1), progress=False)
    assert summary["done"] == 1 and server.chat_requests[0].headers["authorization"] == "Bearer EMPTY"


def test_missing_key_for_openai_is_a_user_error(capture, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        run_relations(config(capture, None), progress=False)


def test_no_masks_asks_for_the_masks_stage(capture, server):
    shutil.rmtree(capture / "relationfield_work" / "masks")
    with pytest.raises(UserError, match="relationfield masks"):
        run_relations(config(capture, server.url), progress=False)
