"""The requests of the ``relations`` stage: the planned frames sent concurrently, each written when done.

At most ``concurrency`` frames are in flight and none is queued beyond that, so a fatal server answer
(bad key, unknown model) or Ctrl-C sends nothing more, while the requests in flight finish and write
their files: the next run asks only about the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from relationfield.errors import UserError
from relationfield.preprocess.cost import Usage
from relationfield.preprocess.prompt import fill_prompt
from relationfield.preprocess.relation_jobs import FrameJob, draw_overlay, frame_record
from relationfield.preprocess.vision_client import FatalRequestError, FrameResult, VisionClient, image_data_url
from relationfield.preprocess.workspace import relations_path, write_json_atomic
from relationfield.progress import item_progress


@dataclass
class RequestRun:
    """State shared by the worker threads of one run."""

    data_dir: Path
    """The capture."""
    workspace: Path
    """The preprocessing workspace (overlays and relations files are written there)."""
    template: str
    """The prompt template (``{predicates}`` already filled in; ``{tags}`` filled in per frame)."""
    vision: VisionClient
    """The client that asks the model (its model name is recorded in each file)."""
    summary: dict[str, Any]
    """The stage's summary: ``done``, ``attempts``, ``failed`` and ``dropped`` are counted in it."""
    image_format: Literal["jpeg", "png"] = "jpeg"
    """Encoding of the image sent."""
    concurrency: int = 4
    """Requests in flight at once."""
    usage: Usage = field(default_factory=Usage)
    """Tokens reported so far, over all frames."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards ``usage`` and ``summary``."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when no further frame may be sent."""

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
        url = image_data_url(overlay, self.image_format)
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
                if result.answer is not None and result.answer.dropped:
                    self.summary["dropped"][job.name] = len(result.answer.dropped)
            else:
                kept = " (kept the previous answer)" if job.previous_ok else ""
                self.summary["failed"][job.name] = f"{result.reason}{kept}"
        if result.status == "ok" or not job.previous_ok:
            write_json_atomic(relations_path(self.workspace, job.name), frame_record(job, self.vision.model, result))


def ask_all(run: RequestRun, jobs: Sequence[FrameJob], progress: bool) -> None:
    """Run the jobs with at most ``concurrency`` in flight (and none queued beyond that, so a stop or an
    interrupt sends nothing more); stop early on a fatal server answer.

    Raises:
        UserError: the server refused the requests (bad key, unknown model); finished frames are kept.
    """
    fatal: str | None = None
    todo = iter(jobs)
    pending: dict[Future, FrameJob] = {}
    bar, advance = item_progress(progress, len(jobs), f"Asking {run.vision.model}")
    executor = ThreadPoolExecutor(max_workers=run.concurrency, thread_name_prefix="relations")

    def refill() -> None:
        while len(pending) < run.concurrency and not run.stop.is_set():
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
