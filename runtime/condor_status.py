"""Where a condor run stands: ``wf status``, ``wf statistics`` and ``wf analyze``
read its DAGMan submit directory on the submit side, with no schedd.

Three sources, the first two read with HTCondor's own parsers
(runtime/condor_logs.py):

- the node status file ``wf.dag.status`` (``NODE_STATUS_FILE``, new ClassAds,
  parsed with ``classad2``): DAGMan's view of the DAG and of every node,
  rewritten at most every 30 s (and once more when the DAG ends);
- the nodes log ``wf.dag.nodes.log`` (read with ``htcondor2.JobEventLog``):
  the events of every node job (submitted, executing, held, released,
  terminated with its exit code, aborted) and of every POST script, as they
  happen. Without it the per-node logs the submit descriptions name
  (``logs/SHARD/NODE.log``, no POST events there) are read instead;
- the provenance records the POST scripts keep (``records/SHARD/NODE.N.json``,
  one per attempt): status, message, host, times, integrity events.

Node names map to job ids through ``wf.index.json``, written with the DAG.
A node's state is the status file's, unless the nodes log holds an event of
that node at least as new as the file: then the log decides (DAGMan's own
rules: a job that ended waits for its POST script, a failed POST script
means a retry while ``RETRY n`` allows and the exit is not ``UNLESS-EXIT``).

``wf statistics`` and ``wf analyze`` run the local backend's computations
(runtime/stats.py) over an in-memory database filled from these sources,
so both keep the local layout; nothing is written to ``.wf/wf.db``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import condor_scripts as scripts
from .condor import DAG_FILE, INDEX_FILE, RUN_NOT_SUBMITTED, RUN_SUBMITTED, STATUS_FILE
from .condor_logs import NodeLog, StatusFile, read_event_logs, read_retries, read_status_file
from .db import Database

__all__ = ["STATES", "DagView", "condor_analyze", "condor_statistics", "condor_status", "read_dag"]

#: Node states, in the order ``wf status`` shows them.
STATES = ("done", "running", "idle", "held", "pre", "post", "ready", "waiting", "failed", "futile")
#: DAGMan's node (and DAG) status codes, as the node status file writes them.
_CODES = {0: "waiting", 1: "ready", 2: "pre", 3: "idle", 4: "post", 5: "done", 6: "failed", 7: "futile"}
_CODE_NAMES = {0: "STATUS_NOT_READY", 1: "STATUS_READY", 2: "STATUS_PRERUN", 3: "STATUS_SUBMITTED",
               4: "STATUS_POSTRUN", 5: "STATUS_DONE", 6: "STATUS_ERROR", 7: "STATUS_FUTILE"}
#: States that count as work under way (for the job status of statistics).
_ACTIVE = ("running", "idle", "held", "pre", "post")
_RECORD = re.compile(r"^(.+)\.(\d+)\.json$")


def _event_state(log: NodeLog, retry: tuple[int, int | None]) -> str:
    """A node's state from its newest attempt, by DAGMan's rules (every node has a POST script)."""
    a = log.attempts[-1]
    if a.post is not None:
        if a.post == 0:
            return "done"
        retries, unless = retry
        if a.post == unless or len(log.attempts) - 1 >= retries:
            return "failed"
        return "pre"  # DAGMan retries the node: its PRE script runs again
    if a.ended is not None:
        return "post"
    if a.held is not None:
        return "held"
    return "running" if a.started is not None else "idle"


# -- the DAG as it stands --------------------------------------------------------
@dataclass
class DagView:
    """Everything known of one condor run's DAG; built by :func:`read_dag`."""

    run: dict[str, Any]
    submit_dir: Path
    jobs: dict[str, str]  # node -> job id
    states: dict[str, str]  # node -> one of STATES
    logs: dict[str, NodeLog]
    status_file: StatusFile | None
    log_files: list[str]
    events: int
    problems: list[str]
    landing: str | None = None  # where failed attempts' outputs and records stay
    _records: dict[str, dict[int, Path]] | None = None

    @property
    def started(self) -> bool:
        return self.status_file is not None or self.events > 0

    def first_event(self) -> float | None:
        times = [a.submitted for log in self.logs.values() for a in log.attempts if a.submitted]
        return min(times) if times else None

    def last_event(self) -> float | None:
        times = [log.last for log in self.logs.values() if log.last]
        if self.status_file is not None and self.status_file.written:
            times.append(self.status_file.written)
        return max(times) if times else None

    def dag_status(self) -> dict[str, Any] | None:
        """DAGMan's DagStatus from the file: code, name and note (``STATUS_DONE (success)``)."""
        if self.status_file is None or "DagStatus" not in self.status_file.dag:
            return None
        code = int(self.status_file.dag["DagStatus"])
        note = self.status_file.dag.get("note")
        if note is None:  # no comment to read it from
            note = {5: "success", 6: "failed"}.get(code, "")
        return {"code": code, "name": _CODE_NAMES.get(code, str(code)), "note": note}

    def finished(self) -> float | None:
        """When DAGMan ended (its last status file says no update will follow), or None."""
        sf = self.status_file
        if sf is None or sf.next_update != 0 or self.dag_status() is None:
            return None
        return sf.written if self.dag_status()["code"] in (5, 6) else None

    def status(self) -> str:
        """not-started, running, held (the DAGMan job is), success, failed or removed."""
        if not self.started:
            return "not-started"
        counts = Counter(self.states.values())
        if self.jobs and counts["done"] == len(self.jobs):
            return "success"
        dag = self.dag_status()
        if dag is not None and self.finished() is not None:
            return "success" if dag["code"] == 5 else "removed" if dag["note"] == "removed" else "failed"
        if dag is not None and dag["note"] in ("held", "removed"):
            return dag["note"]
        if counts["failed"] and not any(counts[s] for s in ("running", "idle", "held", "pre", "post", "ready")):
            return "failed"  # nothing left that can run: DAGMan is writing its rescue DAG
        return "running"

    def wall_seconds(self) -> float | None:
        first = self.first_event()
        end = self.finished() or self.last_event()
        return None if first is None or end is None else max(0.0, end - first)

    def submit_seconds(self) -> float:
        """Every attempt from execute to its end, as the nodes log saw it."""
        return sum(a.ended - a.started for log in self.logs.values() for a in log.attempts
                   if a.started is not None and a.ended is not None and a.ended >= a.started)

    def attempts(self, node: str) -> int:
        """How many times the node was tried: its jobs in the log, or DAGMan's retry count."""
        n = len(self.logs[node].attempts) if node in self.logs else 0
        if self.status_file is not None and node in self.status_file.nodes:
            code, _, retries, _, _ = self.status_file.nodes[node]
            if retries or code not in (0, 1, 7):  # 0, 1, 7: never started
                n = max(n, retries + 1)
        return n

    def paths(self, node: str) -> dict[str, str]:
        """The node's files that exist: its job log, the wrapper's stdout and stderr, the
        command's log, its last provenance record, the landing folder of a failed attempt."""
        shard = scripts.shard_of(node)
        base = self.submit_dir / scripts.LOGS / shard / node
        out = {"log": f"{base}.log", "out": f"{base}.out", "err": f"{base}.err", "command": f"{base}.cmd.log"}
        found = {k: v for k, v in out.items() if os.path.isfile(v)}
        records = self.records(node)
        if records:
            found["record"] = str(records[max(records)])
        landing = self._landing(node)
        if landing and os.path.isdir(landing):
            found["landing"] = landing
        return found

    def records(self, node: str) -> dict[int, Path]:
        """The node's provenance records by attempt number."""
        if self._records is None:
            self._records = _scan_records(self.submit_dir)
        return self._records.get(node, {})

    def _landing(self, node: str) -> str | None:
        if not self.landing:
            return None
        return os.path.join(self.landing, scripts.shard_of(node), node)


def _scan_records(submit_dir: Path) -> dict[str, dict[int, Path]]:
    """Every provenance record the POST scripts kept: {node: {attempt: path}}, one
    directory listing per shard."""
    out: dict[str, dict[int, Path]] = {}
    try:
        shards = list(os.scandir(submit_dir / scripts.RECORDS))
    except FileNotFoundError:
        return out
    for shard in shards:
        if not shard.is_dir():
            continue
        for entry in os.scandir(shard.path):
            m = _RECORD.match(entry.name)
            if m:
                out.setdefault(m.group(1), {})[int(m.group(2))] = Path(entry.path)
    return out


#: A failed POST script's exit code as a record status (condor_scripts.py's codes).
_POST_STATUS = {scripts.EXIT_FAILED: "failed", scripts.EXIT_INTEGRITY: "integrity",
                scripts.EXIT_MISSING_OUTPUT: "missing-output", scripts.EXIT_NO_RETRY: "bad-spec"}


def effective(record: dict[str, Any]) -> dict[str, Any]:
    """A kept record as the attempt ended: the POST script's checks join the wrapper's
    events, and a POST script that refused a record saying ok decides the status."""
    post = record.get("post")
    if not post:
        return record
    out = {**record, "events": [*(record.get("events") or ()), *(post.get("events") or ())]}
    if post.get("exit") and record.get("status") == "ok":
        out["status"] = _POST_STATUS.get(post["exit"], "failed")
        out["message"] = f"POST script: {post.get('message')}"
    return out


def _load_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_dag(run: dict[str, Any]) -> DagView:
    """Read a condor run's submit directory (see the module docstring). Costs one
    pass over the status file and the nodes log, and a read of the index."""
    submit_dir = Path(run["submit_dir"])
    problems: list[str] = []
    landing = None
    try:
        index = _load_json(submit_dir / INDEX_FILE)
        jobs = index["nodes"]
        if index.get("workdir") and index.get("landing"):
            landing = os.path.join(index["workdir"], index["landing"])
    except FileNotFoundError:
        jobs = {}
        problems.append(f"{submit_dir / INDEX_FILE} is missing: the submit directory is gone "
                        f"or was replaced")
    except (OSError, ValueError, KeyError) as e:
        jobs = {}
        problems.append(f"{submit_dir / INDEX_FILE} cannot be read: {e}")
    try:
        status_file = read_status_file(submit_dir / STATUS_FILE)
    except ValueError as e:
        status_file = None
        problems.append(str(e))
    logs, files, events = read_event_logs(submit_dir) if submit_dir.is_dir() else ({}, [], 0)
    retries = read_retries(submit_dir / DAG_FILE)
    written = status_file.written if status_file is not None else None
    states: dict[str, str] = {}
    for node in jobs:
        ad = status_file.nodes.get(node) if status_file is not None else None
        log = logs.get(node)
        if log is not None and log.attempts and (ad is None or written is None or log.last >= written):
            states[node] = _event_state(log, retries.get(node, (0, None)))
        elif ad is not None:
            code, details, _, _, held = ad
            state = _CODES.get(code, "waiting")
            if state == "idle":
                state = "held" if held else ("idle" if details == "idle" else "running")
            states[node] = state
        else:
            states[node] = "waiting"
    return DagView(run, submit_dir, jobs, states, logs, status_file, files, events, problems, landing)


# -- wf status ---------------------------------------------------------------------
def condor_status(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    """``stats.status()`` for a condor run: the keys of a local run's status
    (``counts`` with more states), plus ``backend``, ``condor`` (submit
    directory, submission, DAG status, the files read), ``failed`` (per
    failed node: job, exit codes, DAGMan's details, the record's verdict,
    where its logs are), ``retried`` and ``held``."""
    dag = read_dag(run)
    reused = db.query("SELECT COUNT(*) FROM jobs WHERE run_id=? AND status='reused'", (run["id"],))[0][0]
    by_state = Counter(dag.states.values())
    counts: dict[str, int] = {"total": len(dag.jobs)}
    counts.update({s: by_state.get(s, 0) for s in STATES})
    counts["left"] = counts["ready"] + counts["waiting"] + counts["futile"]
    retried = []
    for node in sorted(dag.jobs):
        n = dag.attempts(node)
        if n > 1:
            retried.append({"job": dag.jobs[node], "node": node, "attempts": n, "state": dag.states[node]})
    counts["retried"] = len(retried)
    counts["retries"] = sum(r["attempts"] - 1 for r in retried)
    counts["reused"] = reused
    status = dag.status()
    return {
        "run": _condor_run(dag),
        "id": run["id"],
        "backend": "condor",
        "status": status,
        "started": run["started"],
        "finished": dag.finished(),
        "wall_seconds": dag.wall_seconds(),
        "counts": counts,
        "by_status": {s: n for s, n in sorted(by_state.items())},
        "failed_jobs": sorted(dag.jobs[n] for n, s in dag.states.items() if s == "failed"),
        "running_jobs": sorted(dag.jobs[n] for n, s in dag.states.items() if s == "running"),
        "condor": _summary(dag),
        "failed": [_failure(dag, node) for node in sorted(dag.jobs) if dag.states[node] == "failed"],
        "retried": retried,
        "held": [{"job": dag.jobs[n], "node": n, "reason": dag.logs[n].attempts[-1].held
                  if n in dag.logs else None}
                 for n in sorted(dag.jobs) if dag.states[n] == "held"],
    }


def _summary(dag: DagView) -> dict[str, Any]:
    run = dag.run
    recorded = run.get("recorded_status") or run.get("status")
    sf = dag.status_file
    return {
        "submit_dir": str(dag.submit_dir),
        "dag_file": str(dag.submit_dir / DAG_FILE),
        "recorded_status": recorded,
        "submitted": True if recorded == RUN_SUBMITTED else False if recorded == RUN_NOT_SUBMITTED else None,
        "cluster": run.get("external_id"),
        "dag_started": dag.first_event(),
        "dag_status": dag.dag_status(),
        "status_file": str(dag.submit_dir / STATUS_FILE) if sf is not None else None,
        "status_updated": sf.written if sf is not None else None,
        "nodes_logs": dag.log_files,
        "events": dag.events,
        "last_event": max((log.last for log in dag.logs.values()), default=None),
        "problems": dag.problems,
    }


def _failure(dag: DagView, node: str) -> dict[str, Any]:
    log = dag.logs.get(node)
    last = log.attempts[-1] if log and log.attempts else None
    details = None
    if dag.status_file is not None and node in dag.status_file.nodes:
        details = dag.status_file.nodes[node][1] or None
    paths = dag.paths(node)
    record: dict[str, Any] = {}
    if "record" in paths:
        try:
            record = effective(_load_json(Path(paths["record"])))
        except (OSError, ValueError):
            record = {}
    return {
        "job": dag.jobs[node], "node": node, "attempts": dag.attempts(node),
        "exit_code": last.exit_code if last else None,
        "post_exit": last.post if last else None,
        "removed": last.removed if last else None,
        "host": last.host if last else record.get("host"),
        "details": details,
        "status": record.get("status"), "message": record.get("message"),
        "record_attempt": record.get("attempt"),
        "logs": paths,
    }


# -- wf statistics and wf analyze: the local computations over a mirror ----------
def _job_status(state: str) -> str:
    if state in ("done", "failed"):
        return state
    return "running" if state in _ACTIVE else "pending"


def mirror(db: Database, dag: DagView) -> Database:
    """An in-memory workflow database holding this run as the local backend would
    have recorded it: its jobs with their states, one attempt per provenance record
    (a job removed or failed without one gets an attempt from the nodes log)."""
    run = dag.run
    mem = Database(None)
    fields = {k: run.get(k) for k in ("id", "started", "wffile", "workdir", "host", "backend", "integrity",
                                      "staging", "jobs_total", "jobs_pruned", "submit_dir", "external_id")}
    mem.start_run(**fields, status=dag.status(), finished=dag.finished(), pid=None)
    node_of = {job: node for node, job in dag.jobs.items()}
    rows = db.query("SELECT job_id, rule, kind, status, reason FROM jobs WHERE run_id=?", (run["id"],))
    known = {r[0] for r in rows}
    rows += [(job, None, "compute", "pending", None) for job in node_of if job not in known]
    mem.add_jobs(run["id"], ((job, rule, kind, status if status == "reused" or job not in node_of
                              else _job_status(dag.states[node_of[job]]), reason)
                             for job, rule, kind, status, reason in rows))
    for job, node in node_of.items():
        _mirror_attempts(mem, dag, run["id"], job, node)
    mem.commit()
    return mem


def _mirror_attempts(mem: Database, dag: DagView, rid: int, job: str, node: str) -> None:
    log = dag.logs.get(node)
    events = log.attempts if log else []
    records = dag.records(node)
    shard = scripts.shard_of(node)
    base = dag.submit_dir / scripts.LOGS / shard / node
    started = finished = None
    for k in range(1, max([len(events), *records], default=0) + 1):
        a = events[k - 1] if k <= len(events) else None
        path = records.get(k)
        record = None
        if path is not None:
            try:
                record = effective(_load_json(path))
            except (OSError, ValueError):
                record = None
        if record is None:
            if a is None or a.ended is None:
                continue  # still queued or running: no attempt yet
            why = f"removed: {a.removed}" if a.removed else \
                f"job exited {a.exit_code}" + (f", POST script exited {a.post}" if a.post else "")
            record = {"attempt": k, "host": a.host, "start": a.started or a.submitted, "end": a.ended,
                      "exit_code": a.exit_code, "status": "failed", "message": f"no provenance record ({why})"}
        mem.add_attempt(rid, job, record, f"{base}.out", f"{base}.cmd.log",
                        str(path) if path else None, str(a.cluster) if a else None)
        if a is not None and a.started is not None:
            started, finished = a.started, a.ended
    n = len(events)
    mem.set_job(rid, job, _job_status(dag.states[node]), attempts=max(n, len(records)),
                started=started, finished=finished)


def _condor_run(dag: DagView) -> dict[str, Any]:
    return {**dag.run, "status": dag.status(), "finished": dag.finished()}


def _over_mirror(db: Database, run: dict[str, Any],
                 report: Callable[[Database, dict[str, Any]], dict[str, Any]]) -> tuple[DagView, dict[str, Any]]:
    """A local report (statistics, analyze) computed over an in-memory mirror of the DAG's records."""
    from .stats import _run

    dag = read_dag(run)
    mem = mirror(db, dag)
    try:
        data = report(mem, _run(mem, run["id"]))
    finally:
        mem.close()
    data["run"] = _condor_run(dag)
    return dag, data


def condor_statistics(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    """``stats.statistics()`` for a condor run, in the same layout: counts, retries
    and per-rule times from the provenance records, integrity from their events;
    the workflow wall time and the submit-side job time from the nodes log.
    Adds ``condor`` (as in :func:`condor_status`)."""
    from .stats import _statistics

    dag, data = _over_mirror(db, run, _statistics)
    data["wall_seconds"] = dag.wall_seconds()
    data["job_seconds_submit"] = dag.submit_seconds()
    data["condor"] = _summary(dag)
    return data


def condor_analyze(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    """``stats.analyze()`` for a condor run (the provenance records and the nodes log)."""
    from .stats import _analyze

    dag, data = _over_mirror(db, run, _analyze)
    data["condor"] = _summary(dag)
    nodes = {f["job"]: f for f in (_failure(dag, n) for n in dag.jobs if dag.states[n] == "failed")}
    for f in data["failed"]:
        extra = nodes.get(f["job"])
        if extra is not None:
            f.update(node=extra["node"], details=extra["details"], post_exit=extra["post_exit"],
                     logs=extra["logs"])
    return data
