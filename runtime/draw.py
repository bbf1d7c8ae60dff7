"""Drawing the plan for ``wf dag``: text, DOT, mermaid, and SVG/PNG via graphviz.

One node per job (or, with ``rules=True``, per rule or auxiliary kind).
Jobs that will run are drawn solid; reused (pruned) jobs dashed and grey,
with the reason in the DOT tooltip and summed up in a legend. Every label
goes through one escaper per format, because wildcard values are arbitrary
user text. Output is built as lists of strings and joined once, so 100k
jobs take seconds, not minutes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

import networkx as nx

from planner.plan import Job, JobKind, Plan

__all__ = ["FORMATS", "DrawError", "render", "to_dot", "to_mermaid", "to_text"]

FORMATS = ("text", "dot", "mermaid", "svg", "png")

#: A text view above this many jobs shows the per-rule summary and only the
#: first TEXT_HEAD jobs, so a terminal stays readable for huge plans.
TEXT_LIMIT = 200
TEXT_HEAD = 50
#: Predecessors listed after ``<-`` on one text line before ``(+N)``.
TEXT_PREDS = 4
#: Distinct prune reasons listed in a legend before ``…``.
LEGEND_REASONS = 5

NO_DOT = (
    "graphviz's 'dot' program is not installed (Debian: apt-get install graphviz); "
    "use --format dot|mermaid|text instead"
)


class DrawError(Exception):
    """The plan cannot be drawn in the requested format (a usage error)."""


def render(plan: Plan, fmt: str, rules: bool = False) -> str | bytes:
    """Draw ``plan`` as ``fmt`` (one of FORMATS); png is bytes, the others str.

    ``rules=True`` draws the rule graph instead of the job graph. svg and
    png run graphviz's ``dot`` on the DOT text; its layout time grows fast
    with the graph, so prefer ``rules=True`` for huge plans.
    """
    if fmt == "text":
        return to_text(plan, rules)
    if fmt == "dot":
        return to_dot(plan, rules)
    if fmt == "mermaid":
        return to_mermaid(plan, rules)
    if fmt in ("svg", "png"):
        out = _run_dot(to_dot(plan, rules), fmt)
        return out if fmt == "png" else out.decode("utf-8")
    raise DrawError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- what a node shows ----------------------------------------------------

_KIND_NAME = {
    JobKind.COMPUTE: "compute",
    JobKind.STAGE_IN: "stage-in",
    JobKind.CONTAINER_STAGE_IN: "container-stage-in",
    JobKind.STAGE_OUT: "stage-out",
    JobKind.CLEANUP: "cleanup",
}

# DOT shape and mermaid (open, close) brackets per kind.
_DOT_SHAPE = {
    JobKind.COMPUTE: "box",
    JobKind.STAGE_IN: "cylinder",
    JobKind.CONTAINER_STAGE_IN: "box3d",
    JobKind.STAGE_OUT: "folder",
    JobKind.CLEANUP: "octagon",
}
_MERMAID_SHAPE = {
    JobKind.COMPUTE: ('["', '"]'),
    JobKind.STAGE_IN: ('[("', '")]'),
    JobKind.CONTAINER_STAGE_IN: ('[["', '"]]'),
    JobKind.STAGE_OUT: ('[/"', '"/]'),
    JobKind.CLEANUP: ('{{"', '"}}'),
}


def _clean(s: str) -> str:
    """Make control characters visible: a label is one line per part, never raw bytes."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _subject(job: Job) -> str:
    """The file an auxiliary job is about: ``lfn`` or ``lfn (+N more)``."""
    files = (
        job.outputs if job.kind in (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN) else job.inputs
    )
    if not files and job.kind is JobKind.CONTAINER_STAGE_IN and job.container:
        return job.container
    if not files:
        return job.source or job.id
    more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
    return files[0].lfn + more


def _head(job: Job) -> str:
    """First label line: the rule for a compute job, the kind otherwise."""
    if job.kind is JobKind.COMPUTE:
        return job.rule or job.id
    return _KIND_NAME[job.kind]


def _parts(job: Job) -> list[str]:
    """Label lines: ``[rule, k=v, …]`` or ``[kind, subject]``."""
    if job.kind is JobKind.COMPUTE:
        return [_clean(_head(job))] + [_clean(f"{k}={v}") for k, v in job.wildcards]
    return [_head(job), _clean(_subject(job))]


def _name(job: Job) -> str:
    """One-line name: ``count[sample=A]``, ``count``, ``stage-in[data/genome.fa]``."""
    parts = _parts(job)
    return parts[0] + (f"[{','.join(parts[1:])}]" if len(parts) > 1 else "")


def _group(job: Job) -> tuple[JobKind, str]:
    """The rule-graph node a job belongs to: its rule, or its kind if auxiliary."""
    if job.kind is JobKind.COMPUTE:
        return (job.kind, _clean(job.rule or job.id))
    return (job.kind, _KIND_NAME[job.kind])


def _count_label(total: int, reused: int) -> str:
    jobs = f"{total} job" + ("" if total == 1 else "s")
    return f"{jobs}, {reused} reused" if reused else jobs


@dataclass(frozen=True, slots=True)
class _RuleNode:
    kind: JobKind
    name: str
    total: int
    reused: int

    @property
    def label(self) -> str:
        return f"{self.name} ({_count_label(self.total, self.reused)})"


def _rule_graph(plan: Plan) -> tuple[list[_RuleNode], list[tuple[int, int]]]:
    """Rule nodes (producers first where the rule graph allows) and index edges."""
    index: dict[tuple[JobKind, str], int] = {}
    totals: list[list[int]] = []
    of_job: dict[str, int] = {}
    for job in plan.jobs():
        g = _group(job)
        i = index.get(g)
        if i is None:
            i = index[g] = len(totals)
            totals.append([0, 0])
        of_job[job.id] = i
        totals[i][0] += 1
        if not plan.decisions[job.id].run:
            totals[i][1] += 1
    edges = {(of_job[u], of_job[v]) for u, v in plan.graph.edges}
    rg = nx.DiGraph()
    rg.add_nodes_from(range(len(totals)))
    rg.add_edges_from((u, v) for u, v in edges if u != v)
    try:
        order = list(nx.lexicographical_topological_sort(rg))
    except nx.NetworkXUnfeasible:  # rule-level cycle: first appearance is good enough
        order = list(range(len(totals)))
    renum = {old: new for new, old in enumerate(order)}
    groups = list(index)
    nodes = [
        _RuleNode(groups[old][0], groups[old][1], totals[old][0], totals[old][1]) for old in order
    ]
    return nodes, sorted((renum[u], renum[v]) for u, v in edges)


def _prune_reasons(plan: Plan) -> list[str]:
    """Legend lines ``reason: N`` for reused jobs, most common first, capped."""
    counts = Counter(d.reason.text for d in plan.decisions.values() if not d.run)
    lines = [f"{_clean(text)}: {n}" for text, n in counts.most_common(LEGEND_REASONS)]
    if len(counts) > LEGEND_REASONS:
        lines.append(f"… {len(counts) - LEGEND_REASONS} more reasons")
    return lines


# --- DOT ------------------------------------------------------------------

_DOT_REUSED = (
    'style="dashed,rounded,filled", color="grey55", fontcolor="grey40", fillcolor="grey95"'
)


def _dot_str(s: str) -> str:
    """A DOT double-quoted string. ``\\`` and ``"`` are escaped; ``&`` too,
    since graphviz decodes entities like ``&lt;`` in plain labels."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;") + '"'


def _dot_label(parts: list[str]) -> str:
    # Join after escaping, so the \n separators stay DOT line breaks.
    return _dot_str("\x00".join(parts)).replace("\x00", "\\n")


def to_dot(plan: Plan, rules: bool = False) -> str:
    """The plan (or its rule graph) as graphviz DOT text."""
    out = [
        "digraph wf {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=10];',
        '  node [fontname="Helvetica", fontsize=10, style="rounded,filled", fillcolor="white"];',
        '  edge [color="grey30", arrowsize=0.7];',
    ]
    kinds: set[JobKind] = set()
    if rules:
        nodes, edges = _rule_graph(plan)
        for i, n in enumerate(nodes):
            kinds.add(n.kind)
            style = f", {_DOT_REUSED}" if n.reused == n.total else ""
            out.append(f"  r{i} [label={_dot_str(n.label)}, shape={_DOT_SHAPE[n.kind]}{style}];")
        out.extend(f"  r{u} -> r{v};" for u, v in edges)
    else:
        ids = {jid: f"j{i}" for i, jid in enumerate(plan.order)}
        reused_ids = set()
        for job in plan.jobs():
            kinds.add(job.kind)
            d = plan.decisions[job.id]
            state = "will run" if d.run else "reused"
            tip = _dot_str(f"{_name(job)}: {state}, {_clean(d.reason.text)}")
            style = ""
            if not d.run:
                style = f", {_DOT_REUSED}"
                reused_ids.add(job.id)
            out.append(
                f"  {ids[job.id]} [label={_dot_label(_parts(job))}, "
                f"shape={_DOT_SHAPE[job.kind]}, tooltip={tip}{style}];"
            )
        faded = ' [color="grey60", style=dashed]'
        out.extend(
            f"  {ids[u]} -> {ids[v]}{faded if u in reused_ids else ''};"
            for u, v in plan.graph.edges
        )
    out.extend(_dot_legend(plan, kinds))
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_legend(plan: Plan, kinds: set[JobKind]) -> list[str]:
    reused = _prune_reasons(plan)
    keys = ["legend_run"]
    lines = [
        "  subgraph cluster_legend {",
        '    label="legend"; fontsize=9; style="dashed"; color="grey70";',
        '    legend_run [label="will run", shape=box];',
    ]
    if reused:
        label = _dot_label(["reused"] + reused)
        lines.append(f"    legend_reused [label={label}, shape=box, {_DOT_REUSED}];")
        keys.append("legend_reused")
    if len(kinds) > 1:
        for kind in sorted(kinds - {JobKind.COMPUTE}, key=lambda k: k.value):
            key = f"legend_{kind.value}"
            lines.append(f'    {key} [label="{_KIND_NAME[kind]}", shape={_DOT_SHAPE[kind]}];')
            keys.append(key)
    if len(keys) > 1:
        lines.append(f"    {' -> '.join(keys)} [style=invis];")
    lines.append("  }")
    return lines


def _run_dot(dot_text: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise DrawError(NO_DOT)
    proc = subprocess.run(
        [exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, check=False
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise DrawError(f"graphviz 'dot -T{fmt}' failed (exit {proc.returncode}): {err}")
    return proc.stdout


# --- mermaid --------------------------------------------------------------

# Mermaid decodes ``#NN;`` entity codes in labels; everything that could end
# a quoted label, open a shape, or be read as HTML or markdown goes that way.
_MERMAID_ESCAPE = str.maketrans({c: f"#{ord(c)};" for c in '"#&<>[](){}|;`\\'})


def _mermaid_label(parts: list[str]) -> str:
    return "<br>".join(p.translate(_MERMAID_ESCAPE) for p in parts)


def to_mermaid(plan: Plan, rules: bool = False) -> str:
    """The plan (or its rule graph) as a mermaid flowchart."""
    out = ["flowchart TD"]
    reused: list[str] = []
    if rules:
        nodes, edges = _rule_graph(plan)
        for i, n in enumerate(nodes):
            o, c = _MERMAID_SHAPE[n.kind]
            out.append(f"  r{i}{o}{_mermaid_label([n.label])}{c}")
            if n.reused == n.total:
                reused.append(f"r{i}")
        out.extend(f"  r{u} --> r{v}" for u, v in edges)
    else:
        ids = {jid: f"j{i}" for i, jid in enumerate(plan.order)}
        for job in plan.jobs():
            o, c = _MERMAID_SHAPE[job.kind]
            out.append(f"  {ids[job.id]}{o}{_mermaid_label(_parts(job))}{c}")
            if not plan.decisions[job.id].run:
                reused.append(ids[job.id])
        out.extend(f"  {ids[u]} --> {ids[v]}" for u, v in plan.graph.edges)
    reasons = _prune_reasons(plan)
    out.append("  subgraph legend [legend]")
    out.append('    legend_run["will run"]')
    if reasons:
        out.append(f'    legend_reused["{_mermaid_label(["reused"] + reasons)}"]')
        reused.append("legend_reused")
    out.append("  end")
    out.append("  classDef reused stroke-dasharray: 5 5,stroke:#999,fill:#f2f2f2,color:#666")
    # Keep `class` lines short: one per 500 ids.
    for i in range(0, len(reused), 500):
        out.append(f"  class {','.join(reused[i : i + 500])} reused")
    return "\n".join(out) + "\n"


# --- text -----------------------------------------------------------------


def to_text(plan: Plan, rules: bool = False) -> str:
    """A plain-text terminal view, bounded for huge plans."""
    if rules:
        return _text_rules(plan)
    order = plan.order
    total = len(order)
    n_reused = sum(1 for jid in order if not plan.decisions[jid].run)
    out = [
        f"plan: {total} job{'' if total == 1 else 's'}, {total - n_reused} to run, {n_reused} reused"
    ]
    if total > TEXT_LIMIT:
        out.append("")
        out.extend(_rule_lines(*_rule_graph(plan)))
        out.append("")
        out.append(f"first {TEXT_HEAD} jobs:")

    graph = plan.graph
    pos = {jid: i for i, jid in enumerate(order)}
    level: dict[str, int] = {}
    for jid in order:
        level[jid] = max((level[p] + 1 for p in graph.pred[jid]), default=0)
    ranked = sorted(order, key=lambda j: (level[j], pos[j]))
    shown = ranked if total <= TEXT_LIMIT else ranked[:TEXT_HEAD]

    names: dict[str, str] = {}

    def name(jid: str) -> str:
        n = names.get(jid)
        if n is None:
            n = names[jid] = _name(plan.job(jid))
        return n

    current = -1
    for jid in shown:
        if level[jid] != current:
            current = level[jid]
            out.append(f"level {current}")
        d = plan.decisions[jid]
        line = f"  {'[run]' if d.run else '[reused]':<8} {name(jid)}"
        preds = sorted(graph.pred[jid], key=pos.__getitem__)
        if preds:
            listed = ", ".join(name(p) for p in preds[:TEXT_PREDS])
            more = f", … (+{len(preds) - TEXT_PREDS})" if len(preds) > TEXT_PREDS else ""
            line += f"  <- {listed}{more}"
        if not d.run:
            line += f"  ({_clean(d.reason.text)})"
        out.append(line)
    if len(shown) < total:
        out.append(f"… and {total - len(shown)} more jobs")
    return "\n".join(out) + "\n"


def _rule_lines(nodes: list[_RuleNode], edges: list[tuple[int, int]]) -> list[str]:
    """``  count (4 jobs, 1 reused)  <- trim`` per rule, producers first."""
    feeds: dict[int, list[int]] = {}
    for u, v in edges:
        feeds.setdefault(v, []).append(u)
    lines = []
    for i, n in enumerate(nodes):
        line = f"  {n.label}"
        if i in feeds:
            line += "  <- " + ", ".join(nodes[u].name for u in feeds[i])
        lines.append(line)
    return lines


def _text_rules(plan: Plan) -> str:
    nodes, edges = _rule_graph(plan)
    total = sum(n.total for n in nodes)
    reused = sum(n.reused for n in nodes)
    head = f"rule graph: {len(nodes)} rules/kinds, {_count_label(total, reused)}"
    return "\n".join([head, *_rule_lines(nodes, edges)]) + "\n"
