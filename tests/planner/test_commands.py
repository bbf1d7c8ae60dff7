"""Formatted commands: every field, shell quoting proven by running /bin/sh, re-rendering."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
from pathlib import Path

from dsl.parse import load_workflow, parse_string
from planner.commands import rerender_command
from planner.plan import Plan
from planner.resolve import build_plan, job_id


def plan_for(tmp: Path, text: str, files: tuple[str, ...] = (), targets: tuple[str, ...] = ()) -> Plan:
    wffile = tmp / "Wffile"
    wffile.write_text(textwrap.dedent(text).lstrip("\n"))
    for name in files:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{name}\n")
    return build_plan(load_workflow(str(wffile)), str(tmp), targets)


def run_plan(tmp: Path, plan: Plan) -> None:
    """Run every command as a backend would: ``/bin/sh -c COMMAND`` in the working dir."""
    for job in plan.to_run():
        if job.command is None:
            continue
        for f in job.outputs:
            (tmp / f.lfn).parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["/bin/sh", "-c", job.command], cwd=tmp, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, (job.command, done.stderr)


# Each one tries to be more than one shell word, or to run something.
NASTY = [
    "plain",
    "with space",
    "x;touch pwned",
    "x && touch pwned2",
    "x | touch pwned3",
    "$(touch pwned4)",
    "`touch pwned5`",
    "it's",
    'dq"uote',
    "back\\slash",
    "star*",
    "$HOME",
    "~tilde",
    "redirect>pwned6",
    "-n",
    "tab\there",
]


def test_hostile_names_stay_one_word_each(tmp_path):
    text = f"""
        SAMPLES = {NASTY!r}

        rule all:
            input: expand("out/{{s}}.txt", s=SAMPLES)

        rule show:
            input: "data/{{s}}.txt"
            output: "out/{{s}}.txt"
            params: p="p-{{s}}", plain="a;b c"
            log: "logs/{{s}}.log"
            shell: "printf '%s\\\\n' {{wildcards.s}} {{input}} {{params.p}} {{params.plain}} {{log}} > {{output}}"
    """
    plan = plan_for(tmp_path, text, tuple(f"data/{s}.txt" for s in NASTY))
    assert len(list(plan.to_run())) == len(NASTY) + 1
    run_plan(tmp_path, plan)
    for s in NASTY:
        lines = (tmp_path / "out" / f"{s}.txt").read_text().split("\n")
        assert lines == [s, f"data/{s}.txt", f"p-{s}", "a;b c", f"logs/{s}.log", ""], s
    # Nothing but the declared outputs was made: no command ran that the rule did not say.
    made = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert made == {"Wffile"} | {f"data/{s}.txt" for s in NASTY} | {f"out/{s}.txt" for s in NASTY}
    assert not list(tmp_path.rglob("pwned*"))


def test_quoted_words_split_back_to_the_values(tmp_path):
    plan = plan_for(tmp_path, """
        rule all:
            input: "out/x;touch pwned.txt"

        rule show:
            input: "data/{s}.txt"
            output: "out/{s}.txt"
            shell: "cat {input} > {output}"
    """, ("data/x;touch pwned.txt",))
    job = plan.job(job_id("show", [("s", "x;touch pwned")]))
    assert shlex.split(job.command) == ["cat", "data/x;touch pwned.txt", ">", "out/x;touch pwned.txt"]
    run_plan(tmp_path, plan)
    assert (tmp_path / "out" / "x;touch pwned.txt").read_text() == "data/x;touch pwned.txt\n"
    assert not (tmp_path / "pwned.txt").exists() and not (tmp_path / "pwned").exists()


FIELDS = """
    rule all:
        input: "out/S 1.txt"

    rule r:
        input: first="data/a.txt", reads=["data/r1.txt", "data/r 2.txt"]
        output: "out/{s}.txt", b="out/{s}.b"
        params: tag="{s}-x", n=5, f=0.5, lst=["a b", "{s}", 3], yes=True, lit="a{{b}}"
        threads: 3
        resources: mem_mb=1024, disk_mb=7
        log: "logs/{s}.log"
        message: "making {output[0]} from {input.first} ({wildcards.s}) with {threads} threads"
        shell: "SHELL"
"""
FILES = ("data/a.txt", "data/r1.txt", "data/r 2.txt")


def render(tmp: Path, shell: str) -> str:
    plan = plan_for(tmp, FIELDS.replace("SHELL", shell), FILES)
    return plan.job("r[s=S 1]").command


def test_every_field(tmp_path):
    cases = {
        "{input}": "data/a.txt data/r1.txt 'data/r 2.txt'",
        "{input.first}": "data/a.txt",
        "{input.reads}": "data/r1.txt 'data/r 2.txt'",
        "{input.reads[1]}": "'data/r 2.txt'",
        "{input[0]}": "data/a.txt",
        "{input[2]}": "'data/r 2.txt'",
        "{input[-1]}": "'data/r 2.txt'",
        "{output}": "'out/S 1.txt' 'out/S 1.b'",
        "{output[0]}": "'out/S 1.txt'",
        "{output[1]}": "'out/S 1.b'",
        "{output.b}": "'out/S 1.b'",
        "{params.tag}": "'S 1-x'",
        "{params.n}": "5",
        "{params.f}": "0.5",
        "{params.lst}": "'a b' 'S 1' 3",
        "{params.lst[1]}": "'S 1'",
        "{params.yes}": "True",
        "{params.lit}": "'a{b}'",
        "{wildcards.s}": "'S 1'",
        "{threads}": "3",
        "{resources.mem_mb}": "1024",
        "{resources.disk_mb}": "7",
        "{log}": "'logs/S 1.log'",
        "{input:q}": "data/a.txt data/r1.txt 'data/r 2.txt'",
        "{{literal}} {{": "{literal} {",
        "awk '{{print $1}}' {input.first}": "awk '{print $1}' data/a.txt",
        "x{wildcards.s}y": "x'S 1'y",
    }
    for shell, expected in cases.items():
        assert render(tmp_path, shell) == expected, shell


def test_whole_command_runs(tmp_path):
    shell = ("printf '%s\\\\n' {input.reads[1]} {output.b} {params.lst} {threads} "
             "{resources.mem_mb} '{{x}}' > {output[0]} && touch {output.b}")
    plan = plan_for(tmp_path, FIELDS.replace("SHELL", shell), FILES)
    run_plan(tmp_path, plan)
    assert (tmp_path / "out" / "S 1.txt").read_text().split("\n") == [
        "data/r 2.txt", "out/S 1.b", "a b", "S 1", "3", "3", "1024", "{x}", ""]
    assert (tmp_path / "out" / "S 1.b").exists()


def test_message_is_rendered_unquoted(tmp_path):
    plan = plan_for(tmp_path, FIELDS.replace("SHELL", "touch {output}"), FILES)
    assert plan.job("r[s=S 1]").message == "making out/S 1.txt from data/a.txt (S 1) with 3 threads"
    assert plan.job("all").message is None


def test_job_without_shell_has_no_command(tmp_path):
    plan = plan_for(tmp_path, FIELDS.replace("SHELL", "touch {output}"), FILES)
    assert plan.job("all").command is None


# -- re-rendering with partial output names ----------------------------------------
def test_rerender_changes_only_the_output_words(tmp_path):
    shell = "cmd {input} {params.tag} -o {output[0]} --b={output.b} {log} {wildcards.s} {threads}"
    plan = plan_for(tmp_path, FIELDS.replace("SHELL", shell), FILES)
    job = plan.job("r[s=S 1]")
    mapping = {"out/S 1.txt": ".wf/partial/r/out/S 1.txt", "out/S 1.b": ".wf/partial/r/out/S 1.b"}
    again = rerender_command(plan.workflow, job, mapping)
    before, after = shlex.split(job.command), shlex.split(again)
    assert len(before) == len(after)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert changed == [("out/S 1.txt", ".wf/partial/r/out/S 1.txt"),
                       ("--b=out/S 1.b", "--b=.wf/partial/r/out/S 1.b")]
    assert rerender_command(plan.workflow, job, {}) == job.command
    partial_only_b = rerender_command(plan.workflow, job, {"out/S 1.b": "p/b"})
    assert shlex.split(partial_only_b)[5:7] == ["-o", "out/S 1.txt"]
    assert "--b=p/b" in shlex.split(partial_only_b)


def test_rerender_quotes_the_new_paths(tmp_path):
    plan = plan_for(tmp_path, """
        rule r:
            output: "out.txt"
            shell: "echo hi > {output}"
    """)
    job = plan.job("r")
    again = rerender_command(plan.workflow, job, {"out.txt": "part dir/x;touch pwned"})
    assert again == "echo hi > 'part dir/x;touch pwned'"


def test_rerender_is_not_fooled_by_another_workflow(tmp_path):
    # Workflows are planned and freed one after another (tests, long-lived
    # processes): a cache keyed by id() would hand out a freed workflow's rules.
    for i in range(50):
        wf = parse_string(f'rule r:\n    output: "o.txt"\n    shell: "echo {i} > {{output}}"\n',
                          str(tmp_path / "Wffile"))
        plan = build_plan(wf, str(tmp_path))
        job = plan.job("r")
        assert job.command == f"echo {i} > o.txt"
        assert rerender_command(wf, job, {"o.txt": "p.txt"}) == f"echo {i} > p.txt"
        del wf, plan, job
