"""Replay a wf DAGMan submit directory as an HTCondor pool would, without HTCondor.

Test code, not product code. It reads ``wf.dag`` (JOB, VARS, RETRY, SCRIPT,
PARENT/CHILD; the other commands are checked for syntax and ignored) and the
node's submit description with ``htcondor2.Submit`` (so VARS macros expand
as condor_submit would), then for each node, in topological order, like
DAGMan and the shadow/starter: run the PRE script; copy
``transfer_input_files`` into a fresh scratch directory (relative paths
kept with ``preserve_relative_paths``, absolute ones by base name); run the
executable there (``python3 wf_wrapper.py ARGS``); copy
``transfer_output_files`` back, honouring ``transfer_output_remaps`` (a
missing one puts the job on hold, which the ``periodic_remove`` policy of
the submit file turns into a removed job: ``$RETURN`` -1002, nothing
transferred); run the POST script with ``$RETURN``; honour ``RETRY n
UNLESS-EXIT v``. A node whose parent failed does not run.

``corrupt(node, retry, direction, entry, path)`` is called for every file
copied ("in" or "out"), so a test can damage a transfer.

While it runs, the replay leaves what DAGMan and the schedd leave in the
submit directory, in their formats, so that ``wf status`` reads a replayed
DAG exactly as it reads a real one:

- the nodes log ``wf.dag.nodes.log`` (DAGMan's default node log) and each
  node's own ``log`` from its submit description: HTCondor's user log text
  format, one cluster per node job: 000 submitted (with the ``DAG Node:``
  note), 001 executing, 005 terminated with the return value, 012 held and
  009 aborted for a job removed by its ``periodic_remove``; 016 POST script
  terminated goes to the nodes log only, as DAGMan writes it;
- the node status file ``wf.dag.status``: the ClassAds DAGMan's
  ``Dag::DumpNodeStatus`` writes (DagStatus, one NodeStatus per node,
  StatusEnd), rewritten (to a temporary name, then renamed) whenever a node
  changes state, at most every ``status_interval`` seconds, and at the end;
  a failed node's ``StatusDetails`` is DAGMan's error text, its descendants
  become futile.

``hook(phase, node)`` is called after those files are written, at the
phases ``submitted``, ``executing``, ``done`` and ``failed`` of each node:
a test can look at the DAG half-way.
"""

from __future__ import annotations

import heapq
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.condor import load_htcondor

Corrupt = Callable[[str, int, str, str, Path], None]
Hook = Callable[[str, str], None]

_VAR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_IGNORED = {"NODE_STATUS_FILE", "DOT", "MAXJOBS", "CATEGORY", "PRIORITY", "CONFIG", "JOBSTATE_LOG"}
REMOVED = -1002  # $RETURN of a job removed from the queue
NODES_LOG, STATUS_FILE = "wf.dag.nodes.log", "wf.dag.status"
# DAGMan's node states (Node::status_t), as the node status file writes them.
NOT_READY, READY, PRERUN, SUBMITTED, POSTRUN, DONE, ERROR, FUTILE = range(8)
_STATUS_NAMES = ("STATUS_NOT_READY", "STATUS_READY", "STATUS_PRERUN", "STATUS_SUBMITTED",
                 "STATUS_POSTRUN", "STATUS_DONE", "STATUS_ERROR", "STATUS_FUTILE")
_SCHEDD = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=replay.local&noUDP&sock=schedd_4242_1a2b>"
_STARTD = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=replay.local&noUDP&sock=startd_4243_3c4d>"
_USAGE = "".join(f"\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  {w} Usage\n"
                 for w in ("Run Remote", "Run Local", "Total Remote", "Total Local"))
_BYTES = "".join(f"\t0  -  {w} By Job\n"
                 for w in ("Run Bytes Sent", "Run Bytes Received", "Total Bytes Sent", "Total Bytes Received"))


def _ad_string(text: str) -> str:
    """A ClassAd string literal (what DAGMan's EscapeClassadString writes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UserLog:
    """Appends events to HTCondor job event logs in the user log text format."""

    def __init__(self, *paths: Path, when: float | None = None):
        self.paths = paths
        self.when = when  # the events' time (default: now)

    def write(self, code: int, cluster: int, body: str) -> None:
        when = time.time() if self.when is None else self.when
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
        text = f"{code:03d} ({cluster}.000.000) {stamp} {body}...\n"
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(text)

    def submitted(self, cluster: int, node: str) -> None:
        self.write(0, cluster, f"Job submitted from host: {_SCHEDD}\n    DAG Node: {node}\n")

    def executing(self, cluster: int) -> None:
        self.write(1, cluster, f"Job executing on host: {_STARTD}\n\tSlotName: slot1@replay.local\n")

    def terminated(self, cluster: int, code: int) -> None:
        self.write(5, cluster, f"Job terminated.\n\t(1) Normal termination (return value {code})\n"
                               f"{_USAGE}{_BYTES}")

    def held(self, cluster: int, reason: str, code: int) -> None:
        self.write(12, cluster, f"Job was held.\n\t{reason}\n\tCode {code} Subcode 0\n")

    def aborted(self, cluster: int, reason: str) -> None:
        self.write(9, cluster, f"Job was aborted.\n\t{reason}\n")

    def post_terminated(self, cluster: int, node: str, code: int) -> None:
        self.write(16, cluster, f"POST Script terminated.\n\t(1) Normal termination (return value {code})\n"
                                f"    DAG Node: {node}\n")


def write_node_status(path: Path, nodes: dict[str, tuple[int, str, int, bool]], finished: bool,
                      now: float | None = None, update_time: int = 30) -> None:
    """The node status file as DAGMan's ``Dag::DumpNodeStatus`` writes it: ``nodes`` maps
    each node, in DAG order, to (status, error text, retry count, idle while queued)."""
    stamp = int(time.time() if now is None else now)
    counts = [0] * 8
    for st, *_ in nodes.values():
        counts[st] += 1
    done = finished and counts[DONE] == len(nodes)
    dag_status, note = (DONE, "success") if done else (ERROR, "failed") if finished else (SUBMITTED, "")
    idle = sum(1 for st, _, _, is_idle in nodes.values() if st == SUBMITTED and is_idle)
    lines = ["[", '  Type = "DagStatus";', "  DagFiles = {", '    "wf.dag"', "  };",
             f"  Timestamp = {stamp}; /* {_ad_string(time.ctime(stamp))} */",
             f"  DagStatus = {dag_status}; /* {_ad_string(f'{_STATUS_NAMES[dag_status]} ({note})')} */",
             f"  NodesTotal = {len(nodes)};", f"  NodesDone = {counts[DONE]};",
             f"  NodesPre = {counts[PRERUN]};", f"  NodesQueued = {counts[SUBMITTED]};",
             f"  NodesPost = {counts[POSTRUN]};", f"  NodesReady = {counts[READY]};",
             f"  NodesUnready = {counts[NOT_READY]};", f"  NodesFutile = {counts[FUTILE]};",
             f"  NodesFailed = {counts[ERROR]};", "  JobProcsHeld = 0;",
             f"  JobProcsIdle = {idle}; /* includes held */", "]"]
    for name, (st, error, retries, is_idle) in nodes.items():
        details = error if st == ERROR else ("idle" if is_idle else "not_idle") if st == SUBMITTED \
            else "Had an ancestor node fail" if st == FUTILE else ""
        lines += ["[", '  Type = "NodeStatus";', f"  Node = {_ad_string(name)};",
                  f"  NodeStatus = {st}; /* {_ad_string(_STATUS_NAMES[st])} */",
                  f"  StatusDetails = {_ad_string(details)};", f"  RetryCount = {retries};",
                  f"  JobProcsQueued = {1 if st == SUBMITTED else 0};", "  JobProcsHeld = 0;", "]"]
    nxt = 0 if finished else stamp + update_time
    lines += ["[", '  Type = "StatusEnd";', f"  EndTime = {stamp}; /* {_ad_string(time.ctime(stamp))} */",
              f"  NextUpdate = {nxt}; /* {_ad_string(time.ctime(nxt) if nxt else 'none')} */", "]"]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)  # DAGMan too writes a temporary file and renames it


def dagman_error(job: int | None, post: int, retries: int, retry_max: int) -> str:
    """The error text DAGMan keeps for a node whose POST script failed for good."""
    if job is not None and job > 0:
        text = f"Job exited with status {job} and "
    elif job is not None and -64 <= job < 0:
        text = f"Job died on signal {-job} and "
    else:
        text = f"Job failed due to DAGMAN error {job if job is not None else 0} and "
    text += f"POST Script failed with status {post}"
    return text + (f" (after {retries} node retries)" if retry_max > 0 else "")


@dataclass
class DagNode:
    name: str
    sub: str
    vars: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    unless_exit: int | None = None
    scripts: dict[str, list[str]] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    priority: int = 0


@dataclass
class Attempt:
    retry: int
    pre: int | None = None
    job: int | None = None  # $RETURN
    post: int | None = None

    @property
    def exit(self) -> int:
        """What DAGMan takes as the node's exit: the last part that ran."""
        for part in (self.post, self.job, self.pre):
            if part is not None:
                return part
        return 0


@dataclass
class NodeResult:
    status: str = "not-run"  # done | failed | not-run
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class ReplayResult:
    nodes: dict[str, NodeResult]

    @property
    def ok(self) -> bool:
        return all(r.status == "done" for r in self.nodes.values())

    def node(self, fragment: str) -> NodeResult:
        """The result of the one node whose name contains ``fragment``."""
        hits = [n for n in self.nodes if fragment in n]
        assert len(hits) == 1, f"{fragment!r} matches {hits}"
        return self.nodes[hits[0]]

    def failed(self) -> dict[str, NodeResult]:
        return {n: r for n, r in self.nodes.items() if r.status != "done"}


def parse_dag(path: Path) -> dict[str, DagNode]:
    """The nodes of a DAG file; raises ValueError on a command it does not know."""
    nodes: dict[str, DagNode] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        cmd = words[0].upper()
        if cmd == "JOB":
            nodes[words[1]] = DagNode(words[1], words[2])
        elif cmd == "VARS":
            nodes[words[1]].vars.update(
                (k, re.sub(r"\\(.)", r"\1", v)) for k, v in _VAR.findall(line.split(None, 2)[2]))
        elif cmd == "RETRY":
            n = nodes[words[1]]
            n.retries = int(words[2])
            if len(words) > 3:
                assert words[3] == "UNLESS-EXIT", raw
                n.unless_exit = int(words[4])
        elif cmd == "SCRIPT":
            assert words[1] in ("PRE", "POST"), raw  # no DEFER here
            nodes[words[2]].scripts[words[1]] = words[3:]
        elif cmd == "PARENT":
            i = words.index("CHILD")
            for p in words[1:i]:
                for c in words[i + 1:]:
                    nodes[p].children.add(c)
                    nodes[c].parents.add(p)
        elif cmd in _IGNORED:
            if cmd == "PRIORITY":
                nodes[words[1]].priority = int(words[2])
        else:
            raise ValueError(f"{path}:{number}: unknown DAG command {words[0]!r}")
    return nodes


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _remaps(value: str) -> dict[str, str]:
    value = value.strip().strip('"')
    out = {}
    for part in value.split(";"):
        if part.strip():
            name, _, dest = part.partition("=")
            out[name.strip()] = dest.strip()
    return out


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dst)


class Replay:
    """Run a submit directory; see the module docstring."""

    def __init__(self, submit_dir: Path, corrupt: Corrupt | None = None, timeout: float = 120,
                 hook: Hook | None = None, status_interval: float = 0.0, first_cluster: int = 101):
        self.dir = Path(submit_dir)
        self.corrupt = corrupt
        self.timeout = timeout
        self.hook = hook
        self.nodes = parse_dag(self.dir / "wf.dag")
        self.htcondor = load_htcondor()
        self.subs = {n.sub: (self.dir / n.sub).read_text() for n in self.nodes.values()}
        # What DAGMan knows of each node, for the node status file.
        self.status = {name: NOT_READY for name in self.nodes}
        self.retries_done = dict.fromkeys(self.nodes, 0)
        self.details = dict.fromkeys(self.nodes, "")
        self.idle = dict.fromkeys(self.nodes, False)
        self.status_interval = status_interval
        self.status_written = 0.0
        self.next_cluster = first_cluster
        self.cluster: dict[str, int] = {}
        self.finished = False

    def run(self) -> ReplayResult:
        results = {name: NodeResult() for name in self.nodes}
        waiting = {name: len(n.parents) for name, n in self.nodes.items()}
        ready = [(-n.priority, name) for name, n in self.nodes.items() if not n.parents]
        for _, name in ready:
            self.status[name] = READY
        heapq.heapify(ready)
        self.write_status(force=True)
        while ready:
            _, name = heapq.heappop(ready)
            if self.run_node(self.nodes[name], results[name]):
                for child in sorted(self.nodes[name].children):
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        self.status[child] = READY
                        heapq.heappush(ready, (-self.nodes[child].priority, child))
                self.write_status()
        self.finished = True
        self.write_status(force=True)
        return ReplayResult(results)

    def run_node(self, node: DagNode, result: NodeResult) -> bool:
        name = node.name
        for retry in range(node.retries + 1):
            attempt = Attempt(retry)
            result.attempts.append(attempt)
            self.retries_done[name] = retry
            if "PRE" in node.scripts:
                self.set_status(name, PRERUN)
                attempt.pre = self.script(node, "PRE", retry)
                if attempt.pre != 0:
                    self.details[name] = f"PRE Script failed with status {attempt.pre}"
                    if attempt.pre == node.unless_exit:
                        break
                    continue
            attempt.job = self.job(node, retry)
            if "POST" in node.scripts:
                self.set_status(name, POSTRUN)
                attempt.post = self.script(node, "POST", retry, attempt.job)
                self.nodes_log(name).post_terminated(self.cluster[name], name, attempt.post)
                if attempt.post != 0:
                    self.details[name] = dagman_error(attempt.job, attempt.post, retry, node.retries)
            if attempt.exit == 0:
                result.status = "done"
                self.details[name] = ""
                self.set_status(name, DONE)
                self.call_hook("done", name)
                return True
            if attempt.exit == node.unless_exit:
                break
        result.status = "failed"
        if attempt.pre not in (None, 0) and node.retries > 0:
            self.details[name] += f" (after {self.retries_done[name]} node retries)"
        self.status[name] = ERROR
        self.mark_futile(name)
        self.write_status(force=True)
        self.call_hook("failed", name)
        return False

    # -- what DAGMan and the schedd write ------------------------------------------
    def nodes_log(self, name: str, own_log: str | None = None) -> UserLog:
        """The nodes log, and the node's own log from its submit description when given."""
        return UserLog(self.dir / NODES_LOG, *([Path(own_log)] if own_log else []))

    def call_hook(self, phase: str, name: str) -> None:
        if self.hook is not None:
            self.hook(phase, name)

    def set_status(self, name: str, status: int, idle: bool = False) -> None:
        self.status[name] = status
        self.idle[name] = idle
        self.write_status()

    def mark_futile(self, name: str) -> None:
        stack = list(self.nodes[name].children)
        while stack:
            child = stack.pop()
            if self.status[child] != FUTILE:
                self.status[child] = FUTILE
                stack.extend(self.nodes[child].children)

    def write_status(self, force: bool = False) -> None:
        """The node status file, at most every ``status_interval`` seconds unless forced."""
        now = time.time()
        if not force and now - self.status_written < self.status_interval:
            return
        self.status_written = now
        write_node_status(self.dir / STATUS_FILE, {
            name: (st, self.details[name], self.retries_done[name], self.idle[name])
            for name, st in self.status.items()}, self.finished, now)

    def script(self, node: DagNode, which: str, retry: int, ret: int | None = None) -> int:
        exe, *args = node.scripts[which]
        macros = {"$JOB": node.name, "$RETRY": str(retry), "$RETURN": str(ret),
                  "$MAX_RETRIES": str(node.retries)}
        argv = [str(self.dir / exe), *(macros.get(a, a) for a in args)]
        proc = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True,
                              timeout=self.timeout, stdin=subprocess.DEVNULL)
        log = self.dir / "replay.scripts.log"
        with open(log, "a") as f:
            f.write(f"{which} {node.name} {' '.join(argv[1:])} -> {proc.returncode}\n"
                    f"{proc.stdout}{proc.stderr}")
        return proc.returncode

    def job(self, node: DagNode, retry: int) -> int:
        sub = self.htcondor.Submit(self.subs[node.sub])
        for k, v in node.vars.items():
            sub[k] = v

        def get(key: str) -> str:
            return sub.expand(key) if key in sub else ""

        assert get("universe") == "vanilla" and get("should_transfer_files") == "YES"
        name = node.name
        cluster = self.cluster[name] = self.next_cluster
        self.next_cluster += 1
        log = self.nodes_log(name, get("log") or None)
        log.submitted(cluster, name)
        self.set_status(name, SUBMITTED, idle=True)
        self.call_hook("submitted", name)
        code = self.execute(node, retry, get, log, cluster)
        if code == REMOVED:
            log.aborted(cluster, "The job attribute PeriodicRemove expression "
                                 f"'{get('periodic_remove')}' evaluated to TRUE")
        else:
            log.terminated(cluster, code)
        return code

    def execute(self, node: DagNode, retry: int, get: Callable[[str], str], log: UserLog,
                cluster: int) -> int:
        """The shadow and the starter: transfer in, run, transfer out; returns $RETURN."""
        initialdir = Path(get("initialdir") or self.dir)
        preserve = get("preserve_relative_paths").lower() == "true"
        exe = Path(get("executable"))
        exe = exe if exe.is_absolute() else self.dir / exe
        scratch = Path(tempfile.mkdtemp(prefix=f"scratch-{node.name}-"))
        try:
            for entry in _split(get("transfer_input_files")):
                src = Path(entry) if os.path.isabs(entry) else initialdir / entry
                dst = scratch / (entry if preserve and not os.path.isabs(entry) else os.path.basename(entry))
                if not src.exists():  # held for a failed input transfer, then removed
                    log.held(cluster, f"Transfer input files failure: {entry} does not exist", 13)
                    return REMOVED
                _copy(src, dst)
                if self.corrupt:
                    self.corrupt(node.name, retry, "in", entry, dst)
            shutil.copyfile(exe, scratch / exe.name)
            log.executing(cluster)
            self.set_status(node.name, SUBMITTED, idle=False)
            self.call_hook("executing", node.name)
            out_path, err_path = (Path(get(k)) for k in ("output", "error"))
            for p in (out_path, err_path):
                p.parent.mkdir(parents=True, exist_ok=True)
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.run([sys.executable, exe.name, *shlex.split(get("arguments"))],
                                      cwd=scratch, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      timeout=self.timeout)
            remaps = _remaps(get("transfer_output_remaps"))
            entries = _split(get("transfer_output_files"))
            missing = [e for e in entries if not (scratch / e).exists()]
            if missing:  # held for a failed output transfer, then removed
                log.held(cluster, f"Transfer output files failure: {missing[0]} does not exist", 12)
                return REMOVED
            for entry in entries:
                dest = remaps.get(entry) or (entry if preserve else os.path.basename(entry))
                dst = Path(dest) if os.path.isabs(dest) else initialdir / dest
                _copy(scratch / entry, dst)
                if self.corrupt:
                    self.corrupt(node.name, retry, "out", entry, dst)
            return proc.returncode
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def replay(submit_dir: Path, corrupt: Corrupt | None = None, hook: Hook | None = None,
           status_interval: float = 0.0) -> ReplayResult:
    """Run every node of the submit directory as a pool would; see the module docstring."""
    return Replay(submit_dir, corrupt, hook=hook, status_interval=status_interval).run()
