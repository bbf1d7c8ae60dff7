"""What the executor tells its observers. The core never imports rich.

An observer subclasses :class:`Observer` and overrides the hooks it wants;
each hook is called from the executor's main thread and must be cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.plan import Job, Plan

OUTCOME_OK = "ok"
OUTCOME_RETRY = "retry"
OUTCOME_REMAKE = "remake"
OUTCOME_FAILED = "failed"


@dataclass(slots=True)
class RunSummary:
    """Totals of one run, handed to ``run_finished``."""

    run_id: int
    total: int
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    remade: int = 0
    not_run: int = 0
    pruned: int = 0
    wall_seconds: float = 0.0
    integrity_errors: int = 0
    bytes_hashed: int = 0
    exit_code: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


class Observer:
    """No-op hooks; subclass and override."""

    def run_started(self, plan: Plan, run_id: int, to_run: int) -> None:
        """The run begins with ``to_run`` jobs."""

    def job_started(self, job: Job, attempt: int) -> None:
        """An attempt of ``job`` was launched."""

    def job_finished(self, job: Job, attempt: int, record: dict[str, Any], outcome: str) -> None:
        """An attempt ended; ``outcome`` is ok, retry, remake or failed."""

    def message(self, text: str) -> None:
        """A line worth telling the user (e.g. a chaos injection, a cleanup)."""

    def run_finished(self, summary: RunSummary) -> None:
        """The run is over."""
