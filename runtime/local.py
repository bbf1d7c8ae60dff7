"""The embedded local backend: the wrapper in-process, on ``-j`` worker threads.

Only the user's command is a new process. Each worker takes the best ready
job itself and, when the attempt succeeds, frees its cores and takes the
next one without waiting for the scheduler's bookkeeping.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from planner.plan import Plan

from . import wrapper
from .db import Database
from .events import Observer
from .scheduler import Launcher, Options, Scheduler


class ThreadLauncher(Launcher):
    """One worker thread per core, each running :func:`wrapper.run_spec` in-process."""

    name = "local"

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._interrupted = False

    def start(self, sched: Scheduler) -> None:
        """Start one worker per core."""
        self._threads = [threading.Thread(target=self._worker, args=(sched,), daemon=True,
                                          name=f"wf-worker-{i}") for i in range(max(1, sched.opt.cores))]
        for t in self._threads:
            t.start()

    def join(self) -> None:
        """Wait for the workers; after an interrupt, only briefly (their
        commands got the terminal's SIGINT too; daemon threads die with us)."""
        for t in self._threads:
            t.join(timeout=1.0 if self._interrupted else None)

    def interrupt(self) -> None:
        """Stop waiting for running attempts."""
        self._interrupted = True

    def _worker(self, sched: Scheduler) -> None:
        cond = sched.cond
        while True:
            with cond:
                while True:
                    if sched.all_done:
                        return
                    item = sched.take()
                    if item is not None:
                        break
                    cond.wait()
            jid, job, attempt, need, spec, ctx = item
            sched.started(job, attempt)
            try:
                record: dict[str, Any] = wrapper.run_spec(spec)
            except Exception as e:  # the wrapper itself broke: a failed attempt, kept
                record = {"status": "failed", "attempt": attempt, "message": f"wrapper error: {e!r}",
                          "events": [], "files": [], "exit_code": None}
            sched.ended(jid, attempt, need, ctx, record)


def LocalExecutor(plan: Plan, db: Database, run_id: int, options: Options,  # noqa: N802 (a factory)
                  observers: Sequence[Observer], refs: dict[str, str | None]) -> Scheduler:
    """The scheduler with the local launcher."""
    return Scheduler(plan, db, run_id, options, observers, refs, ThreadLauncher())
