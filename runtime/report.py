"""Terminal views of a run: observers of executor events (rich lives only here)."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from planner.plan import Job, Plan

from .events import OUTCOME_FAILED, OUTCOME_OK, OUTCOME_REMAKE, OUTCOME_RETRY, Observer, RunSummary


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class FinalSummary(Observer):
    """Prints the outcome: counts, integrity figures, and every failure in detail."""

    def __init__(self, console: Console):
        self.console = console

    def run_finished(self, s: RunSummary) -> None:
        """Print the summary and the failures."""
        c = self.console
        for f in s.failures:
            c.print(f"[red]failed[/red] {escape(f['job'])} ({escape(str(f['status']))}, attempt {f['attempt']}): "
                    f"{escape(str(f.get('message') or ''))}", soft_wrap=True)
            for e in f.get("events") or ():
                c.print(f"    integrity: {escape(str(e.get('file')))} at {e.get('stage')}: "
                        f"expected {e.get('expected')}, found {e.get('actual')}", soft_wrap=True)
            if f.get("stderr") and os.path.exists(f["stderr"]):
                tail = _tail(f["stderr"])
                if tail:
                    c.print(f"    stderr ({escape(f['stderr'])}):", soft_wrap=True)
                    for line in tail:
                        c.print("      " + escape(line), soft_wrap=True)
        verdict = {0: "[green]success[/green]", 1: "[red]failed[/red]",
                   3: "[red]integrity error[/red]"}.get(s.exit_code, str(s.exit_code))
        c.print(f"{verdict}: {s.succeeded:,} of {s.total:,} jobs done, {s.failed:,} failed, "
                f"{s.not_run:,} not run, {s.retries:,} retries, {s.remade:,} remade, "
                f"{s.pruned:,} reused; {s.wall_seconds:.2f} s; {_size(s.bytes_hashed)} hashed, "
                f"{s.integrity_errors:,} integrity errors caught", soft_wrap=True)


def _tail(path: str, lines: int = 5) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


class PlainLines(Observer):
    """One line per finished attempt: for logs and pipes, no control codes."""

    def __init__(self, console: Console):
        self.console = console
        self.done_ids: set[str] = set()
        self.total = 0

    def run_started(self, plan: Plan, run_id: int, to_run: int) -> None:
        """Announce the run."""
        self.total = to_run
        self.console.print(f"run {run_id}: {to_run:,} jobs to run in {escape(plan.workdir)}")

    def job_finished(self, job: Job, attempt: int, record: dict[str, Any], outcome: str) -> None:
        """Print the attempt's outcome."""
        if outcome == OUTCOME_OK:
            self.done_ids.add(job.id)  # a remade job is counted once
        word = {OUTCOME_OK: "done", OUTCOME_RETRY: "retry", OUTCOME_REMAKE: "remake",
                OUTCOME_FAILED: "FAILED"}[outcome]
        detail = "" if outcome == OUTCOME_OK else f": {record.get('status')}: {record.get('message') or ''}"
        self.console.print(f"[{len(self.done_ids)}/{self.total}] {word} {escape(job.id)} (attempt {attempt}){escape(detail)}",
                           soft_wrap=True, highlight=False)

    def message(self, text: str) -> None:
        """Print a note."""
        self.console.print(escape(text), soft_wrap=True)


class RichProgress(Observer):
    """A live progress bar: done/total, running, failed, bytes hashed."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]wf[/bold]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console, transient=True)
        self.task: Any = None
        self.running = 0
        self.failed = 0
        self.hashed = 0

    def _status(self) -> str:
        return f"running {self.running}, failed {self.failed}, hashed {_size(self.hashed)}"

    def run_started(self, plan: Plan, run_id: int, to_run: int) -> None:
        """Start the bar."""
        self.progress.start()
        self.task = self.progress.add_task("run", total=to_run, status=self._status())

    def job_started(self, job: Job, attempt: int) -> None:
        """Count a running job."""
        self.running += 1
        self.progress.update(self.task, status=self._status())

    def job_finished(self, job: Job, attempt: int, record: dict[str, Any], outcome: str) -> None:
        """Advance the bar; print failures and retries above it."""
        self.running -= 1
        self.hashed += (record.get("totals") or {}).get("bytes_hashed", 0)
        if outcome == OUTCOME_OK:
            self.progress.advance(self.task)
        elif outcome == OUTCOME_FAILED:
            self.failed += 1
        if outcome != OUTCOME_OK:
            self.progress.console.print(
                f"[yellow]{outcome}[/yellow] {escape(job.id)} (attempt {attempt}): "
                f"{escape(str(record.get('status')))}: {escape(str(record.get('message') or ''))}", soft_wrap=True)
        self.progress.update(self.task, status=self._status())

    def message(self, text: str) -> None:
        """Print a note above the bar."""
        self.progress.console.print(escape(text), soft_wrap=True)

    def run_finished(self, summary: RunSummary) -> None:
        """Stop the bar."""
        self.progress.stop()


def default_observers(console: Console | None) -> list[Observer]:
    """A progress bar on a terminal, plain lines otherwise, then the summary."""
    console = console or Console(highlight=False)
    view: Observer = RichProgress(console) if console.is_terminal else PlainLines(console)
    return [view, FinalSummary(console)]
