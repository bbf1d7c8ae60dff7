"""``wf run --backend slurm`` against the private Slurm cluster (tests/slurmcluster.py).

Every test runs the ``wf`` console script as a user would, with the
cluster's SLURM_CONF in its environment, and reads the outcome from the
files, the workflow database and Slurm's own queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    copy_example,
    flip_byte,
    query,
    recorded_files,
    tree_hashes,
    wf,
    wf_cmd,
    wf_env,
    wf_ok,
    write_workflow,
)


@pytest.fixture
def cluster(slurm, monkeypatch):
    """The cluster, with its SLURM_CONF in the environment wf inherits."""
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    return slurm


def _attempts(workdir: Path) -> list[tuple]:
    return query(workdir, "SELECT job_id, attempt, status, external_id, message FROM attempts "
                          "WHERE run_id=(SELECT max(id) FROM runs) ORDER BY id")


def _queue(cluster, states: str = "all") -> dict[str, tuple[str, str]]:
    """{slurm id: (name, state)} for every job the controller still knows."""
    out = cluster.run("squeue", "-h", "-r", f"--states={states}", "-o", "%i|%j|%T").stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def _wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_job(cluster, name: str) -> str:
    def find():
        for sid, (jname, state) in _queue(cluster, "RUNNING").items():
            if jname == name and state == "RUNNING":
                return sid
        return None
    return _wait_for(find, what=f"Slurm job {name} to run")


def test_bioinfo_on_slurm_matches_local(cluster, tmp_path):
    local = copy_example("bioinfo", tmp_path / "local")
    remote = copy_example("bioinfo", tmp_path / "slurm")
    wf_ok("run", "-j", "2", cwd=local)
    r = wf_ok("run", "--backend", "slurm", "--staging", "copy", cwd=remote, timeout=300)
    assert "success" in r.out
    folders = ("results", "work", "logs")
    assert tree_hashes(remote, folders) == tree_hashes(local, folders)
    assert tree_hashes(remote, folders)  # something was compared
    assert recorded_files(remote) == recorded_files(local)
    # Every job ran as a Slurm batch job, its id recorded, but the localrules
    # (all, summary) and the stage-in of the replica, which run here.
    rows = _attempts(remote)
    on_slurm = {job: sid for job, _a, _s, sid, _m in rows if sid}
    assert set(on_slurm) == {job for job, *_ in rows} - {"all", "summary", "stage_in[data/genome.fa]"}
    assert len(on_slurm) >= 10
    assert all(sid.replace("_", "").isdigit() for sid in on_slurm.values())
    assert query(remote, "SELECT backend, status FROM runs") == [("slurm", "success")]
    # Nothing is left in the node-local scratch root (/tmp): the wrapper cleaned up.
    assert not any(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"wf-*/{'results'}"))
    # Reuse works as locally: a second run has nothing to do.
    assert "Nothing to be done" in wf_ok("run", "--backend", "slurm", cwd=remote).out


FAN = """
N = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]

rule all:
    input: "total.txt"

rule part:
    output: "parts/{i}.txt"
    shell: "echo part {wildcards.i} > {output}"

rule total:
    input: expand("parts/{i}.txt", i=N)
    output: "total.txt"
    threads: 2
    resources: mem_mb=64
    shell: "cat {input} > {output}"
"""


def test_wide_fan_out_goes_as_one_array_and_fans_in(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", FAN)
    wf_ok("run", "--backend", "slurm", cwd=d, timeout=180)
    assert (d / "total.txt").read_text() == "".join(f"part {i}\n" for i in range(12))
    ids = {job: sid for job, _a, _s, sid, _m in _attempts(d) if sid}
    parts = [sid for job, sid in ids.items() if job.startswith("part[")]
    assert len(parts) == 12
    # One sbatch for the twelve: tasks of one array.
    assert len({sid.split("_")[0] for sid in parts}) == 1 and all("_" in s for s in parts)
    queue = _queue(cluster)
    assert queue[ids["total"]][0] == "wf:total"
    # threads -> --cpus-per-task, mem_mb -> --mem, as Slurm saw them.
    job = cluster.show_job(ids["total"])
    assert job["NumCPUs"] == "2" and job["MinMemoryNode"] == "64M"


RETRY = """
rule all:
    input: "flaky.txt"

rule flaky:
    output: "flaky.txt"
    retries: 2
    shell: "if [ -e tried ]; then echo second > {output}; else touch tried; echo boom >&2; exit 7; fi"
"""

FAILS = """
rule all:
    input: "never.txt"

rule broken:
    output: "never.txt"
    log: "logs/broken.log"
    shell: "echo 'what went wrong' > {log}; exit 3"
"""


def test_a_failed_attempt_is_retried_and_a_failing_job_keeps_its_log(cluster, tmp_path):
    d = write_workflow(tmp_path / "retry", RETRY)
    wf_ok("run", "--backend", "slurm", cwd=d, timeout=180)
    rows = [r for r in _attempts(d) if r[0] == "flaky"]
    assert [(a, s) for _j, a, s, _sid, _m in rows] == [(1, "failed"), (2, "ok")]
    assert rows[0][3] != rows[1][3]  # two batch jobs
    assert (d / "flaky.txt").read_text() == "second\n"

    d = write_workflow(tmp_path / "fails", FAILS)
    r = wf("run", "--backend", "slurm", "--staging", "copy", cwd=d, timeout=180)
    assert r.code == 1, r.text
    assert "broken" in r.text
    assert (d / "logs" / "broken.log").read_text() == "what went wrong\n"  # copied back from the node
    assert not (d / "never.txt").exists()
    analysis = wf("analyze", cwd=d)
    assert "exited 3" in analysis.text or "exit code 3" in analysis.text
    sid = query(d, "SELECT external_id FROM attempts WHERE job_id='broken'")[0][0]
    assert f"(Slurm job {sid})" in analysis.out
    assert f"broken  (Slurm job {sid})" in wf("status", cwd=d).out


def test_a_corrupt_replica_is_caught_at_stage_in_before_any_consumer(cluster, tmp_path):
    bad = "0" * 64
    d = write_workflow(tmp_path / "w", f"""
replica "raw/in.txt":
    url: "store/in.txt"
    sha256: "{bad}"

rule all:
    input: "out.txt"

rule use:
    input: "raw/in.txt"
    output: "out.txt"
    shell: "cp {{input}} {{output}}"
""", {"store/in.txt": "the real bytes\n"})
    r = wf("run", "--backend", "slurm", cwd=d, timeout=180)
    assert r.code == 3, r.text
    assert "raw/in.txt" in r.text and bad in r.text
    assert not (d / "raw" / "in.txt").exists() and not (d / "out.txt").exists()
    jobs = {job for job, *_ in _attempts(d)}
    assert "use" not in jobs  # the consumer never ran
    events = query(d, "SELECT file, stage, expected, actual, host FROM integrity_events WHERE ok=0")
    assert events and events[0][0] == "raw/in.txt" and events[0][2] == bad and events[0][3] != bad


CHAIN = """
N = ["a", "b", "c", "d"]

rule all:
    input: expand("out/{n}.txt", n=N)

rule make:
    output: "mid/{n}.txt"
    shell: "seq 1 5000 | sed 's/^/{wildcards.n} /' > {output}"

rule use:
    input: "mid/{n}.txt"
    output: "out/{n}.txt"
    shell: "sort -r {input} > {output}"
"""


def test_chaos_on_staged_copies_is_all_caught_and_cured(cluster, tmp_path):
    clean = write_workflow(tmp_path / "clean", CHAIN)
    wf_ok("run", "-j", "2", cwd=clean)
    d = write_workflow(tmp_path / "chaos", CHAIN)
    r = wf("run", "--backend", "slurm", "--staging", "copy", "--retries", "4",
           "--chaos", "transfer=0.3,truncate=0.2,rest=0.5", "--chaos-seed", "11", cwd=d, timeout=300)
    assert r.code == 0, r.text
    assert tree_hashes(d, ("out",)) == tree_hashes(clean, ("out",))
    injected, detected = query(d, "SELECT count(*), sum(detected) FROM chaos")[0]
    assert injected > 0 and detected == injected


SLOW = """
SECS = config["secs"]

rule all:
    input: "slow.txt"

rule slow:
    output: "slow.txt"
    params: secs=SECS
    shell: "sleep {params.secs}; echo finished > {output}"
"""


def test_sigterm_cancels_the_runs_slurm_jobs(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", SLOW)
    proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm", "--config", "secs=120"), cwd=d,
                            env=wf_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sid = _running_job(cluster, "wf:slow")
        # wf status shows the running job with its Slurm id (booked within 0.25 s).
        _wait_for(lambda: f"slow  (Slurm job {sid})" in wf("status", cwd=d).out, timeout=10,
                  what="wf status to show the Slurm job")
        assert "Backend: slurm" in wf("status", cwd=d).out
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert _wait_for(lambda: _queue(cluster).get(sid, ("", "CANCELLED"))[1] == "CANCELLED",
                     timeout=30, what="the job to be cancelled")
    assert not (d / "slow.txt").exists()
    assert query(d, "SELECT status, exit_code FROM runs") == [("interrupted", 130)]


def test_reattach_after_kill_9_submits_nothing_twice(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", SLOW)
    before = set(_queue(cluster))  # earlier tests' jobs, still remembered by the controller
    proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm", "--config", "secs=4"), cwd=d,
                            env=wf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sid = _running_job(cluster, "wf:slow")
        proc.kill()  # SIGKILL: no chance to cancel anything
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert _queue(cluster, "RUNNING").get(sid, ("", ""))[1] == "RUNNING"  # Slurm runs on
    r = wf_ok("run", "--backend", "slurm", "--config", "secs=4", cwd=d, timeout=120)
    assert f"reattached to Slurm job {sid}" in r.text
    assert (d / "slow.txt").read_text() == "finished\n"
    # The job ran once: one batch job by that name, and the new run booked its attempt.
    named = [s for s, (name, _state) in _queue(cluster).items() if name == "wf:slow" and s not in before]
    assert named == [sid]
    assert [(job, sid2) for job, _a, _s, sid2, _m in _attempts(d) if job == "slow"] == [("slow", sid)]


LOSABLE = """
rule all:
    input: "lost.txt"

rule losable:
    output: "lost.txt"
    shell: "if [ -e started ]; then echo second > {output}; else touch started; sleep 120; fi"
"""


def test_a_job_lost_by_slurm_is_retried_and_reported(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", LOSABLE)
    proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm"), cwd=d, env=wf_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sid = _running_job(cluster, "wf:losable")
        _wait_for(lambda: (d / "started").exists(), what="the command to start")
        cluster.run("scancel", sid)  # an administrator cancels it
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err  # no retries: set, yet retried
    rows = _attempts(d)
    assert [(a, s) for _j, a, s, _sid, _m in rows if _j == "losable"] == [(1, "lost"), (2, "ok")]
    assert f"lost by Slurm: job {sid} cancelled" in rows[0][4]
    assert (d / "lost.txt").read_text() == "second\n"


def test_no_controller_is_a_clear_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    d = write_workflow(tmp_path / "w", SLOW)
    r = wf("run", "--backend", "slurm", "--config", "secs=0", cwd=d)
    assert r.code == 2, r.text
    assert "cannot run on Slurm" in r.err and "Traceback" not in r.text


def test_bundles_run_several_jobs_per_array_task_each_checked(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", FAN)
    wf_ok("run", "--backend", "slurm", "--slurm-bundle", "5", cwd=d, timeout=180)
    assert (d / "total.txt").read_text() == "".join(f"part {i}\n" for i in range(12))
    rows = [r for r in _attempts(d) if r[0].startswith("part[")]
    assert len(rows) == 12 and all(s == "ok" for _j, _a, s, _sid, _m in rows)
    tasks = sorted({sid for *_x, sid, _m in rows})
    assert len(tasks) == 3 and len({t.split("_")[0] for t in tasks}) == 1  # 5 + 5 + 2 in one array
    # Every job of a bundle still has its own record with its own checksums.
    hashed = query(d, "SELECT count(DISTINCT job_id) FROM integrity_events "
                      "WHERE job_id LIKE 'part[%' AND stage='output' AND ok=1")
    assert hashed == [(12,)]


def test_a_raw_input_corrupted_at_rest_is_caught_on_the_node(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", """
rule all:
    input: "out.txt"

rule use:
    input: "raw.txt"
    output: "out.txt"
    shell: "sort {input} > {output}"
""", {"raw.txt": "".join(f"line {i}\n" for i in range(1000))})
    wf_ok("run", "--backend", "slurm", cwd=d, timeout=120)
    recorded = dict(query(d, "SELECT lfn, sha256 FROM files WHERE lfn='raw.txt'"))["raw.txt"]
    flip_byte(d / "raw.txt", offset=100, keep_mtime=True)  # bit rot: same size, same mtime
    r = wf("run", "--backend", "slurm", "--forcerun", "use", cwd=d, timeout=120)
    assert r.code == 3, r.text
    assert "raw.txt" in r.text and recorded in r.text
    rows = query(d, "SELECT stage, expected, actual, host FROM integrity_events "
                    "WHERE ok=0 AND run_id=(SELECT max(id) FROM runs)")
    assert rows and rows[0][0] == "pre-job" and rows[0][1] == recorded and rows[0][2] != recorded
    # Caught by the wrapper inside the batch job, whose Slurm id is recorded.
    assert [sid for job, _a, s, sid, _m in _attempts(d) if job == "use" and s == "integrity"][0]


def test_many_short_jobs_are_bundled_automatically_unless_asked_not_to(cluster, tmp_path):
    ids = ", ".join(f'"{i}"' for i in range(100))
    wffile = FAN.replace(FAN.splitlines()[1], f"N = [{ids}]")
    # The cluster has 32 CPUs: 100 ready jobs of one rule go out as tasks of
    # two jobs each, so that 50 tasks (>= 2 x 32) still fill the cluster.
    d = write_workflow(tmp_path / "auto", wffile)
    wf_ok("run", "--backend", "slurm", cwd=d, timeout=300)
    tasks = {sid for job, _a, _s, sid, _m in _attempts(d) if job.startswith("part[")}
    assert len(tasks) == 50
    assert (d / "total.txt").read_text() == "".join(f"part {i}\n" for i in range(100))
    d = write_workflow(tmp_path / "one", wffile)
    wf_ok("run", "--backend", "slurm", "--slurm-bundle", "1", cwd=d, timeout=300)
    tasks = {sid for job, _a, _s, sid, _m in _attempts(d) if job.startswith("part[")}
    assert len(tasks) == 100


def test_a_launcher_failure_fails_the_jobs_instead_of_hanging(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", SLOW)
    (d / ".wf" / "slurm").mkdir(parents=True)
    (d / ".wf" / "slurm" / "specs").write_text("not a directory")  # specs cannot be written
    r = wf("run", "--backend", "slurm", "--config", "secs=0", cwd=d, timeout=60)
    assert r.code == 1, r.text
    rows = _attempts(d)
    assert rows and rows[0][0] == "slow" and rows[0][2] == "failed"
    assert "Slurm launcher error" in rows[0][4]


BUNDLED_SLOW = """
N = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

rule all:
    input: expand("s/{i}.txt", i=N)

rule nap:
    output: "s/{i}.txt"
    shell: "sleep 2; echo {wildcards.i} > {output}"
"""


def test_reattach_to_bundled_array_tasks_after_kill_9(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", BUNDLED_SLOW)
    before = set(_queue(cluster))
    proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm", "--slurm-bundle", "5"), cwd=d,
                            env=wf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _running_job(cluster, "wf:nap[10 jobs]")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    tasks = sorted(s for s in _queue(cluster) if s not in before)
    assert len(tasks) == 2  # two tasks of five
    r = wf_ok("run", "--backend", "slurm", "--slurm-bundle", "5", cwd=d, timeout=180)
    # Every job the killed run had not booked is reattached, none submitted again.
    booked = query(d, "SELECT count(*) FROM attempts WHERE run_id=1 AND status='ok'")[0][0]
    assert r.text.count("reattached to Slurm job") == 10 - booked
    assert sorted(p.read_text() for p in (d / "s").glob("*.txt")) == sorted(f"{i}\n" for i in range(10))
    # Nothing was submitted twice.
    assert sorted(s for s in _queue(cluster) if s not in before) == tasks


def test_container_jobs_on_slurm_get_the_image_staged_and_verified_on_the_node(cluster, tmp_path):
    from tests.e2e.test_containers import make_project

    make_project(tmp_path)
    r = wf("run", "--backend", "slurm", "--staging", "copy", cwd=tmp_path, timeout=180)
    assert r.code == 0, r.text
    assert (tmp_path / "counts" / "A.txt").read_text() == "inside 3\n"  # /etc/flavour of the image
    # Each batch job copied the image into its node-local scratch and verified the copy.
    rows = query(tmp_path, "SELECT a.external_id FROM integrity_events e JOIN attempts a "
                           "ON a.run_id=e.run_id AND a.job_id=e.job_id AND a.attempt=e.attempt "
                           "WHERE e.stage='stage-in' AND e.file='.wf/images/tools/tools.tar' AND e.ok=1 "
                           "AND e.job_id LIKE 'count%'")
    assert len(rows) == 2 and all(sid for (sid,) in rows)


def test_a_refused_submission_fails_at_once_with_sbatchs_words(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", SLOW)
    r = wf("run", "--backend", "slurm", "--slurm-partition", "nosuch", "--config", "secs=0",
           cwd=d, timeout=60)
    assert r.code == 1, r.text
    message = [m for job, _a, _s, _sid, m in _attempts(d) if job == "slow"][0]
    assert message.startswith("sbatch failed:") and "partition" in message.lower()


def test_a_job_that_finished_while_wf_was_down_and_slurm_forgot_is_booked_not_rerun(
        cluster, tmp_path, monkeypatch):
    slurmcluster = sys.modules["wf_tests_slurmcluster"]  # loaded by tests/conftest.py
    # A cluster of its own that forgets finished jobs after 2 s (MinJobAge).
    forgetful = slurmcluster.start(tmp_path / "cluster", cpus=4, min_job_age=2)
    try:
        for key, value in forgetful.env.items():
            monkeypatch.setenv(key, value)
        d = write_workflow(tmp_path / "w", SLOW)
        proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm", "--config", "secs=2"), cwd=d,
                                env=wf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sid = _running_job(forgetful, "wf:slow")
            time.sleep(0.6)  # wf books "running, Slurm job N" within 0.25 s
            proc.kill()
            proc.wait(timeout=30)
        finally:
            proc.kill()
        assert (d / "slow.txt").exists() or _wait_for(lambda: (d / "slow.txt").exists(), timeout=30)
        _wait_for(lambda: sid not in _queue(forgetful), timeout=60, what="Slurm to forget the job")
        r = wf_ok("run", "--backend", "slurm", "--config", "secs=2", cwd=d, timeout=60)
        assert f"reattached to Slurm job {sid}" in r.text
        assert [(job, s, x) for job, _a, s, x, _m in _attempts(d) if job == "slow"] == [("slow", "ok", sid)]
        assert not _queue(forgetful)  # nothing was submitted again
        assert (d / "slow.txt").read_text() == "finished\n"
    finally:
        forgetful.stop()


def test_status_tells_queued_from_running_jobs(cluster, tmp_path):
    d = write_workflow(tmp_path / "w", SLOW)
    # --begin holds the batch job in Slurm's queue (PENDING, reason BeginTime).
    proc = subprocess.Popen(wf_cmd("run", "--backend", "slurm", "--config", "secs=0",
                                   "--slurm-extra", "--begin=now+120"), cwd=d,
                            env=wf_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _wait_for(lambda: (r := wf("status", cwd=d).out) and "Queued:" in r and r, timeout=30,
                        what="wf status to show the queued job")
        sid = query(d, "SELECT external_id FROM jobs WHERE job_id='slow'")[0][0]
        assert f"slow  (Slurm job {sid})" in out and "1 queued" in out and "0 running" in out
        assert _queue(cluster, "PENDING")[sid][1] == "PENDING"
        data = json.loads(wf("status", "--json", cwd=d).out)
        assert data["counts"]["queued"] == 1 and data["queued_jobs"] == ["slow"]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
