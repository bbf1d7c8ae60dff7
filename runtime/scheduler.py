"""The scheduler shared by every backend that wf itself drives (local, Slurm).

It decides which job runs next and books every finished attempt; a
:class:`Launcher` decides how an attempt is started and watched (a worker
thread running the wrapper in-process, or a Slurm batch job running the
same wrapper on a node). The scheduler does work proportional to a
finished job's edges, never to the whole DAG: a finished job decrements
its children's pending-parent counts and pushes those that reach zero onto
a priority heap.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import queue
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from planner.commands import rerender_command
from planner.plan import Job, JobKind, Plan

from .chaos import Chaos
from .db import Database
from .events import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_REMAKE,
    OUTCOME_RETRY,
    Observer,
    RunSummary,
)

#: How often one intermediate may be remade after being found corrupt at rest.
MAX_REMAKES = 3
#: How often one job may be lost by the batch system and resubmitted.
MAX_LOST = 2
#: The status of an attempt the batch system lost (no provenance record).
STATUS_LOST = "lost"
#: Seconds between database commits while jobs finish (a crash loses at most this).
COMMIT_EVERY = 0.25

#: ``wf run`` stopped by Ctrl-C or SIGTERM (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: the CLI's options that the executor honours."""

    cores: int = 1
    integrity: str = "full"
    staging: str = "shared"
    keep_going: bool = False
    chaos: Chaos | None = None
    #: Budgets for rules' ``resources:`` (e.g. mem_mb); a resource without a
    #: budget is not limited.
    resources: tuple[tuple[str, int], ...] = ()
    container_runtime: str = "bwrap"


def default_resources() -> dict[str, int]:
    """The machine's memory as the ``mem_mb`` budget."""
    try:
        return {"mem_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)}
    except (ValueError, OSError):
        return {}


def oversized(plan: Plan, budgets: dict[str, int]) -> list[str]:
    """Jobs that need more of a resource than the whole budget (they could never start)."""
    out = []
    for job in plan.to_run():
        for name, amount in job.resources:
            if name in budgets and amount > budgets[name]:
                out.append(f"{job.id} needs {name}={amount}, but only {budgets[name]} is available")
    return out


def job_key(job_id: str) -> str:
    """A file-system-safe, unique name for a job's files under ``.wf/``."""
    digest = hashlib.sha1(job_id.encode()).hexdigest()
    return f"{_UNSAFE.sub('_', job_id)[:60]}-{digest[:10]}"


def _fingerprint(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _shard(key: str) -> str:
    return key[-2:]


class Launcher:
    """How attempts start and how their ends come back; see :class:`Scheduler`.

    ``start`` begins the launcher's threads: they take ready attempts with
    :meth:`Scheduler.take` (holding ``sched.cond``), start them, and report
    with :meth:`Scheduler.started` and :meth:`Scheduler.ended`.
    """

    #: Recorded as the run's backend.
    name = "local"
    #: Whether the scheduler holds rules' ``resources:`` to local budgets.
    local_resources = True
    #: ``--staging copy`` runs in a directory the wrapper makes on the node
    #: (under ``scratch_root``, default $TMPDIR) instead of under ``.wf/scratch``.
    node_scratch = False
    scratch_root: str | None = None

    def slots(self, job: Job, cores: int) -> int:
        """How much of the ``-j`` budget one attempt of ``job`` takes."""
        return min(max(job.threads, 1), cores)

    def start(self, sched: Scheduler) -> None:
        """Start taking and running attempts."""
        raise NotImplementedError

    def join(self) -> None:
        """Wait for the launcher's threads once the scheduler is done."""

    def interrupt(self) -> None:
        """The run is being stopped (Ctrl-C, SIGTERM): stop what is running."""


class Interrupted(Exception):
    """Raised in the main thread by SIGTERM, like KeyboardInterrupt for SIGINT."""


class Scheduler:
    """Runs the jobs a plan marks to run with a launcher; see :meth:`run`."""

    def __init__(self, plan: Plan, db: Database, run_id: int, options: Options,
                 observers: Sequence[Observer], refs: dict[str, str | None],
                 launcher: Launcher):
        self.plan = plan
        self.db = db
        self.run_id = run_id
        self.opt = options
        self.observers = list(observers)
        self.refs = refs
        self.launcher = launcher
        self.workdir = plan.workdir
        self.wfdir = os.path.join(self.workdir, ".wf")
        graph = plan.graph
        self.nodes = graph.nodes
        self.succ = graph.succ
        self.pred = graph.pred
        self.to_run = {j.id for j in plan.to_run()}
        self.order_index = {jid: i for i, jid in enumerate(plan.order)}
        self.pending = {jid: sum(1 for p in self.pred[jid] if p in self.to_run) for jid in self.to_run}
        # Jobs whose children still count them as pending (see _succeeded).
        self.unreleased = set(self.to_run)
        self.ready: list[tuple[int, int, str]] = []
        self.attempts: dict[str, int] = {}
        self.failures_counted: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.external: dict[tuple[str, int], str] = {}
        self.done: set[str] = set()
        self.failed: dict[str, dict[str, Any]] = {}
        self.remakes: dict[str, int] = {}
        self.waiting_on: dict[str, set[str]] = {}
        self.verified_images: dict[str, tuple[int, ...] | None] = {}
        # lfn -> fingerprint of the file when it was hashed in this run (an
        # output when its job succeeded, a raw input at first sight): a job
        # with no command may take it as verified while the file is unchanged.
        self.hashed_files: dict[str, tuple[int, ...]] = {}
        self.made_shards: set[str] = set()
        self.summary = RunSummary(run_id=run_id, total=len(self.to_run),
                                  pruned=len(plan.order) - len(self.to_run))
        self._last_commit = time.monotonic()
        self.cond = threading.Condition()
        self.all_done = False
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        for jid in self.to_run:
            if self.pending[jid] == 0:
                self._push(jid)

    # -- scheduling ------------------------------------------------------------
    def _push(self, jid: str, boost: int = 0) -> None:
        job: Job = self.nodes[jid]["job"]
        heapq.heappush(self.ready, (-(job.priority + boost), self.order_index[jid], jid))

    def _emit(self, name: str, *args: Any) -> None:
        for o in self.observers:
            getattr(o, name)(*args)

    def run(self) -> RunSummary:
        """Run until every job is done or failed; returns the summary.

        The launcher's threads take ready attempts and start them; the main
        thread books each finished attempt (database, observers, children
        made ready). A launcher that sees an attempt end may start the next
        ready one at once, without waiting for that bookkeeping.

        Ctrl-C (KeyboardInterrupt) or :class:`Interrupted` stops the run:
        the launcher stops what runs, the summary's exit code is 130.
        """
        start = time.time()
        self._emit("run_started", self.plan, self.run_id, len(self.to_run))
        self._budget = self.opt.cores
        self._free = dict(self.opt.resources) if self.launcher.local_resources else {}
        self._stop = False
        self._running = 0
        interrupted = False
        self.launcher.start(self)
        cond = self.cond
        results = self._results
        try:
            while True:
                with cond:
                    if self._running == 0 and (self._stop or not self.ready):
                        self.all_done = True
                        cond.notify_all()
                        break
                try:
                    # A pending transaction (a job marked running) is committed
                    # within COMMIT_EVERY even when nothing else happens, so
                    # that wf status sees it.
                    msg = results.get(timeout=COMMIT_EVERY if self.db.pending else None)
                except queue.Empty:
                    self.db.commit()
                    continue
                with cond:
                    if msg[0] == "message":
                        self._emit("message", msg[1])
                        continue
                    if msg[0] == "state":
                        _, jid, attempt, state = msg
                        if self.attempts.get(jid) == attempt and jid not in self.done:
                            self.db.set_job(self.run_id, jid, state)
                        continue
                    if msg[0] == "start":
                        _, job, attempt, external_id, state = msg
                        if external_id is not None:
                            self.external[(job.id, attempt)] = external_id
                        extra = {"external_id": external_id} if external_id is not None else {}
                        self.db.set_job(self.run_id, job.id, state, started=time.time(),
                                        attempts=attempt, **extra)
                        self._emit("job_started", job, attempt)
                        continue
                    _, jid, attempt, need, ctx, record, released = msg
                    if not released:
                        self._release(jid, need)
                    self._running -= 1
                    if not self._finished(jid, attempt, record, ctx) and not self.opt.keep_going:
                        self._stop = True
                    self._maybe_commit()
                    cond.notify_all()
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
            with cond:
                self._stop = True
                self.all_done = True
                cond.notify_all()
            self._emit("message", "interrupted: stopping the running jobs")
            self.launcher.interrupt()
        self.launcher.join()
        self.db.commit()
        s = self.summary
        s.wall_seconds = time.time() - start
        s.failed = len(self.failed)
        s.not_run = len(self.to_run) - len(self.done) - len(self.failed)
        s.failures = list(self.failed.values())
        if interrupted:
            s.exit_code = EXIT_INTERRUPTED
        elif any(f["status"] == "integrity" for f in self.failed.values()):
            s.exit_code = 3
        elif self.failed or s.not_run:
            s.exit_code = 1
        return s

    def take(self) -> tuple[str, Job, int, int, dict[str, Any], dict[str, Any]] | None:
        """Pop the best ready job if it fits the budgets (call with ``cond`` held).

        Returns (job id, job, attempt, slots taken, wrapper spec, context),
        or None when nothing may start now.
        """
        if self._stop or not self.ready:
            return None
        _, _, jid = self.ready[0]
        job: Job = self.nodes[jid]["job"]
        need = self.launcher.slots(job, self.opt.cores)
        # Strict priority order: the best ready job waits for room rather
        # than being overtaken by smaller ones.
        if need > self._budget or any(self._free.get(r, n) < n for r, n in job.resources):
            return None
        heapq.heappop(self.ready)
        self._budget -= need
        for r, n in job.resources:
            if r in self._free:
                self._free[r] -= n
        attempt = self.attempts.get(jid, 0) + 1
        self.attempts[jid] = attempt
        spec, ctx = self._spec(job, attempt)
        self._running += 1
        return jid, job, attempt, need, spec, ctx

    def started(self, job: Job, attempt: int, external_id: str | None = None,
                state: str = "running") -> None:
        """A launcher started an attempt (``external_id``: e.g. the Slurm job id;
        ``state``: ``queued`` while a batch system has yet to run it)."""
        self._results.put(("start", job, attempt, external_id, state))

    def progressed(self, jid: str, attempt: int, state: str) -> None:
        """A launcher saw a started attempt change state (queued -> running)."""
        self._results.put(("state", jid, attempt, state))

    def message(self, text: str) -> None:
        """A launcher has something to tell the user (any thread)."""
        self._results.put(("message", text))

    def ended(self, jid: str, attempt: int, need: int, ctx: dict[str, Any],
              record: dict[str, Any]) -> None:
        """A launcher saw an attempt end with this provenance record.

        A success frees its slots at once, so the launcher can start the
        next ready job; a failure waits for the main thread, which may stop
        the run before anything else starts.
        """
        released = record.get("status") == "ok"
        if released:
            with self.cond:
                self._release(jid, need)
                self.cond.notify_all()
        self._results.put(("done", jid, attempt, need, ctx, record, released))

    def _release(self, jid: str, need: int) -> None:
        self._budget += need
        for r, n in self.nodes[jid]["job"].resources:
            if r in self._free:
                self._free[r] += n

    def _maybe_commit(self) -> None:
        now = time.monotonic()
        if now - self._last_commit >= COMMIT_EVERY:
            self.db.commit()
            self._last_commit = now

    # -- one attempt ---------------------------------------------------------
    def _spec(self, job: Job, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
        key = job_key(job.id)
        shard = _shard(key)
        base = f"{key}.{attempt}"
        logs_dir = os.path.join(self.wfdir, "logs", shard)
        rec_dir = os.path.join(self.wfdir, "records", shard)
        if shard not in self.made_shards:  # 256 shards: a stat per job adds up
            os.makedirs(logs_dir, exist_ok=True)
            os.makedirs(rec_dir, exist_ok=True)
            self.made_shards.add(shard)
        spec: dict[str, Any] = {
            "version": 1,
            "job_id": job.id,
            "attempt": attempt,
            "integrity": self.opt.integrity,
            "stdout": os.path.join(logs_dir, base + ".out"),
            "stderr": os.path.join(logs_dir, base + ".err"),
            "record": os.path.join(rec_dir, base + ".json"),
            "chaos": self.opt.chaos.transfer_spec() if self.opt.chaos else None,
        }
        ctx: dict[str, Any] = {"scratch": None, "stdout": spec["stdout"], "stderr": spec["stderr"],
                               "record": spec["record"]}
        copy = self.opt.staging == "copy" and not job.local
        refs = self.refs
        if job.kind in (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN):
            out = job.outputs[0]
            partial = os.path.join(".wf", "partial", base, out.lfn)
            spec.update(command=None, cwd=self.workdir, staging="shared",
                        inputs=[{"lfn": out.lfn, "sha256": refs.get(out.lfn) or out.sha256,
                                 "path": partial, "source": job.source}],
                        outputs=[{"lfn": out.lfn, "path": partial,
                                  "dest": os.path.join(self.workdir, out.lfn)}])
            ctx["partial"] = os.path.join(self.workdir, ".wf", "partial", base)
            return spec, ctx
        for lfn in job.log:
            os.makedirs(os.path.dirname(os.path.join(self.workdir, lfn)) or ".", exist_ok=True)
        if copy:
            node_local = self.launcher.node_scratch
            scratch = self.wfdir if node_local else os.path.join(self.wfdir, "scratch", base)
            ctx["scratch"] = None if node_local else scratch
            spec.update(
                command=job.command, cwd=scratch, staging="copy",
                inputs=[{"lfn": f.lfn, "sha256": refs.get(f.lfn), "path": f.lfn,
                         "source": os.path.join(self.workdir, f.lfn)} for f in job.inputs],
                outputs=[{"lfn": f.lfn, "path": f.lfn, "dest": os.path.join(self.workdir, f.lfn)}
                         for f in job.outputs],
            )
            if node_local:
                # The wrapper makes a directory on the node, runs there, copies
                # the logs back and removes it.
                spec["scratch"] = {"root": self.launcher.scratch_root,
                                   "logs": [{"path": lfn, "dest": os.path.join(self.workdir, lfn)}
                                            for lfn in job.log]}
            else:
                for lfn in job.log:
                    os.makedirs(os.path.dirname(os.path.join(scratch, lfn)) or scratch, exist_ok=True)
            if job.container is not None:
                # Copied into the scratch directory and verified there, like any input.
                spec["container"] = {
                    "lfn": job.container, "sha256": refs.get(job.container),
                    "image": os.path.join(".wf-image", os.path.basename(job.container)),
                    "source": os.path.join(self.workdir, job.container),
                    "cache": os.path.join(self.wfdir, "containers"), "runtime": self.opt.container_runtime,
                }
            return spec, ctx
        partial_root = os.path.join(".wf", "partial", base)
        ctx["partial"] = os.path.join(self.workdir, partial_root)
        # One directory per output keeps each file's own name (tools read
        # formats from it) without recreating the output's directory tree.
        mapping = {f.lfn: os.path.join(partial_root, str(i), os.path.basename(f.lfn))
                   for i, f in enumerate(job.outputs)}
        command = job.command
        if command is not None and mapping:
            command = rerender_command(self.plan.workflow, job, mapping)
        inputs = [{"lfn": f.lfn, "sha256": refs.get(f.lfn), "path": f.lfn} for f in job.inputs]
        full = self.opt.integrity == "full"
        if full and command is None and job.kind is JobKind.COMPUTE:
            # A target (no command) runs nothing that reads its inputs: a file
            # hashed in this run and unchanged since needs no second reading.
            for item in inputs:
                if item["sha256"] is not None and self._hashed_unchanged(item["lfn"]):
                    item["verified"] = True
        unhashed = {item["lfn"]: _fingerprint(os.path.join(self.workdir, item["lfn"]))
                    for item in inputs if full and item["sha256"] is None}
        if unhashed:
            # Seen before the job starts: its first-sight hash is trusted
            # later only if the job (its command) left the file as it was.
            ctx["unhashed"] = unhashed
        spec.update(
            command=command, cwd=self.workdir, staging="shared",
            inputs=inputs,
            outputs=[{"lfn": f.lfn, "path": mapping[f.lfn],
                      "dest": os.path.join(self.workdir, f.lfn)} for f in job.outputs],
            # emptied by the renames of a successful attempt: removed by the wrapper,
            # in the worker thread, not by the scheduler
            cleanup=[os.path.dirname(p) for p in mapping.values()] + [partial_root],
        )
        if job.container is not None:
            os.makedirs(ctx["partial"], exist_ok=True)
            image = os.path.join(self.workdir, job.container)
            spec["container"] = {
                "lfn": job.container, "sha256": refs.get(job.container), "image": image,
                "verified": self._image_unchanged(job.container, image),
                "cache": os.path.join(self.wfdir, "containers"), "runtime": self.opt.container_runtime,
                # The job sees the working directory, but not the database, the
                # records or the image cache: only its own partial outputs in .wf/.
                "ro_binds": [self.wfdir], "rw_binds": [ctx["partial"]],
            }
        return spec, ctx

    def _hashed_unchanged(self, lfn: str) -> bool:
        """True if ``lfn`` is the very file hashed earlier in this run (inode, size and times)."""
        seen = self.hashed_files.get(lfn)
        return seen is not None and seen == _fingerprint(os.path.join(self.workdir, lfn))

    def _image_unchanged(self, lfn: str, path: str) -> bool:
        """True if ``path`` is the very file verified before (inode, size and times)."""
        seen = self.verified_images.get(lfn)
        return seen is not None and seen == _fingerprint(path)

    def _finished(self, jid: str, attempt: int, record: dict[str, Any], ctx: dict[str, Any]) -> bool:
        """Book-keep one attempt; False when the job failed for good."""
        job: Job = self.nodes[jid]["job"]
        status = record.get("status")
        scratch = ctx.get("scratch")
        if scratch:
            self._copy_logs_back(job, scratch)
        self.db.add_attempt(self.run_id, jid, record, ctx["stdout"], ctx["stderr"], ctx["record"],
                            external_id=self.external.pop((jid, attempt), None))
        self.summary.bytes_hashed += (record.get("totals") or {}).get("bytes_hashed", 0)
        for e in record.get("events") or ():
            if e.get("kind") == "generate" and e.get("ok") and e.get("actual"):
                self._first_sight(e["file"], e["actual"], (ctx.get("unhashed") or {}).get(e["file"]))
            if e.get("kind") == "compare" and not e.get("ok"):
                self.hashed_files.pop(e.get("file"), None)
                self.summary.integrity_errors += 1
                if self.opt.chaos:
                    self.db.mark_chaos_detected(self.run_id, e.get("file"))
        for e in record.get("events") or ():
            if e.get("stage") == "container" and e.get("ok") and not e.get("cached") \
                    and ctx.get("scratch") is None:
                self.verified_images[e["file"]] = _fingerprint(os.path.join(self.workdir, e["file"]))
        if status == "ok":
            if job.kind is JobKind.CONTAINER_STAGE_IN:
                # The copy was verified as it landed: that check stands for later jobs.
                lfn = job.outputs[0].lfn
                self.verified_images[lfn] = _fingerprint(os.path.join(self.workdir, lfn))
            self._succeeded(job, record)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            if ctx.get("partial") and os.path.isdir(ctx["partial"]):
                shutil.rmtree(ctx["partial"], ignore_errors=True)
            self._emit("job_finished", job, attempt, record, OUTCOME_OK)
            return True
        if ctx.get("partial"):
            shutil.rmtree(ctx["partial"], ignore_errors=True)
        if status == "integrity":
            bad = _pre_job_mismatch(record)
            if bad is not None and self._remake(jid, bad):
                self.summary.remade += 1
                self.db.set_job(self.run_id, jid, "waiting")
                self._emit("job_finished", job, attempt, record, OUTCOME_REMAKE)
                return True
        if status == STATUS_LOST:
            # The batch system lost the attempt (node failure, cancelled by an
            # admin, time limit): not the job's fault, so it does not use up
            # the rule's retries, but it is bounded like them.
            lost = self.lost.get(jid, 0) + 1
            self.lost[jid] = lost
            if lost <= MAX_LOST:
                self.summary.retries += 1
                self.db.set_job(self.run_id, jid, "retrying")
                self._push(jid)
                self._emit("job_finished", job, attempt, record, OUTCOME_RETRY)
                return True
        used = self.failures_counted.get(jid, 0) + 1
        self.failures_counted[jid] = used
        if used <= job.retries:
            self.summary.retries += 1
            self.db.set_job(self.run_id, jid, "retrying")
            self._push(jid)
            self._emit("job_finished", job, attempt, record, OUTCOME_RETRY)
            return True
        self.failed[jid] = {
            "job": jid, "status": status, "attempt": attempt, "exit_code": record.get("exit_code"),
            "message": record.get("message"), "stderr": ctx["stderr"],
            "events": [e for e in record.get("events") or () if not e.get("ok")],
        }
        self.db.set_job(self.run_id, jid, "failed", finished=time.time())
        self._emit("job_finished", job, attempt, record, OUTCOME_FAILED)
        return False

    def _first_sight(self, lfn: str, sha: str, before: tuple[int, ...] | None = None) -> None:
        # The checksum computed the first time a raw input is used is the
        # reference for every later use.
        if self.refs.get(lfn) is None:
            self.refs[lfn] = sha
            path = os.path.join(self.workdir, lfn)
            try:
                st = os.stat(path)
            except OSError:
                return
            self.db.record_file(lfn, sha, st.st_size, st.st_mtime_ns, None, self.run_id)
            now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if before is not None and before == now:
                # Unchanged from before the job started until after it ended,
                # so unchanged since it was hashed: the command did not touch it.
                self.hashed_files[lfn] = now

    def _succeeded(self, job: Job, record: dict[str, Any]) -> None:
        jid = job.id
        outputs: dict[str, str] = {}
        for f in record.get("files") or ():
            if f.get("role") == "output" and f.get("sha256"):
                outputs[f["lfn"]] = f["sha256"]
        protected = {f.lfn for f in job.outputs if f.protected}
        for f in job.outputs:
            sha = outputs.get(f.lfn)
            if sha is None:
                continue
            path = os.path.join(self.workdir, f.lfn)
            st = os.stat(path)
            if f.lfn in protected:
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                st = os.stat(path)
            self.refs[f.lfn] = sha
            self.hashed_files[f.lfn] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            self.db.record_file(f.lfn, sha, st.st_size, st.st_mtime_ns, jid, self.run_id)
        if job.kind is JobKind.COMPUTE and job.outputs:
            inputs = {f.lfn: self.refs.get(f.lfn) or "" for f in job.inputs}
            image_sha = self.refs.get(job.container) if job.container else None
            self.db.record_product(jid, job.command, inputs, outputs, image_sha, self.run_id)
        self.done.add(jid)
        self.summary.succeeded += 1
        self.db.set_job(self.run_id, jid, "done", finished=time.time())
        if self.opt.chaos and self.opt.chaos.rest:
            self._chaos_rest(job, outputs)
        if jid in self.unreleased:
            # Only a first success releases the children: a remade producer's
            # children counted it already, and only its waiters wait again.
            self.unreleased.discard(jid)
            for child in self.succ[jid]:
                if child in self.to_run and child not in self.done:
                    self.pending[child] -= 1
                    if self.pending[child] == 0 and child not in self.failed:
                        self._push(child)
        for waiter in self.waiting_on.pop(jid, ()):
            self.pending[waiter] -= 1
            if self.pending[waiter] == 0:
                self._push(waiter)

    def _chaos_rest(self, job: Job, outputs: dict[str, str]) -> None:
        # Only intermediates: a file some job still has to read. Final
        # outputs are never harmed (nothing would be left to catch it), and a
        # file a target rule (no command) lists is a final output, whoever
        # else reads it.
        chaos = self.opt.chaos
        assert chaos is not None
        for f in job.outputs:
            if f.lfn not in outputs:
                continue
            readers = [self.nodes[c]["job"] for c in self.succ[job.id]
                       if c in self.to_run and c not in self.done]
            readers = [r for r in readers if any(i.lfn == f.lfn for i in r.inputs)]
            if not readers or any(r.command is None for r in readers):
                continue
            path = os.path.join(self.workdir, f.lfn)
            if chaos.corrupt_at_rest(path, job.id, self.attempts[job.id], f.lfn):
                self.hashed_files.pop(f.lfn, None)  # no longer the bytes that were hashed
                self.db.add_chaos(self.run_id, job.id, self.attempts[job.id],
                                  [{"kind": "rest", "file": f.lfn, "stage": "rest", "detected": 0}])
                self._emit("message", f"chaos: flipped a byte of {f.lfn} at rest")

    def _remake(self, consumer: str, lfn: str) -> bool:
        """Rerun the producer of a corrupt intermediate; the consumer waits for it."""
        ref = self.plan.files.get(lfn)
        producer = ref.producer if ref is not None else None
        # A stage-in job whose source is corrupt cannot remake its own input.
        if producer is None or producer == consumer or producer not in self.nodes:
            return False
        count = self.remakes.get(lfn, 0)
        if count >= MAX_REMAKES:
            return False
        self.remakes[lfn] = count + 1
        # Forget the fingerprint so a later plan hashes the file again.
        self.db.forget_file(lfn)
        self.refs.pop(lfn, None)
        self.hashed_files.pop(lfn, None)
        self.pending[consumer] = self.pending.get(consumer, 0) + 1
        self.waiting_on.setdefault(producer, set()).add(consumer)
        if producer in self.done or producer not in self.to_run:
            self.done.discard(producer)
            if producer not in self.to_run:
                self.to_run.add(producer)
                self.summary.total += 1
            self.summary.succeeded -= 1 if producer in self.attempts else 0
            self.pending[producer] = 0
            self._push(producer, boost=1000)
        self._emit("message", f"{lfn} is corrupt at rest: remaking it with {producer}")
        return True

    def _copy_logs_back(self, job: Job, scratch: str) -> None:
        # A failed job keeps its log: copy it back whatever the outcome.
        for lfn in job.log:
            src = os.path.join(scratch, lfn)
            if os.path.exists(src):
                dst = os.path.join(self.workdir, lfn)
                os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                shutil.copyfile(src, dst)


def _pre_job_mismatch(record: dict[str, Any]) -> str | None:
    """The input found corrupt where it lies, or None.

    A failed ``stage-in`` comparison alone is a bad copy, not a bad source:
    a plain retry cures it. The wrapper adds a failed ``source`` comparison
    when the source itself does not match.
    """
    for e in record.get("events") or ():
        if e.get("stage") in ("pre-job", "source") and e.get("kind") == "compare" and not e.get("ok"):
            return e.get("file")
    return None


Progress = Callable[[int, int], None]
