"""The ``relations`` stage: ask a vision-language model about each segmented frame.

For each frame with masks (``masks/<stem>.npz``, see :mod:`relationfield.preprocess.workspace`) the
stage draws the Set-of-Mark overlay (:mod:`relationfield.preprocess.overlay`, kept as
``overlays/<stem>.png``), sends it with the prompt (:mod:`relationfield.preprocess.prompt`) to an
OpenAI-compatible server (:mod:`relationfield.preprocess.vision_client`) and writes the validated
answer, or the failure and its reason, to ``relations/<stem>.json`` as soon as the frame is done.
Entries of an answer that are wrong (an unknown tag, a self-relation, a viewpoint-dependent predicate
unless ``--viewpoint-predicates``, ...) are dropped and listed in the file's ``dropped``; the rest of
the answer is kept (:mod:`relationfield.preprocess.answer`).

When no frame that the run asked about got an answer (a dead server, or one whose replies are all
unusable), :func:`run_relations` raises :class:`RelationsFailed` after writing the frames' files: the
CLI prints the summary and exits non-zero, so ``relations && embed`` stops there.

Resuming: a frame whose relations file says ``ok`` for the current image and the current masks is
skipped (``--redo`` asks again anyway; :mod:`relationfield.preprocess.relation_jobs`); failed frames
are asked again. Frames are sent concurrently (``--concurrency`` requests in flight,
:mod:`relationfield.preprocess.relation_requests`). ``--dry-run`` prints the prompt and a token / cost
estimate and sends nothing.

Typical use::

    summary = run_relations(RelationsConfig(data=Path("capture"), model="gpt-4o-mini", max_frames=50))
    print(summary_text(summary))  # relationfield.preprocess.relation_summary
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from relationfield.errors import UserError
from relationfield.preprocess.connection import connected_client
from relationfield.preprocess.cost import ASSUMED_OUTPUT_TOKENS, Usage, estimate_cost, model_prices, request_tokens
from relationfield.preprocess.overlay import overlay_size
from relationfield.preprocess.prompt import SYSTEM_MESSAGE, excluded_predicates, fill_prompt, load_prompt
from relationfield.preprocess.relation_jobs import FrameJob, draw_overlay, plan_jobs, record_untagged
from relationfield.preprocess.relation_requests import RequestRun, ask_all
from relationfield.preprocess.relation_summary import summary_text
from relationfield.preprocess.retries import RetryPolicy
from relationfield.preprocess.vision_client import DEFAULT_MAX_TOKENS, MaxTokensField, RequestOptions, VisionClient
from relationfield.preprocess.workspace import default_workspace, overlay_path

_FIELD_MESSAGE = "--max-tokens-field must be max_tokens or max_completion_tokens"


class RelationsFailed(UserError):
    """No frame the run asked about got an answer (a dead server, or one whose replies are unusable).

    The frames' files are written; ``summary`` is the run's summary, and the message holds its report.
    """

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__(
            f"no frame got an answer ({len(summary['failed'])} failed); `relationfield embed` would have "
            f"nothing new.\n"
            f"{summary_text(summary)}"
        )
        self.summary = summary


@dataclass
class RelationsConfig:
    """Ask a vision-language model (OpenAI or any OpenAI-compatible server) for the objects and relations
    in each segmented frame (run `relationfield masks` first). Reads the key from OPENAI_API_KEY."""

    data: Path
    """The nerfstudio capture (the directory holding transforms.json)."""
    model: str = "gpt-4o"
    """Vision model name, as the server knows it (e.g. gpt-4o, gpt-4o-mini, Qwen/Qwen2-VL-7B-Instruct)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for vLLM (default: OPENAI_BASE_URL, else OpenAI)."""
    concurrency: int = 4
    """Requests in flight at once."""
    max_frames: int | None = None
    """Ask about at most this many segmented frames, chosen to spread over the camera poses (default: all)."""
    prompt: Path | None = None
    """Prompt file; {tags} becomes the frame's tags, {predicates} the predicate list (default: the shipped one)."""
    system_message: str = SYSTEM_MESSAGE
    """System message sent before each frame's prompt ("" sends none)."""
    viewpoint_predicates: bool = False
    """Allow viewpoint-dependent predicates (left, right, front, behind): listed in the prompt, kept in answers."""
    tag_enum: bool = True
    """Limit the JSON schema's tags to the frame's tags (an integer enum), so strict decoding cannot invent tags."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens allowed per reply; a reply cut off there is asked once more with twice as many, then fails."""
    max_tokens_field: MaxTokensField = "max_tokens"
    """Request field of --max-tokens: max_tokens (gpt-4o, vLLM, Ollama) or max_completion_tokens (o1, o3, gpt-5)."""
    seed: int | None = 0
    """Sampling seed sent with each request, for repeatable answers (best effort on OpenAI; None: not sent)."""
    dry_run: bool = False
    """Print the prompt and a token and cost estimate; send nothing."""
    redo: tuple[str, ...] = ()
    """Frames to ask again even if already answered (image paths as in transforms.json, or file stems)."""
    retries: int = 3
    """Failed attempts allowed per frame beyond the first (server errors, timeouts and invalid replies)."""
    timeout: float = 60.0
    """Seconds to wait for one reply."""
    workspace: Path | None = None
    """Preprocessing workspace (default: DATA/relationfield_work)."""
    detail: Literal["low", "high", "auto"] = "high"
    """Image detail requested from the model (low: 85 tokens per image; high: tiled, more tokens)."""
    temperature: float | None = 0.0
    """Sampling temperature (None: leave it to the server)."""
    image_format: Literal["jpeg", "png"] = "jpeg"
    """Encoding of the image sent (the overlay kept on disk is always PNG)."""
    backoff: float = 1.0
    """Seconds before the first retry after a server error; doubled for each further one (with jitter)."""
    max_backoff: float = 60.0
    """Longest wait between two attempts (also caps the server's Retry-After)."""
    price_input: float | None = None
    """USD per million input tokens, for models missing from the built-in price table."""
    price_output: float | None = None
    """USD per million output tokens, for models missing from the built-in price table."""


def validate_config(config: RelationsConfig) -> None:
    """Check the options that do not need the capture.

    Raises:
        UserError: an option is out of range or the prompt file does not exist.
    """
    checks = (
        (bool(config.model.strip()), "--model must not be empty"),
        (config.concurrency >= 1, "--concurrency must be >= 1"),
        (config.max_frames is None or config.max_frames >= 1, "--max-frames must be >= 1"),
        (config.retries >= 0, "--retries must be >= 0"),
        (config.timeout > 0, "--timeout must be > 0"),
        (config.max_tokens >= 1, "--max-tokens must be >= 1"),
        (config.max_tokens_field in ("max_tokens", "max_completion_tokens"), _FIELD_MESSAGE),
        (config.backoff >= 0, "--backoff must be >= 0"),
        (config.max_backoff >= 0, "--max-backoff must be >= 0"),
        (config.temperature is None or 0.0 <= config.temperature <= 2.0, "--temperature must be in [0, 2]"),
        (config.price_input is None or config.price_input >= 0, "--price-input must be >= 0"),
        (config.price_output is None or config.price_output >= 0, "--price-output must be >= 0"),
        (config.detail in ("low", "high", "auto"), "--detail must be low, high or auto"),
        (config.image_format in ("jpeg", "png"), "--image-format must be jpeg or png"),
    )
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _vision_client(config: RelationsConfig, client: Any) -> VisionClient:
    """The :class:`VisionClient` of the run (``client``: a ready ``openai.OpenAI``, else one from the env)."""
    client, key = connected_client(config.base_url, config.timeout, client)
    policy = RetryPolicy(retries=config.retries, base_delay=config.backoff, max_delay=config.max_backoff)
    options = RequestOptions(
        detail=config.detail,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        max_tokens_field=config.max_tokens_field,
        seed=config.seed,
        system=config.system_message.strip(),
        tag_enum=config.tag_enum,
        excluded_predicates=excluded_predicates(config.viewpoint_predicates),
    )
    return VisionClient(client, config.model, options, policy=policy, secret=key)


def _estimate(
    config: RelationsConfig, data_dir: Path, workspace: Path, template: str, jobs: Sequence[FrameJob]
) -> dict[str, Any]:
    """The dry run's estimate for ``jobs`` (and the first job's overlay and prompt, for inspection)."""
    prompt_tokens = 0
    system = config.system_message.strip()
    for job in jobs:
        width, height = overlay_size(*job.size)
        prompt = fill_prompt(template, job.tags)
        prompt_tokens += request_tokens(prompt, width, height, config.detail, config.model, system)
    usage = Usage(prompt_tokens, min(ASSUMED_OUTPUT_TOKENS, config.max_tokens) * len(jobs))
    estimate: dict[str, Any] = {
        "frames": len(jobs),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": estimate_cost(usage, model_prices(config.model, config.price_input, config.price_output)),
        "prompt": None,
        "overlay": None,
    }
    if jobs:
        first = jobs[0]
        draw_overlay(data_dir, workspace, first)
        estimate["prompt"] = fill_prompt(template, first.tags)
        estimate["overlay"] = str(overlay_path(workspace, first.name))
    return estimate


def _new_summary(config: RelationsConfig, workspace: Path) -> dict[str, Any]:
    """The summary of a run that has done nothing yet (see :func:`run_relations`)."""
    return {
        "workspace": str(workspace),
        "model": config.model,
        "dry_run": config.dry_run,
        "frames": 0,
        "selected": 0,
        "done": 0,
        "skipped": 0,
        "empty": 0,
        "failed": {},
        "dropped": {},
        "attempts": 0,
        "usage": Usage().to_json(),
        "cost": None,
        "response_mode": None,
        "estimate": None,
    }


def _ask(run: RequestRun, config: RelationsConfig, jobs: Sequence[FrameJob], progress: bool) -> None:
    """Send ``jobs`` and count the tokens, cost and response mode in the summary, even when interrupted."""
    try:
        ask_all(run, jobs, progress)
    finally:
        run.summary["usage"] = run.usage.to_json()
        run.summary["cost"] = estimate_cost(
            run.usage, model_prices(config.model, config.price_input, config.price_output)
        )
        run.summary["response_mode"] = run.vision.mode


def run_relations(config: RelationsConfig, progress: bool = True, client: Any = None) -> dict[str, Any]:
    """Ask the model about the selected frames of ``config.data`` (see the module docstring).

    Args:
        config: the stage's options.
        progress: show a rich progress bar.
        client: an ``openai.OpenAI``-compatible client to use instead of one built from
            ``--base-url`` / ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (tests, custom HTTP settings).

    Returns:
        A summary: ``workspace`` (str), ``model``, ``dry_run``, ``frames`` (segmented frames in the
        capture), ``selected``, ``done``, ``skipped`` (already answered), ``empty`` (frames without
        masks, recorded as ok without a request), ``failed`` (``{image name: reason}``), ``dropped``
        (``{image name: number of entries dropped from its answer}``, clean answers left out),
        ``attempts`` (requests sent), ``usage`` (``prompt_tokens``, ``completion_tokens``),
        ``cost`` (USD, ``None`` when the model's prices are unknown), ``response_mode`` (how the JSON
        format was requested in the end), ``estimate`` (dry run only: ``frames``, ``prompt_tokens``,
        ``completion_tokens``, ``cost``, ``prompt``, ``overlay``) and ``seconds``.

    Raises:
        UserError: bad options, no masks (run ``relationfield masks`` first), no API key for the
            OpenAI API, or the server refused the requests (bad key, unknown model).
        RelationsFailed: no frame asked about got an answer (its ``summary`` is the summary).
    """
    start = time.perf_counter()
    validate_config(config)
    data_dir = Path(config.data)
    workspace = Path(config.workspace) if config.workspace is not None else default_workspace(data_dir)
    template = load_prompt(config.prompt, config.viewpoint_predicates)
    summary = _new_summary(config, workspace)
    planned = plan_jobs(data_dir, workspace, config.max_frames, config.redo, summary)
    jobs = [job for job in planned if job.tags]
    if config.dry_run:
        summary["estimate"] = _estimate(config, data_dir, workspace, template, jobs)
    else:
        summary["empty"] = record_untagged(workspace, planned, config.model)  # nothing to ask about them
        if jobs:
            vision = _vision_client(config, client)
            run = RequestRun(data_dir, workspace, template, vision, summary, config.image_format, config.concurrency)
            _ask(run, config, jobs, progress)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if _nothing_answered(summary, asked=len(jobs)):
        raise RelationsFailed(summary)
    return summary


def _nothing_answered(summary: dict[str, Any], asked: int) -> bool:
    """Whether the run failed as a whole: every frame it asked about failed, or (asking about none)
    every selected frame failed before a request and none was answered before."""
    if summary["dry_run"] or not summary["failed"] or summary["done"]:
        return False
    return asked > 0 or not (summary["skipped"] or summary["empty"])
