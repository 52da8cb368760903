"""The ``relations`` stage: ask a vision-language model about each segmented frame.

For each frame with masks (``masks/<stem>.npz``, see :mod:`relationfield.preprocess.workspace`) the
stage draws the Set-of-Mark overlay (:mod:`relationfield.preprocess.overlay`, kept as
``overlays/<stem>.png``), sends it with the prompt (``configs/prompts/set_of_mark.txt`` by default)
to an OpenAI-compatible server (:mod:`relationfield.preprocess.vlm`) and writes the validated answer,
or the failure and its reason, to ``relations/<stem>.json`` as soon as the frame is done.

Resuming: a frame whose relations file says ``ok`` for the current image and the current masks is
skipped (``--redo`` asks again anyway); failed frames are asked again. Frames are sent concurrently
(``--concurrency`` requests in flight). ``--dry-run`` prints the prompt and a token / cost estimate
and sends nothing.

Beside the keys of the workspace contract, each relations file records ``masks_hash``
(:func:`segments_hash` of the masks the tags refer to), so re-segmenting a frame makes its answer
stale even when the image did not change.

Typical use::

    summary = run_relations(RelationsConfig(data=Path("capture"), model="gpt-4o-mini", max_frames=50))
    print(summary_text(summary))
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from relationfield.errors import UserError
from relationfield.images import load_rgb
from relationfield.labels.format import atomic_write, file_sha256, normalize_frame_name
from relationfield.preprocess.frames import select_frames
from relationfield.preprocess.overlay import draw_set_of_mark, overlay_size, present_tags
from relationfield.preprocess.vlm import (
    ASSUMED_OUTPUT_TOKENS,
    Detail,
    FatalRequestError,
    FrameResult,
    RetryPolicy,
    Usage,
    VisionClient,
    estimate_cost,
    image_data_url,
    make_openai_client,
    model_prices,
    request_tokens,
    resolve_connection,
)
from relationfield.preprocess.workspace import (
    capture_frames,
    default_workspace,
    failure_lines,
    frame_stem,
    masks_path,
    overlay_path,
    read_json,
    read_masks,
    relations_path,
    segments_hash,
    write_json_atomic,
)
from relationfield.progress import item_progress
from relationfield.vocab import CONFIGS_DIR

DEFAULT_PROMPT = CONFIGS_DIR / "prompts" / "set_of_mark.txt"
#: Placeholder of the prompt file replaced by the frame's tags ("1, 2, 3").
TAGS_PLACEHOLDER = "{tags}"


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
    """Prompt file; {tags} is replaced by the frame's tags (default: configs/prompts/set_of_mark.txt)."""
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


@dataclass(frozen=True)
class FrameJob:
    """One segmented frame to ask about (its masks are read again when it is sent, to bound memory)."""

    name: str
    image_hash: str
    masks_hash: str
    size: tuple[int, int]
    """(width, height) of the image."""
    tags: tuple[int, ...]
    previous_ok: bool


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


def load_prompt(path: Path | None) -> str:
    """The prompt template (``path``, or the shipped Set-of-Mark prompt)."""
    path = Path(path) if path is not None else DEFAULT_PROMPT
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise UserError(f"prompt file {path} is empty")
    return text


def fill_prompt(template: str, tags: Sequence[int]) -> str:
    """The prompt of a frame: ``{tags}`` replaced by its tags (appended when the template lacks it)."""
    tag_text = ", ".join(str(tag) for tag in tags)
    if TAGS_PLACEHOLDER in template:
        return template.replace(TAGS_PLACEHOLDER, tag_text)
    return f"{template}\n\nThe tags in this image are: {tag_text}."


def _matches_redo(name: str, redo: Sequence[str]) -> bool:
    wanted = {normalize_frame_name(entry) for entry in redo} | {entry.strip() for entry in redo}
    return name in wanted or frame_stem(name) in wanted


def _is_done(path: Path, image_hash: str, masks_digest: str) -> tuple[bool, bool]:
    """``(skip, previous_ok)``: whether ``path`` holds an ok answer for this image and these masks."""
    if not path.is_file():
        return False, False
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return False, False
    ok = record.get("status") == "ok" and record.get("image_hash") == image_hash
    ok = ok and record.get("masks_hash", masks_digest) == masks_digest
    return ok, ok


def _masked_frames(data_dir: Path, workspace: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(name, frame)`` of every frame of transforms.json that has a masks file, in capture order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for frame in capture_frames(data_dir):
        file_path = frame.get("file_path")
        if isinstance(file_path, str) and file_path and masks_path(workspace, file_path).is_file():
            found.append((normalize_frame_name(file_path), frame))
    if not found:
        raise UserError(
            f"no frame of {data_dir} has masks in {Path(workspace) / 'masks'}: run `relationfield masks` first"
        )
    return found


def _selected_names(
    masked: Sequence[tuple[str, dict[str, Any]]], max_frames: int | None, redo: Sequence[str]
) -> list[str]:
    """The names to consider: up to ``max_frames`` spread over the capture, plus every ``--redo`` frame."""
    try:
        chosen = select_frames([frame for _, frame in masked], max_frames)
    except ValueError as error:
        raise UserError(f"cannot select frames: {error}") from None
    names = [masked[index][0] for index in chosen]
    unknown = [entry for entry in redo if not any(_matches_redo(name, [entry]) for name, _ in masked)]
    if unknown:
        raise UserError(f"--redo names frames without masks (or not in the capture): {', '.join(unknown)}")
    extra = [name for name, _ in masked if name not in names and _matches_redo(name, redo)]
    return names + extra


def _plan(config: RelationsConfig, data_dir: Path, workspace: Path, summary: dict[str, Any]) -> list[FrameJob]:
    """The frames to ask about (stale or unreadable masks go to ``summary['failed']``)."""
    masked = _masked_frames(data_dir, workspace)
    names = _selected_names(masked, config.max_frames, config.redo)
    summary["frames"], summary["selected"] = len(masked), len(names)
    jobs: list[FrameJob] = []
    for name in names:
        image_path = data_dir / name
        if not image_path.is_file():
            summary["failed"][name] = f"image {image_path} does not exist"
            continue
        try:
            masks = read_masks(masks_path(workspace, name))
        except (OSError, ValueError, EOFError) as error:
            summary["failed"][name] = f"cannot read its masks file: {error}; run `relationfield masks` again"
            continue
        masks_name, masks_image_hash, segments = masks.name, masks.image_hash, masks.segments
        image_hash = file_sha256(image_path)
        if normalize_frame_name(masks_name) != name:
            summary["failed"][name] = f"its masks file belongs to {masks_name}; run `relationfield masks` again"
            continue
        if masks_image_hash != image_hash:
            summary["failed"][name] = "its masks are stale (the image changed since); run `relationfield masks` again"
            continue
        digest = segments_hash(segments)
        done, previous_ok = _is_done(relations_path(workspace, name), image_hash, digest)
        if done and not _matches_redo(name, config.redo):
            summary["skipped"] += 1
            continue
        size = (int(segments.shape[1]), int(segments.shape[0]))
        job = FrameJob(name, image_hash, digest, size, tuple(present_tags(segments)), previous_ok)
        if job.tags:
            jobs.append(job)
        elif not config.dry_run:  # nothing to ask about: recorded as answered without a request
            empty = FrameResult(status="ok", reason=None, attempts=0, usage=Usage(), answer=None)
            write_json_atomic(relations_path(workspace, name), frame_record(job, config.model, empty))
            summary["empty"] += 1
    return jobs


def save_png_atomic(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a PNG, atomically."""
    with atomic_write(Path(path)) as handle:
        image.save(handle, format="PNG")


def draw_overlay(data_dir: Path, workspace: Path, job: FrameJob) -> Image.Image:
    """Draw the Set-of-Mark overlay of ``job`` and keep it as ``overlays/<stem>.png``.

    Raises:
        ValueError: the masks changed since the run was planned (or do not fit the image).
    """
    segments = read_masks(masks_path(workspace, job.name)).segments
    if segments_hash(segments) != job.masks_hash:
        raise ValueError("its masks changed during the run")
    overlay = draw_set_of_mark(load_rgb(data_dir / job.name), segments)
    save_png_atomic(overlay, overlay_path(workspace, job.name))
    return overlay


def frame_record(job: FrameJob, model: str, result: FrameResult) -> dict[str, Any]:
    """The ``relations/<stem>.json`` payload of a frame (the workspace contract plus ``masks_hash``)."""
    answer = result.answer
    return {
        "name": job.name,
        "image_hash": job.image_hash,
        "masks_hash": job.masks_hash,
        "status": result.status,
        "reason": result.reason,
        "model": model,
        "attempts": result.attempts,
        "usage": result.usage.to_json(),
        "objects": answer.objects_json() if answer is not None else {},
        "relations": answer.relations_json() if answer is not None else [],
        "raw": list(result.raw),
    }


class _Run:
    """State shared by the worker threads of one run."""

    def __init__(
        self,
        config: RelationsConfig,
        data_dir: Path,
        workspace: Path,
        template: str,
        vision: VisionClient,
        summary: dict[str, Any],
    ) -> None:
        self.config, self.data_dir, self.workspace = config, data_dir, workspace
        self.template, self.vision, self.summary = template, vision, summary
        self.usage = Usage()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def ask(self, job: FrameJob) -> None:
        """Draw, save and send one frame's overlay and write its file (nothing once the run is stopping)."""
        if self.stop.is_set():
            return
        try:
            overlay = draw_overlay(self.data_dir, self.workspace, job)
        except (OSError, ValueError, EOFError) as error:  # PIL's UnidentifiedImageError is an OSError
            with self.lock:
                self.summary["failed"][job.name] = f"cannot draw its overlay: {error}"
            return
        url = image_data_url(overlay, self.config.image_format)
        try:
            result = self.vision.ask(fill_prompt(self.template, job.tags), url, job.tags)
        except FatalRequestError:
            self.stop.set()  # before this worker takes the next frame
            raise
        self._record(job, result)

    def _record(self, job: FrameJob, result: FrameResult) -> None:
        with self.lock:
            self.usage.add(result.usage)
            self.summary["attempts"] += result.attempts
            if result.status == "ok":
                self.summary["done"] += 1
            else:
                kept = " (kept the previous answer)" if job.previous_ok else ""
                self.summary["failed"][job.name] = f"{result.reason}{kept}"
        if result.status == "ok" or not job.previous_ok:
            write_json_atomic(relations_path(self.workspace, job.name), frame_record(job, self.config.model, result))


def _execute(run: _Run, jobs: Sequence[FrameJob], progress: bool) -> None:
    """Run the jobs with at most ``concurrency`` in flight (and none queued beyond that, so a stop or an
    interrupt sends nothing more); stop early on a fatal server answer.

    Raises:
        UserError: the server refused the requests (bad key, unknown model); finished frames are kept.
    """
    fatal: str | None = None
    todo = iter(jobs)
    pending: dict[Future, FrameJob] = {}
    bar, advance = item_progress(progress, len(jobs), f"Asking {run.config.model}")
    executor = ThreadPoolExecutor(max_workers=run.config.concurrency, thread_name_prefix="relations")

    def refill() -> None:
        while len(pending) < run.config.concurrency and not run.stop.is_set():
            job = next(todo, None)
            if job is None:
                return
            pending[executor.submit(run.ask, job)] = job

    try:
        with bar:
            refill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = pending.pop(future)
                    try:
                        future.result()
                    except FatalRequestError as error:
                        run.stop.set()
                        fatal = fatal or str(error)
                    advance(job.name)
                refill()
    except BaseException:  # KeyboardInterrupt included: requests in flight finish and write their files
        run.stop.set()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    if fatal is not None:
        raise UserError(f"{fatal}; frames finished before are kept in {run.workspace / 'relations'}")


def _vision_client(config: RelationsConfig, client: Any) -> VisionClient:
    """The :class:`VisionClient` of the run (``client``: a ready ``openai.OpenAI``, else one from the env)."""
    if client is None:
        base_url, key = resolve_connection(config.base_url, os.environ)
        client = make_openai_client(base_url, key, config.timeout)
    else:
        key = getattr(client, "api_key", None)
    policy = RetryPolicy(retries=config.retries, base_delay=config.backoff, max_delay=config.max_backoff)
    detail: Detail = config.detail
    return VisionClient(
        client,
        config.model,
        detail=detail,
        temperature=config.temperature,
        policy=policy,
        secret=key if isinstance(key, str) else None,
    )


def _estimate(
    config: RelationsConfig, data_dir: Path, workspace: Path, template: str, jobs: Sequence[FrameJob]
) -> dict[str, Any]:
    """The dry run's estimate for ``jobs`` (and the first job's overlay and prompt, for inspection)."""
    prompt_tokens = 0
    for job in jobs:
        size = overlay_size(*job.size)
        prompt_tokens += request_tokens(fill_prompt(template, job.tags), size[0], size[1], config.detail, config.model)
    usage = Usage(prompt_tokens, ASSUMED_OUTPUT_TOKENS * len(jobs))
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
        masks, recorded as ok without a request), ``failed`` (``{image name:
        reason}``), ``attempts`` (requests sent), ``usage`` (``prompt_tokens``, ``completion_tokens``),
        ``cost`` (USD, ``None`` when the model's prices are unknown), ``response_mode`` (how the JSON
        format was requested in the end), ``estimate`` (dry run only: ``frames``, ``prompt_tokens``,
        ``completion_tokens``, ``cost``, ``prompt``, ``overlay``) and ``seconds``.

    Raises:
        UserError: bad options, no masks (run ``relationfield masks`` first), no API key for the
            OpenAI API, or the server refused the requests (bad key, unknown model).
    """
    start = time.perf_counter()
    validate_config(config)
    data_dir = Path(config.data)
    workspace = Path(config.workspace) if config.workspace is not None else default_workspace(data_dir)
    template = load_prompt(config.prompt)
    summary: dict[str, Any] = {
        "workspace": str(workspace),
        "model": config.model,
        "dry_run": config.dry_run,
        "frames": 0,
        "selected": 0,
        "done": 0,
        "skipped": 0,
        "empty": 0,
        "failed": {},
        "attempts": 0,
        "usage": Usage().to_json(),
        "cost": None,
        "response_mode": None,
        "estimate": None,
    }
    jobs = _plan(config, data_dir, workspace, summary)
    prices = model_prices(config.model, config.price_input, config.price_output)
    if config.dry_run:
        summary["estimate"] = _estimate(config, data_dir, workspace, template, jobs)
    elif jobs:
        run = _Run(config, data_dir, workspace, template, _vision_client(config, client), summary)
        try:
            _execute(run, jobs, progress)
        finally:
            summary["usage"] = run.usage.to_json()
            summary["cost"] = estimate_cost(run.usage, prices)
            summary["response_mode"] = run.vision.mode
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


def _cost_text(cost: float | None) -> str:
    return "unknown (pass --price-input and --price-output)" if cost is None else f"${cost:.4f}"


def summary_text(summary: Mapping[str, Any]) -> str:
    """A human-readable report of :func:`run_relations`'s summary (for the CLI)."""
    estimate = summary.get("estimate")
    if summary.get("dry_run") and estimate is not None:
        parts = []
        if estimate["prompt"]:
            parts.append(f"Prompt of the first frame (overlay: {estimate['overlay']}):\n{estimate['prompt']}\n")
        parts.append(
            f"Dry run: would ask {summary['model']} about {estimate['frames']} of {summary['selected']} selected "
            f"frames ({summary['skipped']} already answered). Estimate: {estimate['prompt_tokens']} input tokens, "
            f"~{estimate['completion_tokens']} output tokens ({ASSUMED_OUTPUT_TOKENS} per frame assumed), "
            f"cost {_cost_text(estimate['cost'])}. Nothing was sent."
        )
        text = "\n".join(parts)
    else:
        usage = summary["usage"]
        text = (
            f"{summary['model']} on {summary['selected']} selected frames: {summary['done']} done, "
            f"{summary['skipped']} already answered, {summary['empty']} without masks, "
            f"{len(summary['failed'])} failed; "
            f"{summary['attempts']} requests, "
            f"{usage['prompt_tokens']} input + {usage['completion_tokens']} output tokens, "
            f"cost {_cost_text(summary['cost'])}. Workspace: {summary['workspace']}"
        )
    if summary["failed"]:
        text += f"\nFailed frames (asked again by the next run):\n{failure_lines(summary['failed'])}"
    return text
