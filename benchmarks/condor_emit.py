#!/usr/bin/env python3
"""DAGMan emitter benchmark: time `write_submit_dir` on a 100,000-job plan.

The workflow is benchmarks/dryrun.py's (N samples, three rules per sample,
an aggregate and `rule all`: 3N + 2 jobs, all to run). It is planned
in-process first (not timed), then written as an HTCondor submit directory
(timed); the directory is then checked: jobs in the DAG, files written, the
largest directory.

    python benchmarks/condor_emit.py                  # 100,001 jobs
    python benchmarks/condor_emit.py --sizes 1001,10001,100001 --repeat 3

Goals: 100,000 jobs in at most 30 s; no directory with more than ~1,000
files (a few thousand at the very most). Creating 100,000 files is mostly the
file system's time: `cpu s` (this process, kernel included) tells a slow disk
from slow code, and `--dir /dev/shm/…` measures on tmpfs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from dryrun import WORKFLOW, parse_sizes, samples_for  # noqa: E402

from dsl.parse import load_workflow  # noqa: E402
from planner.resolve import build_plan  # noqa: E402
from runtime.condor import write_submit_dir  # noqa: E402

GOAL_JOBS, GOAL_SECONDS, GOAL_DIR_ENTRIES = 100_001, 30.0, 1_000
WORK = HERE / "work"


def prepare(root: Path, n: int) -> Path:
    d = root / f"wf-{n}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("samples:\n" + "".join(f"  - s{i}\n" for i in range(n)))
    (d / "Wffile").write_text(WORKFLOW)
    return d


def survey(folder: Path) -> tuple[int, int, str, int]:
    """(files, bytes, the directory with most entries, its entry count)."""
    files = size = 0
    widest, most = "", 0
    for dirpath, dirnames, filenames in os.walk(folder):
        files += len(filenames)
        size += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
        entries = len(dirnames) + len(filenames)
        if entries > most:
            widest, most = os.path.relpath(dirpath, folder), entries
    return files, size, widest, most


def bench(root: Path, n: int, repeat: int) -> tuple[int, float, float, float, tuple[int, int, str, int]]:
    d = prepare(root, n)
    t0 = time.perf_counter()
    plan = build_plan(load_workflow(str(d / "Wffile")), str(d))
    plan_s = time.perf_counter() - t0
    jobs = sum(1 for _ in plan.to_run())
    if jobs != 3 * n + 2:
        raise SystemExit(f"error: planned {jobs:,} jobs, expected {3 * n + 2:,}")
    best, cpu = float("inf"), 0.0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        dag = write_submit_dir(plan, d / "condor")
        if time.perf_counter() - t0 < best:
            best, cpu = time.perf_counter() - t0, time.process_time() - c0
    nodes = sum(1 for line in open(dag) if line.startswith("JOB "))
    if nodes != jobs:
        raise SystemExit(f"error: the DAG has {nodes:,} JOB lines for {jobs:,} jobs")
    return jobs, plan_s, best, cpu, survey(d / "condor")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes(str(GOAL_JOBS)),
                    help="comma list of job counts, each rounded up to 3N+2 (default: 100001)")
    ap.add_argument("--repeat", type=int, default=1, help="writes per size; the fastest counts")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--dir", type=Path, default=WORK,
                    help="where to write (default benchmarks/work; file creation speed depends on it)")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="condor-emit-", dir=args.dir))
    rows = []
    try:
        for size in args.sizes:
            rows.append(bench(root, samples_for(size), args.repeat))
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'jobs':>9} {'plan s':>7} {'emit s':>7} {'cpu s':>7} {'µs/job':>7} {'files':>9} {'MiB':>7}"
          f"  widest directory")
    for jobs, plan_s, emit_s, cpu_s, (files, size, widest, most) in rows:
        goals = []
        if jobs >= GOAL_JOBS:
            goals.append(f"goal <= {GOAL_SECONDS:.0f} s: {'met' if emit_s <= GOAL_SECONDS else 'MISSED'}")
        goals.append(f"goal <= {GOAL_DIR_ENTRIES:,} entries: {'met' if most <= GOAL_DIR_ENTRIES else 'MISSED'}")
        print(f"{jobs:>9,} {plan_s:>7.2f} {emit_s:>7.2f} {cpu_s:>7.2f} {emit_s / jobs * 1e6:>7.1f} {files:>9,} "
              f"{size / (1 << 20):>7.1f}  {widest} ({most:,} entries); {'; '.join(goals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
