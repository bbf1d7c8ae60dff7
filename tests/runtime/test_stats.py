"""wf status / statistics / analyze / verify over real SQLite databases.

The databases are filled through the Database API with realistic wrapper
records; a fake clock in runtime.db makes run start/finish exact.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys

import pytest
from rich.console import Console

from runtime import db as dbmod
from runtime.db import Database, db_path, open_database
from runtime.stats import (
    VERIFY_CHANGED,
    VERIFY_MISSING,
    VERIFY_OK,
    NoRunError,
    UnknownPathError,
    analyze,
    statistics,
    status,
    verify,
)
from runtime.stats_view import (
    format_seconds,
    show_analyze,
    show_statistics,
    show_status,
    show_verify,
)

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
SHA_X = "e" * 64  # what the corrupted copies of B hashed to
SHA_Y = "f" * 64  # what the corrupted copy of C hashed to
SHA_OUT = "0" * 64
T0 = 1000.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Clock:
    """Stands in for runtime.db's ``time`` module."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(dbmod, "time", c)
    return c


def event(file, stage, kind, expected, actual, seconds, host="node1"):
    return {"file": file, "stage": stage, "kind": kind, "expected": expected, "actual": actual,
            "ok": actual is not None and (expected is None or expected == actual),
            "size": 1024, "seconds": seconds, "host": host}


def record(job_id, attempt, start, end, status="ok", exit_code=0, host="node1",
           events=(), chaos=(), message=""):
    """A provenance record as runtime.wrapper writes it."""
    events = list(events)
    cmp = [e for e in events if e["kind"] == "compare"]
    gen = [e for e in events if e["kind"] == "generate"]
    return {
        "version": 1, "job_id": job_id, "attempt": attempt, "host": host,
        "start": start, "end": end, "command_start": start, "command_end": end,
        "exit_code": exit_code, "status": status, "message": message,
        "integrity": "full", "staging": "shared", "files": [], "events": events,
        "chaos": list(chaos),
        "totals": {"compare_count": len(cmp), "compare_seconds": sum(e["seconds"] for e in cmp),
                   "generate_count": len(gen), "generate_seconds": sum(e["seconds"] for e in gen),
                   "bytes_hashed": sum(e["size"] for e in events)},
    }


def attempt(db, rid, rec, stderr=None):
    db.add_attempt(rid, rec["job_id"], rec, None, stderr, None)


def populate(tmp_path, clock) -> tuple[Database, int, int, str]:
    """An old successful run, then a failed one with retries, integrity errors and chaos."""
    db = Database(db_path(tmp_path))
    wd = str(tmp_path)
    host, pid = socket.gethostname(), os.getpid()

    # Run 1: one job, 50 s, success.
    old = db.start_run(started=900.0, status="running", workdir=wd, wffile=f"{wd}/Wffile",
                       host=host, pid=pid, backend="local", integrity="full", staging="shared")
    db.add_jobs(old, [("prep", "prep", "compute", "pending", "output missing")])
    db.set_job(old, "prep", "done", started=901.0, finished=903.0, attempts=1)
    attempt(db, old, record("prep", 1, 901.0, 902.0))
    clock.now = 950.0
    db.finish_run(old, "success", 0)

    # Run 2.
    rid = db.start_run(started=T0, status="running", workdir=wd, wffile=f"{wd}/Wffile",
                       host=host, pid=pid, backend="local", integrity="full", staging="shared")
    db.add_jobs(rid, [
        ("stage_in:data/A.txt", None, "stage_in", "pending", "not staged yet"),
        ("stage_in:data/B.txt", None, "stage_in", "pending", "not staged yet"),
        ("count[sample=A]", "count", "compute", "pending", "output missing"),
        ("count[sample=B]", "count", "compute", "pending", "output missing"),
        ("count[sample=C]", "count", "compute", "pending", "output missing"),
        ("merge", "merge", "compute", "pending", "upstream will run"),
        ("count[sample=OLD]", "count", "compute", "reused", "outputs present and verified"),
    ])
    # Stage-in of A: one clean transfer.
    attempt(db, rid, record("stage_in:data/A.txt", 1, 1001.0, 1001.5, events=[
        event("data/A.txt", "stage-in", "compare", SHA_A, SHA_A, 0.125)]))
    db.set_job(rid, "stage_in:data/A.txt", "done", started=1000.75, finished=1001.75, attempts=1)
    # Stage-in of B: a chaos transfer fault caught, then a clean retry.
    attempt(db, rid, record(
        "stage_in:data/B.txt", 1, 1001.0, 1001.25, status="integrity", exit_code=None,
        message="data/B.txt: checksum mismatch at stage-in",
        events=[event("data/B.txt", "stage-in", "compare", SHA_B, SHA_X, 0.125)],
        chaos=[{"kind": "transfer", "file": "data/B.txt", "stage": "stage-in", "offset": 7}]))
    attempt(db, rid, record("stage_in:data/B.txt", 2, 1002.0, 1002.25, events=[
        event("data/B.txt", "stage-in", "compare", SHA_B, SHA_B, 0.125)]))
    db.set_job(rid, "stage_in:data/B.txt", "done", started=1001.75, finished=1002.5, attempts=2)
    # count A: clean, 10 s; its output is then corrupted at rest (never caught).
    attempt(db, rid, record("count[sample=A]", 1, 1003.0, 1013.0, events=[
        event("data/A.txt", "pre-job", "compare", SHA_A, SHA_A, 0.25),
        event("results/A.txt", "output", "generate", None, SHA_OUT, 0.375)]))
    db.set_job(rid, "count[sample=A]", "done", started=1002.75, finished=1013.25, attempts=1)
    db.add_chaos(rid, "count[sample=A]", 1,
                 [{"kind": "rest", "file": "results/A.txt", "stage": "rest", "detected": 0}])
    # count B: the command fails, then its input no longer matches: failed for good.
    err = tmp_path / ".wf" / "logs" / "count_B.2.err"
    err.parent.mkdir(parents=True, exist_ok=True)
    err.write_text("".join(f"line {i}\n" for i in range(1, 31)))
    attempt(db, rid, record("count[sample=B]", 1, 1003.0, 1005.0, status="failed", exit_code=1,
                            message="command exited with code 1", events=[
                                event("data/B.txt", "pre-job", "compare", SHA_B, SHA_B, 0.25)]))
    attempt(db, rid, record(
        "count[sample=B]", 2, 1006.0, 1006.5, status="integrity", exit_code=None, host="node2",
        message="data/B.txt: checksum mismatch before the job",
        events=[event("data/B.txt", "pre-job", "compare", SHA_B, SHA_X, 0.25, host="node2")]),
        stderr=str(err))
    db.set_job(rid, "count[sample=B]", "failed", started=1005.75, finished=1006.75, attempts=2)
    # count C: an integrity error, cured by the retry.
    attempt(db, rid, record(
        "count[sample=C]", 1, 1003.0, 1003.5, status="integrity", exit_code=None,
        message="data/C.txt: checksum mismatch before the job",
        events=[event("data/C.txt", "pre-job", "compare", SHA_C, SHA_Y, 0.25)]))
    attempt(db, rid, record("count[sample=C]", 2, 1004.0, 1008.0, events=[
        event("data/C.txt", "pre-job", "compare", SHA_C, SHA_C, 0.25),
        event("results/C.txt", "output", "generate", None, SHA_OUT, 0.375)]))
    db.set_job(rid, "count[sample=C]", "done", started=1003.75, finished=1008.25, attempts=2)
    # Final verification of an output, done by the executor, not the wrapper.
    db.add_event(rid, None, None, event("results/A.txt", "final", "compare", SHA_OUT, SHA_OUT, 0.125,
                                        host="submit"))
    clock.now = T0 + 125.5
    db.finish_run(rid, "failed", 3)
    return db, old, rid, str(err)


# -- statistics ---------------------------------------------------------------
def test_statistics_summary_counts(tmp_path, clock):
    db, _, rid, _ = populate(tmp_path, clock)
    s = statistics(db)
    assert s["run"]["id"] == rid
    assert s["run"]["status"] == "failed"
    assert list(s["summary"]) == ["compute", "stage_in", "all"]
    assert s["summary"]["compute"] == {"succeeded": 2, "failed": 1, "incomplete": 1, "total": 4,
                                       "retries": 2, "total_retries": 6, "reused": 1}
    assert s["summary"]["stage_in"] == {"succeeded": 2, "failed": 0, "incomplete": 0, "total": 2,
                                        "retries": 1, "total_retries": 3, "reused": 0}
    assert s["summary"]["all"] == {"succeeded": 4, "failed": 1, "incomplete": 1, "total": 6,
                                   "retries": 3, "total_retries": 9, "reused": 1}


def test_statistics_times(tmp_path, clock):
    db, _, _, _ = populate(tmp_path, clock)
    s = statistics(db)
    assert s["wall_seconds"] == 125.5
    # 0.5 + 0.25 + 0.25 (stage-in) + 10 (A) + 2 + 0.5 (B) + 0.5 + 4 (C)
    assert s["job_seconds"] == 18.0
    # last attempts as the executor saw them (1 + 0.75 + 10.5 + 1 + 4.5) + earlier attempts (0.25 + 2 + 0.5)
    assert s["job_seconds_submit"] == 20.5


def test_statistics_integrity_and_chaos(tmp_path, clock):
    db, _, _, _ = populate(tmp_path, clock)
    i = statistics(db)["integrity"]
    assert i["compared"] == {"count": 9, "seconds": 1.75, "bytes": 9 * 1024}
    assert i["generated"] == {"count": 2, "seconds": 0.75, "bytes": 2 * 1024}
    assert i["errors"] == 3
    assert i["failed_attempts"] == 3
    assert i["failed_jobs"] == 1
    assert i["seconds"] == 2.5
    assert i["percent_of_job_time"] == pytest.approx(100 * 2.5 / 18.0)
    assert statistics(db)["chaos"] == {
        "rest": {"injected": 1, "detected": 0},
        "transfer": {"injected": 1, "detected": 1},
        "total": {"injected": 2, "detected": 1},
    }


def test_statistics_per_rule(tmp_path, clock):
    db, _, _, _ = populate(tmp_path, clock)
    rules = {r["rule"]: r for r in statistics(db)["rules"]}
    assert list(rules) == ["count", "merge", "wf::stage_in"]
    assert rules["count"] == {
        "rule": "count", "kind": "compute", "count": 3, "succeeded": 2, "failed": 1,
        "incomplete": 0, "reused": 1, "attempts": 5, "retries": 2,
        "min_seconds": 0.5, "max_seconds": 10.0, "mean_seconds": 17.0 / 5, "total_seconds": 17.0,
    }
    assert rules["merge"]["count"] == 1 and rules["merge"]["incomplete"] == 1
    assert rules["merge"]["attempts"] == 0 and rules["merge"]["mean_seconds"] is None
    st = rules["wf::stage_in"]
    assert (st["kind"], st["count"], st["succeeded"], st["attempts"], st["retries"]) == ("stage_in", 2, 2, 3, 1)
    assert (st["min_seconds"], st["max_seconds"], st["total_seconds"]) == (0.25, 0.5, 1.0)
    assert st["mean_seconds"] == pytest.approx(1.0 / 3)


def test_statistics_of_an_older_run(tmp_path, clock):
    db, old, _, _ = populate(tmp_path, clock)
    s = statistics(db, old)
    assert s["run"]["status"] == "success"
    assert s["wall_seconds"] == 50.0
    assert s["job_seconds"] == 1.0
    assert s["summary"]["all"]["succeeded"] == 1
    assert s["chaos"] is None
    assert s["integrity"] == {"compared": {"count": 0, "seconds": 0.0, "bytes": 0},
                              "generated": {"count": 0, "seconds": 0.0, "bytes": 0},
                              "cached": 0, "errors": 0, "failed_attempts": 0, "failed_jobs": 0,
                              "seconds": 0.0, "percent_of_job_time": 0.0}


def test_no_run(tmp_path):
    db = open_database(tmp_path, readonly=True)  # no database yet: an empty one
    for fn in (statistics, status, analyze):
        with pytest.raises(NoRunError):
            fn(db)
    db2 = Database(db_path(tmp_path))
    db2.start_run(started=T0, status="success")
    with pytest.raises(NoRunError, match="run 7"):
        statistics(db2, 7)


def test_results_are_json(tmp_path, clock):
    import json
    db, _, _, _ = populate(tmp_path, clock)
    for data in (statistics(db), status(db), analyze(db), verify(db, tmp_path)):
        assert json.loads(json.dumps(data)) == data


# -- status -------------------------------------------------------------------
def test_status_counts(tmp_path, clock):
    db, _, rid, _ = populate(tmp_path, clock)
    s = status(db)
    assert (s["id"], s["status"], s["started"], s["finished"]) == (rid, "failed", T0, T0 + 125.5)
    assert s["counts"] == {"total": 6, "done": 4, "running": 0, "queued": 0, "failed": 1, "left": 1, "reused": 1}
    assert s["failed_jobs"] == ["count[sample=B]"]
    assert s["by_status"] == {"done": 4, "failed": 1, "pending": 1, "reused": 1}


def _run_with_running_job(db: Database, pid: int) -> int:
    rid = db.start_run(started=T0, status="running", host=socket.gethostname(), pid=pid)
    db.add_jobs(rid, [("a", "a", "compute", "pending", ""), ("b", "b", "compute", "pending", ""),
                      ("c", "c", "compute", "pending", "")])
    db.set_job(rid, "a", "done", started=T0, finished=T0 + 3)
    db.set_job(rid, "b", "running", started=T0 + 3, attempts=1)
    db.set_job(rid, "c", "retrying")
    db.commit()
    return rid


def test_status_of_a_live_run(tmp_path):
    db = Database(db_path(tmp_path))
    _run_with_running_job(db, os.getpid())
    s = status(db)
    assert s["status"] == "running"
    assert s["counts"] == {"total": 3, "done": 1, "running": 1, "queued": 0, "failed": 0, "left": 1, "reused": 0}
    assert s["running_jobs"] == ["b"]
    assert s["wall_seconds"] == 3.0  # to the last recorded activity


def test_status_of_a_crashed_run(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    db = Database(db_path(tmp_path))
    _run_with_running_job(db, dead)
    s = status(db)
    assert s["status"] == "crashed"
    assert s["run"]["recorded_status"] == "running"
    # the job that was running when it crashed is left to do
    assert s["counts"] == {"total": 3, "done": 1, "running": 0, "queued": 0, "failed": 0, "left": 2, "reused": 0}
    assert s["running_jobs"] == []


# -- analyze ------------------------------------------------------------------
def test_analyze_failed_job(tmp_path, clock):
    db, _, _, err = populate(tmp_path, clock)
    a = analyze(db)
    assert len(a["failed"]) == 1
    f = a["failed"][0]
    assert {k: f[k] for k in ("job", "rule", "kind", "attempts", "attempt", "host", "exit_code",
                               "status", "message", "stderr")} == {
        "job": "count[sample=B]", "rule": "count", "kind": "compute", "attempts": 2, "attempt": 2,
        "host": "node2", "exit_code": None, "status": "integrity",
        "message": "data/B.txt: checksum mismatch before the job", "stderr": err}
    assert f["stderr_tail"] == [f"line {i}" for i in range(11, 31)]
    assert f["events"] == [{"attempt": 2, "file": "data/B.txt", "stage": "pre-job", "kind": "compare",
                            "host": "node2", "expected": SHA_B, "actual": SHA_X, "seconds": 0.25}]
    assert a["recovered"] == [
        {"job": "count[sample=C]", "failed_attempts": 1, "statuses": ["integrity"]},
        {"job": "stage_in:data/B.txt", "failed_attempts": 1, "statuses": ["integrity"]},
    ]


def test_analyze_groups_integrity_errors(tmp_path, clock):
    db, _, _, _ = populate(tmp_path, clock)
    a = analyze(db)
    assert a["integrity_errors"] == 3
    assert a["by_host"] == [{"host": "node1", "count": 2}, {"host": "node2", "count": 1}]
    assert a["by_file"] == [
        {"file": "data/B.txt", "count": 2, "jobs": ["stage_in:data/B.txt", "count[sample=B]"],
         "stages": ["stage-in", "pre-job"]},
        {"file": "data/C.txt", "count": 1, "jobs": ["count[sample=C]"], "stages": ["pre-job"]},
    ]
    assert a["by_checksum"] == [
        {"expected": SHA_B, "actual": SHA_X, "count": 2, "files": ["data/B.txt"]},
        {"expected": SHA_C, "actual": SHA_Y, "count": 1, "files": ["data/C.txt"]},
    ]


def test_analyze_unreadable_stderr_and_clean_run(tmp_path, clock):
    db, old, _, err = populate(tmp_path, clock)
    os.unlink(err)
    assert analyze(db)["failed"][0]["stderr_tail"] is None
    clean = analyze(db, old)
    assert (clean["failed"], clean["recovered"], clean["integrity_errors"]) == ([], [], 0)
    assert clean["by_host"] == clean["by_file"] == clean["by_checksum"] == []


def test_stderr_tail_of_a_big_file(tmp_path, clock):
    db, _, _, err = populate(tmp_path, clock)
    with open(err, "w") as fh:
        for i in range(20000):  # well past the bytes read from the end
            fh.write(f"log line number {i}\n")
    assert analyze(db)["failed"][0]["stderr_tail"] == [f"log line number {i}" for i in range(19980, 20000)]


# -- verify -------------------------------------------------------------------
@pytest.fixture
def recorded(tmp_path):
    """Three recorded files: one left alone, one modified, one deleted."""
    db = Database(db_path(tmp_path))
    rid = db.start_run(started=T0, status="success")
    data = {"results/a.txt": b"alpha\n", "results/sub/b.txt": b"beta\n" * 1000,
            "results/sub/c.txt": b"gamma\n"}
    for lfn, content in data.items():
        p = tmp_path / lfn
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        st = p.stat()
        db.record_file(lfn, sha(content), st.st_size, st.st_mtime_ns, "job", rid)
    db.commit()
    (tmp_path / "results/sub/b.txt").write_bytes(b"beta\n" * 999 + b"BETA\n")
    (tmp_path / "results/sub/c.txt").unlink()
    return db, data


def test_verify_all(tmp_path, recorded):
    db, data = recorded
    results = verify(db, tmp_path)
    assert [(r["lfn"], r["status"]) for r in results] == [
        ("results/a.txt", VERIFY_OK), ("results/sub/b.txt", VERIFY_CHANGED),
        ("results/sub/c.txt", VERIFY_MISSING)]
    a, b, c = results
    assert a["expected"] == a["actual"] == sha(data["results/a.txt"])
    assert a["size"] == a["recorded_size"] == 6
    assert b["expected"] == sha(data["results/sub/b.txt"])
    assert b["actual"] == sha(b"beta\n" * 999 + b"BETA\n")
    assert b["size"] == b["recorded_size"] == 5000  # same size: only the checksum can tell
    assert c["expected"] == sha(data["results/sub/c.txt"])
    assert c["actual"] is None and c["error"] is None


def test_verify_paths(tmp_path, recorded):
    db, _ = recorded
    assert [r["lfn"] for r in verify(db, tmp_path, ["results/sub"])] == [
        "results/sub/b.txt", "results/sub/c.txt"]
    assert [r["lfn"] for r in verify(db, tmp_path, ["results/sub/"])] == [
        "results/sub/b.txt", "results/sub/c.txt"]
    assert [r["lfn"] for r in verify(db, tmp_path, [str(tmp_path / "results/a.txt")])] == [
        "results/a.txt"]
    assert len(verify(db, tmp_path, ["."])) == 3
    assert len(verify(db, tmp_path, ["results/a.txt", "results/sub"])) == 3


def test_verify_unknown_paths(tmp_path, recorded):
    db, _ = recorded
    with pytest.raises(UnknownPathError) as info:
        verify(db, tmp_path, ["results/su", "results/a.txt", "nothing"])
    assert info.value.paths == ["results/su", "nothing"]


def test_verify_nothing_recorded(tmp_path):
    assert verify(open_database(tmp_path, readonly=True), tmp_path) == []


# -- rendering ----------------------------------------------------------------
def render(show, data, **kw) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    show(data, console, **kw)
    text = console.export_text()
    assert "\x1b" not in console.file.getvalue()  # plain when not a terminal
    return text


def test_format_seconds():
    assert format_seconds(None) == "-"
    assert format_seconds(0.0) == "0.0 secs"
    assert format_seconds(0.4391) == "0.439 secs"
    assert format_seconds(12.41) == "12.41 secs"
    assert format_seconds(60) == "1 min"
    assert format_seconds(116) == "1 min, 56 secs"
    assert format_seconds(415) == "6 mins, 55 secs"
    assert format_seconds(7500) == "2 hrs, 5 mins"
    assert format_seconds(90061) == "1 day, 1 hr"


def test_show_statistics(tmp_path, clock):
    db, _, _, _ = populate(tmp_path, clock)
    text = render(show_statistics, statistics(db))
    lines = [line.rstrip() for line in text.splitlines()]
    assert "Type           Succeeded Failed  Incomplete  Total     Retries   Total+Retries" in lines
    assert "Tasks          2         1       1           4         2         6" in lines
    assert "Stage-in       2         0       0           2         1         3" in lines
    assert "Jobs           4         1       1           6         3         9" in lines
    assert "1 job reused from earlier runs (not counted above)" in lines
    assert "Workflow wall time                                       : 2 mins, 6 secs" in lines
    assert "Cumulative job wall time                                 : 18.0 secs" in lines
    assert "Cumulative job wall time as seen from submit side        : 20.5 secs" in lines
    assert "9 files checksums compared with total duration of 1.75 secs" in lines
    assert "2 files checksums generated with total duration of 0.75 secs" in lines
    assert "Integrity checking took 2.5 secs, 13.89% of the cumulative job wall time" in lines
    assert "Total:    3 total integrity errors encountered in the workflow" in lines
    assert "Failures: 3 job failures had integrity errors; 1 job failed for good on one" in lines
    assert any(line.startswith("transfer") and "1 injected      1 detected" in line for line in lines)
    assert any(line.startswith("rest") and "1 not detected" in line for line in lines)
    assert any(line.startswith("wf::stage_in") for line in lines)


def test_show_status(tmp_path, clock):
    db, _, rid, _ = populate(tmp_path, clock)
    text = render(show_status, status(db))
    assert f"Run {rid}: failed" in text
    assert "Jobs: 6 total, 4 done, 0 running, 1 failed, 1 left, 1 reused" in text
    assert "  count[sample=B]" in text


def test_show_analyze(tmp_path, clock):
    db, _, _, err = populate(tmp_path, clock)
    text = render(show_analyze, analyze(db))
    assert "1 failed job, 3 integrity errors" in text
    assert "failed count[sample=B] (rule count), attempt 2 of 2 on node2" in text
    assert "status: integrity, exit code -" in text
    assert f"integrity: data/B.txt at pre-job (compare, attempt 2, node2): expected {SHA_B[:12]}…" in text
    assert f"stderr ({err}), last 20 lines:" in text
    assert "| line 30" in text and "| line 10\n" not in text
    assert "Integrity errors by host" in text and "node1" in text
    assert f"{SHA_B} -> {SHA_X}: 2 errors in data/B.txt" in text
    assert "stage_in:data/B.txt: 1 failed attempt (integrity)" in text


def test_show_verify(tmp_path, recorded):
    db, _ = recorded
    results = verify(db, tmp_path)
    text = render(show_verify, results)
    assert f"changed results/sub/b.txt  expected {results[1]['expected']}, found {results[1]['actual']}" in text
    assert f"missing results/sub/c.txt  expected {results[2]['expected']}" in text
    assert "results/a.txt" not in text
    assert "3 recorded files verified: 1 ok, 1 changed, 1 missing" in text
    assert "ok      results/a.txt" in render(show_verify, results, verbose=True)
