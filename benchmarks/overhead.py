#!/usr/bin/env python3
"""Integrity overhead on data-heavy jobs: `wf run --integrity full` against `--integrity none`.

200 jobs each copy a 20 MB input to an output (`cp {input} {output}`), plus
`rule all` over the outputs. The inputs are generated once (deterministic
bytes) and hard-linked into a fresh directory for every run, so each run
plans, hashes and records from scratch while reading the same page-cached
data. Full and none alternate (full first in odd rounds, none first in even
ones), K rounds, the best of each counts; nothing is dropped from the page
cache, the previous run's directory is deleted and the disks synced before
each run. Wall and CPU time (wf and every job it spawned) come from os.wait4.

- flat: data/i.bin -> out/i.bin (N + 1 jobs).
- chain: data/i.bin -> mid/i.bin -> out/i.bin (2N + 1 jobs): the second copy
  verifies its input, an intermediate, before it runs.

Then, from the full run: bytes hashed (`wf statistics --json`, integrity
section) split by rule and stage (the jobs' provenance records), and the
time that much hashing takes at the sha256 throughput measured here on the
same inputs, so the reader sees where the extra time goes. Every output is
checked against its input's sha256 after every run.

    python benchmarks/overhead.py                      # flat and chain, 200 x 20 MB, 3 rounds
    python benchmarks/overhead.py --variants chain --runs 5
    python benchmarks/overhead.py --jobs 50 --mb 100
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from dryrun import WORK, BenchError, Measure, check_exit, measure, wf_exe  # noqa: E402
from throughput import describe_source, file_system  # noqa: E402

from runtime.wrapper import sha256_file  # noqa: E402

GOAL_OVERHEAD = 5.0  # percent of the integrity-none wall time
MB = 1_000_000

FLAT = """\
configfile: "config.yaml"

IDS = config["ids"]

rule all:
    input: expand("out/{i}.bin", i=IDS)

rule copy:
    input: "data/{i}.bin"
    output: "out/{i}.bin"
    shell: "cp {input} {output}"
"""

CHAIN = """\
configfile: "config.yaml"

IDS = config["ids"]

rule all:
    input: expand("out/{i}.bin", i=IDS)

rule copy1:
    input: "data/{i}.bin"
    output: "mid/{i}.bin"
    shell: "cp {input} {output}"

rule copy2:
    input: "mid/{i}.bin"
    output: "out/{i}.bin"
    shell: "cp {input} {output}"
"""

VARIANTS = {"flat": (FLAT, ("out",)), "chain": (CHAIN, ("mid", "out"))}
INTEGRITIES = ("full", "none")


@dataclass
class Result:
    variant: str
    integrity: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    stats: dict | None = None  # `wf statistics --json` of the best run
    stages: dict | None = None  # (rule, stage, kind) -> [count, bytes, seconds], best run

    @property
    def best(self) -> float:
        return min(self.walls)

    @property
    def best_cpu(self) -> float:
        return min(self.cpus)


# --- inputs ----------------------------------------------------------------


def make_inputs(folder: Path, n: int, size: int, seed: int) -> list[str]:
    """n files of `size` deterministic bytes, each different; their sha256 digests."""
    folder.mkdir(parents=True)
    step = 4099  # file i is the pool from byte i*step on: distinct contents, one pool to draw
    pool = random.Random(seed).randbytes(size + n * step)
    view = memoryview(pool)
    digests = []
    for i in range(n):
        chunk = view[i * step : i * step + size]
        (folder / f"{i}.bin").write_bytes(chunk)
        digests.append(hashlib.sha256(chunk).hexdigest())
    view.release()
    return digests


def sha256_throughput(folder: Path, n: int, rounds: int = 3) -> float:
    """Bytes/s of runtime.wrapper.sha256_file, one thread, page cache warm: best of rounds."""
    files = [folder / f"{i}.bin" for i in range(min(n, 10))]
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        total = sum(sha256_file(f)[1] for f in files)
        best = max(best, total / (time.perf_counter() - t0))
    return best


# --- one run ---------------------------------------------------------------


def prepare(d: Path, text: str, inputs: Path, n: int) -> None:
    (d / "data").mkdir(parents=True)
    (d / "config.yaml").write_text("ids:\n" + "".join(f"  - {i}\n" for i in range(n)))
    (d / "Wffile").write_text(text)
    for i in range(n):
        src, dst = inputs / f"{i}.bin", d / "data" / f"{i}.bin"
        try:
            os.link(src, dst)  # same inode: same page-cached bytes, no copy to time
        except OSError:
            shutil.copyfile(src, dst)


def verify_outputs(d: Path, dirs: tuple[str, ...], digests: list[str], size: int) -> None:
    """Every output has its input's size and sha256; no other file beside them."""
    want = {f"{i}.bin" for i in range(len(digests))}
    for sub in dirs:
        folder = d / sub
        found = {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
        if found != want:
            raise BenchError(
                f"{folder} holds {len(found)} files, expected {len(want)} "
                f"({len(want - found)} missing, {len(found - want)} unexpected)"
            )

    def check(job: tuple[str, int]) -> str | None:
        sub, i = job
        digest, got, _ = sha256_file(d / sub / f"{i}.bin")
        if got != size or digest != digests[i]:
            return f"{d / sub / f'{i}.bin'}: {got} bytes, sha256 {digest[:12]}…, expected {digests[i][:12]}…"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [(sub, i) for sub in dirs for i in range(len(digests))]
        bad = [msg for msg in pool.map(check, jobs) if msg]
    if bad:
        raise BenchError(f"{len(bad)} outputs differ from their inputs, e.g. {bad[0]}")


def statistics(exe: str, d: Path) -> dict:
    out = subprocess.run(
        [exe, "statistics", "--json"], cwd=d, capture_output=True, text=True, check=False
    )
    try:
        return json.loads(out.stdout)
    except ValueError:
        raise BenchError(f"`wf statistics --json` printed no JSON in {d}: {out.stderr}") from None


def stage_breakdown(d: Path) -> dict[tuple[str, str, str], list]:
    """(rule, stage, kind) -> [files, bytes, seconds] from the jobs' provenance records.

    Record layout: runtime/wrapper.py's docstring (`job_id` "rule[...]", `events`).
    """
    out: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, 0, 0.0])
    for path in glob.glob(str(d / ".wf" / "records" / "**" / "*.json"), recursive=True):
        with open(path) as f:
            rec = json.load(f)
        rule = str(rec.get("job_id", "?")).split("[", 1)[0]
        for ev in rec.get("events") or ():
            row = out[(rule, ev.get("stage", "?"), ev.get("kind", "?"))]
            row[0] += 1
            row[1] += ev.get("size") or 0
            row[2] += ev.get("seconds") or 0.0
    return dict(out)


def run_once(
    exe: str,
    d: Path,
    variant: str,
    integrity: str,
    inputs: Path,
    digests: list[str],
    size: int,
    timeout: float,
) -> tuple[Measure, dict, dict]:
    text, dirs = VARIANTS[variant]
    prepare(d, text, inputs, len(digests))
    os.sync()  # the last run's dirty pages are written (or gone with its directory)
    log = d / "wf.log"
    m = measure([exe, "run", "-j", "2", "--integrity", integrity], d, log, None, timeout)
    check_exit(f"wf run --integrity {integrity}", m, log)
    verify_outputs(d, dirs, digests, size)
    stats = statistics(exe, d)
    jobs = len(digests) * len(dirs) + 1
    done = (stats.get("summary") or {}).get("all", {}).get("succeeded")
    if done != jobs:
        raise BenchError(f"wf statistics says {done} jobs succeeded, expected {jobs}; see {log}")
    return m, stats, stage_breakdown(d)


# --- report ----------------------------------------------------------------


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def print_report(results: list[Result], rate: float, n: int, size: int) -> None:
    print()
    print(f"{n} jobs x {size / MB:g} MB per variant, wf run -j 2; best of {len(results[0].walls)}")
    print()
    print(
        f"{'variant':<8} {'integrity':<10} {'wall s (each run)':<26} {'best s':>7} {'cpu s':>7} "
        f"{'overhead':>9}  goal"
    )
    by_variant: dict[str, dict[str, Result]] = defaultdict(dict)
    for r in results:
        by_variant[r.variant][r.integrity] = r
    for variant, pair in by_variant.items():
        none = pair["none"]
        for integrity in ("none", "full"):
            r = pair[integrity]
            each = " ".join(f"{w:.2f}" for w in r.walls)
            over, note = "", ""
            if integrity == "full":
                pct = 100 * (r.best / none.best - 1)
                over = f"{pct:+.1f} %"
                note = f"<= {GOAL_OVERHEAD:.0f} %: " + ("met" if pct <= GOAL_OVERHEAD else "MISSED")
            print(
                f"{variant:<8} {integrity:<10} {each:<26} {r.best:>7.2f} {r.best_cpu:>7.2f} "
                f"{over:>9}  {note}".rstrip()
            )
    print()
    print(
        f"sha256 throughput here (runtime.wrapper.sha256_file, one thread, warm): "
        f"{rate / 1e6:.0f} MB/s"
    )
    for variant, pair in by_variant.items():
        full, none = pair["full"], pair["none"]
        integ = (full.stats or {}).get("integrity") or {}
        comp, gen = integ.get("compared") or {}, integ.get("generated") or {}
        hashed = (comp.get("bytes") or 0) + (gen.get("bytes") or 0)
        data = n * size
        print()
        print(
            f"{variant}: bytes hashed in the full run {gb(hashed)} = {hashed / data:.1f}x the "
            f"{gb(data)} of input data (compared {comp.get('count', 0)} files, "
            f"{gb(comp.get('bytes') or 0)}; generated {gen.get('count', 0)} files, "
            f"{gb(gen.get('bytes') or 0)})"
        )
        if rate > 0:
            print(
                f"  at {rate / 1e6:.0f} MB/s that is {hashed / rate:.2f} s of hashing on one core, "
                f"{hashed / rate / 2:.2f} s on 2 (-j 2); measured: full - none = "
                f"{full.best - none.best:.2f} s wall, {full.best_cpu - none.best_cpu:.2f} s cpu; "
                f"wf's own hashing seconds (summed over jobs) {integ.get('seconds', 0):.2f} s"
            )
        if full.stages:
            print(
                f"  {'rule':<8} {'stage':<9} {'kind':<9} {'files':>6} {'bytes':>10} {'hash s':>7}"
            )
            for (rule, stage, kind), (count, nbytes, secs) in sorted(full.stages.items()):
                print(f"  {rule:<8} {stage:<9} {kind:<9} {count:>6} {gb(nbytes):>10} {secs:>7.2f}")
    print()
    print(
        f"Goal: --integrity full costs at most {GOAL_OVERHEAD:.0f} % more wall time than "
        "--integrity none. overhead = best full / best none - 1; cpu includes every cp."
    )


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"variants are {', '.join(VARIANTS)}; got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200, help="copy jobs per stage (default 200)")
    ap.add_argument("--mb", type=float, default=20, help="MB (10^6 bytes) per input (default 20)")
    ap.add_argument(
        "--runs", type=int, default=3, help="rounds of full and none, alternating (default 3)"
    )
    ap.add_argument(
        "--variants",
        type=parse_variants,
        default=parse_variants("flat,chain"),
        help="comma list of flat, chain (default: both)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the input bytes")
    ap.add_argument(
        "--timeout", type=float, default=3600, help="seconds per child run (default 3600)"
    )
    ap.add_argument(
        "--dir",
        type=Path,
        default=WORK,
        help="where the inputs and run directories go (default: benchmarks/work); "
        "e.g. /dev/shm to take the disk out (needs about 3x the input data in memory)",
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the inputs and the last run of each variant and dial",
    )
    args = ap.parse_args(argv)
    if args.runs < 1 or args.jobs < 1 or args.mb <= 0:
        ap.error("--runs and --jobs must be at least 1, --mb positive")
    size = int(args.mb * MB)

    try:
        wf = wf_exe()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wf: {wf} run -j 2 --integrity full|none", file=sys.stderr)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)

    args.dir.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="overhead-", dir=args.dir))
    fs = file_system(root)
    print(f"run directories: {root} ({fs or 'file system unknown'})", file=sys.stderr)
    source = describe_source(wf, root)
    print(source, file=sys.stderr)
    results: list[Result] = []
    try:
        t0 = time.perf_counter()
        digests = make_inputs(root / "inputs", args.jobs, size, args.seed)
        print(
            f"inputs: {args.jobs} x {size / MB:g} MB in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        rate = sha256_throughput(root / "inputs", args.jobs)
        print(f"sha256: {rate / 1e6:.0f} MB/s", file=sys.stderr)
        # One run directory on disk at a time; with --keep, the last of each variant and dial.
        previous: dict[tuple[str, str], Path] = {}
        for variant in args.variants:
            res = {i: Result(variant, i) for i in INTEGRITIES}
            for k in range(args.runs):
                order = INTEGRITIES if k % 2 == 0 else INTEGRITIES[::-1]
                for integrity in order:
                    for key in [
                        key for key in previous if not args.keep or key == (variant, integrity)
                    ]:
                        shutil.rmtree(previous.pop(key), ignore_errors=True)
                    d = root / f"{variant}-{integrity}-{k}"
                    m, stats, stages = run_once(
                        wf, d, variant, integrity, root / "inputs", digests, size, args.timeout
                    )
                    r = res[integrity]
                    if not r.walls or m.wall < r.best:
                        r.stats, r.stages = stats, stages
                    r.walls.append(m.wall)
                    r.cpus.append(m.cpu)
                    print(
                        f"{variant} {integrity:<4} round {k + 1}: {m.wall:7.2f} s wall "
                        f"{m.cpu:7.2f} s cpu  (load {os.getloadavg()[0]:.2f})",
                        file=sys.stderr,
                    )
                    previous[(variant, integrity)] = d
            results += [res["full"], res["none"]]
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        args.keep = True
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
    print_report(results, rate, args.jobs, size)
    if fs:
        print(f"Run directories on {fs}.")
    print(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
