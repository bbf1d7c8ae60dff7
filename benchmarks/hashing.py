"""How fast is the project's one hashing helper, runtime.wrapper.sha256_file?

Prints, for a 1 GiB file of random bytes (page cache warm, best of N runs,
methods interleaved run by run so they share whatever load the machine has):
sha256_file at several chunk sizes, hashlib.file_digest, ``sha256sum`` and
``openssl dgst`` (the library hashlib calls: the ceiling), in MB/s of wall
time and of CPU time, with the ratio to sha256sum (goal: >= 0.95x); then two
512 MiB files hashed one after the other and on two threads (hashlib
releases the GIL on large updates), with the speed-up. The load average is
printed too: on a busy machine wall figures, and above all the thread
speed-up, mean little.

    python benchmarks/hashing.py [--dir DIR] [--mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.wrapper import CHUNK_SIZE, sha256_file  # noqa: E402

MIB = 1 << 20
CHUNKS = (256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20, 16 << 20)


def make_file(path: str, mib: int) -> None:
    """Write ``mib`` MiB of random bytes to ``path``."""
    with open(path, "wb") as f:
        for _ in range(mib // 8):
            f.write(os.urandom(8 * MIB))
        f.write(os.urandom((mib % 8) * MIB))


def cpu() -> float:
    """CPU seconds used so far by this process and its waited-for children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of one call."""
    w0, c0 = time.perf_counter(), cpu()
    result = fn()
    return time.perf_counter() - w0, cpu() - c0, result


def bestof(methods: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple]:
    """Best wall and best CPU time of each method over ``runs`` interleaved rounds."""
    best: dict[str, list] = {name: [float("inf"), float("inf"), None] for name in methods}
    for _ in range(runs):
        for name, fn in methods.items():
            wall, cpu_s, result = measure(fn)
            b = best[name]
            b[0], b[1], b[2] = min(b[0], wall), min(b[1], cpu_s), result
    return {name: tuple(b) for name, b in best.items()}


def sha256sum(path: str) -> str:
    out = subprocess.run(["sha256sum", path], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]


def openssl(path: str) -> str:
    cmd = ["openssl", "dgst", "-sha256", "-r", path]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[0]


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="where to put the test files (default: the system temp dir)")
    ap.add_argument("--mib", type=int, default=1024, help="size of the big file in MiB")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement; the best is kept")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="wf-hash-bench-", dir=args.dir)
    try:
        big = os.path.join(tmp, "big.bin")
        halves = [os.path.join(tmp, f"half{i}.bin") for i in (1, 2)]
        print(f"creating {args.mib} MiB + 2 x {args.mib // 2} MiB of random data in {tmp} ...")
        make_file(big, args.mib)
        for h in halves:
            make_file(h, args.mib // 2)
        nbytes = os.path.getsize(big)
        for p in (big, *halves):
            sha256_file(p)  # warm the page cache: every figure below is CPU, not disk
        print(f"{os.cpu_count()} CPUs, load average {load()}")

        methods: dict[str, Callable[[], object]] = {"sha256sum": lambda: sha256sum(big)}
        for chunk in CHUNKS:
            methods[f"sha256_file {chunk // 1024:5d} KiB"] = lambda c=chunk: sha256_file(big, c)[0]
        methods["hashlib.file_digest"] = lambda: file_digest(big)
        if shutil.which("openssl"):
            methods["openssl dgst -sha256"] = lambda: openssl(big)
        res = bestof(methods, args.runs)
        ref_wall, ref_cpu, ref = res["sha256sum"]
        assert all(r[2] == ref for r in res.values()), "a method disagrees with sha256sum"

        print(f"\n{args.mib} MiB file, best of {args.runs}:      wall MB/s  x sha256sum   CPU MB/s")
        for name, (wall, cpu_s, _) in res.items():
            mark = "  <- CHUNK_SIZE" if name == f"sha256_file {CHUNK_SIZE // 1024:5d} KiB" else ""
            print(
                f"  {name:28} {mbps(nbytes, wall):8.0f}  {ref_wall / wall:9.2f}x"
                f"  {mbps(nbytes, cpu_s):9.0f}{mark}"
            )
        chunks = {c: res[f"sha256_file {c // 1024:5d} KiB"] for c in CHUNKS}
        fastest = min(chunks, key=lambda c: chunks[c][0])
        print(
            f"  fastest chunk here: {fastest // 1024} KiB; CHUNK_SIZE is {CHUNK_SIZE // 1024} KiB"
        )

        def sequential() -> None:
            for h in halves:
                sha256_file(h)

        def threaded() -> None:
            threads = [threading.Thread(target=sha256_file, args=(h,)) for h in halves]
            for th in threads:
                th.start()
            for th in threads:
                th.join()

        both = sum(os.path.getsize(h) for h in halves)
        res = bestof({"sequential": sequential, "2 threads": threaded}, args.runs)
        print(
            f"\n2 x {args.mib // 2} MiB files, best of {args.runs}:    wall s   wall MB/s   CPU s"
        )
        for name, (wall, cpu_s, _) in res.items():
            print(f"  {name:12} {wall:18.3f}  {mbps(both, wall):10.0f}  {cpu_s:6.3f}")
        print(f"  speed-up {res['sequential'][0] / res['2 threads'][0]:.2f}x")
        print(f"\nload average at the end: {load()}")
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
