#!/usr/bin/env python3
"""What running a job inside a container image costs: bubblewrap against a plain /bin/sh.

Builds the busybox test image (tests/runtime/imagebuild.py), unpacks it with
runtime.images.unpack_image (timed: the first call, and the cached call that
every later job pays), then runs ``true`` N times as ``/bin/sh -c true`` and
N times inside the image under bubblewrap with the argv from
runtime.sandbox.bwrap_argv, one subprocess each, as the wrapper would. A bare
``bwrap --ro-bind / / true`` is timed too, to split bubblewrap's own start-up
from the cost of the image's mounts. K rounds, the best of each counts.

    python benchmarks/container_overhead.py                 # 100 runs, 3 rounds
    python benchmarks/container_overhead.py --runs 300 --rounds 5

Goal: at most 20 ms extra per job. Scratch files live under benchmarks/work/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests" / "runtime"))

import imagebuild  # noqa: E402

from runtime.images import unpack_image, unpacked_info  # noqa: E402
from runtime.sandbox import bwrap_argv, container_env, find_runtime, probe_runtime  # noqa: E402

WORK = HERE / "work"
GOAL_MS = 20.0


def per_run(cmd: list[str], runs: int) -> float:
    """Seconds per run of ``cmd``, started and waited for one at a time."""
    t0 = time.perf_counter()
    for _ in range(runs):
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) / runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100, help="jobs per measurement (default 100)")
    p.add_argument("--rounds", type=int, default=3, help="best of K rounds (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)

    bwrap = find_runtime("bwrap")
    probe_runtime(bwrap)
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="container_overhead-", dir=WORK))
    try:
        built = imagebuild.build_oci_archive(scratch / "image.tar")
        t0 = time.perf_counter()
        rootfs = unpack_image(built.path, scratch / "cache", built.sha256)
        first = time.perf_counter() - t0
        cached = []
        for _ in range(100):
            t0 = time.perf_counter()
            unpack_image(built.path, scratch / "cache", built.sha256)
            cached.append(time.perf_counter() - t0)
        job = scratch / "job"
        job.mkdir()
        env = container_env(unpacked_info(rootfs).env)
        t0 = time.perf_counter()
        boxed_cmd = bwrap_argv(rootfs, str(job), str(job), "true", env, bwrap=bwrap)
        build_argv = time.perf_counter() - t0
        commands = {
            "/bin/sh -c true": ["/bin/sh", "-c", "true"],
            "bwrap --ro-bind / / true": [bwrap, "--ro-bind", "/", "/", "true"],
            "image under bwrap": boxed_cmd,
        }
        per_run(boxed_cmd, 5)  # warm the page cache
        best = {name: float("inf") for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                best[name] = min(best[name], per_run(cmd, args.runs))

        size = Path(built.path).stat().st_size
        print(f"image: {built.format}, {size / 1e6:.1f} MB, {len(built.layers)} layer(s)")
        print(f"unpack, first call:   {first * 1e3:8.1f} ms")
        print(f"unpack, cached call:  {min(cached) * 1e6:8.1f} us best, {max(cached) * 1e6:.1f} us worst (of 100)")  # fmt: skip
        print(f"bwrap_argv:           {build_argv * 1e6:8.1f} us ({len(boxed_cmd)} arguments)")
        print(f"per job, best of {args.rounds} rounds of {args.runs}:")
        for name, sec in best.items():
            print(f"  {name:26} {sec * 1e3:8.2f} ms")
        extra = (best["image under bwrap"] - best["/bin/sh -c true"]) * 1e3
        verdict = "ok" if extra <= GOAL_MS else "OVER GOAL"
        print(f"extra per job in the image: {extra:.2f} ms (goal <= {GOAL_MS:.0f} ms): {verdict}")
        return 0 if extra <= GOAL_MS else 1
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch)


if __name__ == "__main__":
    sys.exit(main())
