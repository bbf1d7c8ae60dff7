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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.condor import load_htcondor

Corrupt = Callable[[str, int, str, str, Path], None]

_VAR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_IGNORED = {"NODE_STATUS_FILE", "DOT", "MAXJOBS", "CATEGORY", "PRIORITY", "CONFIG", "JOBSTATE_LOG"}
REMOVED = -1002  # $RETURN of a job removed from the queue


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

    def __init__(self, submit_dir: Path, corrupt: Corrupt | None = None, timeout: float = 120):
        self.dir = Path(submit_dir)
        self.corrupt = corrupt
        self.timeout = timeout
        self.nodes = parse_dag(self.dir / "wf.dag")
        self.htcondor = load_htcondor()
        self.subs = {n.sub: (self.dir / n.sub).read_text() for n in self.nodes.values()}

    def run(self) -> ReplayResult:
        results = {name: NodeResult() for name in self.nodes}
        waiting = {name: len(n.parents) for name, n in self.nodes.items()}
        ready = [(-n.priority, name) for name, n in self.nodes.items() if not n.parents]
        heapq.heapify(ready)
        while ready:
            _, name = heapq.heappop(ready)
            if self.run_node(self.nodes[name], results[name]):
                for child in sorted(self.nodes[name].children):
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        heapq.heappush(ready, (-self.nodes[child].priority, child))
        return ReplayResult(results)

    def run_node(self, node: DagNode, result: NodeResult) -> bool:
        for retry in range(node.retries + 1):
            attempt = Attempt(retry)
            result.attempts.append(attempt)
            if "PRE" in node.scripts:
                attempt.pre = self.script(node, "PRE", retry)
                if attempt.pre != 0:
                    if attempt.pre == node.unless_exit:
                        break
                    continue
            attempt.job = self.job(node, retry)
            if "POST" in node.scripts:
                attempt.post = self.script(node, "POST", retry, attempt.job)
            if attempt.exit == 0:
                result.status = "done"
                return True
            if attempt.exit == node.unless_exit:
                break
        result.status = "failed"
        return False

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
        initialdir = Path(get("initialdir") or self.dir)
        preserve = get("preserve_relative_paths").lower() == "true"
        exe = Path(get("executable"))
        exe = exe if exe.is_absolute() else self.dir / exe
        scratch = Path(tempfile.mkdtemp(prefix=f"scratch-{node.name}-"))
        try:
            for entry in _split(get("transfer_input_files")):
                src = Path(entry) if os.path.isabs(entry) else initialdir / entry
                dst = scratch / (entry if preserve and not os.path.isabs(entry) else os.path.basename(entry))
                if not src.exists():
                    return REMOVED  # held for a failed input transfer, then removed
                _copy(src, dst)
                if self.corrupt:
                    self.corrupt(node.name, retry, "in", entry, dst)
            shutil.copyfile(exe, scratch / exe.name)
            out_path, err_path = (Path(get(k)) for k in ("output", "error"))
            for p in (out_path, err_path):
                p.parent.mkdir(parents=True, exist_ok=True)
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.run([sys.executable, exe.name, *shlex.split(get("arguments"))],
                                      cwd=scratch, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      timeout=self.timeout)
            remaps = _remaps(get("transfer_output_remaps"))
            entries = _split(get("transfer_output_files"))
            if any(not (scratch / e).exists() for e in entries):
                return REMOVED  # held for a failed output transfer, then removed
            for entry in entries:
                dest = remaps.get(entry) or (entry if preserve else os.path.basename(entry))
                dst = Path(dest) if os.path.isabs(dest) else initialdir / dest
                _copy(scratch / entry, dst)
                if self.corrupt:
                    self.corrupt(node.name, retry, "out", entry, dst)
            return proc.returncode
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def replay(submit_dir: Path, corrupt: Corrupt | None = None) -> ReplayResult:
    """Run every node of the submit directory as a pool would; see the module docstring."""
    return Replay(submit_dir, corrupt).run()
