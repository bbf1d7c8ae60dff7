"""Reading a condor run's submit directory (runtime/condor_status.py), and recording
the run (runtime/condor.py, runtime/db.py).

The nodes logs and node status files are written by the replay harness's
writers (tests/e2e/condor_replay.py), in HTCondor's formats, and read back by
wf with htcondor2.JobEventLog and classad2.
"""

from __future__ import annotations

import io
import json
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from dsl.parse import load_workflow
from runtime import condor
from runtime import condor_scripts as scripts
from runtime.condor import DAG_FILE, INDEX_FILE, NODES_LOG, STATUS_FILE
from runtime.condor_logs import read_status_file
from runtime.condor_status import read_dag
from runtime.db import SCHEMA, SCHEMA_VERSION, Database, db_path, open_database
from runtime.stats import statistics, status
from runtime.stats_view import show_status
from tests.e2e.condor_replay import (
    DONE,
    ERROR,
    NOT_READY,
    POSTRUN,
    SUBMITTED,
    UserLog,
    write_node_status,
)

T0 = float(int(time.time()) - 600)  # whole seconds: the formats keep no fraction


def make_submit_dir(tmp: Path, nodes: list[str], retries: dict[str, tuple[int, int | None]] | None = None) -> Path:
    """The files of a submit directory status reads: the index and the DAG's RETRY lines."""
    sub = tmp / "submit"
    sub.mkdir()
    index = {"version": 1, "dag": DAG_FILE, "workdir": str(tmp), "landing": ".wf/landing/x",
             "nodes": {n: f"job_{n.split('_', 1)[1]}" for n in nodes}}
    (sub / INDEX_FILE).write_text(json.dumps(index))
    lines = [f"JOB {n} x.sub" for n in nodes]
    for n, (count, unless) in (retries or {}).items():
        lines.append(f"RETRY {n} {count}" + (f" UNLESS-EXIT {unless}" if unless is not None else ""))
    (sub / DAG_FILE).write_text("\n".join(lines) + "\n")
    return sub


def run_of(sub: Path, recorded: str = "submitted") -> dict:
    return {"id": 1, "submit_dir": str(sub), "status": recorded, "recorded_status": recorded,
            "external_id": "77", "started": T0 - 100}


def events(sub: Path, node: str, cluster: int, when: float, *what: tuple) -> None:
    """Write a node job's events to the nodes log and the node's own log, at ``when``."""
    log = UserLog(sub / NODES_LOG, sub / scripts.LOGS / scripts.shard_of(node) / f"{node}.log", when=when)
    for name, *args in what:
        if name == "post":
            UserLog(sub / NODES_LOG, when=when).post_terminated(cluster, node, *args)
        else:
            getattr(log, name)(cluster, *args)


NODES = ["j00001_a", "j00002_b", "j00003_c", "j00004_d", "j00005_e", "j00006_f", "j00007_g", "j00008_h"]


def test_the_nodes_log_overrides_an_older_status_file(tmp_path):
    sub = make_submit_dir(tmp_path, NODES, {"j00004_d": (2, 5), "j00005_e": (2, 5)})
    # DAGMan's status file at T0 ...
    write_node_status(sub / STATUS_FILE, {
        "j00001_a": (DONE, "", 0, False), "j00002_b": (SUBMITTED, "", 0, True),
        "j00003_c": (SUBMITTED, "", 0, True), "j00004_d": (SUBMITTED, "", 0, False),
        "j00005_e": (POSTRUN, "", 0, False), "j00006_f": (NOT_READY, "", 0, False),
        "j00007_g": (SUBMITTED, "", 0, False), "j00008_h": (SUBMITTED, "", 0, False)}, False, T0)
    # ... and what the nodes log saw: a done before the file; the others after it.
    events(sub, "j00001_a", 101, T0 - 50, ("submitted", "j00001_a"), ("executing",), ("terminated", 0))
    events(sub, "j00001_a", 101, T0 - 40, ("post", 0))
    events(sub, "j00002_b", 102, T0 - 30, ("submitted", "j00002_b"))
    events(sub, "j00002_b", 102, T0 + 5, ("executing",), ("terminated", 0), ("post", 0))
    events(sub, "j00003_c", 103, T0 - 30, ("submitted", "j00003_c"))
    events(sub, "j00003_c", 103, T0 + 5, ("executing",))
    events(sub, "j00004_d", 104, T0 - 30, ("submitted", "j00004_d"), ("executing",))
    events(sub, "j00004_d", 104, T0 + 5, ("terminated", 3), ("post", 3))  # retries left: PRE again
    events(sub, "j00005_e", 105, T0 - 30, ("submitted", "j00005_e"), ("executing",), ("terminated", 5))
    events(sub, "j00005_e", 105, T0 + 5, ("post", 5))  # UNLESS-EXIT 5: failed for good
    events(sub, "j00007_g", 107, T0 - 30, ("submitted", "j00007_g"), ("executing",))
    events(sub, "j00007_g", 107, T0 + 5, ("held", "Transfer output files failure", 12))
    events(sub, "j00008_h", 108, T0 - 30, ("submitted", "j00008_h"), ("executing",))
    events(sub, "j00008_h", 108, T0 + 5, ("terminated", 1))  # its POST script runs now

    dag = read_dag(run_of(sub))
    assert dag.states == {"j00001_a": "done", "j00002_b": "done", "j00003_c": "running",
                          "j00004_d": "pre", "j00005_e": "failed", "j00006_f": "waiting",
                          "j00007_g": "held", "j00008_h": "post"}
    assert dag.log_files == [str(sub / NODES_LOG)] and dag.events == 24
    assert dag.status() == "running" and dag.finished() is None
    assert dag.first_event() == T0 - 50 and dag.last_event() == T0 + 5
    assert dag.submit_seconds() == pytest.approx(35 + 35)  # d and h ran from T0 - 30 to T0 + 5


def test_a_newer_status_file_wins_and_gives_futile_nodes(tmp_path):
    sub = make_submit_dir(tmp_path, NODES[:3])
    events(sub, "j00001_a", 101, T0 - 30, ("submitted", "j00001_a"), ("executing",), ("terminated", 1),
           ("post", 1))
    write_node_status(sub / STATUS_FILE, {
        "j00001_a": (ERROR, "Job exited with status 1 and POST Script failed with status 1", 0, False),
        "j00002_b": (7, "", 0, False), "j00003_c": (7, "", 0, False)}, True, T0)
    dag = read_dag(run_of(sub))
    assert dag.states == {"j00001_a": "failed", "j00002_b": "futile", "j00003_c": "futile"}
    assert dag.status() == "failed" and dag.finished() == T0
    assert dag.dag_status() == {"code": 6, "name": "STATUS_ERROR", "note": "failed"}


def test_a_removed_dag_says_so(tmp_path):
    """condor_rm of the DAGMan job: DAGMan's last status file marks the DAG removed (in the
    comment only), and what was running as failed."""
    sub = make_submit_dir(tmp_path, NODES[:2])
    write_node_status(sub / STATUS_FILE, {"j00001_a": (DONE, "", 0, False),
                                          "j00002_b": (ERROR, "Was STATUS_SUBMITTED", 0, False)}, True, T0)
    path = sub / STATUS_FILE
    path.write_text(path.read_text().replace("STATUS_ERROR (failed)", "STATUS_ERROR (removed)"))
    dag = read_dag(run_of(sub))
    assert dag.dag_status() == {"code": 6, "name": "STATUS_ERROR", "note": "removed"}
    assert dag.status() == "removed" and dag.states["j00002_b"] == "failed"


def test_without_a_status_file_the_log_alone_tells(tmp_path):
    sub = make_submit_dir(tmp_path, NODES[:3])
    events(sub, "j00001_a", 101, T0, ("submitted", "j00001_a"), ("executing",))
    dag = read_dag(run_of(sub))
    assert dag.status_file is None
    assert dag.states == {"j00001_a": "running", "j00002_b": "waiting", "j00003_c": "waiting"}
    assert dag.status() == "running"


def test_without_the_nodes_log_the_per_node_logs_are_read(tmp_path):
    sub = make_submit_dir(tmp_path, NODES[:2])
    events(sub, "j00001_a", 101, T0, ("submitted", "j00001_a"), ("executing",))
    events(sub, "j00002_b", 102, T0, ("submitted", "j00002_b"))
    (sub / NODES_LOG).unlink()
    (sub / scripts.LOGS / "0000" / "j00001_a.cmd.log").write_text("the command's output, not events\n")
    dag = read_dag(run_of(sub))
    assert dag.states == {"j00001_a": "running", "j00002_b": "idle"}
    assert sorted(Path(p).name for p in dag.log_files) == ["j00001_a.log", "j00002_b.log"]


def test_a_large_status_file_is_parsed_in_batches(tmp_path):
    names = [f"j{i:05d}_n" for i in range(1, 1002)]
    states = {n: ((DONE, "", 0, False) if i % 3 else (SUBMITTED, "", 1, i % 2 == 0))
              for i, n in enumerate(names)}
    write_node_status(tmp_path / STATUS_FILE, states, False, T0)
    sf = read_status_file(tmp_path / STATUS_FILE)
    assert list(sf.nodes) == names
    assert [sf.nodes[n][0] for n in names] == [s[0] for s in states.values()]
    assert sf.dag["NodesTotal"] == 1001 and sf.written == T0 and sf.next_update == T0 + 30
    assert read_status_file(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("[ Type = \"DagStatus\"; DagStatus = ")
    with pytest.raises(ValueError, match="not a DAGMan node status file"):
        read_status_file(tmp_path / "bad")


def test_a_submit_directory_that_is_gone(tmp_path):
    data = status(_db_with_run(tmp_path, tmp_path / "gone"))
    assert data["status"] == "not-started" and data["counts"]["total"] == 0
    assert "is missing: the submit directory is gone" in data["condor"]["problems"][0]


def _db_with_run(tmp: Path, sub: Path) -> Database:
    db = Database(tmp / "wf.db")
    db.start_run(started=T0, status="submitted", backend="condor", submit_dir=str(sub), external_id="9",
                 workdir=str(tmp), jobs_total=0, jobs_pruned=0)
    return db


# -- the database ---------------------------------------------------------------------
#: The schema as wf wrote it before version 2: runs without submit_dir and external_id.
V1_SCHEMA = SCHEMA.replace(",\n    submit_dir TEXT, external_id TEXT);", ");")


def _v1_database(path: Path) -> None:
    assert "submit_dir" not in V1_SCHEMA
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA + """
        INSERT INTO meta VALUES ('schema', '1');
        INSERT INTO runs (id, started, finished, status, backend, exit_code, jobs_total, jobs_pruned)
            VALUES (1, 10.0, 20.0, 'success', 'local', 0, 0, 0);""")
    conn.commit()
    conn.close()


def test_a_version_1_database_gains_the_new_columns(tmp_path):
    path = tmp_path / "wf.db"
    _v1_database(path)
    # Read-only (wf status on a database an older wf wrote): the new columns read as NULL.
    ro = Database(path, readonly=True)
    assert "submit_dir" not in ro.columns("runs")
    data = status(ro)
    assert data["status"] == "success" and data["run"]["submit_dir"] is None
    ro.close()
    # Opened for writing: migrated in place, the old rows kept, twice is harmless.
    for _ in range(2):
        db = Database(path)
        assert {"submit_dir", "external_id"} <= db.columns("runs")
        assert "external_id" in db.columns("jobs")
        assert db.query("SELECT value FROM meta WHERE key='schema'") == [(str(SCHEMA_VERSION),)]
        assert db.query("SELECT id, status, backend FROM runs") == [(1, "success", "local")]
        db.close()
    assert SCHEMA_VERSION == 3


def test_a_newer_schema_version_is_not_lowered(tmp_path):
    db = Database(tmp_path / "wf.db")
    db.conn.execute("UPDATE meta SET value='7' WHERE key='schema'")
    db.close()
    db = Database(tmp_path / "wf.db")
    assert db.query("SELECT value FROM meta WHERE key='schema'") == [("7",)]
    db.close()


# -- wf run --backend condor records the run ------------------------------------------
WFFILE = """
rule all:
    input: "out/B.txt"

rule a:
    output: "out/A.txt"
    shell: "echo a > {output}"

rule b:
    input: "out/A.txt"
    output: "out/B.txt"
    retries: 1
    shell: "cat {input} > {output}"
"""


def test_the_run_is_recorded_before_the_submission_and_gets_its_cluster(tmp_path, monkeypatch):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "Wffile").write_text(textwrap.dedent(WFFILE).lstrip())
    seen = []

    def submit(dag_file, batch_name=None):
        seen.append(Database(db_path(wd), readonly=True).query("SELECT status, submit_dir FROM runs"))
        return 4242

    monkeypatch.setattr(condor, "submit_dag", submit)
    code = condor.run_condor(load_workflow(str(wd / "Wffile")), wd, [])
    assert code == 0
    sub = str((wd / ".wf" / "condor").resolve())
    assert seen == [[("written", sub)]]
    db = open_database(wd, readonly=True)
    assert db.query("SELECT status, external_id, exit_code, backend, staging FROM runs") == \
        [("submitted", "4242", 0, "condor", "copy")]
    assert sorted(db.query("SELECT job_id, status FROM jobs")) == \
        [("a", "pending"), ("all", "pending"), ("b", "pending")]

    data = status(db)
    assert data["status"] == "not-started"
    assert (data["condor"]["submitted"], data["condor"]["cluster"]) == (True, "4242")
    assert sorted(data["counts"][k] for k in ("total", "waiting")) == [3, 3]
    out = io.StringIO()
    show_status(data, Console(file=out, width=200, highlight=False))
    assert f"submitted as cluster 4242 from {sub} (condor_q -dag 4242)" in out.getvalue()
    assert "The DAG has not started" in out.getvalue()
    stats = statistics(db)
    assert stats["summary"]["all"]["total"] == 3 and stats["condor"]["cluster"] == "4242"
