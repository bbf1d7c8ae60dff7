"""What the workflow database says about a run: for ``wf status``,
``wf statistics``, ``wf analyze`` and ``wf verify``.

Plain data only (dicts and lists of str, int, float, bool, None), so the
same result feeds the terminal view (:mod:`runtime.stats_view`), ``--json``
and the tests. Every function reads; none writes to the database.

Definitions follow pegasus-statistics, adapted to wf:

- a job's *total* counts it once whatever its attempts; jobs reused from an
  earlier run are not part of the run and are counted apart (``reused``);
- *succeeded* is status done, *failed* is failed for good, *incomplete* is
  every other job of the run (pending, waiting, retrying, running);
- *retries* is attempts beyond the first (retries after a failure, and
  reruns of a producer whose output was found corrupt at rest);
- *cumulative job wall time* sums every attempt as the wrapper saw it
  (start to end), the *submit side* sums what the executor saw: the last
  attempt from launch to bookkeeping, plus the earlier attempts;
- an *integrity error* is a failed checksum comparison (a generate event
  that fails is a missing output, not an integrity error).
"""

from __future__ import annotations

import os
import posixpath
import socket
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .db import Database
from .wrapper import sha256_file

__all__ = [
    "VERIFY_CHANGED",
    "VERIFY_MISSING",
    "VERIFY_OK",
    "NoRunError",
    "UnknownPathError",
    "analyze",
    "statistics",
    "status",
    "verify",
]

VERIFY_OK = "ok"
VERIFY_CHANGED = "changed"
VERIFY_MISSING = "missing"

#: Lines of a failed job's stderr shown by ``analyze``.
TAIL_LINES = 20
#: Bytes read from the end of a stderr file to find its last lines.
TAIL_BYTES = 64 << 10
#: Threads hashing files in ``verify`` (hashlib releases the GIL).
VERIFY_WORKERS = 2

#: Job statuses that mean "not finished yet" (see runtime.local).
_LEFT = ("pending", "waiting", "retrying")
#: Kinds always shown in the summary table, in this order, then any other kind.
_KINDS = ("compute", "stage_in", "container_stage_in", "stage_out", "cleanup")

_RUN_FIELDS = ("id", "status", "started", "finished", "exit_code", "wffile", "workdir",
               "host", "pid", "backend", "integrity", "staging", "jobs_total", "jobs_pruned",
               "submit_dir", "external_id")


class NoRunError(LookupError):
    """The database holds no run (or not the one asked for)."""


class UnknownPathError(ValueError):
    """``verify`` was given paths under which no file is recorded."""

    def __init__(self, paths: Sequence[str]):
        super().__init__("no recorded file under " + ", ".join(repr(p) for p in paths))
        self.paths = list(paths)


# -- the run ------------------------------------------------------------------
def _run(db: Database, run_id: int | None) -> dict[str, Any]:
    # A database of an earlier schema, opened read-only, lacks the newer columns.
    have = db.columns("runs")
    cols = ", ".join(f if f in have else f"NULL AS {f}" for f in _RUN_FIELDS)
    if run_id is None:
        rows = db.query(f"SELECT {cols} FROM runs ORDER BY id DESC LIMIT 1")
        if not rows:
            raise NoRunError("no run is recorded in the workflow database")
    else:
        rows = db.query(f"SELECT {cols} FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise NoRunError(f"run {run_id} is not recorded in the workflow database")
    run = dict(zip(_RUN_FIELDS, rows[0], strict=True))
    run["recorded_status"] = run["status"]
    run["status"] = _live_status(run)
    return run


def _live_status(run: dict[str, Any]) -> str:
    # A run still marked running whose process is gone crashed; the next
    # `wf run` would mark it so, but `wf status` should say it now.
    if run["status"] != "running" or not run["pid"] or run["host"] != socket.gethostname():
        return run["status"] or "unknown"
    try:
        os.kill(int(run["pid"]), 0)
    except ProcessLookupError:
        return "crashed"
    except OSError:
        pass  # exists, owned by someone else
    return "running"


def _wall_seconds(db: Database, run: dict[str, Any]) -> float | None:
    """Run start to finish; for an unfinished run, to its last recorded activity."""
    if run["started"] is None:
        return None
    end = run["finished"]
    if end is None:
        ends = [db.query(f"SELECT MAX(finished) FROM {table} WHERE run_id=?", (run["id"],))[0][0]
                for table in ("attempts", "jobs")]
        end = max((t for t in ends if t is not None), default=None)
    return None if end is None else max(0.0, end - run["started"])


def _jobs(db: Database, run_id: int) -> list[dict[str, Any]]:
    keys = ("job_id", "rule", "kind", "status", "attempts", "started", "finished", "reason")
    return [dict(zip(keys, row, strict=True)) for row in db.query(
        f"SELECT {', '.join(keys)} FROM jobs WHERE run_id=? ORDER BY job_id", (run_id,))]


def _attempts(db: Database, run_id: int) -> dict[str, list[dict[str, Any]]]:
    """Each job's attempts, oldest first."""
    keys = ("id", "job_id", "attempt", "host", "started", "finished", "exit_code", "status",
            "message", "stdout", "stderr", "record", "external_id")
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in db.query(f"SELECT {', '.join(keys)} FROM attempts WHERE run_id=? ORDER BY id",
                        (run_id,)):
        a = dict(zip(keys, row, strict=True))
        out[a["job_id"]].append(a)
    return out


def _seconds(a: dict[str, Any]) -> float | None:
    if a["started"] is None or a["finished"] is None:
        return None
    return max(0.0, a["finished"] - a["started"])


def _counts(jobs: list[dict[str, Any]], attempts: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    c = {"succeeded": 0, "failed": 0, "incomplete": 0, "total": 0, "retries": 0,
         "total_retries": 0, "reused": 0}
    for j in jobs:
        if j["status"] == "reused":
            c["reused"] += 1
            continue
        c["total"] += 1
        if j["status"] == "done":
            c["succeeded"] += 1
        elif j["status"] == "failed":
            c["failed"] += 1
        else:
            c["incomplete"] += 1
        c["retries"] += max(0, len(attempts.get(j["job_id"], ())) - 1)
    c["total_retries"] = c["total"] + c["retries"]
    return c


def _rule_key(job: dict[str, Any]) -> str:
    # Auxiliary jobs have no rule: name them like Pegasus names its own
    # transformations (pegasus::transfer), so no user rule can clash.
    return job["rule"] if job["rule"] is not None else f"wf::{job['kind']}"


# -- wf statistics ------------------------------------------------------------
def statistics(db: Database, run_id: int | None = None) -> dict[str, Any]:
    """pegasus-statistics for one run (default: the newest).

    Keys: ``run``; ``summary`` (per job kind and ``all``: succeeded, failed,
    incomplete, total, retries, total_retries, reused); ``wall_seconds``,
    ``job_seconds``, ``job_seconds_submit``; ``integrity`` (compared and
    generated count/seconds/bytes, errors, failed_attempts, failed_jobs,
    seconds, percent_of_job_time); ``chaos`` (per kind and ``total``:
    injected, detected; None when nothing was injected); ``rules`` (one row
    per rule). Costs a few queries over the run's rows; hashes nothing.
    A condor run is read from its submit directory (runtime/condor_status.py),
    in the same layout. Raises NoRunError.
    """
    run = _run(db, run_id)
    if _is_condor(run):
        from .condor_status import condor_statistics
        return condor_statistics(db, run)
    return _statistics(db, run)


def _is_condor(run: dict[str, Any]) -> bool:
    return run["backend"] == "condor" and bool(run["submit_dir"])


def _statistics(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    rid = run["id"]
    jobs = _jobs(db, rid)
    attempts = _attempts(db, rid)

    others = {j["kind"] for j in jobs} - set(_KINDS[:2])
    kinds = [*_KINDS[:2], *sorted(others, key=lambda k: (_KINDS.index(k) if k in _KINDS else 99, k))]
    summary = {k: _counts([j for j in jobs if j["kind"] == k], attempts) for k in kinds}
    summary["all"] = _counts(jobs, attempts)

    job_seconds = sum((s for runs in attempts.values() for a in runs if (s := _seconds(a)) is not None), 0.0)
    submit = 0.0
    for j in jobs:
        tries = attempts.get(j["job_id"], [])
        if j["started"] is not None and j["finished"] is not None and j["finished"] >= j["started"]:
            submit += j["finished"] - j["started"]
            tries = tries[:-1]
        submit += sum(s for a in tries if (s := _seconds(a)) is not None)

    integrity = _integrity(db, rid, jobs, attempts, job_seconds)
    return {
        "run": run,
        "summary": summary,
        "wall_seconds": _wall_seconds(db, run),
        "job_seconds": job_seconds,
        "job_seconds_submit": submit,
        "integrity": integrity,
        "chaos": _chaos(db, rid),
        "rules": _rules(jobs, attempts),
    }


def _integrity(db: Database, rid: int, jobs: list[dict[str, Any]],
               attempts: dict[str, list[dict[str, Any]]], job_seconds: float) -> dict[str, Any]:
    # A check satisfied by an unchanged fingerprint hashed nothing: counted apart.
    cached_col = "cached" if "cached" in db.columns("integrity_events") else "0"
    by_kind = {kind: {"count": n, "seconds": secs or 0.0, "bytes": size or 0}
               for kind, n, secs, size in db.query(
                   "SELECT kind, COUNT(*), SUM(seconds), SUM(size) FROM integrity_events"
                   f" WHERE run_id=? AND NOT COALESCE({cached_col}, 0) GROUP BY kind", (rid,))}
    (cached,), = db.query("SELECT COUNT(*) FROM integrity_events"
                          f" WHERE run_id=? AND COALESCE({cached_col}, 0)", (rid,))
    empty = {"count": 0, "seconds": 0.0, "bytes": 0}
    compared = by_kind.get("compare", dict(empty))
    generated = by_kind.get("generate", dict(empty))
    (errors,), = db.query("SELECT COUNT(*) FROM integrity_events"
                          " WHERE run_id=? AND kind='compare' AND ok=0", (rid,))
    failed_attempts = sum(a["status"] == "integrity" for runs in attempts.values() for a in runs)
    # Pegasus's "failures": jobs failed for good whose last attempt had an integrity error.
    failed_jobs = sum(1 for j in jobs if j["status"] == "failed"
                      and (runs := attempts.get(j["job_id"])) and runs[-1]["status"] == "integrity")
    seconds = compared["seconds"] + generated["seconds"]
    return {
        "compared": compared,
        "generated": generated,
        "cached": cached,
        "errors": errors,
        "failed_attempts": failed_attempts,
        "failed_jobs": failed_jobs,
        "seconds": seconds,
        "percent_of_job_time": (100.0 * seconds / job_seconds) if job_seconds > 0 else None,
    }


def _chaos(db: Database, rid: int) -> dict[str, dict[str, int]] | None:
    rows = db.query("SELECT kind, COUNT(*), SUM(detected) FROM chaos WHERE run_id=?"
                    " GROUP BY kind ORDER BY kind", (rid,))
    if not rows:
        return None
    out = {kind: {"injected": n, "detected": int(d or 0)} for kind, n, d in rows}
    out["total"] = {"injected": sum(v["injected"] for v in out.values()),
                    "detected": sum(v["detected"] for v in out.values())}
    return out


def _rules(jobs: list[dict[str, Any]], attempts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        groups[_rule_key(j)].append(j)
    out = []
    for key in sorted(groups):
        group = groups[key]
        c = _counts(group, attempts)
        secs = [s for j in group for a in attempts.get(j["job_id"], ()) if (s := _seconds(a)) is not None]
        out.append({
            "rule": key,
            "kind": group[0]["kind"],
            "count": c["total"],
            "succeeded": c["succeeded"],
            "failed": c["failed"],
            "incomplete": c["incomplete"],
            "reused": c["reused"],
            "attempts": sum(len(attempts.get(j["job_id"], ())) for j in group),
            "retries": c["retries"],
            "min_seconds": min(secs) if secs else None,
            "max_seconds": max(secs) if secs else None,
            "mean_seconds": sum(secs) / len(secs) if secs else None,
            "total_seconds": sum(secs, 0.0),
        })
    return out


# -- wf status ----------------------------------------------------------------
def status(db: Database, run_id: int | None = None) -> dict[str, Any]:
    """The state of one run (default: the newest).

    Keys: ``run``, ``id``, ``status`` (running, success, failed, crashed),
    ``started``, ``finished``, ``wall_seconds``, ``counts`` (total, done,
    running, failed, left, reused), ``by_status`` (raw job statuses),
    ``failed_jobs`` and ``running_jobs`` (ids). Jobs marked running in a run
    that is no longer running were interrupted: they count as left.
    A condor run is read from its submit directory: see
    :func:`runtime.condor_status.condor_status` for its keys. Raises NoRunError.
    """
    run = _run(db, run_id)
    if _is_condor(run):
        from .condor_status import condor_status
        return condor_status(db, run)
    # A database written before jobs.external_id existed, opened read-only, lacks it.
    ext = "external_id" if "external_id" in db.columns("jobs") else "NULL"
    rows3 = db.query(f"SELECT job_id, status, {ext} FROM jobs WHERE run_id=? ORDER BY job_id", (run["id"],))
    rows = [(j, s) for j, s, _x in rows3]
    by_status = Counter(s for _, s in rows)
    live = run["status"] == "running"
    running = by_status.get("running", 0) if live else 0
    queued = by_status.get("queued", 0) if live else 0  # in a batch system's queue (Slurm)
    counts = {
        "total": len(rows) - by_status.get("reused", 0),
        "done": by_status.get("done", 0),
        "running": running,
        "queued": queued,
        "failed": by_status.get("failed", 0),
        "left": sum(by_status.get(s, 0) for s in _LEFT) + by_status.get("running", 0) - running
        + by_status.get("queued", 0) - queued,
        "reused": by_status.get("reused", 0),
    }
    return {
        "run": run,
        "id": run["id"],
        "status": run["status"],
        "started": run["started"],
        "finished": run["finished"],
        "wall_seconds": _wall_seconds(db, run),
        "counts": counts,
        "by_status": dict(sorted(by_status.items())),
        "failed_jobs": [j for j, s in rows if s == "failed"],
        "running_jobs": [j for j, s in rows if s == "running"] if live else [],
        "queued_jobs": [j for j, s in rows if s == "queued"] if live else [],
        "backend": run.get("backend") or "local",
        # The batch system's id of each running or failed job's latest attempt.
        "external_ids": {j: x for j, s, x in rows3
                         if x and (s == "failed" or (live and s in ("running", "queued")))},
    }


# -- wf analyze ---------------------------------------------------------------
def analyze(db: Database, run_id: int | None = None) -> dict[str, Any]:
    """Why jobs of one run (default: the newest) failed.

    Keys: ``run``; ``failed``: per failed job its last attempt (attempt,
    host, exit_code, status, message, stderr path, ``stderr_tail``: its last
    20 lines, or None when unreadable) and ``events``: its failed integrity
    events over all attempts; ``recovered``: jobs that failed attempts but
    ended done; ``integrity_errors``: failed comparisons in the run, grouped
    ``by_host``, ``by_file`` and ``by_checksum`` (expected, actual), most
    frequent first. Reads each failed job's stderr tail; nothing else.
    A condor run is read from its submit directory. Raises NoRunError.
    """
    run = _run(db, run_id)
    if _is_condor(run):
        from .condor_status import condor_analyze
        return condor_analyze(db, run)
    return _analyze(db, run)


def _analyze(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    rid = run["id"]
    jobs = _jobs(db, rid)
    attempts = _attempts(db, rid)
    ev_keys = ("job_id", "attempt", "file", "stage", "kind", "host", "expected", "actual", "seconds")
    bad_events = [dict(zip(ev_keys, row, strict=True)) for row in db.query(
        f"SELECT {', '.join(ev_keys)} FROM integrity_events WHERE run_id=? AND ok=0 ORDER BY id",
        (rid,))]
    events_of: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for e in bad_events:
        events_of[e["job_id"]].append({k: e[k] for k in ev_keys[1:]})

    failed = []
    recovered = []
    for j in jobs:
        tries = attempts.get(j["job_id"], [])
        if j["status"] == "failed":
            last = tries[-1] if tries else {}
            stderr = last.get("stderr")
            if stderr and not os.path.isabs(stderr) and run["workdir"]:
                stderr = os.path.join(run["workdir"], stderr)
            failed.append({
                "job": j["job_id"], "rule": j["rule"], "kind": j["kind"], "attempts": len(tries),
                "attempt": last.get("attempt"), "host": last.get("host"),
                "external_id": last.get("external_id"),
                "exit_code": last.get("exit_code"), "status": last.get("status"),
                "message": last.get("message"), "stderr": stderr,
                "stderr_tail": _tail(stderr) if stderr else None,
                "events": events_of.get(j["job_id"], []),
            })
        elif j["status"] == "done" and any(a["status"] != "ok" for a in tries):
            bad = [a for a in tries if a["status"] != "ok"]
            recovered.append({"job": j["job_id"], "failed_attempts": len(bad),
                              "statuses": sorted({a["status"] or "unknown" for a in bad})})

    errors = [e for e in bad_events if e["kind"] == "compare"]
    by_host: Counter[str] = Counter(e["host"] or "unknown" for e in errors)
    files: dict[str, dict[str, Any]] = {}
    pairs: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for e in errors:
        f = files.setdefault(e["file"], {"file": e["file"], "count": 0, "jobs": [], "stages": []})
        f["count"] += 1
        _add_once(f["jobs"], e["job_id"])
        _add_once(f["stages"], e["stage"])
        p = pairs.setdefault((e["expected"], e["actual"]),
                             {"expected": e["expected"], "actual": e["actual"], "count": 0, "files": []})
        p["count"] += 1
        _add_once(p["files"], e["file"])
    return {
        "run": run,
        "failed": failed,
        "recovered": recovered,
        "integrity_errors": len(errors),
        "by_host": [{"host": h, "count": n} for h, n in sorted(by_host.items(), key=lambda kv: (-kv[1], kv[0]))],
        "by_file": sorted(files.values(), key=lambda f: (-f["count"], f["file"] or "")),
        "by_checksum": sorted(pairs.values(), key=lambda p: (-p["count"], p["expected"] or "",
                                                             p["actual"] or "")),
    }


def _add_once(items: list[Any], value: Any) -> None:
    if value not in items:
        items.append(value)


def _tail(path: str, lines: int = TAIL_LINES) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    if size > TAIL_BYTES:
        text = text.partition("\n")[2]  # drop the cut first line
    return text.splitlines()[-lines:]


# -- wf verify ----------------------------------------------------------------
def verify(db: Database, workdir: str | os.PathLike[str],
           paths: Sequence[str | os.PathLike[str]] | None = None) -> list[dict[str, Any]]:
    """Hash every recorded file again and compare with its recorded checksum.

    ``paths`` (files or directories, relative to ``workdir`` or absolute
    inside it) limits the check to the recorded files under them; a path
    under which nothing is recorded raises UnknownPathError. One result per
    file, in lfn order: lfn, status (ok, changed, missing), expected,
    actual, size, recorded_size, producer, seconds, error. Costs one read of
    every file checked, on two threads; the database is only read.
    """
    root = os.path.abspath(workdir)
    rows = list(db.recorded_files())
    if paths is not None:
        prefixes = [_relative(p, root) for p in paths]
        unknown = [str(p) for p, pre in zip(paths, prefixes, strict=True)
                   if not any(_under(r.lfn, pre) for r in rows)]
        if unknown:
            raise UnknownPathError(unknown)
        rows = [r for r in rows if any(_under(r.lfn, pre) for pre in prefixes)]

    def check(row) -> dict[str, Any]:
        result = {"lfn": row.lfn, "status": VERIFY_OK, "expected": row.sha256, "actual": None,
                  "size": None, "recorded_size": row.size, "producer": row.producer,
                  "seconds": 0.0, "error": None}
        try:
            actual, size, secs = sha256_file(os.path.join(root, row.lfn))
        except OSError as e:
            result.update(status=VERIFY_MISSING,
                          error=None if isinstance(e, FileNotFoundError) else f"{e.strerror or e}")
            return result
        result.update(actual=actual, size=size, seconds=secs,
                      status=VERIFY_OK if actual == row.sha256 else VERIFY_CHANGED)
        return result

    if not rows:
        return []
    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
        return list(pool.map(check, rows))


def _relative(path: str | os.PathLike[str], root: str) -> str:
    p = os.fspath(path)
    if os.path.isabs(p):
        p = os.path.relpath(p, root)
    p = posixpath.normpath(p.replace(os.sep, "/"))
    return "" if p == "." else p


def _under(lfn: str, prefix: str) -> bool:
    if not prefix:
        return True
    lfn = posixpath.normpath(lfn)
    return lfn == prefix or lfn.startswith(prefix.rstrip("/") + "/")
