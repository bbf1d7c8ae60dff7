"""Data reuse (Pegasus "workflow reduction") with a reason for every decision.

The planner asks a :class:`ReuseOracle` two questions: is a file there, and
can a job's existing outputs be trusted. The default oracle looks at the
file system only; the runtime's workflow database implements the same
interface with recorded checksums, so that reuse requires a verified
sha256 and a changed input, command or container invalidates outputs.

Two passes over the DAG, each O(jobs + edges):

1. Sources first: a job runs if it is forced, if an upstream job runs (its
   input will be remade), or if the oracle says its outputs are stale. A job
   with a missing output is only *tentatively* needed.
2. Sinks first: a tentatively needed job runs if it is a target, or if a job
   that runs consumes one of its missing outputs. Otherwise it is pruned:
   its outputs are needed only by reused jobs (so ``temp()`` files that are
   gone after a finished run force nothing).

A job that pass 2 decides to run remakes its outputs, so (as in pass 1)
every job downstream of it runs too, and any of those may in turn need a
missing file: a worklist settles this, each job entering it at most once.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Protocol

import networkx as nx

from .plan import (
    PRUNE_NOT_NEEDED,
    PRUNE_PRESENT,
    RUN_CONTAINER_CHANGED,
    RUN_FORCED,
    RUN_INPUT_MISSING,
    RUN_OUTPUT_MISSING,
    RUN_UPSTREAM,
    Decision,
    Job,
    JobKind,
    Reason,
)


class ReuseOracle(Protocol):
    """What the planner needs to know about existing files."""

    def present(self, lfn: str) -> bool:
        """Whether ``lfn`` exists in the working directory (cheap: a stat)."""
        ...

    def stale(self, job: Job) -> Reason | None:
        """Why ``job``'s outputs cannot be reused, or None if they can.

        Called for jobs that are not forced and have no upstream job that
        runs. Outputs that are missing are not a reason here (the planner
        decides about them); a changed output, input, command or container is.
        """
        ...


class FilesystemOracle:
    """Existence only: a present output is reused. No checksums, no records.

    Presence is answered from one listing per directory (a million outputs
    in a few directories cost a few ``scandir`` calls, not a million
    ``stat`` calls); a directory that does not exist answers for all its
    files at once. Listings are taken once per plan.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self._prefix = os.path.join(workdir, "")
        self._listings: dict[str, dict[str, bool] | None] = {}

    def present(self, lfn: str) -> bool:
        """True if the file exists under the working directory."""
        head, _, name = lfn.rpartition("/")
        if not name or name in (".", "..") or "//" in lfn or "/./" in lfn or "/../" in lfn:
            return os.path.exists(self._prefix + lfn)  # unusual spelling: ask the OS
        listing = self._listings.get(head, _UNLISTED)
        if listing is _UNLISTED:
            listing = self._listings[head] = _list(self._prefix + head if head else self.workdir)
        if listing is None:
            return False
        link = listing.get(name)
        if link is None:
            return False
        # A symlink counts only if what it points at exists, as os.path.exists says.
        return os.path.exists(self._prefix + lfn) if link else True

    def stale(self, job: Job) -> Reason | None:
        """Never stale: without a database there is nothing to compare with."""
        return None


_UNLISTED: dict[str, bool] = {}


def _list(directory: str) -> dict[str, bool] | None:
    """Names in ``directory`` (True for symlinks), or None if it is not there."""
    try:
        with os.scandir(directory) as it:
            return {e.name: e.is_symlink() for e in it}
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None


_RUN, _MISSING, _OK = 0, 1, 2
_PRESENT = Reason(PRUNE_PRESENT)
_NOT_NEEDED = Reason(PRUNE_NOT_NEEDED)
_FORCED = Reason(RUN_FORCED)
_PRUNED_PRESENT = Decision(False, _PRESENT)
_PRUNED_NOT_NEEDED = Decision(False, _NOT_NEEDED)


def decide(
    graph: nx.DiGraph,
    order: Sequence[str],
    roots: Collection[str],
    oracle: ReuseOracle,
    forcerun_rules: Collection[str] = (),
    forced_jobs: Collection[str] = (),
) -> dict[str, Decision]:
    """Run or prune every job in ``order`` (topological), with its reason."""
    # networkx's views build a wrapper object per access; this loop runs once
    # per job and edge of million-job plans, so it reads the graph's own dicts.
    nodes = graph._node
    pred = graph._pred
    succ = graph._succ
    records = getattr(oracle, "keeps_records", False)
    state: dict[str, int] = {}
    reason: dict[str, Reason] = {}
    missing: dict[str, tuple[str, ...]] = {}
    input_sets: dict[str, frozenset[str]] = {}

    def consumed(child: str, candidates: Collection[str]) -> str | None:
        job = nodes[child]["job"]
        if len(job.inputs) <= 8:
            for f in job.inputs:
                if f.lfn in candidates:
                    return f.lfn
            return None
        s = input_sets.get(child)
        if s is None:
            s = input_sets[child] = frozenset(f.lfn for f in job.inputs)
        for lfn in candidates:
            if lfn in s:
                return lfn
        return None

    for jid in order:
        job: Job = nodes[jid]["job"]
        if jid in forced_jobs or job.rule in forcerun_rules:
            state[jid], reason[jid] = _RUN, _FORCED
            continue
        upstream = None
        for p in pred[jid]:
            if state[p] == _RUN:
                upstream = p
                break
        if upstream is not None:
            up = reason[upstream]
            if up.code == RUN_CONTAINER_CHANGED and nodes[upstream]["job"].kind is JobKind.CONTAINER_STAGE_IN:
                # The job's image changed: say so, not just "input will be remade".
                state[jid], reason[jid] = _RUN, up
                continue
            outs = nodes[upstream]["job"].outputs
            subject = outs[0].lfn if len(outs) == 1 else consumed(jid, [f.lfn for f in outs])
            state[jid], reason[jid] = _RUN, Reason(RUN_UPSTREAM, subject)
            continue
        if not job.outputs:
            # A job with no outputs (like `all`) stands for its inputs: it
            # runs when one of them is missing.
            gone = next((f.lfn for f in job.inputs if not oracle.present(f.lfn)), None)
            if gone is not None:
                state[jid], reason[jid] = _RUN, Reason(RUN_INPUT_MISSING, gone)
            else:
                state[jid], reason[jid] = _OK, _PRESENT
            continue
        outs = job.outputs
        if len(outs) == 1:
            gone_files = () if oracle.present(outs[0].lfn) else (outs[0].lfn,)
        else:
            gone_files = tuple([f.lfn for f in outs if not oracle.present(f.lfn)])
        # Asked even when outputs are gone: a temp() output removed after a
        # finished run still has a record saying what it was made from, and
        # a changed command or input must still make the job (and all that
        # was made from it) run again.
        why = oracle.stale(job) if records or len(gone_files) < len(outs) else None
        if why is not None:
            state[jid], reason[jid] = _RUN, why
        elif gone_files:
            state[jid], reason[jid] = _MISSING, Reason(RUN_OUTPUT_MISSING, gone_files[0])
            missing[jid] = gone_files
        else:
            state[jid], reason[jid] = _OK, _PRESENT

    run: dict[str, bool] = {}
    roots = set(roots)

    def needed_by(child: str, parent: str) -> str | None:
        """The missing output of ``parent`` that ``child`` reads, if any."""
        gone = missing[parent]
        if len(gone) == 1 and len(gone) == len(nodes[parent]["job"].outputs):
            return next(iter(gone))  # the edge itself says child reads it
        return consumed(child, gone)

    # A job pass 2 turns on remakes files that reused jobs were made from:
    # those must run too (the worklist below). Parents are decided after
    # their children here, so only such jobs need the second look.
    work: list[str] = []
    for jid in reversed(order):
        st = state[jid]
        if st == _RUN:
            run[jid] = True
            continue
        if st == _OK:
            run[jid] = False
            continue
        go = jid in roots
        if not go:
            all_gone = len(missing[jid]) == len(nodes[jid]["job"].outputs)
            for c in succ[jid]:
                if run[c] and (all_gone or needed_by(c, jid) is not None):
                    go = True
                    break
        run[jid] = go
        if go:
            for c in succ[jid]:
                if not run[c]:
                    work.append(jid)
                    break

    while work:
        jid = work.pop()
        outs = nodes[jid]["job"].outputs
        for child in succ[jid]:
            if not run[child]:
                subject = outs[0].lfn if len(outs) == 1 else consumed(child, [f.lfn for f in outs])
                run[child], reason[child] = True, Reason(RUN_UPSTREAM, subject)
                work.append(child)
        for parent in pred[jid]:
            if not run[parent] and state[parent] == _MISSING:
                if needed_by(jid, parent) is not None:
                    run[parent] = True
                    work.append(parent)
    # A pruned job with a missing output keeps "output missing" in ``reason``
    # until here, in case the worklist turned it on after all.
    decisions: dict[str, Decision] = {}
    for jid in order:
        if run[jid]:
            decisions[jid] = Decision(True, reason[jid])
        elif state[jid] == _MISSING:
            decisions[jid] = _PRUNED_NOT_NEEDED
        elif reason[jid] is _PRESENT:
            decisions[jid] = _PRUNED_PRESENT
        else:
            decisions[jid] = Decision(False, reason[jid])
    return decisions
