"""Data reuse: which jobs run, which are pruned, and why, on real files after real runs."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

from dsl.parse import load_workflow
from planner.plan import (
    PRUNE_NOT_NEEDED,
    PRUNE_PRESENT,
    RUN_COMMAND_CHANGED,
    RUN_FORCED,
    RUN_INPUT_MISSING,
    RUN_OUTPUT_CHANGED,
    RUN_OUTPUT_MISSING,
    RUN_UPSTREAM,
    Job,
    JobKind,
    Plan,
    Reason,
)
from planner.resolve import build_plan
from planner.reuse import FilesystemOracle, ReuseOracle, decide

# A chain with a temp() intermediate: count makes tmp/{s}.cnt, report keeps it.
TEMP_CHAIN = """
    SAMPLES = ["A", "B"]

    rule all:
        input: expand("final/{s}.txt", s=SAMPLES), "summary.txt"

    rule summary:
        input: expand("final/{s}.txt", s=SAMPLES)
        output: "summary.txt"
        shell: "cat {input} > {output}"

    rule report:
        input: "tmp/{s}.cnt"
        output: "final/{s}.txt"
        shell: "cp {input} {output}"

    rule count:
        input: "data/{s}.txt"
        output: temp("tmp/{s}.cnt")
        shell: "wc -l < {input} > {output}"
"""

# Plain files all the way: norm -> count -> merge.
CHAIN = """
    SAMPLES = ["a", "b"]

    rule all:
        input: "merged.tsv"

    rule merge:
        input: expand("counts/{s}.tsv", s=SAMPLES)
        output: "merged.tsv"
        shell: "cat {input} > {output}"

    rule count:
        input: "norm/{s}.txt"
        output: "counts/{s}.tsv"
        shell: "wc -l < {input} > {output}"

    rule norm:
        input: "data/{s}.txt"
        output: "norm/{s}.txt"
        shell: "tr a-z A-Z < {input} > {output}"
"""


def setup(tmp: Path, text: str, raw: Iterable[str]) -> Path:
    wffile = tmp / "Wffile"
    wffile.write_text(textwrap.dedent(text).lstrip("\n"))
    for name in raw:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{name}\nline two\n")
    return wffile


def plan_in(tmp: Path, targets: tuple[str, ...] = (), oracle: ReuseOracle | None = None,
            **kw) -> Plan:
    return build_plan(load_workflow(str(tmp / "Wffile")), str(tmp), targets, oracle, **kw)


def finish(tmp: Path, plan: Plan) -> None:
    """Run what the plan runs, then remove temp() files, as a finished run leaves things."""
    for job in plan.to_run():
        if job.command is None:
            continue
        for f in job.outputs:
            (tmp / f.lfn).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/bin/sh", "-c", job.command], cwd=tmp, check=True, timeout=30)
    for job in plan.to_run():
        for f in job.outputs:
            if f.temp:
                (tmp / f.lfn).unlink()


def why(plan: Plan) -> dict[str, tuple[bool, str, str | None]]:
    return {jid: (d.run, d.reason.code, d.reason.subject) for jid, d in plan.decisions.items()}


def running(plan: Plan) -> set[str]:
    return {j.id for j in plan.to_run()}


def check_reasons(plan: Plan) -> None:
    """Every job has a decision with a reason that reads as text, pruning codes only if pruned."""
    assert set(plan.decisions) == set(plan.graph.nodes)
    for d in plan.decisions.values():
        assert isinstance(d.reason, Reason)
        assert d.reason.text and "None" not in d.reason.text
        assert (d.reason.code in (PRUNE_PRESENT, PRUNE_NOT_NEEDED)) == (not d.run)


@pytest.fixture
def temp_chain(tmp_path):
    setup(tmp_path, TEMP_CHAIN, ["data/A.txt", "data/B.txt"])
    return tmp_path


@pytest.fixture
def chain(tmp_path):
    setup(tmp_path, CHAIN, ["data/a.txt", "data/b.txt"])
    return tmp_path


# -- the file system oracle ------------------------------------------------------
def test_fresh_plan_runs_everything(temp_chain):
    plan = plan_in(temp_chain)
    assert why(plan) == {
        "count[s=A]": (True, RUN_OUTPUT_MISSING, "tmp/A.cnt"),
        "count[s=B]": (True, RUN_OUTPUT_MISSING, "tmp/B.cnt"),
        "report[s=A]": (True, RUN_OUTPUT_MISSING, "final/A.txt"),
        "report[s=B]": (True, RUN_OUTPUT_MISSING, "final/B.txt"),
        "summary": (True, RUN_OUTPUT_MISSING, "summary.txt"),
        "all": (True, RUN_INPUT_MISSING, "final/A.txt"),
    }
    check_reasons(plan)


def test_after_a_finished_run_everything_is_pruned(chain):
    finish(chain, plan_in(chain))
    plan = plan_in(chain)
    assert running(plan) == set()
    assert {d.reason.code for d in plan.decisions.values()} == {PRUNE_PRESENT}
    assert plan.decisions["count[s=a]"].reason.text == "outputs present"
    check_reasons(plan)


def test_ancestors_needed_only_by_pruned_jobs_are_not_needed(chain):
    finish(chain, plan_in(chain))
    (chain / "norm/a.txt").unlink()
    plan = plan_in(chain)
    assert running(plan) == set()
    assert why(plan)["norm[s=a]"] == (False, PRUNE_NOT_NEEDED, None)
    assert why(plan)["count[s=a]"] == (False, PRUNE_PRESENT, None)
    assert why(plan)["norm[s=b]"] == (False, PRUNE_PRESENT, None)
    check_reasons(plan)


def test_cascade_of_not_needed_through_several_levels(chain):
    finish(chain, plan_in(chain))
    (chain / "norm/a.txt").unlink()
    (chain / "counts/a.tsv").unlink()
    plan = plan_in(chain)
    assert running(plan) == set()
    assert why(plan)["count[s=a]"] == (False, PRUNE_NOT_NEEDED, None)
    assert why(plan)["norm[s=a]"] == (False, PRUNE_NOT_NEEDED, None)


def test_deleted_intermediate_is_remade_when_a_consumer_runs(chain):
    finish(chain, plan_in(chain))
    (chain / "norm/a.txt").unlink()
    (chain / "merged.tsv").unlink()
    plan = plan_in(chain)
    # merge reruns, but its inputs are present: norm[s=a] stays pruned.
    assert running(plan) == {"merge", "all"}
    assert why(plan)["norm[s=a]"] == (False, PRUNE_NOT_NEEDED, None)
    (chain / "counts/a.tsv").unlink()
    plan = plan_in(chain)
    assert running(plan) == {"norm[s=a]", "count[s=a]", "merge", "all"}
    assert why(plan)["norm[s=a]"] == (True, RUN_OUTPUT_MISSING, "norm/a.txt")
    assert plan.decisions["norm[s=a]"].reason.text == "output norm/a.txt missing"
    assert why(plan)["count[s=a]"] == (True, RUN_OUTPUT_MISSING, "counts/a.tsv")
    assert why(plan)["merge"] == (True, RUN_OUTPUT_MISSING, "merged.tsv")
    assert why(plan)["all"] == (True, RUN_INPUT_MISSING, "merged.tsv")
    check_reasons(plan)


def test_temp_gone_after_a_finished_run_forces_nothing(temp_chain):
    finish(temp_chain, plan_in(temp_chain))
    assert not (temp_chain / "tmp/A.cnt").exists()
    plan = plan_in(temp_chain)
    assert running(plan) == set()
    assert why(plan)["count[s=A]"] == (False, PRUNE_NOT_NEEDED, None)
    assert why(plan)["report[s=A]"] == (False, PRUNE_PRESENT, None)
    assert why(plan)["all"] == (False, PRUNE_PRESENT, None)
    check_reasons(plan)


def test_temp_producer_reruns_when_its_consumer_must(temp_chain):
    finish(temp_chain, plan_in(temp_chain))
    (temp_chain / "final/A.txt").unlink()
    plan = plan_in(temp_chain)
    assert running(plan) == {"count[s=A]", "report[s=A]", "summary", "all"}
    assert why(plan)["all"] == (True, RUN_INPUT_MISSING, "final/A.txt")
    assert why(plan)["report[s=A]"] == (True, RUN_OUTPUT_MISSING, "final/A.txt")
    assert why(plan)["count[s=A]"] == (True, RUN_OUTPUT_MISSING, "tmp/A.cnt")
    # summary was made from the old final/A.txt, which is remade: it runs too.
    assert why(plan)["summary"] == (True, RUN_UPSTREAM, "final/A.txt")
    assert why(plan)["count[s=B]"] == (False, PRUNE_NOT_NEEDED, None)
    assert why(plan)["report[s=B]"] == (False, PRUNE_PRESENT, None)
    check_reasons(plan)
    finish(temp_chain, plan)
    assert running(plan_in(temp_chain)) == set()


def test_temp_producer_reruns_for_a_missing_target(temp_chain):
    finish(temp_chain, plan_in(temp_chain))
    (temp_chain / "final/B.txt").unlink()
    plan = plan_in(temp_chain, targets=("final/B.txt",))
    assert set(plan.graph.nodes) == {"count[s=B]", "report[s=B]"}
    assert why(plan) == {"report[s=B]": (True, RUN_OUTPUT_MISSING, "final/B.txt"),
                         "count[s=B]": (True, RUN_OUTPUT_MISSING, "tmp/B.cnt")}


def test_deleted_final_output_only_feeding_a_present_file_is_not_needed(temp_chain):
    # summary.txt is there and wants nothing remade: final/A.txt's absence is
    # Pegasus-style reduction, not a reason to run (`all` wants summary.txt only).
    text = (temp_chain / "Wffile").read_text()
    (temp_chain / "Wffile").write_text(
        text.replace('input: expand("final/{s}.txt", s=SAMPLES), "summary.txt"', 'input: "summary.txt"'))
    finish(temp_chain, plan_in(temp_chain))
    (temp_chain / "final/A.txt").unlink()
    plan = plan_in(temp_chain)
    assert running(plan) == set()
    assert why(plan)["report[s=A]"] == (False, PRUNE_NOT_NEEDED, None)
    assert why(plan)["count[s=A]"] == (False, PRUNE_NOT_NEEDED, None)


def test_temp_remade_for_one_consumer_reruns_its_other_consumers(tmp_path):
    # split makes a temp file read by left and right. When right's output is
    # deleted, split reruns to remake the temp, so left's output, made from
    # the old temp, is remade too: every job downstream of a job that runs
    # runs (as Snakemake does), whether it was decided in the first or the
    # second pass.
    setup(tmp_path, """
        rule all:
            input: "left.txt", "right.txt"

        rule left:
            input: "tmp/split.txt"
            output: "left.txt"
            shell: "head -n 1 {input} > {output}"

        rule right:
            input: "tmp/split.txt"
            output: "right.txt"
            shell: "tail -n 1 {input} > {output}"

        rule split:
            input: "data/x.txt"
            output: temp("tmp/split.txt")
            shell: "cat {input} > {output}"
    """, ["data/x.txt"])
    finish(tmp_path, plan_in(tmp_path))
    (tmp_path / "right.txt").unlink()
    plan = plan_in(tmp_path)
    assert why(plan) == {
        "split": (True, RUN_OUTPUT_MISSING, "tmp/split.txt"),
        "right": (True, RUN_OUTPUT_MISSING, "right.txt"),
        "left": (True, RUN_UPSTREAM, "tmp/split.txt"),
        "all": (True, RUN_INPUT_MISSING, "right.txt"),
    }
    check_reasons(plan)


def test_forcerun_a_rule_runs_it_and_everything_downstream(chain):
    finish(chain, plan_in(chain))
    plan = plan_in(chain, forcerun=["count"])
    assert running(plan) == {"count[s=a]", "count[s=b]", "merge", "all"}
    assert why(plan)["count[s=a]"] == (True, RUN_FORCED, None)
    assert plan.decisions["count[s=a]"].reason.text == "forced"
    subject = why(plan)["merge"]
    assert subject[:2] == (True, RUN_UPSTREAM) and subject[2] in ("counts/a.tsv", "counts/b.tsv")
    assert why(plan)["all"] == (True, RUN_UPSTREAM, "merged.tsv")
    assert plan.decisions["all"].reason.text == "input merged.tsv will be remade"
    assert why(plan)["norm[s=a]"] == (False, PRUNE_PRESENT, None)
    check_reasons(plan)


def test_forcerun_unknown_rule_is_an_error(chain):
    from dsl.errors import WffileError
    with pytest.raises(WffileError, match="no rule named 'cuont'.*did you mean 'count'"):
        plan_in(chain, forcerun=["cuont"])


def test_force_a_target_file(chain):
    finish(chain, plan_in(chain))
    plan = plan_in(chain, targets=("merged.tsv", "counts/b.tsv"), force=["counts/b.tsv"])
    assert running(plan) == {"count[s=b]", "merge"}
    assert why(plan)["count[s=b]"] == (True, RUN_FORCED, None)
    assert why(plan)["merge"] == (True, RUN_UPSTREAM, "counts/b.tsv")
    assert why(plan)["count[s=a]"] == (False, PRUNE_PRESENT, None)


def test_force_a_target_rule(chain):
    finish(chain, plan_in(chain))
    plan = plan_in(chain, targets=("merge",), force=["merge"])
    assert running(plan) == {"merge"}
    assert why(plan)["merge"] == (True, RUN_FORCED, None)


def test_job_without_outputs_runs_when_an_input_is_missing(tmp_path):
    setup(tmp_path, """
        rule all:
            input: "data/raw.txt", "made.txt"

        rule make:
            output: "made.txt"
            shell: "echo made > {output}"
    """, ["data/raw.txt"])
    finish(tmp_path, plan_in(tmp_path))
    assert why(plan_in(tmp_path))["all"] == (False, PRUNE_PRESENT, None)
    (tmp_path / "made.txt").unlink()
    plan = plan_in(tmp_path)
    assert why(plan)["all"] == (True, RUN_INPUT_MISSING, "made.txt")
    assert why(plan)["make"] == (True, RUN_OUTPUT_MISSING, "made.txt")


def test_stage_in_is_pruned_when_its_file_is_there(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "x.txt").write_text("x\n")
    setup(tmp_path, f"""
        replica "data/x.txt":
            url: "file://{archive}/x.txt"

        rule all:
            input: "out.txt"

        rule copy:
            input: "data/x.txt"
            output: "out.txt"
            shell: "cp {{input}} {{output}}"
    """, [])
    plan = plan_in(tmp_path)
    assert why(plan)["stage_in[data/x.txt]"] == (True, RUN_OUTPUT_MISSING, "data/x.txt")
    assert plan.job("stage_in[data/x.txt]").kind is JobKind.STAGE_IN
    (tmp_path / "data").mkdir()
    (tmp_path / "data/x.txt").write_text("x\n")
    (tmp_path / "out.txt").write_text("x\n")
    plan = plan_in(tmp_path)
    assert running(plan) == set()
    assert why(plan)["stage_in[data/x.txt]"] == (False, PRUNE_PRESENT, None)


def test_filesystem_oracle(tmp_path):
    (tmp_path / "here.txt").write_text("")
    oracle = FilesystemOracle(str(tmp_path))
    assert oracle.present("here.txt") and not oracle.present("gone.txt")


# -- a custom oracle (the protocol the runtime's database implements) ---------------
class RecordOracle:
    """Files present by name, stale reasons by job id; remembers what it was asked."""

    def __init__(self, present: Iterable[str], stale: dict[str, Reason] | None = None):
        self.files = set(present)
        self.reasons = dict(stale or {})
        self.asked: list[str] = []

    def present(self, lfn: str) -> bool:
        return lfn in self.files

    def stale(self, job: Job) -> Reason | None:
        self.asked.append(job.id)
        return self.reasons.get(job.id)


ALL_CHAIN_FILES = ["data/a.txt", "data/b.txt", "norm/a.txt", "norm/b.txt",
                   "counts/a.tsv", "counts/b.tsv", "merged.tsv"]


def test_custom_oracle_all_present_prunes_everything(tmp_path):
    setup(tmp_path, CHAIN, [])  # no files on disk: the oracle is the only truth
    oracle = RecordOracle(ALL_CHAIN_FILES)
    plan = plan_in(tmp_path, oracle=oracle)
    assert running(plan) == set()
    assert {d.reason.code for d in plan.decisions.values()} == {PRUNE_PRESENT}
    assert sorted(oracle.asked) == sorted(j for j in plan.graph.nodes if j != "all")


def test_custom_oracle_stale_job_runs_with_its_reason_and_so_do_descendants(tmp_path):
    setup(tmp_path, CHAIN, [])
    changed = Reason(RUN_OUTPUT_CHANGED, "counts/b.tsv")
    oracle = RecordOracle(ALL_CHAIN_FILES, {"count[s=b]": changed})
    plan = plan_in(tmp_path, oracle=oracle)
    assert running(plan) == {"count[s=b]", "merge", "all"}
    assert plan.decisions["count[s=b]"].reason is changed
    assert plan.decisions["count[s=b]"].reason.text == "output counts/b.tsv changed since it was made"
    assert why(plan)["merge"] == (True, RUN_UPSTREAM, "counts/b.tsv")
    assert why(plan)["all"] == (True, RUN_UPSTREAM, "merged.tsv")
    assert why(plan)["norm[s=b]"] == (False, PRUNE_PRESENT, None)
    # stale() is asked only of jobs whose outputs are all present and nothing upstream runs.
    assert "merge" not in oracle.asked and "count[s=b]" in oracle.asked
    check_reasons(plan)


def test_custom_oracle_missing_files(tmp_path):
    setup(tmp_path, CHAIN, [])
    oracle = RecordOracle(set(ALL_CHAIN_FILES) - {"counts/a.tsv", "merged.tsv"})
    plan = plan_in(tmp_path, oracle=oracle)
    assert running(plan) == {"count[s=a]", "merge", "all"}
    assert why(plan)["count[s=a]"] == (True, RUN_OUTPUT_MISSING, "counts/a.tsv")
    assert "count[s=a]" not in oracle.asked


def test_custom_oracle_raw_input_missing_is_an_error(tmp_path):
    from dsl.errors import WffileError
    setup(tmp_path, CHAIN, ["data/a.txt", "data/b.txt"])  # on disk, but the oracle says no
    with pytest.raises(WffileError, match="missing input 'data/a.txt' wanted by rule 'norm'"):
        plan_in(tmp_path, oracle=RecordOracle(["data/b.txt"]))


def test_decide_directly_on_a_plan_graph(chain):
    plan = plan_in(chain)
    oracle = RecordOracle(ALL_CHAIN_FILES)
    decisions = decide(plan.graph, plan.order, ["all"], oracle, forcerun_rules=["norm"])
    assert {j for j, d in decisions.items() if d.run} == set(plan.graph.nodes)
    assert decisions["norm[s=a]"].reason.code == RUN_FORCED
    assert decisions["count[s=a]"].reason == Reason(RUN_UPSTREAM, "norm/a.txt")


def test_custom_oracle_stale_consumer_of_a_gone_temp_reruns_its_producer(tmp_path):
    setup(tmp_path, TEMP_CHAIN, [])
    files = ["data/A.txt", "data/B.txt", "final/A.txt", "final/B.txt", "summary.txt"]  # no tmp/
    oracle = RecordOracle(files, {"report[s=B]": Reason(RUN_COMMAND_CHANGED)})
    plan = plan_in(tmp_path, oracle=oracle)
    assert running(plan) == {"count[s=B]", "report[s=B]", "summary", "all"}
    assert why(plan)["report[s=B]"] == (True, RUN_COMMAND_CHANGED, None)
    assert plan.decisions["report[s=B]"].reason.text == "command changed"
    assert why(plan)["count[s=B]"] == (True, RUN_OUTPUT_MISSING, "tmp/B.cnt")
    assert why(plan)["count[s=A]"] == (False, PRUNE_NOT_NEEDED, None)


def test_partly_missing_outputs_of_a_job_whose_consumer_reads_only_the_rest(tmp_path):
    setup(tmp_path, """
        rule all:
            input: "use.txt"

        rule use:
            input: "pair.main"
            output: "use.txt"
            shell: "cp {input} {output}"

        rule pair:
            output: "pair.main", "pair.extra"
            shell: "touch {output}"
    """, [])
    oracle = RecordOracle(["pair.main"])
    plan = plan_in(tmp_path, oracle=oracle)
    assert why(plan)["use"] == (True, RUN_OUTPUT_MISSING, "use.txt")
    assert why(plan)["pair"] == (False, PRUNE_NOT_NEEDED, None)
    oracle = RecordOracle(["pair.extra"])
    assert why(plan_in(tmp_path, oracle=oracle))["pair"] == (True, RUN_OUTPUT_MISSING, "pair.main")
