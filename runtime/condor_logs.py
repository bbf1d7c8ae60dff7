"""The files DAGMan and the schedd write into a submit directory, read with
HTCondor's own parsers, for runtime/condor_status.py.

- The node status file (``NODE_STATUS_FILE``, here ``wf.dag.status``): new
  ClassAds as DAGMan's ``Dag::DumpNodeStatus`` writes them, one
  ``Type = "DagStatus"`` ad (``DagStatus``, ``Nodes*`` counts, ``Timestamp``),
  one ``Type = "NodeStatus"`` ad per node (``Node``, ``NodeStatus`` 0 not
  ready, 1 ready, 2 PRE running, 3 job queued, 4 POST running, 5 done,
  6 error, 7 futile; ``StatusDetails``, ``RetryCount``, ``JobProcsQueued``,
  ``JobProcsHeld``) and a ``Type = "StatusEnd"`` ad (``EndTime``,
  ``NextUpdate``: 0 once the DAG has ended). Parsed with classad2.
- Job event logs (HTCondor's user log): the nodes log ``wf.dag.nodes.log``
  (DAGMan's default node log, where every node job's events go, and the
  ``POST Script terminated`` events DAGMan writes itself), or the per-node
  logs the submit descriptions name. Read with ``htcondor2.JobEventLog``;
  a job is tied to its node by the ``DAG Node:`` note of its submit event.
- ``RETRY node n [UNLESS-EXIT v]`` lines of the DAG file.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import condor_scripts as scripts
from .condor import NODES_LOG, load_htcondor

__all__ = ["Attempt", "NodeLog", "StatusFile", "read_event_logs", "read_retries", "read_status_file"]

#: Ads per classad2.parseAds call: it slows down more than linearly on long strings.
_ADS_PER_PARSE = 200
_DAG_NODE = re.compile(r"DAG Node:\s*(\S+)")
_RETRY = re.compile(r"^RETRY\s+(\S+)\s+(\d+)(?:\s+UNLESS-EXIT\s+(-?\d+))?", re.MULTILINE)
#: DAGMan writes why the DAG has its status only in a comment: ``/* "STATUS_ERROR (removed)" */``.
_DAG_NOTE = re.compile(r'DagStatus\s*=\s*\d+;\s*/\*\s*"[A-Z_]+\s*\(([^)"]*)\)"\s*\*/')


@dataclass
class Attempt:
    """One node job (one cluster) as the event log tells it."""

    cluster: int
    submitted: float | None = None
    started: float | None = None  # last execute event
    ended: float | None = None  # terminated or aborted
    host: str | None = None
    exit_code: int | None = None  # the job's (negative: killed by that signal)
    removed: str | None = None  # why it was aborted
    held: str | None = None  # hold reason while held
    post: int | None = None  # the POST script's exit
    post_time: float | None = None


@dataclass
class NodeLog:
    attempts: list[Attempt] = field(default_factory=list)
    last: float = 0.0


@dataclass
class StatusFile:
    """The node status file: the DAG ad, one ad per node, the end ad."""

    dag: dict[str, Any]
    nodes: dict[str, tuple[int, str, int, int, int]]  # status, details, retries, queued, held
    written: float | None
    next_update: float | None


def _classad() -> Any:
    load_htcondor()  # sets CONDOR_CONFIG safely before anything HTCondor is loaded
    import classad2
    return classad2


def read_status_file(path: Path) -> StatusFile | None:
    """The node status file, or None when there is none (yet).

    Split at the ads' closing lines (DAGMan writes ``]`` alone on a line; a
    string value can hold no newline) and parsed a few hundred ads at a time:
    ``classad2.parseAds`` takes quadratic time over one long string.
    Raises ValueError when the file cannot be parsed.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    classad2 = _classad()
    dag: dict[str, Any] = {}
    end: dict[str, Any] = {}
    nodes: dict[str, tuple[int, str, int, int, int]] = {}
    parts = text.split("\n]\n")
    try:
        for i in range(0, len(parts), _ADS_PER_PARSE):
            batch = "\n]\n".join(parts[i:i + _ADS_PER_PARSE])
            if i + _ADS_PER_PARSE < len(parts):
                batch += "\n]\n"
            if not batch.strip():
                continue
            for ad in classad2.parseAds(batch):
                kind = ad.get("Type")
                if kind == "NodeStatus":
                    nodes[ad.get("Node")] = (int(ad.get("NodeStatus", 0)), ad.get("StatusDetails") or "",
                                             int(ad.get("RetryCount", 0)), int(ad.get("JobProcsQueued", 0)),
                                             int(ad.get("JobProcsHeld", 0)))
                elif kind == "DagStatus":
                    dag = {k: v for k, v in ad.items() if isinstance(v, int | float | str)}
                elif kind == "StatusEnd":
                    end = {k: v for k, v in ad.items() if isinstance(v, int | float)}
    except (classad2.ClassAdException, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a DAGMan node status file ({e})") from None
    # parseAds stops quietly at the first thing it cannot parse.
    if not dag or len(nodes) < text.count('"NodeStatus"'):
        raise ValueError(f"{path}: not a DAGMan node status file (no DagStatus ad, or an ad "
                         f"that does not parse)")
    note = _DAG_NOTE.search(parts[0]) if parts else None
    if note:
        dag["note"] = note.group(1)
    written = end.get("EndTime") or dag.get("Timestamp")
    return StatusFile(dag, nodes, float(written) if written else None,
                      float(end["NextUpdate"]) if "NextUpdate" in end else None)


def read_event_logs(submit_dir: Path) -> tuple[dict[str, NodeLog], list[str], int]:
    """Every node's job attempts from the nodes log (else the per-node logs).

    Returns (logs by node, the files read, the number of events). Costs one
    pass over each log with ``htcondor2.JobEventLog(path).events(stop_after=0)``.
    """
    htcondor = load_htcondor()
    main = submit_dir / NODES_LOG
    if main.is_file():
        sources: list[tuple[Path, str | None]] = [(main, None)]
    else:
        sources = [(p, p.name[:-len(".log")]) for p in sorted(submit_dir.glob(f"{scripts.LOGS}/*/*.log"))
                   if not p.name.endswith(".cmd.log")]
    logs: dict[str, NodeLog] = {}
    count = 0
    for path, only in sources:
        count += _read_log(htcondor, path, only, logs)
    return logs, [str(p) for p, _ in sources], count


@functools.lru_cache(maxsize=4096)
def _epoch(iso: str) -> float:
    # JobEvent.timestamp parses with strptime on every call; events share their seconds.
    return datetime.datetime.fromisoformat(iso).timestamp()


def _read_log(htcondor: Any, path: Path, only: str | None, logs: dict[str, NodeLog]) -> int:
    # Event type numbers, compared as ints: JobEvent.type builds an enum per event.
    T = htcondor.JobEventType
    submit, execute, held, released = int(T.SUBMIT), int(T.EXECUTE), int(T.JOB_HELD), int(T.JOB_RELEASED)
    terminated, aborted, post = int(T.JOB_TERMINATED), int(T.JOB_ABORTED), int(T.POST_SCRIPT_TERMINATED)
    requeued = (int(T.JOB_EVICTED), int(T.SHADOW_EXCEPTION))
    node_of: dict[int, str] = {}
    attempt_of: dict[int, Attempt] = {}
    count = 0
    jel = htcondor.JobEventLog(str(path))
    try:
        for e in jel.events(stop_after=0):
            count += 1
            kind, cluster, t = e["EventTypeNumber"], e.get("Cluster", -1), _epoch(e["EventTime"])
            if kind == submit:
                node = only
                if node is None:
                    m = _DAG_NODE.search(e.get("LogNotes") or "")
                    node = m.group(1) if m else None
                if node is None:
                    continue  # not a DAG node job
                node_of[cluster] = node
                a = attempt_of[cluster] = Attempt(cluster, submitted=t)
                logs.setdefault(node, NodeLog()).attempts.append(a)
            elif kind == post:
                node = e.get("DAGNodeName") or node_of.get(cluster) or only
                log = logs.get(node) if node else None
                if log is None or not log.attempts:
                    continue
                a = log.attempts[-1]
                a.post = _exit(e)
                a.post_time = t
            else:
                a = attempt_of.get(cluster)
                if a is None:
                    continue
                node = node_of[cluster]
                if kind == execute:
                    a.started, a.held = t, None
                    a.host = e.get("SlotName") or e.get("ExecuteHost")
                elif kind == held:
                    a.held = e.get("HoldReason") or "held"
                elif kind == released:
                    a.held = None
                elif kind in requeued:
                    a.started = None  # back in the queue
                elif kind == terminated:
                    a.ended, a.exit_code = t, _exit(e)
                elif kind == aborted:
                    a.ended, a.held = t, None
                    a.removed = e.get("Reason") or "removed"
                else:
                    continue
            logs[node].last = max(logs[node].last, t)
    finally:
        jel.close()
    return count


def _exit(e: Any) -> int:
    """A terminated job's or script's exit code; minus the signal that killed it."""
    if e.get("TerminatedNormally", True):
        return int(e.get("ReturnValue", 0))
    return -int(e.get("TerminatedBySignal", 0))


def read_retries(dag_file: Path) -> dict[str, tuple[int, int | None]]:
    """``RETRY node n [UNLESS-EXIT v]`` lines of the DAG: {node: (n, v)}."""
    try:
        text = dag_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return {m.group(1): (int(m.group(2)), int(m.group(3)) if m.group(3) else None)
            for m in _RETRY.finditer(text)}
