"""The DAGMan emitter and its PRE/POST scripts: the submit directory, checked
with the htcondor2 bindings, against golden files and against the plan."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dsl.parse import load_workflow
from planner.plan import JobKind, Plan
from planner.resolve import build_plan
from runtime import condor
from runtime import condor_scripts as scripts
from runtime.condor import (
    DAG_FILE,
    INDEX_FILE,
    SubmitDirError,
    load_htcondor,
    node_name,
    parse_rescue,
    write_submit_dir,
)
from runtime.wrapper import check_spec

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "condor"
UPDATE = os.environ.get("WF_UPDATE_GOLDEN") == "1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


GENOME, EXTRA = b"ACGTACGT\n", b"extra line\n"
SMALL = f"""
replica "ref/genome.txt":
    sha256: "{sha(GENOME)}"

replica "data/extra.txt":
    url: "archive/extra.txt"
    sha256: "{sha(EXTRA)}"

SAMPLES = ["A", "B"]

rule all:
    input: "summary.txt"

rule count:
    input: reads="raw/{{s}}.txt", ref="ref/genome.txt"
    output: "counts/{{s}}.txt"
    threads: 2
    resources: mem_mb=256, disk_mb=100
    retries: 2
    priority: 5
    shell: "wc -c < {{input.reads}} > {{output}}"

rule summary:
    input: expand("counts/{{s}}.txt", s=SAMPLES), "data/extra.txt"
    output: "summary.txt"
    log: "logs/summary.log"
    shell: "cat {{input}} > {{output}} && echo done > {{log}}"
"""
SMALL_FILES = {"ref/genome.txt": GENOME, "archive/extra.txt": EXTRA,
               "raw/A.txt": b"aaaa\n", "raw/B.txt": b"bb\n"}


def make(tmp: Path, text: str = SMALL, files: dict[str, bytes] | None = None) -> Path:
    wd = tmp / "wd"
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "Wffile").write_text(textwrap.dedent(text).lstrip("\n"))
    for rel, data in (SMALL_FILES if files is None else files).items():
        p = wd / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return wd


def plan_of(wd: Path, targets: tuple[str, ...] = ()) -> Plan:
    return build_plan(load_workflow(str(wd / "Wffile")), str(wd), targets)


@pytest.fixture()
def small(tmp_path: Path) -> tuple[Plan, Path]:
    """The small workflow planned in tmp/wd and written to tmp/submit."""
    plan = plan_of(make(tmp_path))
    return plan, write_submit_dir(plan, tmp_path / "submit").parent


def index(sub: Path) -> dict[str, str]:
    return json.loads((sub / INDEX_FILE).read_text())["nodes"]


def node_of(sub: Path, job_id: str) -> str:
    return next(n for n, j in index(sub).items() if j == job_id)


def spec(sub: Path, node: str) -> dict:
    return json.loads((sub / scripts.spec_path(node)).read_text())


def dag_lines(sub: Path, command: str) -> list[list[str]]:
    return [line.split() for line in (sub / DAG_FILE).read_text().splitlines()
            if line.split()[:1] == [command]]


def normalized(text: str, sub: Path, wd: Path) -> str:
    """Without the temporary paths (and the landing folder's id, a hash of one of them)."""
    landing = json.loads((sub / INDEX_FILE).read_text())["landing"]
    return text.replace(str(sub), "<SUBMIT>").replace(str(wd), "<WORKDIR>") \
        .replace(landing, scripts.LANDING + "/<DAG>")


def node_script(sub: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the shipped wf_node.py as DAGMan would: in the submit directory, by its own name."""
    return subprocess.run([str(sub / condor.NODE_SCRIPT), *args], cwd=sub, capture_output=True,
                          text=True, timeout=60)


# -- the files, checked with htcondor2 ------------------------------------------------
def test_golden_dag_and_submit_description(small):
    plan, sub = small
    wd = Path(plan.workdir)
    produced = {
        "wf.dag": normalized((sub / DAG_FILE).read_text(), sub, wd),
        "count.sub": normalized((sub / "count.sub").read_text(), sub, wd),
        "count_A.spec.json": normalized(
            json.dumps(spec(sub, node_of(sub, "count[s=A]")), indent=1) + "\n", sub, wd),
    }
    for name, text in produced.items():
        if UPDATE:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(text)
        assert text == (GOLDEN / name).read_text(), f"{name} differs from {GOLDEN / name} " \
                                                    f"(WF_UPDATE_GOLDEN=1 rewrites it)"


def test_one_submit_description_per_rule_or_kind(small):
    _, sub = small
    subs = sorted(p.name for p in sub.glob("*.sub"))
    assert subs == ["all.sub", "count.sub", "stage_in.sub", "summary.sub"]
    jobs = {words[1]: words[2] for words in dag_lines(sub, "JOB")}
    assert sorted(set(jobs.values())) == subs
    assert len(jobs) == len(index(sub)) == 5
    assert {words[1] for words in dag_lines(sub, "VARS")} == set(jobs)


def test_every_submit_description_parses_and_expands(small):
    htcondor = load_htcondor()
    plan, sub = small
    vars_of = {}
    for line in (sub / DAG_FILE).read_text().splitlines():
        if line.startswith("VARS "):
            name, rest = line.split()[1], line.split(None, 2)[2]
            vars_of[name] = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
    jobs = {words[1]: words[2] for words in dag_lines(sub, "JOB")}
    for node, sub_name in jobs.items():
        desc = htcondor.Submit((sub / sub_name).read_text())
        assert desc["universe"] == "vanilla"
        assert desc["should_transfer_files"] == "YES"
        assert desc["when_to_transfer_output"] == "ON_EXIT"
        assert desc["executable"] == f"{sub}/wf_wrapper.py"
        for k, v in vars_of[node].items():
            desc[k] = v
        for key in ("arguments", "transfer_input_files", "transfer_output_files",
                    "log", "output", "error"):
            assert "$(" not in desc.expand(key), (node, key, desc.expand(key))
        assert desc.expand("arguments") == f"{node}.json"
        inputs = [x.strip() for x in desc.expand("transfer_input_files").split(",")]
        assert inputs[0] == f"{sub}/{scripts.spec_path(node)}"
        outputs = [x.strip() for x in desc.expand("transfer_output_files").split(",")]
        landing = spec(sub, node)["condor"]["landing"]
        assert landing.startswith(scripts.LANDING + "/") and landing.endswith(f"/{node}")
        assert inputs[1] == outputs[0] == landing  # sent out so that it always comes back
        job = plan.job(index(sub)[node])
        assert outputs[1:] == list(job.log)
        if job.kind is JobKind.COMPUTE:
            assert {f.lfn for f in job.inputs} <= set(inputs)
    count = htcondor.Submit((sub / "count.sub").read_text())
    assert (count["request_cpus"], count["request_memory"], count["request_disk"]) == ("2", "256", "100MB")
    assert count["preserve_relative_paths"] == "True"
    assert count["initialdir"] == plan.workdir


def test_dag_goes_through_from_dag_with_a_placeholder_dagman(small, tmp_path, monkeypatch):
    htcondor = load_htcondor()
    _, sub = small
    fake = tmp_path / "condor_dagman"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.chdir(sub)  # relative paths in a DAG are relative to where it is submitted
    desc = htcondor.Submit.from_dag(DAG_FILE, {"DagmanPath": str(fake), "Force": True})
    assert desc["executable"] == str(fake)
    assert "-Dag wf.dag" in desc["arguments"]
    assert (sub / "wf.dag.condor.sub").exists()
    # from_dag does check the syntax: a command DAGMan does not know is refused.
    (sub / "broken.dag").write_text((sub / DAG_FILE).read_text() + "FROBNICATE x\n")
    with pytest.raises(Exception, match="not a valid DAG command"):
        htcondor.Submit.from_dag("broken.dag", {"DagmanPath": str(fake)})


def test_dag_edges_equal_the_plan_edges(tmp_path):
    wd = make(tmp_path)
    (wd / "counts").mkdir()
    (wd / "counts" / "A.txt").write_text("5\n")  # present: count[s=A] is pruned
    plan = plan_of(wd)
    assert not plan.decisions["count[s=A]"].run
    sub = write_submit_dir(plan, tmp_path / "submit").parent
    nodes = index(sub)
    edges = {(nodes[p], nodes[c]) for words in dag_lines(sub, "PARENT")
             for p in words[1:words.index("CHILD")] for c in words[words.index("CHILD") + 1:]}
    running = {j.id for j in plan.to_run()}
    assert edges == {(u, v) for u, v in plan.graph.edges if u in running and v in running}
    assert set(nodes.values()) == running
    # The pruned job's output is read as it is: hashed at first sight by the PRE script.
    summary = spec(sub, node_of(sub, "summary"))
    assert summary["condor"]["first_sight"] == {"counts/A.txt": "counts/A.txt"}
    assert summary["condor"]["produced"] == {"counts/B.txt": node_of(sub, "count[s=B]"),
                                             "data/extra.txt": node_of(sub, "stage_in[data/extra.txt]")}


def test_a_rule_feeding_itself_keeps_every_node(tmp_path):
    # The rule graph has a cycle (x -> x): htcondor2.dags' own walk starts at
    # layers without parents and would write none of these nodes.
    wd = make(tmp_path, """
        rule x:
            input: "{f}"
            output: "{f}.x"
            shell: "cp {input} {output}"
        """, {"a": b"a\n"})
    plan = plan_of(wd, ("a.x.x.x",))
    sub = write_submit_dir(plan, tmp_path / "submit").parent
    assert len(dag_lines(sub, "JOB")) == 3
    assert len(dag_lines(sub, "PARENT")) == 2


def test_retry_priority_category_and_dag_settings(small):
    _, sub = small
    text = (sub / DAG_FILE).read_text()
    count_a, count_b = node_of(sub, "count[s=A]"), node_of(sub, "count[s=B]")
    stage = node_of(sub, "stage_in[data/extra.txt]")
    assert sorted(dag_lines(sub, "RETRY")) == [["RETRY", n, "2", "UNLESS-EXIT", "5"] for n in sorted([count_a, count_b])]
    assert sorted(dag_lines(sub, "PRIORITY")) == [["PRIORITY", n, "5"] for n in sorted([count_a, count_b])]
    assert dag_lines(sub, "CATEGORY") == [["CATEGORY", stage, "stagein"]]
    assert dag_lines(sub, "MAXJOBS") == [["MAXJOBS", "stagein", "10"]]
    assert "NODE_STATUS_FILE wf.dag.status 30\n" in text
    assert re.search(r"^DOT wf\.dot\b", text, re.MULTILINE)
    for node in index(sub):
        assert f"SCRIPT PRE {node} wf_node.py pre $JOB $RETRY\n" in text
        assert f"SCRIPT POST {node} wf_node.py post $JOB $RETURN $RETRY\n" in text


def test_upstream_max_jobs_by_category_bug_is_worked_around(tmp_path):
    # htcondor2.dags 25.14 writes max_jobs_by_category as "CATEGORY name n",
    # which DAGMan reads as node "name" in category "n"; ours says MAXJOBS.
    dags = load_htcondor().dags
    plain = dags.DAG(max_jobs_by_category={"stagein": 10})
    plain.layer(name="a", vars=[{}])
    text = dags.write_dag(plain, tmp_path / "upstream").read_text()
    if "MAXJOBS stagein 10" not in text:  # still buggy upstream: the workaround is needed
        assert "CATEGORY stagein 10" in text


def test_node_names_are_safe_and_survive_rescue_parsing(small):
    _, sub = small
    for node in index(sub):
        assert re.fullmatch(r"j\d{5}(_[A-Za-z0-9_]+)?", node)
        assert ("DONE " + node).lstrip("DONE ") == node  # htcondor2.dags.rescue's own parsing
    assert node_name(7, "count[s=A]") == "j00007_count_s_A"
    assert node_name(12, "[]", width=6) == "j000012"
    assert node_name(1, "x" * 100).endswith("_" + "x" * 40)
    assert parse_rescue("# rescue\nDONE j00001_a\nDONE DONE_node\n\nDONE ONE\n") == \
        {"j00001_a", "DONE_node", "ONE"}


# -- the specs ----------------------------------------------------------------------
def test_specs_are_the_wrappers_format_with_copy_staging(small):
    plan, sub = small
    count = spec(sub, node_of(sub, "count[s=A]"))
    check_spec(count)  # the wrapper's own validation accepts it
    assert (count["staging"], count["cwd"], count["version"], count["attempt"]) == ("copy", ".", 1, 1)
    assert count["inputs"] == [
        {"lfn": "raw/A.txt", "sha256": None, "path": "raw/A.txt"},
        {"lfn": "ref/genome.txt", "sha256": sha(GENOME), "path": "ref/genome.txt"},  # declared
    ]
    landing = count["condor"]["landing"]
    assert count["outputs"] == [{"lfn": "counts/A.txt", "path": "counts/A.txt",
                                 "dest": f"{landing}/counts/A.txt"}]
    assert count["record"] == f"{landing}/{scripts.RECORD}"
    assert count["condor"]["first_sight"] == {"raw/A.txt": "raw/A.txt"}
    stage = spec(sub, node_of(sub, "stage_in[data/extra.txt]"))
    check_spec(stage)
    assert stage["command"] is None
    assert stage["inputs"] == [{"lfn": "data/extra.txt", "sha256": sha(EXTRA), "path": "data/extra.txt",
                                "source": "archive/extra.txt"}]
    summary = spec(sub, node_of(sub, "summary"))
    assert summary["condor"]["logs"] == ["logs/summary.log"]
    assert {i["lfn"]: i["sha256"] for i in summary["inputs"]} == {
        "counts/A.txt": None, "counts/B.txt": None,  # filled by the PRE script
        "data/extra.txt": sha(EXTRA)}  # declared


def test_integrity_none_fills_nothing(tmp_path):
    plan = plan_of(make(tmp_path))
    sub = write_submit_dir(plan, tmp_path / "submit", integrity="none").parent
    count = spec(sub, node_of(sub, "count[s=A]"))
    assert count["integrity"] == "none" and count["condor"]["first_sight"] == {}


def test_shards_keep_directories_small(tmp_path):
    n = 2600
    wd = make(tmp_path, f"""
        IDS = {[str(i) for i in range(n)]}
        rule all:
            input: expand("out/{{i}}.txt", i=IDS)
        rule make:
            output: "out/{{i}}.txt"
            shell: "echo {{wildcards.i}} > {{output}}"
        """, {})
    sub = write_submit_dir(plan_of(wd), tmp_path / "submit").parent
    assert len(index(sub)) == n + 1
    widest = max(len(os.listdir(d)) for d, _, _ in os.walk(sub))
    assert widest <= 1000
    assert max(len(os.listdir(d)) for d in (sub / "specs").iterdir()) <= scripts.SHARD_SIZE
    for node in index(sub):
        assert (sub / scripts.spec_path(node)).is_file()


def test_container_jobs_ship_the_image_and_the_sandbox_modules(tmp_path):
    wd = make(tmp_path, """
        container tools:
            image: "images/tools.tar"
            type: "docker"
        rule gc:
            input: "data/a.fa"
            output: "gc.tsv"
            container: tools
            shell: "gc-content {input} > {output}"
        """, {"images/tools.tar": b"not really an image", "data/a.fa": b">a\nACGT\n"})
    plan = plan_of(wd)
    sub = write_submit_dir(plan, tmp_path / "submit").parent
    gc_node, stage = node_of(sub, "gc"), node_of(sub, "container_stage_in[tools]")
    gc = spec(sub, gc_node)
    check_spec(gc)
    image = gc["container"]["image"]
    assert image == ".wf/images/tools/tools.tar" and gc["container"]["lfn"] == image
    assert gc["condor"]["produced"] == {image: stage}
    vars_line = next(line for line in (sub / DAG_FILE).read_text().splitlines()
                     if line.startswith(f"VARS {gc_node} "))
    for shipped in (image, f"{sub}/images.py", f"{sub}/sandbox.py"):
        assert shipped in vars_line
    assert dag_lines(sub, "CATEGORY") == [["CATEGORY", stage, "stagein"]]


def test_programs_are_shipped(small):
    _, sub = small
    wrapper = (sub / "wf_wrapper.py").read_text()
    assert wrapper.startswith("#!/usr/bin/env python3\n")
    assert wrapper.split("\n", 1)[1] == (REPO / "runtime" / "wrapper.py").read_text()
    assert (sub / "wf_node.py").read_text() == (REPO / "runtime" / "condor_scripts.py").read_text()
    for name in ("wf_wrapper.py", "wf_node.py"):
        assert os.access(sub / name, os.X_OK)
    for name in ("images.py", "sandbox.py"):
        assert (sub / name).is_file()


# -- mistakes -----------------------------------------------------------------------
def test_file_names_htcondor_cannot_transfer_are_refused(tmp_path):
    wd = make(tmp_path, """
        rule a:
            output: "x,y.txt"
            shell: "touch {output}"
        """, {})
    with pytest.raises(SubmitDirError, match=r"x,y\.txt"):
        write_submit_dir(plan_of(wd), tmp_path / "submit")
    assert not (tmp_path / "submit").exists()  # no half-written directory left to trip on


def test_submit_directory_safety(tmp_path):
    plan = plan_of(make(tmp_path))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SubmitDirError, match="not empty"):
        write_submit_dir(plan, foreign)
    with pytest.raises(SubmitDirError, match="working directory"):
        write_submit_dir(plan, tmp_path)
    sub = tmp_path / "submit"
    write_submit_dir(plan, sub)
    write_submit_dir(plan, sub)  # an earlier submit directory is replaced
    (sub / "wf.dag.lock").write_text("")
    with pytest.raises(SubmitDirError, match="running"):
        write_submit_dir(plan, sub)


def test_htcondor_import_survives_a_bad_condor_config(tmp_path):
    code = ("import os; from runtime.condor import load_htcondor; h = load_htcondor(); "
            "print(h.__name__, os.environ['CONDOR_CONFIG'])")
    env = {**os.environ, "CONDOR_CONFIG": str(tmp_path / "missing"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["htcondor2", str(tmp_path / "missing")]  # restored


def test_no_schedd_is_reported(tmp_path, monkeypatch):
    empty = tmp_path / "condor_config"
    empty.write_text("")
    monkeypatch.setenv("CONDOR_CONFIG", str(empty))
    problems = condor.probe_pool()
    assert problems and "no HTCondor schedd is reachable" in problems[0]
    with pytest.raises(condor.CondorUnavailable):
        condor.submit_dag(tmp_path / "wf.dag")


def test_submit_dag_hands_the_dag_to_the_schedd(small, tmp_path, monkeypatch):
    htcondor = load_htcondor()
    _, sub = small
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "condor_dagman").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "condor_dagman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitted = []

    class Result:
        def cluster(self) -> int:
            return 42

    class Schedd:
        def submit(self, description):
            submitted.append((description, os.getcwd()))
            return Result()

    monkeypatch.setattr(condor, "probe_pool", lambda timeout=60: [])
    monkeypatch.setattr(htcondor, "reload_config", lambda *a: None)
    monkeypatch.setattr(htcondor, "Schedd", Schedd)
    assert condor.submit_dag(sub / DAG_FILE, batch_name="wf:test") == 42
    (description, cwd), = submitted
    assert cwd == str(sub)  # submitted from the DAG's folder: its relative paths hold
    assert description["executable"] == str(bin_dir / "condor_dagman")
    assert "wf:test" in str(description)


# -- the PRE and POST scripts ----------------------------------------------------------
def ledger(sub: Path, node: str) -> dict | None:
    p = sub / scripts.ledger_path(node)
    return json.loads(p.read_text()) if p.exists() else None


def fake_attempt(sub: Path, node: str, status: str = "ok", outputs: dict[str, bytes] | None = None,
                 claimed: dict[str, str | None] | None = None, attempt: int = 1) -> None:
    """What an execute node would send back: the record and the outputs, in the sandbox."""
    s = spec(sub, node)
    box = Path(s["condor"]["workdir"]) / s["condor"]["landing"]
    outputs = outputs or {}
    for lfn, data in outputs.items():
        (box / lfn).parent.mkdir(parents=True, exist_ok=True)
        (box / lfn).write_bytes(data)
    claimed = claimed if claimed is not None else {lfn: sha(d) for lfn, d in outputs.items()}
    record = {"job_id": s["job_id"], "attempt": attempt, "status": status, "message": "m",
              "files": [{"lfn": k, "role": "output", "sha256": v, "size": 1} for k, v in claimed.items()]}
    box.mkdir(parents=True, exist_ok=True)
    (box / scripts.RECORD).write_text(json.dumps(record))


def test_pre_refuses_an_input_whose_reference_cannot_be_found(small):
    _, sub = small
    summary = node_of(sub, "summary")
    r = node_script(sub, "pre", summary, "0")
    assert r.returncode == 5  # RETRY … UNLESS-EXIT 5: retrying cannot find it
    assert "no checksum recorded by its producer" in r.stdout and "refusing to run unverified" in r.stdout


def test_checksums_flow_from_post_to_the_childs_pre(small):
    plan, sub = small
    wd = Path(plan.workdir)
    count_a = node_of(sub, "count[s=A]")
    assert node_script(sub, "pre", count_a, "0").returncode == 0
    filled = spec(sub, count_a)
    assert filled["inputs"][0]["sha256"] == sha(b"aaaa\n")  # raw, hashed at first sight
    assert filled["inputs"][1]["sha256"] == sha(GENOME)
    fake_attempt(sub, count_a, outputs={"counts/A.txt": b"5\n"})
    r = node_script(sub, "post", count_a, "0", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (wd / "counts/A.txt").read_bytes() == b"5\n"  # promoted to its final name
    assert ledger(sub, count_a)["outputs"] == {"counts/A.txt": sha(b"5\n")}
    assert (sub / scripts.RECORDS / scripts.shard_of(count_a) / f"{count_a}.1.json").exists()
    assert not (wd / filled["condor"]["landing"]).exists()
    for job_id, data in (("count[s=B]", b"3\n"), ("stage_in[data/extra.txt]", EXTRA)):
        node = node_of(sub, job_id)
        assert node_script(sub, "pre", node, "0").returncode == 0
        lfn = plan.job(job_id).outputs[0].lfn
        fake_attempt(sub, node, outputs={lfn: data})
        assert node_script(sub, "post", node, "0", "0").returncode == 0
    summary = node_of(sub, "summary")
    assert node_script(sub, "pre", summary, "1").returncode == 0
    s = spec(sub, summary)
    assert s["attempt"] == 2
    assert {i["lfn"]: i["sha256"] for i in s["inputs"]} == {
        "counts/A.txt": sha(b"5\n"), "counts/B.txt": sha(b"3\n"), "data/extra.txt": sha(EXTRA)}
    assert (sub / scripts.sandbox_dir(summary) / "in" / "logs" / "summary.log").is_file()


@pytest.mark.parametrize("case, code, why", [
    ("no record", 1, "no provenance record"),
    ("bad spec", 5, "bad-spec"),
    ("integrity", 3, "integrity"),
    ("failed", 1, "failed"),
    ("no checksum", 4, "has no checksum"),
    ("not back", 3, "did not come back"),
    ("corrupt on the way back", 3, "mismatch at stage-out"),
    ("wrapper exit", 1, "exited 1"),
    ("stale record", 1, "not this attempt"),
])
def test_post_fails_the_node_unless_verified(small, case, code, why):
    plan, sub = small
    node = node_of(sub, "count[s=B]")
    assert node_script(sub, "pre", node, "0").returncode == 0
    ret = "0"
    if case == "bad spec":
        fake_attempt(sub, node, status="bad-spec")
    elif case in ("integrity", "failed"):
        fake_attempt(sub, node, status=case)
    elif case == "no checksum":
        fake_attempt(sub, node, outputs={"counts/B.txt": b"3\n"}, claimed={"counts/B.txt": None})
    elif case == "not back":
        fake_attempt(sub, node, claimed={"counts/B.txt": sha(b"3\n")})
    elif case == "corrupt on the way back":
        fake_attempt(sub, node, outputs={"counts/B.txt": b"4\n"}, claimed={"counts/B.txt": sha(b"3\n")})
    elif case == "wrapper exit":
        fake_attempt(sub, node, outputs={"counts/B.txt": b"3\n"})
        ret = "1"
    elif case == "stale record":
        fake_attempt(sub, node, outputs={"counts/B.txt": b"3\n"}, attempt=7)
    r = node_script(sub, "post", node, ret, "0")
    assert r.returncode == code, r.stdout + r.stderr
    assert why in r.stdout
    assert ledger(sub, node) is None
    assert not (Path(plan.workdir) / "counts/B.txt").exists()  # nothing unverified lands


def test_raw_reference_first_writer_wins(small):
    plan, sub = small
    wd = Path(plan.workdir)
    count_a = node_of(sub, "count[s=A]")
    assert node_script(sub, "pre", count_a, "0").returncode == 0
    (wd / "raw/A.txt").write_bytes(b"changed\n")  # edited mid-run
    assert node_script(sub, "pre", count_a, "1").returncode == 0
    # The reference stays what was first seen: the wrapper will catch the changed copy.
    assert spec(sub, count_a)["inputs"][0]["sha256"] == sha(b"aaaa\n")
