"""Target resolution on real Wffiles and real files: jobs, edges, raw inputs, errors."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import networkx as nx
import pytest

from dsl.errors import WffileError
from dsl.parse import load_workflow
from planner.patterns import OutputIndex, OutputPattern, compile_template
from planner.plan import JobKind, Plan
from planner.resolve import MAX_DEPTH, build_plan, job_id, outside_workdir

SHA = "ab" * 32


def write(tmp: Path, text: str, files: dict[str, str] | tuple[str, ...] = ()) -> Path:
    """The Wffile and the raw inputs, in ``tmp``."""
    wffile = tmp / "Wffile"
    wffile.write_text(textwrap.dedent(text).lstrip("\n"))
    contents = files if isinstance(files, dict) else {f: f"{f}\n" for f in files}
    for name, data in contents.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
    return wffile


def plan_for(tmp: Path, text: str, files: dict[str, str] | tuple[str, ...] = (),
             targets: tuple[str, ...] = (), **kw) -> Plan:
    wffile = write(tmp, text, files)
    return build_plan(load_workflow(str(wffile)), str(tmp), targets, **kw)


def error_for(tmp: Path, text: str, files: dict[str, str] | tuple[str, ...] = (),
              targets: tuple[str, ...] = ()) -> WffileError:
    with pytest.raises(WffileError) as info:
        plan_for(tmp, text, files, targets)
    return info.value


def line_of(tmp: Path, needle: str) -> int:
    """1-based line of the Wffile holding ``needle``."""
    lines = (tmp / "Wffile").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def ids(plan: Plan) -> list[str]:
    return [j.id for j in plan.jobs()]


def outputs(plan: Plan, jid: str) -> list[str]:
    return [f.lfn for f in plan.job(jid).outputs]


def inputs(plan: Plan, jid: str) -> list[str]:
    return [f.lfn for f in plan.job(jid).inputs]


def assert_topological(plan: Plan) -> None:
    pos = {jid: i for i, jid in enumerate(plan.order)}
    assert set(pos) == set(plan.graph.nodes)
    for u, v in plan.graph.edges:
        assert pos[u] < pos[v], (u, v)


DIAMOND = """
    rule d:
        input: "b.txt", "c.txt"
        output: "d.txt"
        shell: "cat {input} > {output}"

    rule b:
        input: "a.txt"
        output: "b.txt"
        shell: "cat {input} > {output}"

    rule c:
        input: "a.txt"
        output: "c.txt"
        shell: "cat {input} > {output}"

    rule a:
        input: "raw.txt"
        output: "a.txt"
        shell: "cat {input} > {output}"
"""


# -- shapes --------------------------------------------------------------------
def test_diamond(tmp_path):
    plan = plan_for(tmp_path, DIAMOND, ["raw.txt"])
    assert sorted(ids(plan)) == ["a", "b", "c", "d"]
    assert set(plan.graph.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert plan.order[0] == "a" and plan.order[-1] == "d"
    assert_topological(plan)
    assert inputs(plan, "d") == ["b.txt", "c.txt"]
    assert plan.job("a").command == "cat raw.txt > a.txt"
    assert plan.files["raw.txt"].producer is None
    assert plan.files["a.txt"].producer == "a"
    assert plan.targets == ("d",)
    assert all(plan.decisions[j].run for j in plan.order)


def test_fan_in_over_expand(tmp_path):
    plan = plan_for(tmp_path, """
        SAMPLES = ["A", "B", "C"]

        rule merge:
            input: expand("counts/{s}.tsv", s=SAMPLES)
            output: "all.tsv"
            shell: "cat {input} > {output}"

        rule count:
            input: "data/{s}.txt"
            output: "counts/{s}.tsv"
            shell: "wc -l {input} > {output}"
    """, ["data/A.txt", "data/B.txt", "data/C.txt"])
    counts = [job_id("count", [("s", s)]) for s in "ABC"]
    assert counts == ["count[s=A]", "count[s=B]", "count[s=C]"]
    assert set(ids(plan)) == {"merge", *counts}
    assert set(plan.graph.edges) == {(c, "merge") for c in counts}
    assert inputs(plan, "merge") == ["counts/A.tsv", "counts/B.tsv", "counts/C.tsv"]
    assert dict(plan.job("count[s=B]").wildcards) == {"s": "B"}
    assert plan.job("count[s=B]").command == "wc -l data/B.txt > counts/B.tsv"
    assert_topological(plan)


def test_fan_out(tmp_path):
    plan = plan_for(tmp_path, """
        rule all:
            input: expand("parts/{i}.txt", i=[1, 2, 3])

        rule part:
            input: "whole.txt"
            output: "parts/{i}.txt"
            shell: "sed -n {wildcards.i}p {input} > {output}"

        rule whole:
            output: "whole.txt"
            shell: "seq 3 > {output}"
    """)
    parts = [f"part[i={i}]" for i in (1, 2, 3)]
    assert set(plan.graph.edges) == {("whole", p) for p in parts} | {(p, "all") for p in parts}
    assert plan.order[0] == "whole" and plan.order[-1] == "all"
    assert plan.job("part[i=2]").command == "sed -n 2p whole.txt > parts/2.txt"
    assert plan.job("all").command is None and plan.job("all").outputs == ()


def test_rule_target_by_name(tmp_path):
    plan = plan_for(tmp_path, DIAMOND, ["raw.txt"], targets=("b",))
    assert sorted(ids(plan)) == ["a", "b"]
    assert set(plan.graph.edges) == {("a", "b")}
    assert plan.targets == ("b",)


def test_file_targets(tmp_path):
    plan = plan_for(tmp_path, DIAMOND, ["raw.txt"], targets=("c.txt", "b.txt"))
    assert sorted(ids(plan)) == ["a", "b", "c"]
    assert plan.targets == ("c.txt", "b.txt")
    assert_topological(plan)


def test_file_target_with_wildcards(tmp_path):
    plan = plan_for(tmp_path, """
        rule count:
            input: "data/{s}.txt"
            output: "counts/{s}.tsv"
            shell: "wc -l {input} > {output}"
    """, ["data/X.txt"], targets=("counts/X.tsv",))
    assert ids(plan) == ["count[s=X]"]


def test_default_target_is_first_rule(tmp_path):
    plan = plan_for(tmp_path, """
        rule first:
            input: "b.txt"

        rule second:
            output: "b.txt"
            shell: "touch {output}"

        rule third:
            output: "c.txt"
            shell: "touch {output}"
    """)
    assert plan.targets == ("first",)
    assert sorted(ids(plan)) == ["first", "second"]


def test_target_rule_with_wildcards_is_an_error(tmp_path):
    err = error_for(tmp_path, """
        rule count:
            input: "data/{s}.txt"
            output: "counts/{s}.tsv"
            shell: "wc -l {input} > {output}"
    """)
    text = err.render()
    assert "rule 'count' has wildcards ({s})" in text
    assert f"Wffile:{line_of(tmp_path, 'rule count')}:1: error:" in text


def test_unknown_target(tmp_path):
    err = error_for(tmp_path, DIAMOND, ["raw.txt"], targets=("e.txt",))
    assert "no rule makes target 'e.txt'" in str(err)


def test_existing_file_target_needs_no_job(tmp_path):
    plan = plan_for(tmp_path, DIAMOND, ["raw.txt"], targets=("raw.txt",))
    assert ids(plan) == []


# -- wildcards -----------------------------------------------------------------
CONSTRAINED = """
    wildcard_constraints:
        num = "[0-9]+"

    rule all:
        input: "out/17.txt", "out/abc.txt"

    rule numbers:
        output: "out/{num}.txt"
        shell: "echo number {wildcards.num} > {output}"

    rule words:
        output: "out/{word,[a-z]+}.txt"
        shell: "echo word {wildcards.word} > {output}"
"""


def test_constraints_select_the_rule(tmp_path):
    plan = plan_for(tmp_path, CONSTRAINED)
    assert sorted(ids(plan)) == ["all", "numbers[num=17]", "words[word=abc]"]
    assert plan.files["out/abc.txt"].producer == "words[word=abc]"
    assert plan.job("words[word=abc]").command == "echo word abc > out/abc.txt"


def test_without_constraints_both_rules_match(tmp_path):
    err = error_for(tmp_path, CONSTRAINED.replace('num = "[0-9]+"', 'other = "x"')
                    .replace("{word,[a-z]+}", "{word}"))
    assert "file 'out/17.txt' can be made by more than one rule" in str(err)


def test_inline_constraint_that_matches_nothing(tmp_path):
    err = error_for(tmp_path, """
        rule all:
            input: "out/x1.txt"

        rule words:
            output: "out/{word,[a-z]+}.txt"
            shell: "touch {output}"
    """)
    assert "missing input 'out/x1.txt' wanted by rule 'all'" in str(err)


def test_multiple_wildcards(tmp_path):
    plan = plan_for(tmp_path, """
        rule all:
            input: expand("res/{s}/{k}.txt", s=["A", "B"], k=["x", "y"])

        rule make:
            input: "data/{s}.txt"
            output: "res/{s}/{k}.txt"
            params: tag="{s}-{k}"
            shell: "echo {params.tag} {wildcards.k} < {input} > {output}"
    """, ["data/A.txt", "data/B.txt"])
    jid = job_id("make", [("s", "B"), ("k", "y")])
    assert jid == "make[s=B,k=y]"
    assert len(ids(plan)) == 5
    assert dict(plan.job(jid).wildcards) == {"s": "B", "k": "y"}
    assert plan.job(jid).command == "echo B-y y < data/B.txt > res/B/y.txt"


def test_repeated_wildcard_must_agree(tmp_path):
    text = """
        rule all:
            input: "{target}"

        rule pair:
            output: "{x}/{x}.txt"
            shell: "touch {output}"
    """
    plan = plan_for(tmp_path, text.replace("{target}", "ab/ab.txt"))
    assert dict(plan.job("pair[x=ab]").wildcards) == {"x": "ab"}
    err = error_for(tmp_path, text.replace("{target}", "ab/cd.txt"))
    assert "missing input 'ab/cd.txt' wanted by rule 'all'" in str(err)


def test_job_id_quotes_awkward_values():
    assert job_id("r", [("s", "a,b")]) == 'r[s="a,b"]'
    assert job_id("r", [("s", "a"), ("t", "b")]) == "r[s=a,t=b]"
    assert job_id("r", []) == "r"


# -- mistakes ------------------------------------------------------------------
def test_ambiguity_names_both_rules_and_the_file(tmp_path):
    err = error_for(tmp_path, """
        rule all:
            input: "x.txt"

        rule one:
            output: "{n}.txt"
            shell: "touch {output}"

        rule two:
            output: "x.{ext}"
            shell: "touch {output}"
    """)
    text = err.render()
    assert "file 'x.txt' can be made by more than one rule" in text
    assert "'one'" in text and "'two'" in text
    assert f"Wffile:{line_of(tmp_path, 'input: ')}:12: error:" in text


def test_cycle_names_the_files(tmp_path):
    err = error_for(tmp_path, """
        rule a:
            input: "b.txt"
            output: "a.txt"
            shell: "cp {input} {output}"

        rule b:
            input: "a.txt"
            output: "b.txt"
            shell: "cp {input} {output}"
    """)
    text = str(err)
    assert "cycle:" in text
    assert "a.txt -> b.txt -> a.txt" in text or "b.txt -> a.txt -> b.txt" in text
    assert "rules a, b" in text


def test_rule_feeding_itself_is_an_error_not_a_hang(tmp_path):
    start = time.monotonic()
    err = error_for(tmp_path, """
        rule all:
            input: "a"

        rule grow:
            input: "{f}.x"
            output: "{f}"
            shell: "cp {input} {output}"
    """)
    assert time.monotonic() - start < 60
    text = err.render()
    assert f"deeper than {MAX_DEPTH} jobs" in text
    assert "rule 'grow' seems to make its own input forever" in text
    assert "all <- grow[f=a] <- grow[f=a.x]" in text
    assert f"Wffile:{line_of(tmp_path, '{f}.x')}:" in text
    assert len(text) < 2000  # not 5000 ever longer job ids


def test_missing_input_names_file_and_rule_at_its_position(tmp_path):
    err = error_for(tmp_path, """
        rule all:
            input: "counts.txt"

        rule count:
            input:
                data="data/missing.txt"
            output: "counts.txt"
            shell: "wc -l {input} > {output}"
    """)
    [diag] = err.diagnostics
    assert "missing input 'data/missing.txt' wanted by rule 'count'" in diag.message
    assert diag.pos.line == line_of(tmp_path, "data=")
    assert diag.pos.col == 9
    assert diag.render().splitlines()[-1].strip() == "^"


def test_several_missing_inputs_reported_together(tmp_path):
    err = error_for(tmp_path, """
        rule all:
            input: "one.txt", "two.txt"
    """)
    assert len(err.diagnostics) == 2
    assert "'one.txt'" in err.diagnostics[0].message
    assert "'two.txt'" in err.diagnostics[1].message


# -- replicas --------------------------------------------------------------------
def test_replica_without_url_and_absent_file(tmp_path):
    err = error_for(tmp_path, f"""
        replica "data/genome.fa":
            sha256: "{SHA}"

        rule all:
            input: "data/genome.fa"
    """)
    text = str(err)
    assert "missing input 'data/genome.fa' wanted by rule 'all'" in text
    assert "has no url" in text


def test_replica_without_url_present_file(tmp_path):
    plan = plan_for(tmp_path, f"""
        replica "data/genome.fa":
            sha256: "{SHA}"

        rule all:
            input: "data/genome.fa"
    """, ["data/genome.fa"])
    assert ids(plan) == ["all"]
    assert plan.job("all").inputs[0].sha256 == SHA
    assert plan.job("all").inputs[0].producer is None


def test_replica_with_url_makes_a_stage_in_job(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "genome.fa").write_text(">x\nACGT\n")
    url = f"file://{archive}/genome.fa"
    plan = plan_for(tmp_path, f"""
        replica "data/genome.fa":
            url: "{url}"
            sha256: "{SHA}"

        rule all:
            input: "idx/genome.idx"

        rule index:
            input: "data/genome.fa"
            output: "idx/genome.idx"
            shell: "wc -c {{input}} > {{output}}"
    """)
    [stage] = [j for j in plan.jobs() if j.kind is JobKind.STAGE_IN]
    assert stage.id == "stage_in[data/genome.fa]"
    assert stage.source == url
    assert stage.rule is None and stage.command is None and stage.inputs == ()
    [out] = stage.outputs
    assert (out.lfn, out.sha256, out.producer) == ("data/genome.fa", SHA, stage.id)
    assert plan.files["data/genome.fa"] == out
    assert plan.job("index").inputs == (out,)
    assert set(plan.graph.edges) == {(stage.id, "index"), ("index", "all")}
    assert plan.order == (stage.id, "index", "all")


def test_replica_stage_in_as_a_target(tmp_path):
    plan = plan_for(tmp_path, """
        replica "data/x.txt":
            url: "https://example.org/x.txt"

        rule all:
            input: "data/x.txt"
    """, targets=("data/x.txt",))
    assert ids(plan) == ["stage_in[data/x.txt]"]
    assert plan.job("stage_in[data/x.txt]").outputs[0].sha256 is None


@pytest.mark.parametrize("url", ["data/x.txt", "./data/x.txt", "file://{tmp}/data/x.txt"])
def test_replica_whose_url_is_its_own_path_needs_no_stage_in(tmp_path, url):
    plan = plan_for(tmp_path, f"""
        replica "data/x.txt":
            url: "{url.format(tmp=tmp_path)}"
            sha256: "{SHA}"

        rule all:
            input: "data/x.txt"
    """, ["data/x.txt"])
    assert ids(plan) == ["all"]
    assert plan.files["data/x.txt"].sha256 == SHA
    assert plan.files["data/x.txt"].producer is None


def test_replica_whose_url_is_its_own_path_but_absent(tmp_path):
    err = error_for(tmp_path, """
        replica "data/x.txt":
            url: "data/x.txt"

        rule all:
            input: "data/x.txt"
    """)
    text = str(err)
    assert "missing input 'data/x.txt' wanted by rule 'all'" in text
    assert "has no url" not in text


# -- paths outside the working directory -----------------------------------------
@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", ".."])
def test_outside_workdir(path):
    assert outside_workdir(path)


@pytest.mark.parametrize("path", ["x", "a/b", "a/../x", "./x", "..x", "a/..b"])
def test_inside_workdir(path):
    assert not outside_workdir(path)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x"])
def test_input_outside_workdir_is_refused(tmp_path, path):
    err = error_for(tmp_path, f"""
        rule all:
            input: "out.txt"

        rule copy:
            input: "{path}"
            output: "out.txt"
            shell: "cp {{input}} {{output}}"
    """)
    [diag] = err.diagnostics
    assert diag.message == f"input '{path}' of rule 'copy' is outside the working directory"
    assert diag.pos.line == line_of(tmp_path, path)


@pytest.mark.parametrize("path", ["../x", "/tmp/wf-out", "a/../../x"])
def test_output_outside_workdir_is_refused(tmp_path, path):
    err = error_for(tmp_path, f"""
        rule write:
            output: "{path}"
            shell: "touch {{output}}"
    """)
    [diag] = err.diagnostics
    assert diag.message == f"output '{path}' of rule 'write' is outside the working directory"
    assert diag.pos.line == line_of(tmp_path, path)


def test_output_outside_workdir_through_a_wildcard(tmp_path):
    err = error_for(tmp_path, """
        rule all:
            input: "res/../../escape.txt"

        rule write:
            output: "res/{name}.txt"
            shell: "touch {output}"
    """)
    assert "outside the working directory" in str(err)


@pytest.mark.parametrize("target", ["../x", "/etc/passwd", "a/../../x"])
def test_target_outside_workdir_is_refused(tmp_path, target):
    err = error_for(tmp_path, DIAMOND, ["raw.txt"], targets=(target,))
    assert f"target '{target}' is outside the working directory" in str(err)


def test_log_outside_workdir_is_refused(tmp_path):
    err = error_for(tmp_path, """
        rule write:
            output: "x.txt"
            log: "../x.log"
            shell: "touch {output}"
    """)
    assert "log '../x.log' of rule 'write' is outside the working directory" in str(err)


# -- the prefix index ------------------------------------------------------------
def _index(patterns: list[str], constraints: dict[str, str] | None = None) -> OutputIndex:
    out = []
    for i, text in enumerate(patterns):
        t = compile_template(text)
        out.append(OutputPattern(i, 0, 0, t, t.regex(constraints or {}) if t.wildcards else None))
    return OutputIndex(out)


def _found(index: OutputIndex, path: str) -> set[tuple[int, tuple[tuple[str, str], ...]]]:
    return {(p.rule_index, tuple(sorted(wc.items()))) for p, wc in index.lookup(path)}


PATTERNS = [
    "results/{s}.txt",            # 0
    "results/{s}.tsv",            # 1
    "results/summary.txt",        # 2  no wildcard, shares the prefix of 0
    "results/{s}/{k}.txt",        # 3  two wildcards
    "res/{s}.txt",                # 4  a shorter shared prefix
    "{name}.log",                 # 5  starts with a wildcard
    "{a}/{a}.bam",                # 6  starts with a wildcard, repeated
    "data/raw.txt",               # 7  no wildcard
    "results/{n,[0-9]+}.txt",     # 8  inline constraint
    "results/{{lit}}/{s}.txt",    # 9  literal braces in the prefix
]


@pytest.mark.parametrize("path,expected", [
    ("results/A.txt", {(0, (("s", "A"),))}),
    ("results/42.txt", {(0, (("s", "42"),)), (8, (("n", "42"),))}),
    ("results/A.tsv", {(1, (("s", "A"),))}),
    ("results/summary.txt", {(0, (("s", "summary"),)), (2, ())}),
    ("results/A/x.txt", {(0, (("s", "A/x"),)), (3, (("k", "x"), ("s", "A")))}),
    ("res/A.txt", {(4, (("s", "A"),))}),
    ("run.log", {(5, (("name", "run"),))}),
    ("logs/run.log", {(5, (("name", "logs/run"),))}),
    ("x/x.bam", {(6, (("a", "x"),))}),
    ("x/y.bam", set()),
    ("data/raw.txt", {(7, ())}),
    ("data/raw.txt.gz", set()),
    ("results/{lit}/A.txt", {(0, (("s", "{lit}/A"),)), (3, (("k", "A"), ("s", "{lit}"))),
                             (9, (("s", "A"),))}),
    ("results/.txt", set()),
    ("", set()),
    ("other/A.txt", set()),
])
def test_output_index_finds_exactly_the_matching_patterns(path, expected):
    assert _found(_index(PATTERNS), path) == expected


def test_output_index_agrees_with_a_full_scan():
    patterns = PATTERNS + [f"p{i}/{{s}}.{i % 7}" for i in range(300)] + [f"p{i}/fixed" for i in range(50)]
    index = _index(patterns)
    compiled = [compile_template(p) for p in patterns]
    paths = ["p12/a.5", "p12/a.4", "p49/fixed", "p300/x.6", "p299/x.5", "results/x.tsv",
             "q.log", "p1/p2/x.1", "p7/fixed", "p7/fixed.0", "z/z.bam"]
    for path in paths:
        slow = set()
        for i, t in enumerate(compiled):
            if not t.wildcards:
                if t.prefix == path:
                    slow.add((i, ()))
                continue
            m = t.regex({}).match(path)
            if m:
                slow.add((i, tuple(sorted(m.groupdict().items()))))
        assert _found(index, path) == slow, path


def test_output_index_uses_global_constraints():
    index = _index(["out/{num}.txt", "out/{word}.txt"], {"num": "[0-9]+", "word": "[a-z]+"})
    assert _found(index, "out/12.txt") == {(0, (("num", "12"),))}
    assert _found(index, "out/ab.txt") == {(1, (("word", "ab"),))}
    assert _found(index, "out/a1.txt") == set()


def test_template_format_round_trip():
    t = compile_template("res/{s,[A-Z]+}/{k}.{{x}}.txt")
    assert t.wildcards == ("s", "k")
    assert t.prefix == "res/" and t.suffix == ".{x}.txt"
    assert t.format({"s": "AB", "k": "y"}) == "res/AB/y.{x}.txt"
    m = t.regex({}).match("res/AB/y.{x}.txt")
    assert m is not None and m.groupdict() == {"s": "AB", "k": "y"}
    assert t.regex({}).match("res/ab/y.{x}.txt") is None


# -- the plan as a whole ---------------------------------------------------------
def test_job_fields_come_from_the_rule(tmp_path):
    plan = plan_for(tmp_path, """
        localrules: all

        rule all:
            input: "out/A.txt"

        rule work:
            input: "data/{s}.txt"
            output: "out/{s}.txt", temp("tmp/{s}.part"), protected("keep/{s}.txt")
            threads: 4
            resources: mem_mb=512
            retries: 3
            priority: 7
            log: "logs/{s}.log"
            shell: "touch {output}"
    """, ["data/A.txt"], default_retries=1)
    job = plan.job("work[s=A]")
    assert job.threads == 4
    assert dict(job.resources) == {"mem_mb": 512}
    assert job.retries == 3 and job.priority == 7
    assert job.log == ("logs/A.log",)
    assert [(f.lfn, f.temp, f.protected) for f in job.outputs] == [
        ("out/A.txt", False, False), ("tmp/A.part", True, False), ("keep/A.txt", False, True)]
    assert plan.job("all").local and not job.local
    assert plan.job("all").retries == 1  # the default when the rule says nothing


def test_plan_graph_is_a_dag_of_jobs(tmp_path):
    plan = plan_for(tmp_path, DIAMOND, ["raw.txt"])
    assert nx.is_directed_acyclic_graph(plan.graph)
    for jid in plan.graph.nodes:
        assert plan.job(jid).id == jid
    assert [j.id for j in plan.to_run()] == list(plan.order)
    assert list(plan.pruned()) == []


def test_ambiguous_target_file_is_reported_as_ambiguous(tmp_path):
    err = error_for(tmp_path, """
        rule one:
            output: "{n}.txt"
            shell: "touch {output}"

        rule two:
            output: "x.{ext}"
            shell: "touch {output}"
    """, targets=("x.txt",))
    text = str(err)
    assert "file 'x.txt' can be made by more than one rule: 'one'" in text
    assert "no rule makes target" not in text


def test_target_named_by_a_replica_without_url_and_absent(tmp_path):
    err = error_for(tmp_path, f"""
        replica "data/x.txt":
            sha256: "{SHA}"

        rule all:
            input: "data/x.txt"
    """, targets=("data/x.txt",))
    text = str(err)
    assert "'data/x.txt'" in text and "has no url and the file does not exist" in text
    assert "no replica names it" not in text
