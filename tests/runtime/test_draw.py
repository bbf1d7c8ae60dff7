"""Drawing the plan: DOT checked by graphviz itself, mermaid, text, rules view."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import networkx as nx
import pytest

from dsl.model import Workflow
from planner.plan import (
    PRUNE_PRESENT,
    RUN_OUTPUT_MISSING,
    RUN_UPSTREAM,
    Decision,
    FileRef,
    Job,
    JobKind,
    Plan,
    Reason,
)
from runtime.draw import NO_DOT, TEXT_HEAD, DrawError, render

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")

NASTY = 'a "b" ;<c> [d] |e| {f} \\g\\n & &lt; #h; `i` (j) -> k'


def compute(jid, rule, wildcards=(), inputs=(), outputs=()):
    return Job(
        id=jid,
        kind=JobKind.COMPUTE,
        rule=rule,
        wildcards=tuple(wildcards),
        command="true",
        inputs=tuple(FileRef(f) for f in inputs),
        outputs=tuple(FileRef(f, producer=jid) for f in outputs),
    )


def stage_in(jid, lfn):
    return Job(
        id=jid,
        kind=JobKind.STAGE_IN,
        rule=None,
        wildcards=(),
        command=None,
        inputs=(),
        outputs=(FileRef(lfn, producer=jid),),
        source=f"https://example.org/{lfn}",
    )


def make_plan(jobs, edges, pruned=()):
    """A Plan over ``jobs`` (any order) and producer→consumer ``edges``."""
    g = nx.DiGraph()
    for job in jobs:
        g.add_node(job.id, job=job)
    g.add_edges_from(edges)
    decisions = {}
    for job in jobs:
        if job.id in pruned:
            decisions[job.id] = Decision(False, Reason(PRUNE_PRESENT))
        elif any(p not in pruned for p in g.pred[job.id]):
            decisions[job.id] = Decision(True, Reason(RUN_UPSTREAM, "x"))
        else:
            decisions[job.id] = Decision(True, Reason(RUN_OUTPUT_MISSING, job.outputs[0].lfn))
    return Plan(
        workflow=Workflow(path="Wffile", basedir=".", rules=()),
        workdir=".",
        graph=g,
        targets=(),
        decisions=decisions,
        files={f.lfn: f for j in jobs for f in j.outputs},
        order=tuple(nx.topological_sort(g)),
    )


@pytest.fixture
def diamond():
    """stage-in → align[A], align[B] → merge; align[A] is reused."""
    jobs = [
        stage_in("s", "data/genome.fa"),
        compute("a", "align", [("sample", "A")], ["data/genome.fa"], ["aln/A.bam"]),
        compute("b", "align", [("sample", "B")], ["data/genome.fa"], ["aln/B.bam"]),
        compute("m", "merge", (), ["aln/A.bam", "aln/B.bam"], ["merged.bam"]),
    ]
    return make_plan(jobs, [("s", "a"), ("s", "b"), ("a", "m"), ("b", "m")], pruned={"a"})


def nasty_plan():
    jobs = [
        stage_in("s", 'in/"odd" [name].txt'),
        compute("c", "count", [("sample", NASTY), ("x", "{y}")], [], ["out"]),
    ]
    return make_plan(jobs, [("s", "c")])


def canon(dot_text):
    """Run ``dot -Tcanon``; graphviz must accept the text without a warning."""
    proc = subprocess.run(
        ["dot", "-Tcanon"], input=dot_text.encode(), capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    text = proc.stdout.decode().replace("\\\n", "")  # canon wraps long lines
    nodes = set(re.findall(r"^\s+(j\d+)\s+\[", text, re.M))
    edges = re.findall(r"^\s+(j\d+) -> (j\d+)", text, re.M)
    return nodes, edges


def job_line(dot_text, node):
    return next(ln for ln in dot_text.splitlines() if ln.strip().startswith(f"{node} ["))


# --- DOT ------------------------------------------------------------------


@needs_dot
def test_dot_diamond_parses_with_one_node_per_job_and_every_edge(diamond):
    nodes, edges = canon(render(diamond, "dot"))
    assert nodes == {"j0", "j1", "j2", "j3"}
    assert len(edges) == 4


def test_dot_ids_follow_topological_order_and_labels_show_wildcards(diamond):
    dot = render(diamond, "dot")
    ids = {jid: f"j{i}" for i, jid in enumerate(diamond.order)}
    assert 'label="stage-in\\ndata/genome.fa"' in job_line(dot, ids["s"])
    assert 'label="align\\nsample=A"' in job_line(dot, ids["a"])
    assert 'label="merge"' in job_line(dot, ids["m"])
    assert f"{ids['s']} -> {ids['a']}" in dot


def test_dot_reused_job_is_dashed_grey_with_reason_tooltip(diamond):
    dot = render(diamond, "dot")
    ids = {jid: f"j{i}" for i, jid in enumerate(diamond.order)}
    reused = job_line(dot, ids["a"])
    assert "dashed" in reused and "grey" in reused
    assert 'tooltip="align[sample=A]: reused, outputs present"' in reused
    for jid in ("s", "b", "m"):
        line = job_line(dot, ids[jid])
        assert "dashed" not in line and "grey" not in line
        assert "will run" in line
    assert "cluster_legend" in dot and "outputs present: 1" in dot


def test_dot_kinds_have_different_shapes(diamond):
    dot = render(diamond, "dot")
    ids = {jid: f"j{i}" for i, jid in enumerate(diamond.order)}
    shape = {jid: re.search(r"shape=(\w+)", job_line(dot, n)).group(1) for jid, n in ids.items()}
    assert shape["a"] == shape["m"] == "box"
    assert shape["s"] != "box"


@needs_dot
def test_dot_accepts_nasty_labels_and_renders_them_verbatim():
    plan = nasty_plan()
    dot = render(plan, "dot")
    nodes, edges = canon(dot)
    assert nodes == {"j0", "j1"} and edges == [("j0", "j1")]
    svg = render(plan, "svg")
    root = ET.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"sample={NASTY}" in texts
    assert "x={y}" in texts
    assert 'in/"odd" [name].txt' in texts


def test_control_characters_never_reach_the_output():
    jobs = [compute("c", "count", [("s", "a\nb\x1bc\td")], [], ["o"])]
    plan = make_plan(jobs, [])
    visible = {
        "text": "count[s=a\\nb\\x1bc\\td]",
        "dot": "s=a\\\\nb\\\\x1bc\\\\td",
        "mermaid": "s=a#92;nb#92;x1bc#92;td",
    }
    for fmt, shown in visible.items():
        out = render(plan, fmt)
        assert "\x1b" not in out and "\t" not in out
        assert shown in out, fmt


# --- svg / png ------------------------------------------------------------


@needs_dot
def test_svg_is_svg_text(diamond):
    svg = render(diamond, "svg")
    assert isinstance(svg, str)
    assert svg.startswith("<?xml") or "<svg" in svg
    assert "outputs present" in svg  # the tooltip travels into the picture


@needs_dot
def test_png_is_png_bytes(diamond):
    png = render(diamond, "png")
    assert isinstance(png, bytes)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_svg_and_png_without_dot_say_how_to_get_it(diamond, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DrawError) as exc:
        render(diamond, fmt)
    assert str(exc.value) == NO_DOT
    assert "apt-get install graphviz" in str(exc.value)
    # the formats that need no graphviz still work
    assert render(diamond, "dot").startswith("digraph")


def test_unknown_format_is_a_draw_error(diamond):
    with pytest.raises(DrawError, match="unknown format 'gif'"):
        render(diamond, "gif")


# --- mermaid --------------------------------------------------------------


def test_mermaid_diamond(diamond):
    mm = render(diamond, "mermaid")
    lines = mm.splitlines()
    assert lines[0] in ("flowchart TD", "graph TD")
    assert sum(" --> " in ln for ln in lines) == 4
    ids = {jid: f"j{i}" for i, jid in enumerate(diamond.order)}
    assert f'  {ids["a"]}["align<br>sample=A"]' in lines
    assert f'  {ids["m"]}["merge"]' in lines
    assert any(ln.startswith(f"  {ids['s']}[(") for ln in lines)  # stage-in: another shape
    assert f"  class {ids['a']},legend_reused reused" in lines
    assert any(ln.strip().startswith("classDef reused") and "dasharray" in ln for ln in lines)


def test_mermaid_labels_escape_quotes_and_brackets():
    mm = render(nasty_plan(), "mermaid")
    labels = re.findall(r'^\s+(?:j\d+|legend_\w+)[\[({]+"(.*)"[\])}/]+$', mm, re.M)
    assert len(labels) == 3  # two jobs and the legend
    for label in labels:
        bare = re.sub(r"#\d+;", "", label).replace("<br>", "")
        assert not set(bare) & set('"#&[](){}|;<>`'), bare
    assert "#34;b#34;" in mm and "#91;d#93;" in mm


# --- text -----------------------------------------------------------------


def test_text_groups_jobs_by_level_with_state_and_inputs(diamond):
    text = render(diamond, "text")
    assert text.splitlines() == [
        "plan: 4 jobs, 3 to run, 1 reused",
        "level 0",
        "  [run]    stage-in[data/genome.fa]",
        "level 1",
        "  [reused] align[sample=A]  <- stage-in[data/genome.fa]  (outputs present)",
        "  [run]    align[sample=B]  <- stage-in[data/genome.fa]",
        "level 2",
        "  [run]    merge  <- align[sample=A], align[sample=B]",
    ]


def big_plan(n):
    """n jobs: one stage-in feeding n-2 ``count`` jobs feeding one ``merge``."""
    jobs = [stage_in("s", "ref.fa")]
    edges = []
    for i in range(n - 2):
        jobs.append(compute(f"c{i}", "count", [("sample", f"S{i}")], ["ref.fa"], [f"c/{i}"]))
        edges += [("s", f"c{i}"), (f"c{i}", "m")]
    jobs.append(compute("m", "merge", (), [], ["all"]))
    return make_plan(jobs, edges, pruned={f"c{i}" for i in range(0, n - 2, 3)})


def test_text_is_bounded_for_big_plans():
    text = render(big_plan(1000), "text")
    lines = text.splitlines()
    assert len(lines) < TEXT_HEAD + 20
    assert lines[0] == "plan: 1000 jobs, 667 to run, 333 reused"
    assert "  count (998 jobs, 333 reused)  <- stage-in" in lines
    assert "  merge (1 job)  <- count" in lines
    assert lines[-1] == f"… and {1000 - TEXT_HEAD} more jobs"


def test_text_lists_many_inputs_shortly():
    text = render(big_plan(20), "text")
    merge = next(ln for ln in text.splitlines() if " merge  <-" in ln)
    assert merge.endswith(", … (+14)")


def test_big_plans_draw_fast():
    plan = big_plan(20_000)
    start = time.perf_counter()
    dot = render(plan, "dot")
    mm = render(plan, "mermaid")
    render(plan, "text")
    assert time.perf_counter() - start < 10
    assert len(re.findall(r"^  j\d+ -> j\d+", dot, re.M)) == 2 * (20_000 - 2)
    assert mm.count(" --> ") == 2 * (20_000 - 2)


# --- rules view -----------------------------------------------------------


def test_rules_view_text(diamond):
    assert render(diamond, "text", rules=True).splitlines() == [
        "rule graph: 3 rules/kinds, 4 jobs, 1 reused",
        "  stage-in (1 job)",
        "  align (2 jobs, 1 reused)  <- stage-in",
        "  merge (1 job)  <- align",
    ]


@needs_dot
def test_rules_view_dot_and_mermaid(diamond):
    dot = render(diamond, "dot", rules=True)
    proc = subprocess.run(["dot", "-Tcanon"], input=dot.encode(), capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b""
    assert 'r1 [label="align (2 jobs, 1 reused)"' in dot
    assert re.findall(r"^\s+(r\d) -> (r\d);", dot, re.M) == [("r0", "r1"), ("r1", "r2")]
    mm = render(diamond, "mermaid", rules=True)
    assert 'r1["align #40;2 jobs, 1 reused#41;"]' in mm
    assert mm.count(" --> ") == 2


def test_rules_view_counts_all_reused_rule_as_reused():
    jobs = [compute("a", "make", (), [], ["x"]), compute("b", "use", (), ["x"], ["y"])]
    plan = make_plan(jobs, [("a", "b")], pruned={"a"})
    dot = render(plan, "dot", rules=True)
    line0 = job_line(dot, "r0")
    assert "make (1 job, 1 reused)" in line0 and "dashed" in line0
    assert "dashed" not in job_line(dot, "r1")
