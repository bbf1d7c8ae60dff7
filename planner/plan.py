"""The executable plan: jobs, files, the DAG, and why each job runs or not.

This is the one structure every backend consumes (ARCHITECTURE.md). Jobs,
files, reasons and decisions are immutable NamedTuples rather than frozen
dataclasses: a plan makes one of each per job, and a 16-field frozen
dataclass took 7 µs to build here (its ``__init__`` calls
``object.__setattr__`` per field) against under 3 µs for a NamedTuple:
seconds of a million-job plan. The plan itself is a frozen dataclass. The
graph is a networkx DiGraph whose
nodes are job ids (with the Job under the ``job`` attribute) and whose
edges point from producer to consumer. A backend adds no jobs of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import networkx as nx

from dsl.model import Workflow


class JobKind(StrEnum):
    """What a job does. Only compute and stage_in are planned so far."""

    COMPUTE = "compute"
    STAGE_IN = "stage_in"
    CONTAINER_STAGE_IN = "container_stage_in"
    STAGE_OUT = "stage_out"
    CLEANUP = "cleanup"


class FileRef(NamedTuple):
    """A file the plan touches, by logical name (a path under the working dir).

    ``sha256`` is the reference checksum known at plan time (from a replica
    entry) or None (computed at first sight, then enforced). ``producer`` is
    the id of the job that makes it, or None for a raw input.
    """

    lfn: str
    sha256: str | None = None
    producer: str | None = None
    temp: bool = False
    protected: bool = False


class Job(NamedTuple):
    """One node of the plan.

    ``command`` is already formatted, every substituted value shell-quoted.
    For a stage-in job, ``source`` is the URL or path it copies from.
    """

    id: str
    kind: JobKind
    rule: str | None
    wildcards: tuple[tuple[str, str], ...]
    command: str | None
    inputs: tuple[FileRef, ...]
    outputs: tuple[FileRef, ...]
    log: tuple[str, ...] = ()
    container: str | None = None
    threads: int = 1
    resources: tuple[tuple[str, int | str], ...] = ()
    retries: int = 0
    priority: int = 0
    local: bool = False
    message: str | None = None
    source: str | None = None

    @property
    def label(self) -> str:
        """``rule`` or ``rule[k=v,…]``: how people see this job."""
        return self.id


# Reason codes. A reason is data: the dry run, the DAG picture and the
# JSON plan all print it. ``subject`` is the file (or job) it is about.
RUN_FORCED = "forced"
RUN_OUTPUT_MISSING = "output-missing"
RUN_UPSTREAM = "upstream"
RUN_OUTPUT_CHANGED = "output-changed"
RUN_INPUT_CHANGED = "input-changed"
RUN_COMMAND_CHANGED = "command-changed"
RUN_CONTAINER_CHANGED = "container-changed"
RUN_NO_RECORD = "no-record"
RUN_NEEDED = "needed"
RUN_INPUT_MISSING = "input-missing"
PRUNE_PRESENT = "outputs-present"
PRUNE_NOT_NEEDED = "not-needed"

_TEXT = {
    RUN_FORCED: "forced",
    RUN_OUTPUT_MISSING: "output {} missing",
    RUN_UPSTREAM: "input {} will be remade",
    RUN_OUTPUT_CHANGED: "output {} changed since it was made",
    RUN_INPUT_CHANGED: "input {} changed",
    RUN_COMMAND_CHANGED: "command changed",
    RUN_CONTAINER_CHANGED: "container image {} changed",
    RUN_NO_RECORD: "output {} has no record of how it was made",
    RUN_NEEDED: "missing {} is needed by a job that runs",
    RUN_INPUT_MISSING: "input {} missing",
    PRUNE_PRESENT: "outputs present",
    PRUNE_NOT_NEEDED: "only needed by reused jobs",
}


def reason_label(code: str) -> str:
    """The wording of a reason code without its subject, e.g. ``output missing``."""
    return _TEXT[code].replace(" {}", "").replace("{} ", "")


class Reason(NamedTuple):
    """Why a job runs or is pruned: a code and the file it concerns."""

    code: str
    subject: str | None = None

    @property
    def text(self) -> str:
        """Human wording, e.g. ``output counts/b.tsv changed since it was made``."""
        return _TEXT[self.code].format(self.subject)


class Decision(NamedTuple):
    """Whether a job runs, and why."""

    run: bool
    reason: Reason


@dataclass(frozen=True)
class Plan:
    """The executable plan. Treat ``graph`` as read-only."""

    workflow: Workflow
    workdir: str
    graph: nx.DiGraph
    targets: tuple[str, ...]
    decisions: Mapping[str, Decision]
    files: Mapping[str, FileRef]
    order: tuple[str, ...]

    def job(self, job_id: str) -> Job:
        """The job with this id."""
        return self.graph.nodes[job_id]["job"]

    def jobs(self) -> Iterator[Job]:
        """Every planned job (run or pruned), in topological order."""
        nodes = self.graph._node  # the view would wrap every access: plans are big
        for jid in self.order:
            yield nodes[jid]["job"]

    def to_run(self) -> Iterator[Job]:
        """Jobs that run, in topological order."""
        for job in self.jobs():
            if self.decisions[job.id].run:
                yield job

    def pruned(self) -> Iterator[Job]:
        """Jobs whose outputs are reused, in topological order."""
        for job in self.jobs():
            if not self.decisions[job.id].run:
                yield job

    def summary(self) -> dict[str, Any]:
        """Counts per rule/kind of run and pruned jobs, and reasons per code."""
        per_rule: dict[str, dict[str, int]] = {}
        reasons: dict[str, dict[str, int]] = {}
        decisions = self.decisions
        for job in self.jobs():
            key = job.rule if job.kind is JobKind.COMPUTE else job.kind.value
            d = decisions[job.id]
            row = per_rule.setdefault(key, {"run": 0, "pruned": 0})
            row["run" if d.run else "pruned"] += 1
            rr = reasons.setdefault(key, {})
            rr[d.reason.code] = rr.get(d.reason.code, 0) + 1
        return {"rules": per_rule, "reasons": reasons}
