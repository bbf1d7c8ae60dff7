"""The private Slurm cluster of tests/slurmcluster.py works for real.

Real sbatch/squeue/scontrol/scancel against real daemons: jobs run, write
files, report exit codes, use several CPUs and memory, run concurrently and
can be cancelled; a second cluster runs beside the first and stops cleanly.
Timings are printed (``pytest -s`` or ``-rA`` shows them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SLURMCLUSTER = Path(__file__).resolve().parents[1] / "slurmcluster.py"


def _times(jobs: list[dict[str, str]], key: str) -> list[float]:
    return [time.mktime(time.strptime(j[key], "%Y-%m-%dT%H:%M:%S")) for j in jobs]


def test_cluster_is_up_and_private(slurm):
    print(
        f"\nstart-up: node idle after {slurm.idle_seconds:.2f}s, "
        f"first scheduler run after {slurm.startup_seconds:.2f}s"
    )
    info = slurm.show_node()
    assert info["State"] == "IDLE"
    assert info["CPUTot"] == str(slurm.cpus) == "32"
    assert info["RealMemory"] == "4000"
    lines = slurm.run("scontrol", "show", "config").stdout.splitlines()
    conf = dict(line.split(" = ", 1) for line in lines if " = " in line)
    conf = {k.strip(): v.strip() for k, v in conf.items()}
    assert conf["SLURM_CONF"] == str(slurm.conf)
    assert conf["SlurmctldPort"] == str(slurm.ports["slurmctld"])
    assert conf["SlurmdPort"] == str(slurm.ports["slurmd"])
    assert conf["StateSaveLocation"] == str(slurm.base_dir / "state")
    assert conf["SchedulerParameters"] == "batch_sched_delay=0,sched_min_interval=0"
    assert slurm.run("sinfo", "-h", "-o", "%P").stdout.strip() == slurm.partition + "*"
    assert json.loads((slurm.base_dir / "pids.json").read_text())["pids"] == slurm.pids


def test_job_writes_file_and_exits_zero(slurm, tmp_path):
    t0 = time.monotonic()
    job = slurm.sbatch("--wrap", "echo hello from $SLURM_JOB_ID > out.txt", cwd=tmp_path)
    info = slurm.wait_job(job, timeout=30, interval=0.02)
    latency = time.monotonic() - t0
    print(f"\nlatency of one trivial job, sbatch to COMPLETED seen by squeue: {latency:.2f}s")
    assert info["JobState"] == "COMPLETED", info
    assert info["ExitCode"] == "0:0"
    assert info["WorkDir"] == str(tmp_path)
    assert (tmp_path / "out.txt").read_text() == f"hello from {job}\n"
    assert (tmp_path / f"slurm-{job}.out").exists()
    # squeue without -t all lists only live jobs; with it, finished ones too.
    assert slurm.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == ""
    assert slurm.state(job) == "COMPLETED"


def test_failing_job_reports_its_exit_code(slurm, tmp_path):
    job = slurm.sbatch("--wrap", "echo failing; exit 3", cwd=tmp_path)
    info = slurm.wait_job(job, timeout=30)
    assert info["JobState"] == "FAILED"
    assert info["Reason"] == "NonZeroExitCode"
    assert info["ExitCode"] == "3:0"
    # squeue --json works in 22.05 (scontrol --json does not) but ignores
    # -j/-t/-u filters: it lists every job; exit_code is the raw wait status.
    data = json.loads(slurm.run("squeue", "--json", "-j", job).stdout)
    (record,) = [j for j in data["jobs"] if str(j["job_id"]) == job]
    assert record["job_state"] == "FAILED"
    assert record["exit_code"] == 3 << 8


def test_cpus_and_memory_requests(slurm, tmp_path):
    job = slurm.sbatch("--cpus-per-task", "2", "--mem", "100", "--wrap", "echo ok", cwd=tmp_path)
    info = slurm.wait_job(job, timeout=30)
    assert info["JobState"] == "COMPLETED"
    assert info["NumCPUs"] == "2"
    assert "mem=100M" in info["TRES"]
    # More memory than the node has is refused at submission.
    r = slurm.run(
        "sbatch",
        "--parsable",
        "--mem",
        "5000",
        f"--chdir={tmp_path}",
        "--wrap",
        "true",
        check=False,
    )
    assert r.returncode != 0
    assert "Memory specification can not be satisfied" in r.stderr


def test_twenty_jobs_run_concurrently(slurm, tmp_path):
    t0 = time.monotonic()
    jobs = [
        slurm.sbatch("--wrap", f"sleep 3; echo {i} > done.{i}", cwd=tmp_path) for i in range(20)
    ]
    submitted = time.monotonic() - t0
    infos = [slurm.wait_job(j, timeout=30, interval=0.2) for j in jobs]
    wall = time.monotonic() - t0
    print(f"\n20 x 'sleep 3': submitted in {submitted:.2f}s, all done after {wall:.2f}s")
    assert all(i["JobState"] == "COMPLETED" for i in infos), [i["JobState"] for i in infos]
    assert sorted(p.name for p in tmp_path.glob("done.*")) == sorted(f"done.{i}" for i in range(20))
    # All 20 were running at the same moment: the last start precedes the first end.
    assert max(_times(infos, "StartTime")) < min(_times(infos, "EndTime"))
    assert wall < 15


def test_scancel_ends_a_running_job(slurm, tmp_path):
    job = slurm.sbatch("--wrap", "echo $$ > pid; exec sleep 60", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while slurm.state(job) != "RUNNING" or not (tmp_path / "pid").exists():
        assert time.monotonic() < deadline, slurm.state(job)
        time.sleep(0.05)
    pid = int((tmp_path / "pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    t0 = time.monotonic()
    slurm.run("scancel", job)
    info = slurm.wait_job(job, timeout=30)
    print(f"\nscancel to CANCELLED: {time.monotonic() - t0:.2f}s")
    assert info["JobState"] == "CANCELLED"
    assert info["ExitCode"] == "0:15"  # killed by SIGTERM
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _proc_state(pid) != "Z":
        assert time.monotonic() < deadline, f"sleep {pid} survived scancel"
        time.sleep(0.05)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def test_hundred_trivial_jobs(slurm, tmp_path):
    """Benchmark: 100 ``sbatch --wrap true``, waited for by polling squeue."""
    t0 = time.monotonic()
    jobs = [slurm.sbatch("--wrap", "true", cwd=tmp_path) for _ in range(100)]
    submitted = time.monotonic() - t0
    polls, squeue_time = 0, 0.0
    while True:
        t = time.monotonic()
        left = slurm.job_ids()
        squeue_time += time.monotonic() - t
        polls += 1
        if not left:
            break
        assert time.monotonic() - t0 < 60, f"{len(left)} jobs left"
        time.sleep(0.1)
    wall = time.monotonic() - t0
    states = slurm.run("squeue", "-h", "-t", "all", "-j", ",".join(jobs), "-o", "%T").stdout
    print(
        f"\n100 x 'sbatch --wrap true': submitted in {submitted:.2f}s "
        f"({submitted * 10:.1f} ms per sbatch), all done after {wall:.2f}s; "
        f"squeue took {squeue_time / polls * 1000:.1f} ms per call"
    )
    assert states.split() == ["COMPLETED"] * 100


def test_second_cluster_beside_the_first(slurm, tmp_path):
    """The script interface: start detaches, a second cluster is independent, stop cleans up."""
    base = tmp_path / "second"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(SLURMCLUSTER), "start", str(base), "--cpus", "4"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == 0, r.stderr
    print(f"\nsecond cluster via the script: up in {time.monotonic() - t0:.2f}s")
    assert r.stdout == f"export SLURM_CONF={base / 'slurm.conf'}\n"
    record = json.loads((base / "pids.json").read_text())
    pids = record["pids"]
    assert set(pids) == {"munged", "slurmctld", "slurmd"}
    assert set(record["ports"].values()).isdisjoint(slurm.ports.values())
    env2 = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}

    def run2(*argv: str) -> str:
        return subprocess.run(argv, env=env2, capture_output=True, text=True, check=True).stdout

    assert run2("sinfo", "-h", "-o", "%C").strip() == "0/4/0/4"
    # A job in the second cluster, its process killed only by stop: slurmd is
    # killed first, so the job step outlives it and stop must find it.
    job = run2(
        "sbatch", "--parsable", f"--chdir={tmp_path}", "--wrap", "echo $$ > pid2; exec sleep 120"
    ).strip()
    held = slurm.sbatch("--hold", "--wrap", "true", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid2").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job_pid = int((tmp_path / "pid2").read_text())
    # Each cluster lists its own jobs only.
    assert run2("squeue", "-h", "-o", "%i").split() == [job]
    assert slurm.job_ids() == [held]

    os.kill(pids["slurmd"], 9)
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(SLURMCLUSTER), "stop", str(base)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    print(f"second cluster stopped in {time.monotonic() - t0:.2f}s")
    for name, pid in [*pids.items(), ("job", job_pid)]:
        assert _proc_state(pid) in ("", "Z"), f"{name} ({pid}) still running"
    assert not (base / "pids.json").exists()
    # The first cluster is untouched.
    assert slurm.run("sinfo", "-h", "-n", slurm.node, "-o", "%t").stdout.strip() == "idle"
    assert slurm.job_ids() == [held]
