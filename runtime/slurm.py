"""The Slurm backend: the shared scheduler, each attempt a batch job running the wrapper.

The scheduler (:mod:`runtime.scheduler`) is the local backend's: it decides
what runs next, books every attempt, retries, remakes, reuses. This module
only launches and watches. Each ready attempt's spec is written under
``.wf/slurm/specs/``; ``sbatch`` runs the job wrapper on a node with it
(threads become ``--cpus-per-task``, ``mem_mb`` ``--mem``); wide fan-outs of
one rule go out as a job array, one ``sbatch`` for many jobs. Completion
is read from ``squeue --states=all`` (no accounting database is needed),
then from the job's provenance record: Slurm's verdict alone is never
trusted, exactly as an exit code is not.

Every batch job carries a comment ``wf:<directory tag>:<spec>`` naming its
spec, so a later ``wf run`` in the same directory finds the jobs a killed
one left queued or running and reattaches to them instead of submitting
them twice (see :meth:`SlurmLauncher.survivors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import py_compile
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.plan import Job, JobKind

from . import wrapper
from .scheduler import STATUS_LOST, Launcher, Scheduler, job_key

TOOLS = ("sbatch", "squeue", "scancel", "scontrol")
#: States in which a job may still run (squeue's long names).
ACTIVE = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT",
})
#: States in which the batch script ran to its end: the record says how it went.
FINISHED = frozenset({"COMPLETED", "FAILED"})
#: Seconds to wait for the record of a finished job to show (a shared file
#: system may show it late) before the attempt counts as lost.
RECORD_GRACE = 10.0
#: sbatch calls per submission when the controller is busy or unreachable.
SBATCH_TRIES = 3
#: What sbatch says when asking again may help.
_TRANSIENT = re.compile(r"timed out|temporarily unavailable|try again|Unable to contact|"
                        r"Resource temporarily|Socket|Connection refused|Transport endpoint",
                        re.IGNORECASE)
#: A rule with at least this many jobs ready at once goes out as a job array.
ARRAY_MIN = 8
#: Jobs per sbatch array (well under Slurm's default MaxArraySize of 1001).
ARRAY_MAX = 1000


class SlurmUnavailable(Exception):
    """What is missing to submit to Slurm from here."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SlurmOptions:
    """``--slurm-*`` options; rules override them with ``resources:``."""

    partition: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()
    #: Seconds between two looks at the queue.
    poll: float = 0.25
    #: The interpreter that runs the wrapper on the nodes (a shared file system
    #: shows the nodes this one).
    python: str = sys.executable
    #: Node-local scratch root for ``--staging copy`` (default: $TMPDIR, else /tmp).
    scratch_root: str | None = None
    #: Jobs of one rule run one after another in one array task (Pegasus's
    #: horizontal clustering): fewer batch jobs for many short ones. None:
    #: automatic (see :meth:`SlurmLauncher._per_task`).
    bundle: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def probe(env: dict[str, str] | None = None, timeout: float = 30) -> list[str]:
    """What is missing to submit to Slurm from here (empty: nothing)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return [f"{', '.join(missing)} not found on PATH (install the Slurm client tools)"]
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout,
                              env=_env(env), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [f"'scontrol ping' did not answer within {timeout:.0f} s"]
    if proc.returncode != 0 or " is UP" not in proc.stdout:
        said = " ".join((proc.stdout + proc.stderr).split())
        return [f"no Slurm controller answers ('scontrol ping': {said or 'no output'})"]
    return []


def _env(extra: dict[str, str] | None) -> dict[str, str] | None:
    return {**os.environ, **extra} if extra else None


def directory_tag(workdir: str) -> str:
    """Ten hex digits naming a working directory in batch job comments."""
    return hashlib.sha256(os.path.realpath(workdir).encode()).hexdigest()[:10]


def plan_sha(job: Job, spec: dict[str, Any]) -> str:
    """What an attempt would compute: the planned command, inputs with their
    reference checksums, outputs and image. An attempt left running by an
    earlier ``wf run`` is reattached only if this still matches."""
    what = {
        "command": job.command,
        "inputs": [(i.get("lfn"), i.get("sha256")) for i in spec.get("inputs", ())],
        "outputs": [o.get("lfn") for o in spec.get("outputs", ())],
        "container": [(c.get("lfn"), c.get("sha256")) for c in [spec.get("container") or {}]],
        "integrity": spec.get("integrity"),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def parse_squeue(text: str) -> dict[str, tuple[str, str, str]]:
    """``squeue -h -r -o %i|%T|%r|%k`` output -> {job id: (state, reason, comment)}."""
    out: dict[str, tuple[str, str, str]] = {}
    for line in text.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4:
            out[parts[0].strip()] = (parts[1].strip(), parts[2].strip(), parts[3].strip())
    return out


@dataclass(slots=True)
class _Flight:
    """One attempt queued or running in Slurm."""

    jid: str
    attempt: int
    need: int
    ctx: dict[str, Any]
    record: str
    submitted: float
    state: str = "PENDING"
    ended_at: float | None = None


class SlurmLauncher(Launcher):
    """Submits ready attempts with sbatch and watches them with squeue."""

    name = "slurm"
    local_resources = False  # Slurm holds jobs to their --mem, not us
    node_scratch = True

    def __init__(self, workdir: str, options: SlurmOptions):
        self.workdir = workdir
        self.opt = options
        self.scratch_root = options.scratch_root
        self.env = _env(options.env)
        self.tag = directory_tag(workdir)
        self.base = os.path.join(workdir, ".wf", "slurm")
        self.bin = os.path.join(self.base, "bin")
        # Slurm job id -> the attempts it runs (several: a bundle).
        self.flights: dict[str, list[_Flight]] = {}
        self.lock = threading.Lock()
        self.cancelled = False
        self._thread: threading.Thread | None = None
        self._sched: Scheduler | None = None
        self._adoptable: dict[str, tuple[str, str, dict[str, Any], str]] = {}
        self._array_seq = 0
        self.submit_calls = 0
        self._pool: ThreadPoolExecutor | None = None
        self._cpus: int | None = None
        self._reported: set[tuple[str, int]] = set()

    # -- before the run --------------------------------------------------------
    def survivors(self) -> set[str]:
        """Find batch jobs an earlier ``wf run`` here left behind.

        Those whose spec is still on disk may be reattached; the names of
        their partial-output directories are returned so that the clean-up
        of leftovers spares them. The others are cancelled.
        """
        keep: set[str] = set()
        prefix = f"wf:{self.tag}:"
        for sid, (state, _reason, comment) in self._squeue(None).items():
            if not comment.startswith(prefix) or state not in ACTIVE | FINISHED:
                continue
            specs = [(p, _load_json(p)) for p in self._specs_of(sid, comment[len(prefix):])]
            if not specs or any(sp is None or not isinstance(sp.get("job_id"), str) for _p, sp in specs):
                self._scancel([sid])
                continue
            for spec_path, spec in specs:
                assert spec is not None
                ctx = spec.get("wf_ctx") or {}
                self._adoptable[spec["job_id"]] = (sid, spec_path, ctx, spec.get("plan_sha", ""))
                if ctx.get("partial"):
                    keep.add(os.path.basename(ctx["partial"]))
        return keep

    def finished_while_down(self, rows: Iterable[tuple[str, int, str]]) -> None:
        """Jobs the database says were running in Slurm when wf died: (job id,
        attempt, Slurm id). One the controller has forgotten by now (finished
        longer ago than its MinJobAge) whose provenance record is on disk is
        booked from that record instead of being run again."""
        for job_id, attempt, sid in rows:
            if job_id in self._adoptable or not sid or not attempt:
                continue
            spec_path = self._spec_path(job_id, int(attempt))
            spec = _load_json(spec_path)
            if spec is None or spec.get("job_id") != job_id:
                continue
            ctx = spec.get("wf_ctx") or {}
            record = _load_json(ctx.get("record"))
            if record is None or record.get("attempt") != int(attempt) or record.get("job_id") != job_id:
                continue
            self._adoptable[job_id] = (sid, spec_path, ctx, spec.get("plan_sha", ""))

    def _spec_path(self, job_id: str, attempt: int) -> str:
        key = job_key(job_id)
        return os.path.join(self.base, "specs", key[-2:], f"{key}.{attempt}.json")

    def _specs_of(self, sid: str, token: str) -> list[str]:
        # A plain job names its spec; an array task names its list of bundles.
        if token.startswith("@"):
            _, _, index = sid.partition("_")
            bundles = _load_json_list(os.path.join(self.base, "arrays", token[1:]))
            if not index.isdigit() or int(index) >= len(bundles):
                return []
            return [p for p in bundles[int(index)] if isinstance(p, str)]
        path = os.path.join(self.base, "specs", token)
        return [path] if os.path.isfile(path) else []

    # -- the launcher interface ------------------------------------------------
    def slots(self, job: Job, cores: int) -> int:
        """Every batch job counts one against ``-j`` (Slurm places the cores)."""
        return 1

    def start(self, sched: Scheduler) -> None:
        """Ship the wrapper, cancel stale leftovers, start the driver thread."""
        self._sched = sched
        os.makedirs(self.bin, exist_ok=True)
        here = Path(__file__).parent
        for name in ("wrapper.py", "images.py", "sandbox.py"):  # the wrapper imports the two for containers
            dst = os.path.join(self.bin, name)
            tmp = dst + ".tmp"
            shutil.copyfile(here / name, tmp)
            os.replace(tmp, dst)
            py_compile.compile(dst, doraise=False)  # once here, not by the first jobs at once
        # A batch job none of whose jobs this run wants is cancelled; a bundle
        # with at least one wanted job runs on (its other jobs are done, or
        # harmless: their outputs land verified, just not booked).
        wanted = {sid for jid, (sid, *_rest) in self._adoptable.items() if jid in sched.to_run}
        stale = sorted({sid for sid, *_rest in self._adoptable.values()} - wanted)
        for jid in [j for j in self._adoptable if j not in sched.to_run]:
            del self._adoptable[jid]
        self._scancel(stale)
        self._thread = threading.Thread(target=self._drive, name="wf-slurm", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the driver thread."""
        if self._thread is not None:
            self._thread.join(timeout=10 if self.cancelled else None)
        if self._pool is not None:
            self._pool.shutdown(wait=not self.cancelled, cancel_futures=True)
        # Reattachable jobs the run did not need any more (it stopped early).
        self._scancel(sorted({sid for sid, *_rest in self._adoptable.values()}))

    def interrupt(self) -> None:
        """Cancel every batch job of this run (Ctrl-C, SIGTERM)."""
        with self.lock:
            self.cancelled = True
            ids = list(self.flights)
        self._scancel(ids)

    # -- the driver ------------------------------------------------------------
    def _drive(self) -> None:
        sched = self._sched
        assert sched is not None
        cond = sched.cond
        last_poll = 0.0
        while True:
            batch = []
            with cond:
                while not sched.all_done:
                    item = sched.take()
                    if item is None:
                        break
                    batch.append(item)
                finished = sched.all_done
            if finished and (not self.flights or self.cancelled):
                return
            if batch:
                try:
                    self._launch(batch)
                except Exception as e:  # noqa: BLE001 (a launcher bug must not hang the run)
                    self._fail_unstarted(batch, f"Slurm launcher error: {e!r}")
            now = time.monotonic()
            # Slurm itself starts jobs about once a second: with many jobs in
            # flight, looking more often than that only loads the controller.
            poll = min(1.0, self.opt.poll + 0.002 * len(self.flights))
            if self.flights and now - last_poll >= poll:
                last_poll = now
                try:
                    self._poll()
                except Exception as e:  # noqa: BLE001 (look again at the next poll)
                    self._sched_message(f"could not read the Slurm queue: {e!r}")
            if not batch:
                with cond:
                    if not sched.all_done:
                        cond.wait(timeout=self.opt.poll)

    def _fail_unstarted(self, batch: list[tuple[str, Job, int, int, dict[str, Any], dict[str, Any]]],
                        why: str) -> None:
        """End, as failed attempts, the taken attempts that never reached Slurm."""
        for jid, job, attempt, need, _spec, ctx in batch:
            if (jid, attempt) not in self._reported:
                self._sched_started(job, attempt, None)
                self._end(jid, attempt, need, ctx, _synthetic(attempt, "failed", why))

    def _launch(self, batch: list[tuple[str, Job, int, int, dict[str, Any], dict[str, Any]]]) -> None:
        groups: dict[tuple[str, ...], list[tuple[Job, int, int, dict[str, Any], dict[str, Any]]]] = {}
        for _jid, job, attempt, need, spec, ctx in batch:
            if job.local or (job.command is None and job.kind is JobKind.COMPUTE):
                # localrules, and targets that only gather (like ``all``), run
                # here: a batch job would only add queueing to a few hashes.
                self._run_here(job, attempt, need, spec, ctx)
                continue
            spec["plan_sha"] = plan_sha(job, spec)
            spec["wf_ctx"] = ctx
            if self._adopt(job, attempt, need, spec, ctx):
                continue
            # An earlier run's record under this attempt's name must not pass
            # for this attempt's.
            with contextlib.suppress(OSError):
                os.unlink(ctx["record"])
            groups.setdefault((job.rule or job.kind.value, *self._options(job)), []).append(
                (job, attempt, need, spec, ctx))
        for key, items in groups.items():
            per_task = self._per_task(items[0][0], len(items))
            if len(items) < ARRAY_MIN and per_task == 1:
                for item in items:
                    self._submit_one(item)
                continue
            bundles = [items[i:i + per_task] for i in range(0, len(items), per_task)]
            options = list(key[1:])
            if per_task > 1:
                # A task runs its jobs one after another: its time limit is theirs summed.
                options = [f"--time={int(o[7:]) * per_task}" if o.startswith("--time=") and o[7:].isdigit()
                           else o for o in options]
            for i in range(0, len(bundles), ARRAY_MAX):
                self._submit_array(key[0], options, bundles[i:i + ARRAY_MAX])

    def _per_task(self, job: Job, ready: int) -> int:
        """Jobs per array task for ``ready`` jobs like ``job``.

        ``--slurm-bundle N`` says; by default (auto) as many as keep at least
        twice as many tasks as the cluster can run at once: more ready jobs
        than that would wait in the queue anyway, and one task running several
        short jobs saves a Python start-up and a slurmstepd per job.
        """
        if self.opt.bundle is not None:
            return max(1, self.opt.bundle)
        slots = self._cluster_cpus() // max(job.threads, 1)
        if slots <= 0:
            return 1
        return max(1, -(-ready // (2 * slots)))

    def _cluster_cpus(self) -> int:
        """CPUs of the partition jobs go to (``sinfo``), 0 when unknown; asked once per run."""
        if self._cpus is None:
            argv = ["sinfo", "--noheader", "--format=%C"]
            if self.opt.partition:
                argv.append(f"--partition={self.opt.partition}")
            try:
                out = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                     stdin=subprocess.DEVNULL, timeout=30).stdout
                # "allocated/idle/other/total" per line (one line per partition).
                self._cpus = sum(int(line.split("/")[3]) for line in out.split() if line.count("/") == 3)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self._cpus = 0
        return self._cpus

    def _run_here(self, job: Job, attempt: int, need: int, spec: dict[str, Any], ctx: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="wf-here")
        self._sched_started(job, attempt, None)

        def run() -> None:
            try:
                record = wrapper.run_spec(spec)
            except Exception as e:  # the wrapper itself broke: a failed attempt, kept
                record = _synthetic(attempt, "failed", f"wrapper error: {e!r}")
            self._end(job.id, attempt, need, ctx, record)

        self._pool.submit(run)

    def _adopt(self, job: Job, attempt: int, need: int, spec: dict[str, Any], ctx: dict[str, Any]) -> bool:
        found = self._adoptable.pop(job.id, None)
        if found is None:
            return False
        sid, _spec_path, old_ctx, old_sha = found
        if old_sha != spec["plan_sha"] or not old_ctx.get("record"):
            self._scancel([sid])  # made for another plan: it must not land
            return False
        flight = _Flight(job.id, attempt, need, {**ctx, **old_ctx}, old_ctx["record"], time.time())
        with self.lock:
            self.flights.setdefault(sid, []).append(flight)
        self._sched_started(job, attempt, sid, "queued")
        self._sched_message(f"reattached to Slurm job {sid} ({job.id})")
        return True

    def _options(self, job: Job) -> list[str]:
        res = dict(job.resources)
        args = [f"--cpus-per-task={max(job.threads, 1)}"]
        if isinstance(res.get("mem_mb"), int):
            args.append(f"--mem={res['mem_mb']}")
        if isinstance(res.get("runtime"), int):
            args.append(f"--time={res['runtime']}")
        if isinstance(res.get("disk_mb"), int):
            args.append(f"--tmp={res['disk_mb']}")
        partition = res.get("slurm_partition") or self.opt.partition
        account = res.get("slurm_account") or self.opt.account
        if partition:
            args.append(f"--partition={partition}")
        if account:
            args.append(f"--account={account}")
        args += self.opt.extra
        if isinstance(res.get("slurm_extra"), str):
            args += shlex.split(res["slurm_extra"])
        return args

    def _write_spec(self, job: Job, attempt: int, spec: dict[str, Any]) -> tuple[str, str]:
        path = self._spec_path(job.id, attempt)
        rel = os.path.relpath(path, os.path.join(self.base, "specs"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, separators=(",", ":"))
        return rel, path

    def _wrap(self, *args: str) -> str:
        # exec: Slurm signals (scancel, time limit) reach the wrapper itself.
        # -S -E: the wrapper needs only the standard library (site and its
        # .pth files cost ~30 ms per job); importing it (rather than running
        # it as a script) uses its cached bytecode instead of compiling it.
        boot = f"import sys; sys.path.insert(0, {self.bin!r}); import wrapper; sys.exit(wrapper.main())"
        return "exec " + " ".join(shlex.quote(a) for a in (self.opt.python, "-S", "-E", "-c", boot, *args))

    def _submit_one(self, item: tuple[Job, int, int, dict[str, Any], dict[str, Any]]) -> None:
        job, attempt, need, spec, ctx = item
        rel, path = self._write_spec(job, attempt, spec)
        out = os.path.join(self.base, "out", rel[:-len(".json")] + ".slurm")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        argv = ["sbatch", "--parsable", f"--job-name=wf:{job.id}", f"--comment=wf:{self.tag}:{rel}",
                f"--chdir={self.workdir}", f"--output={out}", *self._options(job),
                f"--wrap={self._wrap(path)}"]
        sid = self._sbatch(argv, [(job, attempt, need, ctx)])
        if sid is not None:
            self._track(sid, job, attempt, need, ctx, out)

    def _submit_array(self, rule: str, options: list[str],
                      bundles: list[list[tuple[Job, int, int, dict[str, Any], dict[str, Any]]]]) -> None:
        # Task i of the array runs the specs of bundle i, one after another.
        listing_data = [[self._write_spec(job, attempt, spec)[1] for job, attempt, _n, spec, _c in bundle]
                        for bundle in bundles]
        self._array_seq += 1
        name = f"{os.getpid()}-{int(time.time() * 1000)}-{self._array_seq}.json"
        listing = os.path.join(self.base, "arrays", name)
        os.makedirs(os.path.dirname(listing), exist_ok=True)
        Path(listing).write_text(json.dumps(listing_data), encoding="utf-8")
        out_dir = os.path.join(self.base, "out", "arrays")
        os.makedirs(out_dir, exist_ok=True)
        jobs = sum(len(b) for b in bundles)
        argv = ["sbatch", "--parsable", f"--array=0-{len(bundles) - 1}",
                f"--job-name=wf:{rule}[{jobs} jobs]", f"--comment=wf:{self.tag}:@{name}",
                f"--chdir={self.workdir}", f"--output={out_dir}/%A_%a.slurm", *options,
                f"--wrap={self._wrap('--array', listing)}"]
        sid = self._sbatch(argv, [(j, a, n, c) for bundle in bundles for j, a, n, _s, c in bundle])
        if sid is None:
            return
        for i, bundle in enumerate(bundles):
            for job, attempt, need, _spec, ctx in bundle:
                self._track(f"{sid}_{i}", job, attempt, need, ctx, os.path.join(out_dir, f"{sid}_{i}.slurm"))

    def _sbatch(self, argv: list[str], items: list[tuple[Job, int, int, dict[str, Any]]]) -> str | None:
        comment = next(a[len("--comment="):] for a in argv if a.startswith("--comment="))
        said = ""
        for attempt in range(SBATCH_TRIES):
            if attempt:
                time.sleep(2 ** attempt)
                # A timed-out sbatch may have submitted the job after all: the
                # comment names it, so it is never submitted twice.
                found = [sid for sid, (_st, _r, c) in self._squeue(None).items() if c == comment]
                if found:
                    return found[0].partition("_")[0]
            self.submit_calls += 1
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                      stdin=subprocess.DEVNULL, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                said = str(e)
                continue
            said = (proc.stderr or proc.stdout).strip()
            sid = proc.stdout.strip().split(";")[0] if proc.returncode == 0 else ""
            if sid.isdigit():
                return sid
            if not _TRANSIENT.search(said):
                break  # a refusal (bad partition, bad option): asking again will not help
        # The submission failed: a failed attempt of each job, kept with
        # sbatch's words (a bad --slurm-extra does not retry forever).
        for job, attempt, need, ctx in items:
            self._sched_started(job, attempt, None)
            self._end(job.id, attempt, need, ctx, _synthetic(attempt, "failed", f"sbatch failed: {said}"))
        return None

    def _track(self, sid: str, job: Job, attempt: int, need: int, ctx: dict[str, Any], out: str) -> None:
        ctx = {**ctx, "slurm_out": out}
        with self.lock:
            self.flights.setdefault(sid, []).append(_Flight(job.id, attempt, need, ctx, ctx["record"], time.time()))
            cancelled = self.cancelled
        self._sched_started(job, attempt, sid, "queued")
        if cancelled:  # Ctrl-C arrived while sbatch was running
            self._scancel([sid])

    # -- watching ----------------------------------------------------------------
    def _squeue(self, ids: Iterable[str] | None) -> dict[str, tuple[str, str, str]]:
        argv = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r|%k"]
        if ids is not None:
            # Array tasks are asked for by their array's id.
            argv.append("--jobs=" + ",".join(sorted({i.partition("_")[0] for i in ids})))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                  stdin=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if proc.returncode != 0:
            # squeue refuses a list of ids it no longer knows at all: ask for all.
            if ids is not None and "Invalid job id" in proc.stderr:
                return self._squeue(None)
            return {}
        return parse_squeue(proc.stdout)

    def _poll(self) -> None:
        with self.lock:
            ids = list(self.flights)
        if not ids:
            return
        seen = self._squeue(ids)
        now = time.time()
        for sid in ids:
            state, reason, _comment = seen.get(sid, ("", "", ""))
            for flight in list(self.flights.get(sid, ())):
                if state in ACTIVE:
                    if state == "RUNNING" and flight.state != "RUNNING":
                        assert self._sched is not None
                        self._sched.progressed(flight.jid, flight.attempt, "running")
                    flight.state = state
                    if len(self.flights[sid]) > 1:
                        # A bundle: each job's record lands as it finishes.
                        record = _load_json(flight.record) if os.path.exists(flight.record) else None
                        if record is not None and record.get("attempt") == flight.attempt:
                            self._land(sid, flight, record)
                    continue
                record = self._verdict(sid, flight, state, reason, now)
                if record is not None:
                    self._land(sid, flight, record)

    def _verdict(self, sid: str, flight: _Flight, state: str, reason: str, now: float) -> dict[str, Any] | None:
        """The record of an attempt whose batch job ended, or None to look again later."""
        record = _load_json(flight.record) if state in FINISHED or not state else None
        if record is not None and record.get("attempt") not in (None, flight.attempt):
            record = None  # an earlier attempt's record under the same name
        if record is None and state not in FINISHED and state:
            # Cancelled, timed out, node failure, preempted...: Slurm lost it.
            why = f"{state.lower()}" + (f" ({reason})" if reason and reason != "None" else "")
            return _synthetic(flight.attempt, STATUS_LOST, f"lost by Slurm: job {sid} {why}")
        if record is not None:
            return record
        if flight.ended_at is None:
            flight.ended_at = now
        if now - flight.ended_at < RECORD_GRACE:
            return None  # the record may not be visible here yet
        what = f"ended {state}" if state else "is no longer known to Slurm"
        status = "failed" if state == "FAILED" else STATUS_LOST
        return _synthetic(flight.attempt, status,
                          f"Slurm job {sid} {what} and left no provenance record"
                          f" (see {flight.ctx.get('slurm_out', 'its output file')})")

    def _land(self, sid: str, flight: _Flight, record: dict[str, Any]) -> None:
        record["attempt"] = flight.attempt
        with self.lock:
            left = self.flights.get(sid, [])
            if flight in left:
                left.remove(flight)
            if not left:
                self.flights.pop(sid, None)
        self._end(flight.jid, flight.attempt, flight.need, flight.ctx, record)

    def _end(self, jid: str, attempt: int, need: int, ctx: dict[str, Any], record: dict[str, Any]) -> None:
        assert self._sched is not None
        self._sched.ended(jid, attempt, need, ctx, record)

    def _sched_started(self, job: Job, attempt: int, sid: str | None, state: str = "running") -> None:
        assert self._sched is not None
        self._reported.add((job.id, attempt))
        self._sched.started(job, attempt, sid, state)

    def _sched_message(self, text: str) -> None:
        assert self._sched is not None
        self._sched.message(text)

    def _scancel(self, ids: list[str]) -> None:
        if not ids:
            return
        try:
            subprocess.run(["scancel", *ids], capture_output=True, env=self.env,
                           stdin=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _synthetic(attempt: int, status: str, message: str) -> dict[str, Any]:
    """The record of an attempt whose wrapper left none."""
    now = time.time()
    return {"version": 1, "attempt": attempt, "status": status, "message": message, "host": None,
            "start": None, "end": now, "exit_code": None, "events": [], "files": [], "chaos": []}


def _load_json(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _load_json_list(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    return [b for b in data if isinstance(b, list)] if isinstance(data, list) else []
