"""Helpers for the end-to-end tests: real ``wf`` processes on real files in tmp_path.

Every test copies an example (or writes a Wffile) into its own temporary
directory, runs the ``wf`` console script there with subprocess, and reads
what happened from the files and from ``.wf/wf.db`` with plain sqlite3.
Nothing runs inside the repository tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

#: What a run leaves in an example folder (mirrors .gitignore): never copied.
_GENERATED = {".wf", "results", "counts", "work", "logs", "__pycache__"}

#: The console script; ``python -m runtime.cli`` when it is not on PATH.
WF = [shutil.which("wf")] if shutil.which("wf") else [sys.executable, "-m", "runtime.cli"]


class Result(NamedTuple):
    """What one ``wf`` process did: unpacks as ``code, out, err``."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout and stderr together, for messages that may land on either."""
        return self.out + "\n" + self.err


def wf_env() -> dict[str, str]:
    """The environment of a ``wf`` process: plain, wide, uncoloured output."""
    env = dict(os.environ)
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb", LC_ALL="C")
    env.pop("FORCE_COLOR", None)
    return env


def wf_cmd(*args: str | os.PathLike[str]) -> list[str]:
    """The argv of ``wf ARGS…``."""
    return [*WF, *map(str, args)]


def wf(*args: str | os.PathLike[str], cwd: Path, timeout: float = 120) -> Result:
    """Run ``wf ARGS…`` in ``cwd`` and wait; returns (code, stdout, stderr)."""
    proc = subprocess.run(
        wf_cmd(*args),
        cwd=cwd,
        env=wf_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def wf_ok(*args: str | os.PathLike[str], cwd: Path, timeout: float = 120) -> Result:
    """Like :func:`wf`, failing the test (with the output) unless it exits 0."""
    r = wf(*args, cwd=cwd, timeout=timeout)
    assert r.code == 0, f"wf {' '.join(map(str, args))} exited {r.code}\n{r.out}\n{r.err}"
    return r


def copy_example(name: str, dest: Path) -> Path:
    """Copy examples/NAME (its sources, none of its generated files) to dest."""
    src = EXAMPLES / name

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in _GENERATED}
        if Path(folder) == src / "data":
            skip.add("genome.fa")  # staged in from archive/ by the workflow itself
        return skip

    shutil.copytree(src, dest, ignore=ignore)
    return dest


def write_workflow(dest: Path, wffile: str, files: dict[str, str | bytes] | None = None) -> Path:
    """Write a Wffile (dedented) and input files into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Wffile").write_text(textwrap.dedent(wffile).lstrip("\n"))
    for rel, data in (files or {}).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return dest


def clone_dir(src: Path, dest: Path) -> Path:
    """Copy a finished working directory (database included), keeping mtimes."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


# -- files ------------------------------------------------------------------------
def sha256(path: Path) -> str:
    """sha256 of a file, with hashlib (independent of wf's own helper)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(root: Path, folders: Iterable[str]) -> dict[str, str]:
    """{relative path: sha256} of every file under the given folders of root."""
    out = {}
    for folder in folders:
        base = root / folder
        if base.is_file():
            out[folder] = sha256(base)
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = sha256(p)
    return out


def flip_byte(path: Path, offset: int = 0, keep_mtime: bool = True) -> None:
    """Corrupt one byte in place, as bit rot would: same size, and (by default) same mtime."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


# -- the workflow database ---------------------------------------------------------
def query(workdir: Path, sql: str, args: Sequence[object] = ()) -> list[tuple]:
    """Rows of a read query on DIR/.wf/wf.db (opened read-only)."""
    path = workdir / ".wf" / "wf.db"
    assert path.exists(), f"no database at {path}"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, tuple(args)).fetchall()
    finally:
        conn.close()


def last_run_id(workdir: Path) -> int:
    """Id of the newest run in the database."""
    return query(workdir, "SELECT max(id) FROM runs")[0][0]


def run_ids(workdir: Path) -> list[int]:
    """Ids of every run, oldest first."""
    return [r[0] for r in query(workdir, "SELECT id FROM runs ORDER BY id")]


def attempted(workdir: Path, run_id: int | None = None, status: str | None = None) -> list[str]:
    """Job ids with an attempt in the run (default: the newest), one per attempt."""
    run_id = last_run_id(workdir) if run_id is None else run_id
    sql = "SELECT job_id FROM attempts WHERE run_id=?"
    args: list[object] = [run_id]
    if status is not None:
        sql += " AND status=?"
        args.append(status)
    return [r[0] for r in query(workdir, sql + " ORDER BY id", args)]


def succeeded(workdir: Path, run_id: int | None = None) -> set[str]:
    """Job ids with a successful attempt in the run (default: the newest)."""
    return set(attempted(workdir, run_id, "ok"))


def recorded_files(workdir: Path) -> dict[str, str]:
    """{lfn: sha256} of the files table."""
    return dict(query(workdir, "SELECT lfn, sha256 FROM files"))
