#!/usr/bin/env python3
"""Tiny-job throughput: `wf run -j 2` on a Wffile against `snakemake -j 2` on a Snakefile.

The same workflow is written once and saved as both files, then run for real
(not a dry run) in a fresh directory per run, so every run plans, executes
and records every job. Jobs are tiny (`echo i > out/i.txt`), so the figure
is the tool's own cost per job: jobs / wall seconds.

- flat (default): N - 1 independent jobs `rule touch` (ids from config.yaml)
  plus `rule all` over them: N jobs, N - 1 edges.
- --chain: three rules per sample (a -> b -> c) plus `rule all` over the last
  ones: 3S + 1 jobs and as many edges (sizes round up to the next 3S + 1).

Each tool runs as a child process with its output to a file; wall time, CPU
time (the tool and every job it spawned) and peak RSS come from os.wait4.
After each run every output is counted and read back, so a run that skipped
work cannot look fast.

    python benchmarks/throughput.py                          # wf 1001,3002,10001; Snakemake 1001,3002
    python benchmarks/throughput.py --chain
    python benchmarks/throughput.py --sizes 1001 --snakemake-sizes 1001 --repeat 3
    python benchmarks/throughput.py --snakemake-sizes none   # wf alone

Snakemake comes from benchmarks/.venv (created on first use, see dryrun.py);
wf is the project's console script on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dryrun import (  # noqa: E402
    WORK,
    BenchError,
    Measure,
    check_exit,
    child_env,
    measure,
    snakemake_exe,
    wf_exe,
)

GOAL_RATE, GOAL_RATE_JOBS = 280.0, 1_001  # wf jobs/s at 1,001 jobs
GOAL_SPEEDUP = 10.0  # wf vs Snakemake at GOAL_RATE_JOBS
GOAL_FLAT_JOBS = 10_001  # wf's rate there must match its rate at GOAL_RATE_JOBS ...
GOAL_FLAT_RATIO = 0.9  # ... within 10 %

# Valid as a Wffile and as a Snakefile; both files get exactly this text.
FLAT = """\
configfile: "config.yaml"

IDS = config["ids"]

rule all:
    input: expand("out/{i}.txt", i=IDS)

rule touch:
    output: "out/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
"""

CHAIN = """\
configfile: "config.yaml"

IDS = config["ids"]

rule all:
    input: expand("c/{i}.txt", i=IDS)

rule a:
    output: "a/{i}.txt"
    shell: "echo {wildcards.i} > {output}"

rule b:
    input: "a/{i}.txt"
    output: "b/{i}.txt"
    shell: "cat {input} > {output}"

rule c:
    input: "b/{i}.txt"
    output: "c/{i}.txt"
    shell: "cat {input} > {output}"
"""


@dataclass(frozen=True)
class Shape:
    name: str
    text: str
    per_id: int  # jobs per id, besides `rule all`
    dirs: tuple[str, ...]  # output folders, each with one file per id

    def ids_for(self, jobs: int) -> int:
        """Smallest number of ids giving at least ``jobs`` jobs."""
        return max(1, -(-(jobs - 1) // self.per_id))

    def jobs(self, ids: int) -> int:
        return self.per_id * ids + 1


SHAPES = {
    "flat": Shape("flat", FLAT, 1, ("out",)),
    "chain": Shape("chain", CHAIN, 3, ("a", "b", "c")),
}


@dataclass(frozen=True)
class Row:
    shape: str
    tool: str
    jobs: int
    m: Measure
    run_phase: float | None  # wf: its run as it records it (after planning, to the end)

    @property
    def rate(self) -> float:
        return self.jobs / self.m.wall


# --- running ---------------------------------------------------------------


def prepare(d: Path, shape: Shape, filename: str, ids: int) -> None:
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("ids:\n" + "".join(f"  - {i}\n" for i in range(ids)))
    (d / filename).write_text(shape.text)


def verify_outputs(d: Path, shape: Shape, ids: int, tool: str) -> None:
    """Every output exists with the right bytes, and no other file sits beside them."""
    want = {f"{i}.txt" for i in range(ids)}
    for sub in shape.dirs:
        folder = d / sub
        found = {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
        if found != want:
            missing, extra = len(want - found), len(found - want)
            raise BenchError(
                f"{tool}: {folder} holds {len(found):,} files, expected {ids:,} "
                f"({missing:,} missing, {extra:,} unexpected)"
            )
        for i in range(ids):
            text = (folder / f"{i}.txt").read_text()
            if text != f"{i}\n":
                raise BenchError(f"{tool}: {folder / f'{i}.txt'} holds {text!r}, expected '{i}\\n'")


def snakemake_argv(exe: Path) -> list[str]:
    # --quiet (no argument): no progress or rule lines, the same work.
    return [str(exe), "-j", "2", "--snakefile", "Snakefile", "--quiet"]


def wf_argv(exe: str, integrity: str) -> list[str]:
    return [exe, "run", "-j", "2", "--integrity", integrity]


def wf_run_phase(exe: str, d: Path) -> tuple[float, int] | None:
    """(run wall seconds as wf recorded them, jobs succeeded) from `wf statistics --json`."""
    out = subprocess.run(
        [exe, "statistics", "--json"], cwd=d, capture_output=True, text=True, check=False
    )
    try:
        doc = json.loads(out.stdout)
        succeeded = doc["summary"]["all"]["succeeded"]
        return float(doc["wall_seconds"]), int(succeeded)
    except (ValueError, KeyError, TypeError):
        return None


def run_once(
    tool: str, argv: list[str], d: Path, shape: Shape, ids: int, args: argparse.Namespace
) -> Row:
    filename = "Wffile" if tool == "wf" else "Snakefile"
    prepare(d, shape, filename, ids)
    log = d / f"{tool}.log"
    m = measure(argv, d, log, None, args.timeout)
    check_exit(tool, m, log)
    verify_outputs(d, shape, ids, tool)
    phase = None
    if tool == "wf":
        got = wf_run_phase(argv[0], d)
        if got is not None:
            phase, succeeded = got
            if succeeded != shape.jobs(ids):
                raise BenchError(
                    f"wf statistics says {succeeded:,} jobs succeeded, expected {shape.jobs(ids):,}"
                )
    return Row(shape.name, tool, shape.jobs(ids), m, phase)


def bench(
    root: Path,
    tool: str,
    argv: list[str],
    shape: Shape,
    ids: int,
    args: argparse.Namespace,
    repeat: int,
    label: str,
) -> Row:
    """Run `repeat` times, each in a fresh directory; the fastest run."""
    best: Row | None = None
    for k in range(repeat):
        d = root / f"{label}-{shape.name}-{tool}-{ids}-{k}"
        row = run_once(tool, argv, d, shape, ids, args)
        load = os.getloadavg()[0]
        print(
            f"{label}: {tool:<9} {shape.name:<5} {row.jobs:>7,} jobs {row.m.wall:8.2f} s wall "
            f"{row.m.cpu:8.2f} s cpu {row.rate:8.1f} jobs/s  (load {load:.2f})",
            file=sys.stderr,
        )
        if best is None or row.m.wall < best.m.wall:
            best = row
        # Run directories stay until the end: deleting tens of thousands of files right
        # before a run slows that run's file creation on some file systems (ext4 without
        # a journal skips recently deleted inodes one by one), charging it to the next tool.
    assert best is not None
    return best


def wf_source(exe: str, cwd: Path) -> str:
    """The folder `exe` imports the project from (the parent of its `runtime` package)."""
    try:
        first = Path(exe).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        first = ""
    interp = first[2:].split() if first.startswith("#!") else [sys.executable]
    code = "import os, runtime; print(os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__))))"
    out = subprocess.run(
        [*interp, "-c", code], cwd=cwd, capture_output=True, text=True, env=child_env()
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def describe_source(exe: str, cwd: Path) -> str:
    """'wf code: DIR', with a warning when DIR is not this checkout."""
    src = wf_source(exe, cwd)
    here = Path(__file__).resolve().parent.parent
    if not src:
        return "wf code: unknown (could not import runtime with wf's interpreter)"
    if Path(src).resolve() != here:
        return (
            f"wf code: {src} -- NOT this checkout ({here}): the editable install points "
            f"elsewhere; set PYTHONPATH={here} or reinstall with pip install -e ."
        )
    return f"wf code: {src}"


def file_system(path: Path) -> str:
    """'TYPE OPTIONS' of the mount holding path, from /proc/mounts ('' where unknown)."""
    best, found = "", ""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt = parts[1]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, found = mnt, f"{parts[2]} {parts[3]}"
    return found


# --- report ----------------------------------------------------------------


def print_table(rows: list[Row], integrity: str, fs: str, source: str) -> None:
    print()
    print(
        f"{'shape':<6} {'jobs':>7}  {'tool':<10} {'wall s':>8} {'cpu s':>8} {'MiB':>7} "
        f"{'jobs/s':>8} {'ms/job':>7} {'run s':>7} {'speed-up':>9}  goal"
    )
    by_key: dict[tuple[str, int], dict[str, Row]] = {}
    for r in rows:
        by_key.setdefault((r.shape, r.jobs), {})[r.tool] = r
    for (shape, jobs), tools in sorted(by_key.items()):
        sm = tools.get("snakemake")
        first = True
        for r in sorted(tools.values(), key=lambda r: r.tool != "snakemake"):
            speedup = sm.m.wall / r.m.wall if sm and r.tool == "wf" else None
            lead = f"{shape:<6} {jobs:>7,}" if first else " " * 14
            notes = []
            if r.tool == "wf" and shape == "flat" and jobs == GOAL_RATE_JOBS:
                ok = "met" if r.rate >= GOAL_RATE else "MISSED"
                notes.append(f">= {GOAL_RATE:.0f} jobs/s: {ok}")
                if speedup is not None:
                    ok = "met" if speedup >= GOAL_SPEEDUP else "MISSED"
                    notes.append(f">= {GOAL_SPEEDUP:.0f}x Snakemake: {ok}")
            su = f"{speedup:.1f}x" if speedup is not None else ""
            phase = f"{r.run_phase:7.2f}" if r.run_phase is not None else f"{'':>7}"
            print(
                (
                    f"{lead}  {r.tool:<10} {r.m.wall:>8.2f} {r.m.cpu:>8.2f} {r.m.rss_mib:>7.1f} "
                    f"{r.rate:>8.1f} {1000 * r.m.wall / r.jobs:>7.2f} {phase} {su:>9}  "
                    + "; ".join(notes)
                ).rstrip()
            )
            first = False
    print()
    # How each tool's rate holds up as the DAG grows, against its smallest size.
    for shape in sorted({r.shape for r in rows}):
        for tool in ("wf", "snakemake"):
            mine = sorted(
                (r for r in rows if r.shape == shape and r.tool == tool), key=lambda r: r.jobs
            )
            if len(mine) < 2:
                continue
            base = mine[0]
            for r in mine[1:]:
                ratio = r.rate / base.rate
                note = ""
                if (
                    tool == "wf"
                    and shape == "flat"
                    and base.jobs == GOAL_RATE_JOBS
                    and r.jobs == GOAL_FLAT_JOBS
                ):
                    ok = "met" if ratio >= GOAL_FLAT_RATIO else "MISSED"
                    note = f"  goal >= {GOAL_FLAT_RATIO:.2f} (flat rate): {ok}"
                print(
                    f"rate ratio {shape} {tool}: {r.jobs:,} / {base.jobs:,} jobs = "
                    f"{r.rate:.1f} / {base.rate:.1f} jobs/s = {ratio:.2f}{note}"
                )
    print()
    print(
        f"Goals: wf >= {GOAL_RATE:.0f} jobs/s and >= {GOAL_SPEEDUP:.0f}x Snakemake at "
        f"{GOAL_RATE_JOBS:,} jobs (flat); wf's rate at {GOAL_FLAT_JOBS:,} jobs within "
        f"{100 * (1 - GOAL_FLAT_RATIO):.0f} % of its rate at {GOAL_RATE_JOBS:,}."
    )
    print(
        f"wf: wf run -j 2 --integrity {integrity}; snakemake: snakemake -j 2 --quiet. "
        "jobs/s = jobs / wall of the whole command (start-up, parse, plan, run, exit); "
        "cpu includes every job's shell; run s = wf's own run phase (wf statistics wall_seconds)."
    )
    if fs:
        print(f"Run directories on {fs}.")
    if source:
        print(source)


def parse_sizes(text: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of job counts: {text!r}") from None
    if min(sizes, default=2) < 2:
        raise argparse.ArgumentTypeError("job counts must be at least 2")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("1001,3002,10001"),
        help="wf's job counts, comma list or 'none' (default: 1001,3002,10001)",
    )
    ap.add_argument(
        "--snakemake-sizes",
        type=parse_sizes,
        default=parse_sizes("1001,3002"),
        help="Snakemake's job counts, comma list or 'none' (default: 1001,3002; "
        "10001 takes minutes)",
    )
    ap.add_argument(
        "--chain",
        action="store_true",
        help="three chained rules per id (3S+1 jobs) instead of independent jobs",
    )
    ap.add_argument(
        "--integrity",
        choices=("full", "none"),
        default="full",
        help="wf's integrity dial (default: full, wf's default)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per tool and size, each in a fresh directory; the fastest counts",
    )
    ap.add_argument(
        "--timeout", type=float, default=3600, help="seconds per child run (default 3600)"
    )
    ap.add_argument(
        "--dir",
        type=Path,
        default=WORK,
        help="where the run directories go (default: benchmarks/work); e.g. /dev/shm "
        "to take the file system's metadata costs out",
    )
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    shape = SHAPES["chain" if args.chain else "flat"]

    try:
        smk = snakemake_exe() if args.snakemake_sizes else None
        wf = wf_exe() if args.sizes else None
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tools: list[tuple[str, list[str], list[int]]] = []
    if wf:
        tools.append(("wf", wf_argv(wf, args.integrity), args.sizes))
        print(f"wf:        {' '.join(tools[-1][1])}", file=sys.stderr)
    if smk:
        tools.append(("snakemake", snakemake_argv(smk), args.snakemake_sizes))
        print(f"snakemake: {' '.join(tools[-1][1])}", file=sys.stderr)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)

    args.dir.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="throughput-", dir=args.dir))
    print(
        f"run directories: {root} ({file_system(root) or 'file system unknown'})", file=sys.stderr
    )
    source = describe_source(wf, root) if wf else ""
    if source:
        print(source, file=sys.stderr)
    rows: list[Row] = []
    try:
        # A tiny warm-up per tool: loads its modules into the page cache, fails fast if broken.
        for tool, cmd, _ in tools:
            bench(root, tool, cmd, shape, 3, args, repeat=1, label="warm-up")
        # Sizes interleaved across tools, so both see the same stretch of machine load.
        for requested in sorted({s for _, _, sizes in tools for s in sizes}):
            ids = shape.ids_for(requested)
            if shape.jobs(ids) != requested:
                print(
                    f"{requested:,} jobs requested: using {ids:,} ids, {shape.jobs(ids):,} jobs",
                    file=sys.stderr,
                )
            for tool, cmd, sizes in tools:
                if requested in sizes:
                    rows.append(bench(root, tool, cmd, shape, ids, args, args.repeat, "measured"))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        args.keep = True  # the logs named above stay readable
        if rows:
            print_table(rows, args.integrity, file_system(args.dir), source)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
            if args.dir == WORK:
                try:
                    WORK.rmdir()
                except OSError:
                    pass
    print_table(rows, args.integrity, file_system(args.dir), source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
