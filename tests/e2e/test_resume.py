"""Crash and resume: ``wf run`` killed with SIGKILL at several moments, then run again.

The pipeline's commands write their output in two halves with a pause in
between, so a command killed half-way leaves a half-written file behind it:
none may ever sit under an output's final name. Jobs whose success was
recorded before the kill must not run again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import query, sha256, wf, wf_cmd, wf_env, wf_ok, write_workflow

NAMES = ("1", "2", "3", "4")
STEPS = ("a", "b", "c")
RAW = {n: "".join(f"raw {n} line {i}\n" for i in range(2000)) for n in NAMES}

PIPELINE = """
NAMES = ["1", "2", "3", "4"]

rule all:
    input: expand("c/{n}.txt", n=NAMES)

rule a:
    input: "raw/{n}.txt"
    output: "a/{n}.txt"
    shell: "(cat {input}; sleep 0.2; echo a) > {output}"

rule b:
    input: "a/{n}.txt"
    output: "b/{n}.txt"
    shell: "(cat {input}; sleep 0.2; echo b) > {output}"

rule c:
    input: "b/{n}.txt"
    output: "c/{n}.txt"
    shell: "(cat {input}; sleep 0.2; echo c) > {output}"
"""


def expected_outputs() -> dict[str, str]:
    out = {}
    for n in NAMES:
        text = RAW[n]
        for step in STEPS:
            text += f"{step}\n"
            out[f"{step}/{n}.txt"] = text
    return out


EXPECTED = expected_outputs()


def make(dest: Path) -> Path:
    return write_workflow(dest, PIPELINE, {f"raw/{n}.txt": RAW[n] for n in NAMES})


def start(d: Path) -> subprocess.Popen:
    # A session of its own, so the kill takes the jobs' shells too, as a crash would.
    return subprocess.Popen(
        wf_cmd("run", "-j", "2"),
        cwd=d,
        env=wf_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def outputs_present(d: Path) -> list[str]:
    return [lfn for lfn in EXPECTED if (d / lfn).exists()]


def check_no_half_written_output(d: Path, moment: str) -> None:
    for lfn in outputs_present(d):
        assert (d / lfn).read_text() == EXPECTED[lfn], f"{lfn} is not whole after a kill {moment}"


def wait_for(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def runs_recorded(d: Path) -> int:
    try:
        return query(d, "SELECT count(*) FROM runs")[0][0]
    except (AssertionError, sqlite3.OperationalError):  # no database, or no schema yet
        return 0


def test_killed_runs_resume_without_redoing_recorded_work(tmp_path):
    d = make(tmp_path / "w")
    # Kill moments: seconds after launch (the first one lands while wf is still
    # planning), or after the run is recorded (its first jobs are starting).
    # "wf only" kills wf alone, as `kill -9 PID` would: its jobs' shells live
    # on for a moment and finish their commands, with nobody to rename outputs.
    moments = [
        ("launch", 0.3),
        ("run recorded", 0.1),
        ("launch", 0.8),
        ("run recorded", 0.35),
        ("wf only", 0.3),
        ("launch", 1.5),
        ("run recorded", 0.6),
    ]
    killed_with_work = 0
    for anchor, delay in moments:
        before, runs = outputs_present(d), runs_recorded(d)
        proc = start(d)
        if anchor in ("run recorded", "wf only"):
            wait_for(lambda p=proc, n=runs: runs_recorded(d) > n or p.poll() is not None)
        time.sleep(delay)
        finished = proc.poll() is not None
        if anchor == "wf only":
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            time.sleep(0.5)  # the orphaned commands finish
        kill(proc)
        check_no_half_written_output(d, f"{delay} s after {anchor}")
        killed_with_work += not finished and len(outputs_present(d)) > len(before)

    r = wf_ok("run", "-j", "2", cwd=d)
    assert "Nothing to be done" in r.out or "success" in r.out, r.out
    assert not (d / ".wf" / "partial").exists() or not any((d / ".wf" / "partial").iterdir())
    assert killed_with_work >= 2, "the kills never landed while jobs were running"

    for lfn, text in EXPECTED.items():
        assert (d / lfn).read_text() == text, lfn
    # Every file under an output's name matches the final database.
    recorded = dict(query(d, "SELECT lfn, sha256 FROM files"))
    for lfn in EXPECTED:
        assert recorded[lfn] == sha256(d / lfn), lfn
    # A success recorded before a kill is never redone: each job succeeded once,
    # across all runs (an unrecorded success left no row and was redone).
    rows = query(
        d,
        "SELECT job_id, count(*), group_concat(run_id) FROM attempts "
        "WHERE status='ok' GROUP BY job_id",
    )
    twice = [(j, runs) for j, n, runs in rows if n > 1]
    assert not twice, f"jobs redone after their success was recorded: {twice}"
    jobs = {j for j, _, _ in rows}
    assert jobs >= {f"{s}[n={n}]" for s in STEPS for n in NAMES}
    runs = query(d, "SELECT status FROM runs ORDER BY id")
    assert runs[-1] == ("success",) and ("crashed",) in runs, runs
    assert wf("verify", cwd=d).code == 0
    leftovers = [p for p in (d / ".wf").rglob("*") if p.is_file() and ".wf-tmp." in p.name]
    assert not leftovers, leftovers


def test_a_second_run_in_the_same_directory_is_refused(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        """
        rule all:
            input: "out/x.txt"
        rule slow:
            output: "out/{n}.txt"
            shell: "while [ ! -e go ]; do sleep 0.02; done; echo done > {output}"
        """,
    )
    first = start(d)
    try:
        lock = d / ".wf" / "lock"
        wait_for(lambda: lock.exists() and "pid" in lock.read_text())
        r = wf("run", cwd=d)
        assert r.code == 2, r.text
        assert "another wf run" in r.err, r.text
        (d / "go").touch()
        assert first.wait(timeout=60) == 0, "the first run was disturbed"
    finally:
        kill(first)
    assert (d / "out/x.txt").read_text() == "done\n"
    assert query(d, "SELECT count(*), group_concat(status) FROM runs") == [(1, "success")]
