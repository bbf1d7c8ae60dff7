"""Targets → jobs → DAG: wildcard matching, dependency inference, checks.

A breadth-first walk from the targets: every input of a job is matched
against the indexed output patterns; exactly one rule may make a file, or
it must be a raw input (a replica entry or a file that exists). Mistakes
are raised as positioned WffileErrors (exit 2): ambiguity, cycles, missing
inputs, paths outside the working directory.
"""

from __future__ import annotations

import gc
import hashlib
import os
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx

from dsl.errors import Diagnostic, SourcePos, WffileError, did_you_mean
from dsl.model import PROTECTED, TEMP, Item, Rule, Workflow

from .commands import JobFiles, RuleCommands
from .patterns import OutputIndex, OutputPattern, Template, compile_template, simple_wildcard
from .plan import FileRef, Job, JobKind, Plan
from .reuse import FilesystemOracle, ReuseOracle, decide

#: A dependency chain deeper than this is a rule feeding itself forever
#: (``{f}`` made from ``{f}.x``), reported as a cycle.
MAX_DEPTH = 5000
#: Errors shown before "… and N more"; a million missing inputs help no one.
MAX_ERRORS = 20

_SAFE_VALUE = re.compile(r"[^,=\[\]\"\\]*")
_UNKNOWN = object()
_TRACK_DEPTH = 3


@dataclass(slots=True)
class _CompiledRule:
    index: int
    rule: Rule
    inputs: list[tuple[Item, list[Template]]]
    outputs: list[tuple[Item, list[Template]]]
    logs: list[tuple[Item, list[Template]]]
    wildcards: tuple[str, ...]
    commands: RuleCommands
    # Per-job constants, worked out once per rule (the walk is the hot path).
    out_flags: list[list[tuple[Template, bool, bool]]] | None = None
    container: str | None = None
    retries: int = 0


def job_id(rule: str, wildcards: Iterable[tuple[str, str]]) -> str:
    """``rule`` or ``rule[k=v,…]``; values with ``,=[]"`` are JSON-quoted so ids stay unique."""
    pairs = [f"{k}={v}" if _SAFE_VALUE.fullmatch(v) else f"{k}={_json(v)}" for k, v in wildcards]
    return f"{rule}[{','.join(pairs)}]" if pairs else rule


def _job_id(comp: _CompiledRule, wildcards: dict[str, str]) -> str:
    names = comp.wildcards
    if len(names) == 1:  # the common case, without the generic machinery
        v = wildcards[names[0]]
        if not ("," in v or "=" in v or "[" in v or "]" in v or '"' in v or "\\" in v):
            return f"{comp.rule.name}[{names[0]}={v}]"
    return job_id(comp.rule.name, ((w, wildcards[w]) for w in names))


def stage_in_id(lfn: str) -> str:
    """The id of the stage-in job of a replica."""
    return f"stage_in[{lfn}]"


def container_stage_in_id(name: str) -> str:
    """The id of the job that stages a container image."""
    return f"container_stage_in[{name}]"


#: Where staged images live, under the working directory.
IMAGES_DIR = ".wf/images"


def container_lfn(name: str, source: str) -> str:
    """The staged image's file name: ``.wf/images/NAME/BASENAME``."""
    base = posixpath.basename(source.split("?", 1)[0].rstrip("/")) or "image"
    return f"{IMAGES_DIR}/{name}/{base}"


def _image_name(source: str) -> str:
    """A name for an image given by path or URL in a rule (no declaration)."""
    base = posixpath.basename(source.split("?", 1)[0].rstrip("/")) or "image"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
    return f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"


def _json(value: str) -> str:
    import json
    return json.dumps(value)


def outside_workdir(lfn: str) -> bool:
    """True when a relative file name escapes the working directory (or is absolute)."""
    if ".." not in lfn and not lfn.startswith("/"):
        return False  # the common case: nothing to normalise
    if lfn.startswith("/") or os.path.isabs(lfn):
        return True
    norm = posixpath.normpath(lfn)
    return norm == ".." or norm.startswith("../")


class _Errors:
    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.more = 0

    def add(self, pos: SourcePos | None, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append(Diagnostic(message, pos))
        else:
            self.more += 1

    def __len__(self) -> int:
        return len(self.items) + self.more

    def raise_if_any(self) -> None:
        if self.items:
            if self.more:
                self.items.append(Diagnostic(f"… and {self.more} more errors like these"))
            raise WffileError(self.items)


class Resolver:
    """Builds the job graph for a workflow; use :func:`build_plan`."""

    def __init__(self, workflow: Workflow, oracle: ReuseOracle, default_retries: int = 0,
                 workdir: str = "."):
        self.wf = workflow
        self.workdir = os.path.abspath(workdir)
        self.oracle = oracle
        self.default_retries = default_retries
        self.rules: list[_CompiledRule] = []
        patterns: list[OutputPattern] = []
        constraints = dict(workflow.wildcard_constraints)
        for i, rule in enumerate(workflow.rules):
            comp = _CompiledRule(
                i, rule,
                [(it, [compile_template(v) for v in it.values]) for it in rule.input],
                [(it, [compile_template(v) for v in it.values]) for it in rule.output],
                [(it, [compile_template(v) for v in it.values]) for it in rule.log],
                (), RuleCommands(rule),
            )
            for k, (_, temps) in enumerate(comp.outputs):
                for j, t in enumerate(temps):
                    if not comp.wildcards:
                        comp.wildcards = t.wildcards
                    rx = t.regex(constraints) if t.wildcards else None
                    flag = comp.outputs[k][0].flag(j)
                    patterns.append(OutputPattern(i, k, j, t, rx, flag == TEMP, flag == PROTECTED,
                                                  simple_wildcard(t, constraints)))
            self.rules.append(comp)
        self.by_name = {c.rule.name: c for c in self.rules}
        self.index = OutputIndex(patterns)
        self.graph = nx.DiGraph()
        self.files: dict[str, FileRef] = {}
        self.producer_of: dict[str, str | None] = {}
        self.errors = _Errors()
        self.queue: deque[tuple[_CompiledRule, dict[str, str], int, str | None]] = deque()
        self.seen: set[str] = set()
        self.parent: dict[str, str | None] = {}
        self._shallow: str | None = None

    # -- targets -------------------------------------------------------------
    def request(self, targets: Sequence[str]) -> list[str]:
        """Queue the jobs for the targets; return the ids of the target jobs."""
        if not self.rules:
            raise WffileError.at(SourcePos(self.wf.path, 1, 1), "the Wffile defines no rules")
        if not targets:
            targets = [self.rules[0].rule.name]
        roots: list[str] = []
        for target in targets:
            comp = self.by_name.get(target)
            if comp is not None:
                if comp.wildcards:
                    raise WffileError.at(comp.rule.pos, f"rule '{target}' has wildcards "
                                         f"({', '.join('{' + w + '}' for w in comp.wildcards)}): "
                                         f"name one of its files as the target instead")
                roots.append(self._enqueue(comp, {}, 0, None))
                continue
            if outside_workdir(target):
                raise WffileError.at(None, f"target '{target}' is outside the working directory")
            known = len(self.errors)
            producer = self._producer(target, None, None, 0)
            if producer is not None:
                roots.append(producer)
            elif target not in self.files and len(self.errors) == known:
                # (when _producer reported why, e.g. two rules make it, that is the error)
                hint = did_you_mean(target, self.by_name)
                self.errors.add(None, f"no rule makes target '{target}', no replica names it, "
                                      f"and it does not exist{hint}")
        self.errors.raise_if_any()
        return roots

    # -- the walk ------------------------------------------------------------
    def _enqueue(self, comp: _CompiledRule, wildcards: dict[str, str], depth: int,
                 parent: str | None) -> str:
        jid = _job_id(comp, wildcards)
        if jid not in self.seen:
            self.seen.add(jid)
            if depth <= _TRACK_DEPTH:  # only for the "feeds itself forever" error
                self.parent[jid] = parent
                if depth == _TRACK_DEPTH:
                    self._shallow = jid
            self.queue.append((comp, wildcards, depth, jid))
        return jid

    def run(self) -> None:
        """Expand queued jobs until every input is resolved."""
        while self.queue:
            comp, wildcards, depth, jid = self.queue.popleft()
            if depth > MAX_DEPTH:
                self._too_deep(comp, jid)
                break
            self._expand(comp, wildcards, depth, jid)  # type: ignore[arg-type]
        self.errors.raise_if_any()

    def _expand(self, comp: _CompiledRule, wildcards: dict[str, str], depth: int, jid: str) -> None:
        rule = comp.rule
        files_get = self.files.get
        producer_of = self.producer_of
        if comp.out_flags is None:
            comp.out_flags = [[(t, item.flag(j) == TEMP, item.flag(j) == PROTECTED)
                               for j, t in enumerate(temps)] for item, temps in comp.outputs]
            comp.container = self._container_stage_in(rule)
            comp.retries = rule.retries if rule.retries is not None else self.default_retries
        out_groups: list[tuple[str | None, list[str]]] = []
        outputs: list[FileRef] = []
        for (item, _), flagged in zip(comp.outputs, comp.out_flags, strict=True):
            names = []
            for t, is_temp, is_protected in flagged:
                lfn = t.format(wildcards)
                if (".." in lfn or lfn[:1] == "/") and outside_workdir(lfn):
                    self.errors.add(item.pos, f"output '{lfn}' of rule '{rule.name}' is outside the working directory")
                    continue
                names.append(lfn)
                ref = files_get(lfn)
                if ref is None or ref.producer != jid:
                    ref = FileRef(lfn, None, jid, is_temp, is_protected)
                    self.files[lfn] = ref
                producer_of[lfn] = jid
                outputs.append(ref)
            out_groups.append((item.name, names))
        in_groups: list[tuple[str | None, list[str]]] = []
        inputs: list[FileRef] = []
        parents: list[str] = []
        unknown = _UNKNOWN
        for item, temps in comp.inputs:
            names = []
            for t in temps:
                lfn = t.format(wildcards)
                names.append(lfn)
                producer = producer_of.get(lfn, unknown)
                if producer is unknown:
                    if (".." in lfn or lfn[:1] == "/") and outside_workdir(lfn):
                        self.errors.add(item.pos, f"input '{lfn}' of rule '{rule.name}' is outside the working directory")
                        continue
                    producer = self._producer(lfn, rule, item.pos, depth + 1, jid)
                ref = files_get(lfn)
                if ref is None:
                    continue  # missing: already reported
                inputs.append(ref)
                if producer is not None:
                    parents.append(producer)
            in_groups.append((item.name, names))
        log_groups = [(item.name, [t.format(wildcards) for t in temps]) for item, temps in comp.logs]
        logs = [lfn for _, names in log_groups for lfn in names]
        for lfn in logs:
            if outside_workdir(lfn):
                self.errors.add(rule.where("log"), f"log '{lfn}' of rule '{rule.name}' is outside the working directory")
        files = JobFiles(in_groups, out_groups, log_groups)
        job = Job(
            id=jid,
            kind=JobKind.COMPUTE,
            rule=rule.name,
            wildcards=tuple([(w, wildcards[w]) for w in comp.wildcards]),
            command=comp.commands.render_shell(files, wildcards),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            log=tuple(logs),
            container=comp.container,
            threads=rule.threads,
            resources=rule.resources,
            retries=comp.retries,
            priority=rule.priority,
            local=rule.local,
            message=comp.commands.render_message(files, wildcards),
        )
        self.graph.add_node(jid, job=job)
        add_edge = self.graph.add_edge
        for p in parents:
            add_edge(p, jid)
        if comp.container is not None:
            # The image is data: its stage-in job comes before every job that runs in it.
            add_edge(self.files[comp.container].producer, jid)

    def _producer(self, lfn: str, rule: Rule | None, pos: SourcePos | None, depth: int,
                  consumer: str | None = None) -> str | None:
        """The id of the job making ``lfn`` (queued if new); None for a raw input."""
        if lfn in self.producer_of:
            return self.producer_of[lfn]
        hits = self.index.lookup(lfn)
        if hits:
            rules = {h[0].rule_index for h in hits} if len(hits) > 1 else ()
            if len(rules) > 1:
                names = [self.rules[i].rule for i in sorted(rules)]
                where = ", ".join(f"'{r.name}' ({r.where('output')})" for r in names)
                self.errors.add(pos or names[0].where("output"),
                                f"file '{lfn}' can be made by more than one rule: {where}")
                self.producer_of[lfn] = None
                return None
            pattern, wildcards = hits[0]
            comp = self.rules[pattern.rule_index]
            jid = self._enqueue(comp, wildcards, depth, consumer)
            self.files[lfn] = FileRef(lfn, None, jid, pattern.temp, pattern.protected)
            self.producer_of[lfn] = jid
            return jid
        # A raw input: a replica entry, or a file that is already there.
        replica = self.wf.replicas.get(lfn)
        producer = None
        if replica is not None:
            if replica.url and not self._in_place(replica.url, lfn):
                producer = stage_in_id(lfn)
                ref = FileRef(lfn, replica.sha256, producer)
                self.graph.add_node(producer, job=Job(
                    id=producer, kind=JobKind.STAGE_IN, rule=None, wildcards=(),
                    command=None, inputs=(), outputs=(ref,), local=True, source=replica.url,
                    retries=self.default_retries,
                ))
                self.files[lfn] = ref
            elif self.oracle.present(lfn):
                self.files[lfn] = FileRef(lfn, replica.sha256, None)
            else:
                why = "points at the file itself" if replica.url else "has no url"
                self.errors.add(pos or replica.pos,
                                f"missing input '{lfn}'" + (f" wanted by rule '{rule.name}'" if rule else "")
                                + f": replica at {replica.pos} {why} and the file does not exist")
        elif self.oracle.present(lfn):
            self.files[lfn] = FileRef(lfn, None, None)
        elif rule is not None:
            self.errors.add(pos, f"missing input '{lfn}' wanted by rule '{rule.name}': "
                                 f"no rule makes it, no replica names it, and it does not exist")
        self.producer_of[lfn] = producer
        return producer

    def _container_stage_in(self, rule: Rule) -> str | None:
        """The staged image file of the rule's container (its stage-in job made once)."""
        ref = rule.container
        if ref is None:
            return None
        if ref.name is not None:
            decl = self.wf.containers[ref.name]
            name, source, sha = decl.name, decl.image, decl.sha256
        else:
            source, sha = ref.image or "", None
            name = _image_name(source)
        lfn = container_lfn(name, source)
        if lfn not in self.files:
            jid = container_stage_in_id(name)
            out = FileRef(lfn, sha, jid)
            self.graph.add_node(jid, job=Job(
                id=jid, kind=JobKind.CONTAINER_STAGE_IN, rule=None, wildcards=(), command=None,
                inputs=(), outputs=(out,), local=True, source=source,
                retries=max(self.default_retries, 0),
            ))
            self.files[lfn] = out
            self.producer_of[lfn] = jid
        return lfn

    def _in_place(self, url: str, lfn: str) -> bool:
        """Whether a replica's url is the file in the working directory (nothing to copy)."""
        source = _local_source(url)
        if source is None:
            return False
        here = os.path.normpath(os.path.join(self.workdir, lfn))
        return os.path.normpath(os.path.join(self.workdir, source)) == here

    def _too_deep(self, comp: _CompiledRule, jid: str | None) -> None:
        # ``jid`` is queued but not expanded yet: it has no Job, so the rule
        # comes from the queue entry. The chain is shown from the target end,
        # where the ids are still short enough to read: parents are only
        # remembered for the first levels of the walk.
        chain = []
        jid = self._shallow
        while jid is not None:
            chain.append(jid)
            jid = self.parent.get(jid)
        shown = " <- ".join(reversed(chain))
        self.errors.add(comp.rule.where("input"),
                        f"dependency chain deeper than {MAX_DEPTH} jobs: rule '{comp.rule.name}' seems to "
                        f"make its own input forever ({shown} <- …)")

    # -- checks ------------------------------------------------------------
    def topological_order(self) -> tuple[str, ...]:
        """All jobs in dependency order, or a positioned error naming a cycle."""
        try:
            return tuple(nx.topological_sort(self.graph))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(self.graph)
        files = []
        for u, v in cycle:
            made = {f.lfn for f in self.graph.nodes[u]["job"].outputs}
            used = [f.lfn for f in self.graph.nodes[v]["job"].inputs if f.lfn in made]
            files.append(used[0] if used else u)
        first = self.graph.nodes[cycle[0][1]]["job"]
        comp = self.by_name[first.rule]
        rules = sorted({self.graph.nodes[u]["job"].rule for u, _ in cycle})
        raise WffileError.at(comp.rule.where("input"),
                             f"cycle: {' -> '.join(files + files[:1])} (rules {', '.join(rules)})")


def _local_source(url: str | None) -> str | None:
    if url is None:
        return None
    if url.startswith("file://"):
        return url[len("file://"):]
    if "://" in url:
        return None
    return url


def build_plan(
    workflow: Workflow,
    workdir: str = ".",
    targets: Sequence[str] = (),
    oracle: ReuseOracle | None = None,
    forcerun: Iterable[str] = (),
    force: Iterable[str] = (),
    default_retries: int = 0,
) -> Plan:
    """Plan ``targets`` (default: the first rule) of ``workflow`` in ``workdir``.

    ``forcerun`` names rules whose jobs run regardless; ``force`` names
    targets (files or rules) whose producing job runs regardless.
    """
    oracle = oracle or FilesystemOracle(workdir)
    forcerun = set(forcerun)
    for name in forcerun:
        if name not in {r.name for r in workflow.rules}:
            raise WffileError.at(None, f"--forcerun: no rule named '{name}'"
                                       f"{did_you_mean(name, [r.name for r in workflow.rules])}")
    # The walk allocates millions of small objects that all stay alive: the
    # cyclic garbage collector would scan them again and again for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        res = Resolver(workflow, oracle, default_retries, workdir)
        roots = res.request(list(targets))
        res.run()
        order = res.topological_order()
        forced_ids = set()
        for t in force:
            forced_ids.add(res.producer_of.get(t) or t)
        decisions = decide(res.graph, order, roots, oracle, forcerun, forced_ids)
    finally:
        # The plan lives as long as the process: move it out of the collector's
        # sight for good, or every later collection would walk all of it.
        gc.freeze()
        if gc_was_enabled:
            gc.enable()
    target_names = tuple(targets) or (workflow.rules[0].name,)
    return Plan(workflow, os.path.abspath(workdir), res.graph, target_names,
                decisions, res.files, order)
