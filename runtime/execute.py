"""``wf run``: lock the directory, plan against the database, run, clean up.

Exit codes (CLI.md): 0 success; 1 a job failed; 2 usage or Wffile error
(also: another run holds the directory); 3 an integrity error that
retries did not cure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsl.errors import WffileError
from dsl.model import Workflow
from planner.plan import Plan
from planner.resolve import build_plan

from .chaos import ChaosSpecError, chaos_option
from .condor_import import import_condor_results
from .containers import container_problems
from .db import Database, DatabaseOracle, db_path, image_references
from .events import Observer, RunSummary
from .local import ThreadLauncher
from .scheduler import (
    EXIT_INTERRUPTED,
    Interrupted,
    Launcher,
    Options,
    Scheduler,
    default_resources,
    oversized,
)


class DirectoryBusy(Exception):
    """Another ``wf run`` holds the working directory."""


class RunLock:
    """An exclusive lock on ``DIR/.wf/lock``, released by the kernel if we die."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".wf", "lock")
        self.fh: Any = None

    def __enter__(self) -> RunLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise DirectoryBusy(
                f"another wf run ({holder}) is running in {os.path.dirname(os.path.dirname(self.path))}; "
                f"wait for it to finish or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def _clean_leftovers(workdir: str, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    # Under the lock, anything in partial/ or scratch/ belongs to a run that
    # died: never a final output, so it can go; except the partial outputs
    # of batch jobs that run on (``keep``: reattached by the Slurm backend).
    for sub in ("partial", "scratch"):
        root = os.path.join(workdir, ".wf", sub)
        if not keep or sub != "partial":
            shutil.rmtree(root, ignore_errors=True)
            continue
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            if name not in keep:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _running_in_slurm(db: Database) -> list[tuple[str, int, str]]:
    """(job id, attempt, Slurm id) of the jobs the last Slurm run had running when it died."""
    if "external_id" not in db.columns("jobs"):
        return []
    return db.query(
        "SELECT job_id, attempts, external_id FROM jobs WHERE status='running' AND external_id IS NOT NULL"
        " AND run_id=(SELECT max(id) FROM runs WHERE backend='slurm' AND status='running')")


class _Terminated:
    """SIGTERM raises :class:`Interrupted` in the main thread while a run is on."""

    def __enter__(self) -> _Terminated:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def initial_refs(plan: Plan, db: Database, oracle: DatabaseOracle) -> dict[str, str | None]:
    """Reference checksums for files the run reads but does not make.

    A replica's declared checksum; else the recorded one while the file's
    fingerprint is unchanged; else None (computed at first use, then enforced).
    """
    refs: dict[str, str | None] = {}
    decisions = plan.decisions
    for job in plan.to_run():
        files = job.inputs if job.container is None else (*job.inputs, plan.files[job.container])
        for f in files:
            if f.lfn in refs:
                continue
            if f.producer is not None and decisions[f.producer].run:
                continue
            if f.sha256:
                refs[f.lfn] = f.sha256
                continue
            row = db.file(f.lfn)
            if row is None:
                refs[f.lfn] = None
                continue
            try:
                st = os.stat(os.path.join(plan.workdir, f.lfn))
            except OSError:
                refs[f.lfn] = None
                continue
            fresh = row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
            refs[f.lfn] = row.sha256 if fresh else (oracle.current_sha(f.lfn) if f.producer else None)
    return refs


def remove_temp_files(plan: Plan, db: Database, executed: set[str], observers: Sequence[Observer]) -> int:
    """Remove ``temp()`` files whose consumers all succeeded or were reused."""
    removed = 0
    graph = plan.graph
    for lfn, ref in plan.files.items():
        if not ref.temp or ref.producer is None:
            continue
        consumers = graph.succ[ref.producer] if ref.producer in graph else {}
        if not all(c in executed or not plan.decisions[c].run for c in consumers):
            continue
        path = os.path.join(plan.workdir, lfn)
        if os.path.exists(path):
            os.remove(path)
            db.forget_file(lfn)
            removed += 1
    if removed:
        for o in observers:
            o.message(f"removed {removed} temp file(s)")
    return removed


def run_workflow(
    workflow: Workflow,
    workdir: Path,
    targets: list[str],
    *,
    cores: int,
    integrity: str = "full",
    staging: str = "shared",
    retries: int = 0,
    keep_going: bool = False,
    forcerun: Sequence[str] = (),
    force: Sequence[str] = (),
    chaos: str | None = None,
    chaos_seed: int = 0,
    resources: dict[str, int] | None = None,
    container_runtime: str = "bwrap",
    console: Any = None,
    observers: Sequence[Observer] | None = None,
    slurm: Any = None,
) -> int:
    """Plan and run; returns the exit code.

    ``slurm`` (a :class:`runtime.slurm.SlurmOptions`) runs the jobs as Slurm
    batch jobs; ``cores`` then bounds how many are queued or running at once.
    """
    try:
        chaos_cfg = chaos_option(chaos, chaos_seed, integrity)
    except ChaosSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wd = str(Path(workdir).resolve())
    try:
        lock = RunLock(wd).__enter__()
    except DirectoryBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        launcher: Launcher = ThreadLauncher()
        keep: set[str] = set()
        if slurm is not None:
            from .slurm import SlurmLauncher, probe
            problems = probe(slurm.env)
            if problems:
                print("error: cannot run on Slurm: " + "; ".join(problems), file=sys.stderr)
                return 2
            launcher = SlurmLauncher(wd, slurm)
            keep = launcher.survivors()
        _clean_leftovers(wd, keep)
        db = Database(db_path(wd))
        import_condor_results(db, wd)  # what a DAGMan run verified is reused like our own
        if slurm is not None:
            launcher.finished_while_down(_running_in_slurm(db))  # type: ignore[attr-defined]
        db.conn.execute("UPDATE runs SET status='crashed' WHERE status='running'")
        oracle = DatabaseOracle(db, wd, image_references(workflow))
        try:
            plan = build_plan(workflow, wd, targets, oracle=oracle, forcerun=forcerun,
                              force=force, default_retries=retries)
        except WffileError as e:
            print(e.render(), file=sys.stderr)
            return 2
        problems = container_problems(plan, container_runtime)
        if problems:
            print("\n".join(d.render() for d in problems), file=sys.stderr)
            db.close()
            return 2
        # Slurm holds batch jobs to their resources; locally we do.
        budgets = {**default_resources(), **(resources or {})} if launcher.local_resources else {}
        too_big = oversized(plan, budgets)
        if too_big:
            print("error: " + "\nerror: ".join(too_big[:10])
                  + "\n(give more with --resources NAME=N, or lower the rule's resources:)", file=sys.stderr)
            db.close()
            return 2
        if observers is None:
            from .report import default_observers
            observers = default_observers(console)
        to_run = sum(1 for _ in plan.to_run())
        if to_run == 0:
            # Nothing to do leaves the last real run as the one reports describe.
            print("Nothing to be done: every requested output is present and verified by its record.")
            db.close()
            return 0
        run_id = db.start_run(
            started=time.time(), status="running", wffile=os.path.abspath(workflow.path), workdir=wd,
            argv=" ".join(sys.argv), host=socket.gethostname(), pid=os.getpid(), backend=launcher.name,
            integrity=integrity, staging=staging, jobs_total=to_run,
            jobs_pruned=len(plan.order) - to_run)
        db.add_jobs(run_id, ((j.id, j.rule, j.kind.value,
                              "pending" if plan.decisions[j.id].run else "reused",
                              plan.decisions[j.id].reason.text) for j in plan.jobs()))
        db.commit()
        refs = initial_refs(plan, db, oracle)
        executor = Scheduler(plan, db, run_id, Options(cores, integrity, staging, keep_going, chaos_cfg,
                                                       tuple(budgets.items()), container_runtime),
                             observers, refs, launcher)
        with _Terminated():
            summary: RunSummary = executor.run()
        if summary.exit_code == 0:
            remove_temp_files(plan, db, executor.done, observers)
        status = {0: "success", EXIT_INTERRUPTED: "interrupted"}.get(summary.exit_code, "failed")
        db.finish_run(run_id, status, summary.exit_code)
        for o in observers:
            o.run_finished(summary)
        db.close()
        return summary.exit_code
    finally:
        lock.__exit__()
