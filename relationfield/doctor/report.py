"""The doctor's report: one :class:`Check` per piece, one :class:`Verdict` per stage, as text or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

State = Literal["ok", "missing", "note"]
Status = Literal["ready", "download", "blocked"]

SECTIONS = {
    "packages": "Packages",
    "hardware": "Hardware",
    "weights": "Weights in the local caches",
    "environment": "Environment",
}
_STATES = {"ok": "ok", "missing": "MISSING", "note": "note"}
_STATUSES = {"ready": "READY", "download": "DOWNLOAD", "blocked": "BLOCKED"}
HEADER = "relationfield doctor: offline checks (nothing is downloaded, no server is contacted)"


@dataclass(frozen=True)
class Check:
    """One checked piece.

    ``key`` names it for the verdicts and for JSON readers, ``name`` is what the report shows (default:
    ``key``). ``state``: ``ok``, ``missing`` (a stage that needs it cannot run) or ``note`` (optional, or
    for information). ``fix`` says how to get a piece that is not ok; ``downloadable`` marks weights that are
    not cached but would be downloaded on first use (unless Hugging Face is in offline mode).
    """

    section: str
    key: str
    state: State
    detail: str
    fix: str = ""
    downloadable: bool = False
    name: str = ""

    @property
    def label(self) -> str:
        """What the report calls this piece."""
        return self.name or self.key


@dataclass(frozen=True)
class Verdict:
    """Whether a stage can run here: ``ready``, ``download`` (it downloads weights first) or ``blocked``."""

    stage: str
    status: Status
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    """The checks and one verdict per stage."""

    checks: tuple[Check, ...]
    verdicts: tuple[Verdict, ...] = ()

    def check(self, key: str) -> Check:
        """The check with this ``key``."""
        return next(check for check in self.checks if check.key == key)

    def verdict(self, stage: str) -> Verdict:
        """The verdict of ``stage``."""
        return next(verdict for verdict in self.verdicts if verdict.stage == stage)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data (``relationfield doctor --json``)."""
        checks = [{**asdict(check), "name": check.label} for check in self.checks]
        verdicts = [{**asdict(verdict), "ready": verdict.status == "ready"} for verdict in self.verdicts]
        return {"checks": checks, "verdicts": verdicts}

    def to_text(self) -> str:
        """The report as the terminal shows it: the checks by section, each fix under its piece, then one
        verdict line per stage."""
        width = min(40, max(len(check.label) for check in self.checks))
        lines = [HEADER]
        for section, title in SECTIONS.items():
            lines += ["", title]
            for check in (check for check in self.checks if check.section == section):
                lines.append(f"  {_STATES[check.state]:<8} {check.label:<{width}}  {check.detail}".rstrip())
                if check.fix and check.state != "ok":
                    lines.append(f"  {'':<8} {'':<{width}}  fix: {check.fix}")
        stage_width = max((len(verdict.stage) for verdict in self.verdicts), default=0)
        lines += ["", "Verdicts"]
        lines += [
            f"  {verdict.stage:<{stage_width}}  {_STATUSES[verdict.status]:<8}  {verdict.detail}"
            for verdict in self.verdicts
        ]
        return "\n".join(lines)
