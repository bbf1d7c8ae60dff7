#!/usr/bin/env python3
"""500 trivial jobs on a real Slurm cluster: `wf run --backend slurm` against raw sbatch.

Side by side, on the same cluster, in one run:

- raw: N jobs submitted one by one with `sbatch --wrap true`, then waited
  for by polling `squeue --states=all` (0.25 s) until every one is COMPLETED;
- wf: a Wffile of N independent jobs (`touch {output}`) plus a gathering
  `rule all` (a localrule, run here), with integrity full: each job runs the
  job wrapper on the node, which hashes its output and writes a record, and
  wf books every record.

The goal (issue 6) is wf's wall time at most 1.5x raw's. Without
SLURM_CONF in the environment the benchmark starts a private cluster with
tests/slurmcluster.py (and stops it); it waits until the controller has
forgotten nothing and the queue is empty before each measurement.

    python benchmarks/slurm_jobs.py                 # N=500: raw, then wf (automatic bundles, then one job per task)
    python benchmarks/slurm_jobs.py --jobs 500 --repeat 3 --bundles 1,4,16

--slurm-bundle N runs up to N ready jobs of a rule one after another in one
array task (each with its own spec, checks and record): fewer Python and
slurmstepd start-ups for many short jobs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5

def _wffile(n: int) -> str:
    ids = ", ".join(f'"{i}"' for i in range(n))
    return f"""\
IDS = [{ids}]

localrules: all

rule all:
    input: expand("out/{{i}}.txt", i=IDS)

rule touch:
    output: "out/{{i}}.txt"
    shell: "touch {{output}}"
"""


def _env(conf: str) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": conf}


def _queue_empty(env: dict[str, str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout
    return not out.strip()


def raw(n: int, env: dict[str, str], workdir: Path) -> float:
    """Submit n `sbatch --wrap true` one by one, wait until all completed; wall seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ids = []
    for _ in range(n):
        proc = subprocess.run(["sbatch", "--parsable", f"--chdir={workdir}", "--output=/dev/null",
                               "--wrap", "true"], env=env, capture_output=True, text=True, check=True)
        ids.append(proc.stdout.strip().split(";")[0])
    pending = set(ids)
    while pending:
        time.sleep(0.25)
        out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T", "--jobs=" + ",".join(sorted(pending))],
                             env=env, capture_output=True, text=True).stdout
        for line in out.splitlines():
            sid, _, state = line.partition("|")
            if state == "COMPLETED":
                pending.discard(sid)
            elif state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
                raise SystemExit(f"raw job {sid} ended {state}")
    return time.perf_counter() - t0


def wf(n: int, env: dict[str, str], workdir: Path, bundle: str = "auto") -> tuple[float, int]:
    """`wf run --backend slurm` on n touch jobs; (wall seconds, batch jobs Slurm saw)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Wffile").write_text(_wffile(n), encoding="utf-8")
    wf_exe = shutil.which("wf") or "wf"
    t0 = time.perf_counter()
    extra = [] if bundle == "auto" else ["--slurm-bundle", bundle]
    proc = subprocess.run([wf_exe, "run", "--backend", "slurm", *extra], cwd=workdir, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wf run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    made = len(list((workdir / "out").glob("*.txt")))
    if made != n:
        raise SystemExit(f"wf made {made} of {n} outputs")
    import sqlite3
    con = sqlite3.connect(workdir / ".wf" / "wf.db")
    ids = {r[0] for r in con.execute("SELECT external_id FROM attempts WHERE external_id IS NOT NULL")}
    con.close()
    return wall, len(ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--bundles", default="auto,1", help="--slurm-bundle values to run wf with (default auto,1; auto: the option left out)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wf-slurm-bench-"))
    cluster = None
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        sys.path.insert(0, str(REPO / "tests"))
        import slurmcluster

        cluster = slurmcluster.start(tmp / "cluster")
        conf = str(cluster.conf)
        print(f"started a private cluster ({cluster.cpus} CPUs on node {cluster.node}) in {cluster.startup_seconds:.1f} s")
    env = _env(conf)
    try:
        print(f"{args.jobs} trivial jobs, {os.cpu_count()} cores")
        for r in range(args.repeat):
            while not _queue_empty(env):
                time.sleep(0.5)
            t_raw = raw(args.jobs, env, tmp / f"raw{r}")
            while not _queue_empty(env):
                time.sleep(0.5)
            print(f"run {r + 1}: raw sbatch --wrap true {t_raw:6.2f} s ({args.jobs / t_raw:5.1f} jobs/s)")
            for bundle in args.bundles.split(","):
                while not _queue_empty(env):
                    time.sleep(0.5)
                t_wf, tasks = wf(args.jobs, env, tmp / f"wf{r}-{bundle}", bundle)
                ratio = t_wf / t_raw
                print(f"       wf --backend slurm --slurm-bundle {bundle}: {t_wf:6.2f} s "
                      f"({args.jobs / t_wf:5.1f} jobs/s, {tasks} batch jobs/array tasks) | wf/raw {ratio:.2f} "
                      f"(goal <= {GOAL_RATIO}) {'MET' if ratio <= GOAL_RATIO else 'MISSED'}")
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
