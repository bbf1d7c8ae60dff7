"""``wf status``, ``wf statistics`` and ``wf analyze`` on a condor run, as a user runs them.

``wf run --backend condor`` writes ``.wf/condor/`` and records the run; no
schedd is reachable here, so the DAG is then "submitted by hand": the replay
harness (condor_replay.py) runs it as DAGMan and a pool would, writing the
nodes log and the node status file in HTCondor's formats, and ``wf`` reads
them with htcondor2.JobEventLog and classad2, half-way and at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from runtime import condor_scripts as scripts
from runtime.condor import load_htcondor
from tests.e2e.condor_replay import NODES_LOG, STATUS_FILE, replay
from tests.e2e.conftest import (
    copy_example,
    flip_byte,
    query,
    wf,
    wf_cmd,
    wf_env,
    wf_ok,
    write_workflow,
)

JOBS = 19  # examples/bioinfo: stage-in, 4 rules x 4 samples, summary, all


def run_unsubmitted(d: Path, tmp: Path) -> subprocess.CompletedProcess:
    """``wf run --backend condor`` with an HTCondor configuration naming no pool."""
    config = tmp / "condor_config"
    config.write_text("")
    return subprocess.run(wf_cmd("run", "--backend", "condor"), cwd=d, capture_output=True, text=True,
                          env={**wf_env(), "CONDOR_CONFIG": str(config)}, timeout=120)


def status_json(d: Path) -> dict:
    return json.loads(wf_ok("status", "--json", cwd=d).out)


def test_before_the_dag_starts_status_says_so(tmp_path):
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    proc = run_unsubmitted(d, tmp_path)
    assert proc.returncode == 2 and "cannot submit to HTCondor" in proc.stderr
    # The run was recorded before the submission was tried.
    (backend, status, submit_dir, external_id, total), = query(
        d, "SELECT backend, status, submit_dir, external_id, jobs_total FROM runs")
    assert (backend, status, external_id, total) == ("condor", "not-submitted", None, JOBS)
    assert Path(submit_dir) == (d / ".wf" / "condor").resolve()
    assert query(d, "SELECT COUNT(*), MIN(status) FROM jobs") == [(JOBS, "pending")]

    r = wf_ok("status", cwd=d)
    assert "Run 1 (condor): not-started" in r.out
    assert "not submitted: wf found no HTCondor schedd; run 'condor_submit_dag wf.dag'" in r.out
    assert "The DAG has not started" in r.out
    data = status_json(d)
    assert data["status"] == "not-started" and data["backend"] == "condor"
    assert data["condor"]["submitted"] is False and data["condor"]["cluster"] is None
    assert data["condor"]["dag_status"] is None and data["condor"]["events"] == 0
    assert data["counts"]["total"] == JOBS and data["counts"]["waiting"] == JOBS
    assert data["counts"]["done"] == 0 and data["failed"] == []

    stats = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    assert stats["summary"]["all"]["incomplete"] == JOBS and stats["summary"]["all"]["succeeded"] == 0
    assert stats["wall_seconds"] is None and stats["job_seconds_submit"] == 0


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict:
    """examples/bioinfo through ``wf run --backend condor`` and the replay: map[sample=ctrl1]
    fails its first attempt on a corrupt input (the wrapper sees it) and map[sample=heat2]
    on an output corrupted on its way back (the POST script sees it); both are retried.
    stats[sample=heat1] (no retries) fails for good, so summary and all become futile.
    ``wf status --json`` is taken while coverage[sample=ctrl2] is queued and while it runs."""
    tmp = tmp_path_factory.mktemp("replayed")
    d = copy_example("bioinfo", tmp / "bioinfo")
    assert run_unsubmitted(d, tmp).returncode == 2
    sub = d / ".wf" / "condor"

    def corrupt(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "map_sample_ctrl1" in node and retry == 0 and direction == "in" and entry == "data/genome.fa":
            flip_byte(path, 100)
        if "stats_sample_heat1" in node and direction == "in" and entry.startswith("results/mapped/"):
            flip_byte(path, 5)
        if "map_sample_heat2" in node and retry == 0 and direction == "out" \
                and entry.startswith(scripts.LANDING):
            flip_byte(path / "results" / "mapped" / "heat2.txt", 10)

    snapshots: dict[str, dict] = {}

    def hook(phase: str, node: str) -> None:
        if "coverage_sample_ctrl2" in node and phase in ("submitted", "executing"):
            snapshots[phase] = status_json(d)

    result = replay(sub, corrupt, hook=hook)
    return {"dir": d, "sub": sub, "result": result, "snapshots": snapshots}


def test_the_harness_writes_what_htcondor_parses(replayed):
    """The nodes log and the node status file are read back with HTCondor's own parsers."""
    sub = replayed["sub"]
    htcondor = load_htcondor()
    import classad2

    T = htcondor.JobEventType
    events = list(htcondor.JobEventLog(str(sub / NODES_LOG)).events(stop_after=0))
    mine = []
    node_of: dict[int, str] = {}
    for e in events:
        if e.type == T.SUBMIT:
            node_of[e.cluster] = e["LogNotes"].split("DAG Node: ")[1]
        if node_of.get(e.cluster, "").endswith("map_sample_ctrl1"):
            mine.append((e.type, e.get("ReturnValue")))
    assert mine == [(T.SUBMIT, None), (T.EXECUTE, None), (T.JOB_TERMINATED, 3), (T.POST_SCRIPT_TERMINATED, 3),
                    (T.SUBMIT, None), (T.EXECUTE, None), (T.JOB_TERMINATED, 0), (T.POST_SCRIPT_TERMINATED, 0)]
    assert len(node_of) == JOBS - 2 + 2  # summary and all never ran; map ctrl1 and heat2 ran twice
    # The node's own log (the submit description's `log`): the same job events, no POST events.
    node = next(n for n in node_of.values() if n.endswith("map_sample_ctrl1"))
    own = sub / scripts.LOGS / scripts.shard_of(node) / f"{node}.log"
    assert [e.type for e in htcondor.JobEventLog(str(own)).events(stop_after=0)] == \
        [T.SUBMIT, T.EXECUTE, T.JOB_TERMINATED] * 2

    ads = list(classad2.parseAds((sub / STATUS_FILE).read_text()))
    assert [ad["Type"] for ad in ads] == ["DagStatus", *["NodeStatus"] * JOBS, "StatusEnd"]
    dag, end = ads[0], ads[-1]
    assert (dag["DagStatus"], dag["NodesTotal"], dag["NodesDone"], dag["NodesFailed"],
            dag["NodesFutile"]) == (6, JOBS, JOBS - 3, 1, 2)
    assert end["NextUpdate"] == 0
    by_node = {ad["Node"]: ad for ad in ads[1:-1]}
    heat1 = next(ad for n, ad in by_node.items() if n.endswith("stats_sample_heat1"))
    assert heat1["NodeStatus"] == 6
    assert heat1["StatusDetails"] == "Job exited with status 3 and POST Script failed with status 3"
    ctrl1 = next(ad for n, ad in by_node.items() if n.endswith("map_sample_ctrl1"))
    assert (ctrl1["NodeStatus"], ctrl1["RetryCount"]) == (5, 1)


def test_status_half_way(replayed):
    queued, running = replayed["snapshots"]["submitted"], replayed["snapshots"]["executing"]
    for snap in (queued, running):
        assert snap["status"] == "running"
        c = snap["counts"]
        assert c["total"] == JOBS and c["failed"] + c["done"] < JOBS
        assert c["done"] >= 1 and c["waiting"] >= 2  # summary and all wait for everything
        assert sum(c[s] for s in ("done", "running", "idle", "held", "pre", "post", "ready", "waiting",
                                  "failed", "futile")) == JOBS
        assert snap["finished"] is None and snap["condor"]["dag_status"]["name"] == "STATUS_SUBMITTED"
    assert queued["counts"]["idle"] == 1 and queued["counts"]["running"] == 0
    assert running["counts"]["running"] == 1 and running["counts"]["idle"] == 0
    assert running["running_jobs"] == ["coverage[sample=ctrl2]"]
    assert running["counts"]["done"] >= queued["counts"]["done"]


def test_status_at_the_end(replayed):
    d = replayed["dir"]
    data = status_json(d)
    assert data["status"] == "failed" and data["finished"] is not None
    c = data["counts"]
    assert (c["total"], c["done"], c["failed"], c["futile"], c["running"], c["idle"], c["waiting"]) == \
        (JOBS, JOBS - 3, 1, 2, 0, 0, 0)
    assert (c["retried"], c["retries"]) == (2, 2)
    assert data["failed_jobs"] == ["stats[sample=heat1]"]
    assert data["condor"]["dag_status"] == {"code": 6, "name": "STATUS_ERROR", "note": "failed"}
    assert data["condor"]["submitted"] is False  # wf could not; it was "submitted by hand"
    (f,) = data["failed"]
    assert (f["job"], f["attempts"], f["exit_code"], f["post_exit"], f["status"]) == \
        ("stats[sample=heat1]", 1, 3, 3, "integrity")
    assert "results/mapped/heat1.txt: sha256 mismatch" in f["message"]
    assert f["details"] == "Job exited with status 3 and POST Script failed with status 3"
    for key in ("log", "out", "err", "command", "record", "landing"):
        assert os.path.exists(f["logs"][key]), key
    assert f["logs"]["record"].endswith(f"{f['node']}.1.json")
    assert {r["job"]: (r["attempts"], r["state"]) for r in data["retried"]} == \
        {"map[sample=ctrl1]": (2, "done"), "map[sample=heat2]": (2, "done")}

    out = wf_ok("status", cwd=d).out
    assert "Run 1 (condor): failed" in out
    assert "DAGMan says STATUS_ERROR (failed)" in out
    assert f"Jobs: {JOBS} total, {JOBS - 3} done, 0 running, 0 queued, 1 failed, 2 futile, 0 reused" in out
    assert "Retried: 2 jobs, 2 retries in all" in out
    assert f"stats[sample=heat1] (node {f['node']}), 1 attempt: job exit 3, POST script exit 3" in out
    assert f"job log: {f['logs']['log']}" in out and f"record: {f['logs']['record']}" in out


def test_statistics_and_analyze(replayed):
    d, sub = replayed["dir"], replayed["sub"]
    data = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    every = data["summary"]["all"]
    assert (every["succeeded"], every["failed"], every["incomplete"], every["total"], every["retries"]) == \
        (JOBS - 3, 1, 2, JOBS, 2)
    assert data["summary"]["stage_in"]["succeeded"] == 1
    assert data["run"]["status"] == "failed" and data["condor"]["submit_dir"] == str(sub)
    # Integrity: exactly what the POST scripts kept in the provenance records.
    records = [json.loads(p.read_text()) for p in (sub / scripts.RECORDS).glob("*/*.json")]
    assert len(records) == JOBS - 2 + 2
    # The wrapper's events on the execute node, and the POST script's hashes of the landed outputs.
    landed = [e for r in records for e in r["post"]["events"]]
    assert landed and {e["stage"] for e in landed} == {scripts.LANDED}
    assert [e["file"] for e in landed if not e["ok"]] == ["results/mapped/heat2.txt"]
    every_event = [e for r in records for e in r["events"]] + landed
    compared = [e for e in every_event if e["kind"] == "compare"]
    i = data["integrity"]
    assert i["compared"]["count"] == len(compared)
    assert i["generated"]["count"] == sum(1 for e in every_event if e["kind"] == "generate")
    assert i["errors"] == sum(1 for e in compared if not e["ok"]) == 3
    # The POST script's refusal of a record saying ok counts as the integrity failure it is.
    assert (i["failed_attempts"], i["failed_jobs"]) == (3, 1)
    assert data["job_seconds"] == pytest.approx(sum(r["end"] - r["start"] for r in records))
    assert data["wall_seconds"] is not None and data["job_seconds_submit"] >= 0
    rules = {r["rule"]: r for r in data["rules"]}
    assert (rules["map"]["succeeded"], rules["map"]["retries"], rules["map"]["attempts"]) == (4, 2, 6)
    assert (rules["stats"]["failed"], rules["summary"]["incomplete"]) == (1, 1)

    text = wf_ok("statistics", cwd=d).out
    assert f"# HTCondor DAG in {sub}" in text and "3 total integrity errors" in text

    r = wf_ok("analyze", cwd=d)
    assert "failed stats[sample=heat1] (rule stats)" in r.out
    assert "DAGMan (node j" in r.out and "POST Script failed with status 3" in r.out
    assert "Recovered after failed attempts:" in r.out
    assert "map[sample=ctrl1]: 1 failed attempt (integrity)" in r.out
    assert "map[sample=heat2]: 1 failed attempt (integrity)" in r.out
    assert re.search(r"results/mapped/heat2\.txt +1 +landed", r.out)


def test_a_job_removed_from_the_queue(tmp_path):
    """A job whose input cannot be transferred is held, then removed by its periodic_remove:
    012 and 009 in the logs, no provenance record; status names the removal."""
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    assert run_unsubmitted(d, tmp_path).returncode == 2
    reads = d / "data" / "reads" / "ctrl1.fastq"

    def lose_input(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "trim_sample_ctrl1" in node and direction == "in" and entry.endswith(f"/{node}.json"):
            reads.rename(reads.with_suffix(".gone"))  # the next entry cannot be transferred

    replay(d / ".wf" / "condor", lose_input)
    data = status_json(d)
    (f,) = data["failed"]
    assert f["job"] == "trim[sample=ctrl1]" and f["exit_code"] is None
    assert f["removed"].startswith("The job attribute PeriodicRemove expression")
    assert f["post_exit"] == 1 and f["status"] is None  # the POST script found no record
    assert f["details"] == "Job failed due to DAGMAN error -1002 and POST Script failed with status 1"
    # map, stats and coverage of ctrl1, then summary and all, can never run.
    assert (data["counts"]["failed"], data["counts"]["futile"]) == (1, 5)
    assert "job removed (The job attribute PeriodicRemove" in wf_ok("status", cwd=d).out
    stats = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    (trim,) = [r for r in stats["rules"] if r["rule"] == "trim"]
    assert (trim["count"], trim["failed"], trim["attempts"]) == (4, 1, 4)  # one from the nodes log alone
    r = wf("analyze", cwd=d)
    assert r.code == 0 and "no provenance record (removed: The job attribute" in r.out


TINY = """
rule all:
    input: "out/b.txt"

rule a:
    output: "out/a.txt"
    shell: "echo a > {output}"

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: "cat {input} {input} > {output}"
"""


def test_a_dag_that_succeeds(tmp_path):
    d = write_workflow(tmp_path / "tiny", TINY)
    assert run_unsubmitted(d, tmp_path).returncode == 2
    assert replay(d / ".wf" / "condor").ok
    assert (d / "out" / "b.txt").read_text() == "a\na\n"
    data = status_json(d)
    assert data["status"] == "success" and data["finished"] is not None
    assert data["condor"]["dag_status"] == {"code": 5, "name": "STATUS_DONE", "note": "success"}
    assert (data["counts"]["done"], data["counts"]["total"], data["counts"]["retried"]) == (3, 3, 0)
    assert data["failed"] == [] and data["running_jobs"] == []
    out = wf_ok("status", cwd=d).out
    assert "Run 1 (condor): success" in out and "DAGMan says STATUS_DONE (success)" in out
    assert "Jobs: 3 total, 3 done, 0 running, 0 queued, 0 failed, 0 reused" in out
    stats = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    assert stats["summary"]["all"] == {"succeeded": 3, "failed": 0, "incomplete": 0, "total": 3,
                                       "retries": 0, "total_retries": 3, "reused": 0}
    assert stats["integrity"]["errors"] == 0 and stats["integrity"]["compared"]["count"] > 0


def test_a_finished_dag_is_reused_by_later_runs_and_verified_first(tmp_path):
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    run_unsubmitted(d, tmp_path)
    replay(d / ".wf" / "condor")
    # Nothing of the DAG's work is done again: the dry run and the run both say so.
    dry = wf_ok("run", "-n", cwd=d)
    assert "Nothing to be done" in dry.out or "0 jobs to run" in dry.out, dry.out
    assert "Nothing to be done" in wf_ok("run", cwd=d).out
    recorded = dict(query(d, "SELECT lfn, producer FROM files WHERE lfn LIKE 'results/%'"))
    assert recorded and all(recorded.values())  # each with the job that made it
    assert wf_ok("verify", cwd=d).code == 0
    # An output changed after it landed is not taken: its job (and what follows) runs again.
    d2 = copy_example("bioinfo", tmp_path / "again")
    run_unsubmitted(d2, tmp_path)
    replay(d2 / ".wf" / "condor")
    summary = d2 / "results" / "summary.csv"
    assert summary.exists()
    summary.write_text(summary.read_text() + "tampered\n")
    r = wf_ok("run", cwd=d2)
    assert "Nothing to be done" not in r.out and "summary" in r.out
