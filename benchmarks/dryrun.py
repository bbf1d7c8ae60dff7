#!/usr/bin/env python3
"""Dry-run benchmark: `wf run -n` on a Wffile against `snakemake -n` on a Snakefile.

The same workflow is written once and saved as both files: N samples from
config.yaml, three rules per sample (make -> count -> norm), an aggregate over
all samples and `rule all`, so 3N + 2 jobs, all of which would run. Each tool
runs as a child process; wall time, CPU time and peak RSS come from os.wait4.

    python benchmarks/dryrun.py                        # 1,001 and 10,001 jobs, both tools
    python benchmarks/dryrun.py --sizes 100001         # Snakemake: ~3 min, 1.4 GB
    python benchmarks/dryrun.py --sizes 1000002 --wf-only

Snakemake comes from benchmarks/.venv (created on first use); wf is the
project's console script on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
WORK = HERE / "work"
SNAKEMAKE_VERSION = "9.27.1"

GOAL_SPEEDUP, GOAL_SPEEDUP_JOBS = 20.0, 10_001
GOAL_BIG_JOBS, GOAL_BIG_SECONDS, GOAL_BIG_MIB = 1_000_002, 60.0, 4 * 1024

# Valid as a Wffile and as a Snakefile; both files get exactly this text.
WORKFLOW = """\
configfile: "config.yaml"

SAMPLES = config["samples"]

rule all:
    input: "summary.txt"

rule aggregate:
    input: expand("norm/{s}.txt", s=SAMPLES)
    output: "summary.txt"
    shell: "cat {input} > {output}"

rule make:
    output: "raw/{s}.txt"
    shell: "echo {wildcards.s} > {output}"

rule count:
    input: "raw/{s}.txt"
    output: "counts/{s}.txt"
    shell: "wc -c < {input} > {output}"

rule norm:
    input: "counts/{s}.txt"
    output: "norm/{s}.txt"
    shell: "cat {input} > {output}"
"""
RULES = ("all", "aggregate", "make", "count", "norm")


class BenchError(Exception):
    """A tool failed or reported a job count other than 3N + 2."""


@dataclass(frozen=True)
class Measure:
    wall: float  # seconds
    cpu: float  # user + system seconds
    rss_mib: float  # peak resident set of the process tree
    exit_code: int


@dataclass(frozen=True)
class Row:
    tool: str
    jobs: int
    samples: int
    m: Measure


def samples_for(jobs: int) -> int:
    """Smallest N with 3N + 2 >= jobs."""
    return max(1, -(-(jobs - 2) // 3))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Without bytecode caches wf would recompile its modules on every run,
    # while pip precompiled Snakemake's: not a fair start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def measure(
    argv: list[str], cwd: Path, stdout: Path, stderr: Path | None, timeout: float
) -> Measure:
    """Run argv in cwd, output to files; wall, CPU and peak RSS of the child and its children."""
    with open(stdout, "wb") as out, open(stderr or os.devnull, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if stderr is None else err,
            env=child_env(),
            start_new_session=True,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: the child is in its own session and would live on
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        raise BenchError(f"{argv[0]} timed out after {timeout:.0f} s in {cwd}")
    # ru_maxrss is in KiB on Linux; wait4 reports the max over the child and its waited-for children.
    return Measure(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, code)


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join("    | " + line for line in text[-lines:])


def check_exit(tool: str, m: Measure, log: Path) -> None:
    if m.exit_code != 0:
        raise BenchError(f"{tool} exited with {m.exit_code}; last lines of {log}:\n{tail(log)}")


def check_count(tool: str, found: int, expected: int, log: Path) -> None:
    if found != expected:
        raise BenchError(f"{tool} plans {found:,} jobs, expected 3N+2 = {expected:,}; see {log}")


# --- Snakemake -------------------------------------------------------------


def snakemake_exe() -> Path:
    """benchmarks/.venv/bin/snakemake, creating the venv on first use."""
    exe = VENV / "bin" / "snakemake"
    if not exe.exists():
        print(
            f"benchmarks/.venv has no snakemake: creating it with snakemake=={SNAKEMAKE_VERSION} "
            "(first use, about a minute)",
            file=sys.stderr,
        )
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                f"snakemake=={SNAKEMAKE_VERSION}",
            ],
            check=True,
        )
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    if version != SNAKEMAKE_VERSION:
        print(
            f"warning: {exe} is snakemake {version or '?'}, the benchmark pins {SNAKEMAKE_VERSION}; "
            "delete benchmarks/.venv to recreate it",
            file=sys.stderr,
        )
    return exe


def snakemake_argv(exe: Path, quiet: bool) -> list[str]:
    # Plain `-n` lists every job with its reason, as `wf run -n` does. `--quiet rules` drops
    # that list (~75k lines at 10k jobs) but keeps the "Job stats" table the count is read from.
    return [str(exe), "-n", "-j1", "--snakefile", "Snakefile"] + (
        ["--quiet", "rules"] if quiet else []
    )


def snakemake_jobs(log: Path) -> int:
    """The `total` line of Snakemake's "Job stats" table."""
    found = re.search(r"^total\s+(\d+)\s*$", log.read_text(errors="replace"), re.MULTILINE)
    if not found:
        raise BenchError(
            f"no 'total' line in Snakemake's Job stats; last lines of {log}:\n{tail(log)}"
        )
    return int(found.group(1))


def run_snakemake(exe: Path, quiet: bool, d: Path, expected: int, timeout: float) -> Measure:
    shutil.rmtree(d / ".snakemake", ignore_errors=True)  # every run plans from scratch
    log = d / "snakemake.log"
    m = measure(snakemake_argv(exe, quiet), d, log, None, timeout)
    check_exit("snakemake -n", m, log)
    check_count("snakemake -n", snakemake_jobs(log), expected, log)
    return m


# --- wf --------------------------------------------------------------------


def wf_exe() -> str:
    """The project's `wf` console script on PATH (never one in benchmarks/.venv)."""
    path = shutil.which("wf")
    if path is None:
        raise BenchError("no `wf` on PATH: install the project (pip install -e .) first")
    if "/.pyenv/shims/" in path:
        # A pyenv shim is a shell script that re-execs the real one; don't charge its start-up to wf.
        real = subprocess.run(["pyenv", "which", "wf"], capture_output=True, text=True)
        if real.returncode == 0 and real.stdout.strip():
            path = real.stdout.strip()
    if Path(path).resolve().is_relative_to(VENV.resolve()):
        raise BenchError(f"{path} is inside benchmarks/.venv; use the project's wf")
    return path


def wf_jobs_to_run(doc: object) -> int:
    """Compute jobs that would run, from `wf run -n --json`. Adapt here if the layout changes.

    Layout: {"summary": {"total_run": n, "by_rule": {rule or aux kind: {"run": n, ...}}}};
    only the workflow's own rules count, not stage-in or cleanup jobs.
    """
    summary = doc.get("summary") if isinstance(doc, dict) else None
    by_rule = summary.get("by_rule") if isinstance(summary, dict) else None
    if isinstance(by_rule, dict):
        return sum(int(row["run"]) for name, row in by_rule.items() if name in RULES)
    if isinstance(summary, dict) and isinstance(summary.get("total_run"), int):
        return summary["total_run"]
    found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
    raise BenchError(
        f"no summary.by_rule or summary.total_run in `wf run -n --json` (found {found}); "
        f"adapt wf_jobs_to_run() in {__file__}"
    )


def read_json(path: Path) -> object:
    """One JSON document, or the last object of a JSON-lines event stream."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        for line in reversed(text.splitlines()):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                return doc
        raise BenchError(f"`wf run -n --json` printed no JSON ({exc}); see {path}") from None


def run_wf(exe: str, d: Path, expected: int, timeout: float, check_json: bool) -> Measure:
    shutil.rmtree(d / ".wf", ignore_errors=True)  # every run plans from scratch
    log = d / "wf.log"
    m = measure([exe, "run", "-n"], d, log, None, timeout)
    check_exit("wf run -n", m, log)
    if check_json:
        shutil.rmtree(d / ".wf", ignore_errors=True)
        out, err = d / "wf.json", d / "wf-json.err"
        j = measure([exe, "run", "-n", "--json"], d, out, err, timeout)
        check_exit("wf run -n --json", j, err)
        check_count("wf run -n --json", wf_jobs_to_run(read_json(out)), expected, out)
    return m


# --- driver ----------------------------------------------------------------


def prepare(root: Path, tool_dir: str, filename: str, config: str) -> Path:
    d = root / tool_dir
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(config)
    (d / filename).write_text(WORKFLOW)
    return d


def bench(
    base: Path,
    n: int,
    wf: str | None,
    smk: Path | None,
    args: argparse.Namespace,
    repeat: int,
    label: str,
) -> dict[str, Measure]:
    """Dry-run N samples with each tool `repeat` times; the fastest run of each."""
    expected = 3 * n + 2
    config = "samples:\n" + "".join(f"  - s{i}\n" for i in range(n))
    best: dict[str, Measure] = {}
    for _ in range(repeat):
        if wf:
            d = base / "wf" if (base / "wf").exists() else prepare(base, "wf", "Wffile", config)
            m = run_wf(wf, d, expected, args.timeout, args.json_check)
            best["wf"] = min(best.get("wf", m), m, key=lambda x: x.wall)
        if smk:
            d = (
                base / "snakemake"
                if (base / "snakemake").exists()
                else prepare(base, "snakemake", "Snakefile", config)
            )
            m = run_snakemake(smk, args.snakemake_quiet, d, expected, args.timeout)
            best["snakemake"] = min(best.get("snakemake", m), m, key=lambda x: x.wall)
    for tool, m in best.items():
        print(
            f"{label}: {tool:<9} {expected:>11,} jobs {m.wall:8.2f} s wall {m.cpu:8.2f} s cpu "
            f"{m.rss_mib:9.1f} MiB",
            file=sys.stderr,
        )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)  # a million-sample tree is big
    return best


def goal_note(row: Row, speedup: float | None) -> str:
    if row.tool != "wf":
        return ""
    notes = []
    # A goal's size rounded up to 3N+2 as the runs were (1,000,002 becomes 1,000,004).
    if row.jobs == 3 * samples_for(GOAL_SPEEDUP_JOBS) + 2 and speedup is not None:
        ok = "met" if speedup >= GOAL_SPEEDUP else "MISSED"
        notes.append(f"goal >= {GOAL_SPEEDUP:.0f}x: {ok}")
    if row.jobs == 3 * samples_for(GOAL_BIG_JOBS) + 2:
        fast = "met" if row.m.wall <= GOAL_BIG_SECONDS else "MISSED"
        small = "met" if row.m.rss_mib <= GOAL_BIG_MIB else "MISSED"
        notes.append(f"goal <= {GOAL_BIG_SECONDS:.0f} s: {fast}")
        notes.append(f"goal <= {GOAL_BIG_MIB // 1024} GiB: {small}")
    return "; ".join(notes)


def print_table(rows: list[Row]) -> None:
    print()
    print(
        f"{'jobs':>11} {'samples':>9}  {'tool':<10} {'wall s':>8} {'cpu s':>8} "
        f"{'peak RSS MiB':>13} {'speed-up':>9}  goal"
    )
    by_jobs: dict[int, dict[str, Row]] = {}
    for r in rows:
        by_jobs.setdefault(r.jobs, {})[r.tool] = r
    for jobs, tools in by_jobs.items():
        sm = tools.get("snakemake")
        first = True
        for r in sorted(tools.values(), key=lambda r: r.tool != "snakemake"):
            speedup = sm.m.wall / r.m.wall if sm and r.tool == "wf" and r.m.wall > 0 else None
            lead = f"{jobs:>11,} {r.samples:>9,}" if first else " " * 21
            su = f"{speedup:.1f}x" if speedup is not None else ""
            print(
                f"{lead}  {r.tool:<10} {r.m.wall:>8.2f} {r.m.cpu:>8.2f} {r.m.rss_mib:>13.1f} "
                f"{su:>9}  {goal_note(r, speedup)}".rstrip()
            )
            first = False
    print()
    print(
        f"Goals: wf >= {GOAL_SPEEDUP:.0f}x faster than Snakemake at {GOAL_SPEEDUP_JOBS:,} jobs; "
        f"{GOAL_BIG_JOBS:,} jobs in <= {GOAL_BIG_SECONDS:.0f} s and <= {GOAL_BIG_MIB // 1024} GiB."
    )
    print(
        "speed-up = Snakemake wall / wf wall; RSS is the peak of the child process tree (os.wait4)."
    )


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of job counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("job counts must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("1001,10001"),
        help="comma list of job counts; each becomes the smallest 3N+2 >= it (default: 1001,10001)",
    )
    only = ap.add_mutually_exclusive_group()
    only.add_argument(
        "--wf-only", action="store_true", help="skip Snakemake (for very large sizes)"
    )
    only.add_argument("--snakemake-only", action="store_true", help="skip wf")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per tool and size; the fastest counts"
    )
    ap.add_argument(
        "--snakemake-quiet",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add `--quiet rules` to Snakemake: only its job table, not every job "
        "(default: off, as `wf run -n` also lists every job)",
    )
    ap.add_argument(
        "--no-json-check",
        dest="json_check",
        action="store_false",
        help="skip the `wf run -n --json` job-count check",
    )
    ap.add_argument(
        "--timeout", type=float, default=3600, help="seconds per child run (default 3600)"
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the work directory under benchmarks/work/"
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    try:
        smk = None if args.wf_only else snakemake_exe()
        wf = None if args.snakemake_only else wf_exe()
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if smk:
        print(
            f"snakemake: {smk} {' '.join(snakemake_argv(smk, args.snakemake_quiet)[1:])}",
            file=sys.stderr,
        )
    if wf:
        print(f"wf:        {wf} run -n", file=sys.stderr)

    WORK.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dryrun-", dir=WORK))
    rows: list[Row] = []
    try:
        # A 5-job warm-up per tool first: loads each one's modules into the page cache,
        # and fails fast if a tool is broken, before any long run.
        bench(root / "warm-up", 1, wf, smk, args, repeat=1, label="warm-up")
        for requested in args.sizes:
            n = samples_for(requested)
            if 3 * n + 2 != requested:
                print(
                    f"{requested:,} jobs requested: using N = {n:,} samples, {3 * n + 2:,} jobs",
                    file=sys.stderr,
                )
            best = bench(root / str(n), n, wf, smk, args, repeat=args.repeat, label="measured")
            rows += [Row(tool, 3 * n + 2, n, m) for tool, m in best.items()]
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        args.keep = True  # the logs named above stay readable
        if rows:
            print_table(rows)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
            try:
                WORK.rmdir()
            except OSError:
                pass
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
