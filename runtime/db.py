"""The workflow database ``DIR/.wf/wf.db`` (SQLite) and the reuse oracle over it.

Tables: runs, jobs (per run), attempts, files (the current reference
checksum of every file seen: sha256, size, stat fingerprint, producer),
products (what each job's outputs were made from: input checksums, command,
container), integrity events and chaos injections.

A file's recorded checksum is trusted while its stat fingerprint (size,
mtime_ns) is unchanged; a changed fingerprint means it is hashed again.
Silent corruption that keeps the fingerprint is caught where it matters:
right before a job reads the file, and by ``wf verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsl.model import Workflow
from planner.plan import (
    RUN_COMMAND_CHANGED,
    RUN_CONTAINER_CHANGED,
    RUN_INPUT_CHANGED,
    RUN_NO_RECORD,
    RUN_OUTPUT_CHANGED,
    Job,
    JobKind,
    Reason,
)
from planner.resolve import container_lfn
from planner.reuse import FilesystemOracle

from .wrapper import sha256_file

#: Version 2 added ``runs.submit_dir`` and ``runs.external_id`` (a backend's
#: own id of the run, e.g. the DAGMan job's cluster). A database of an
#: earlier version gets the missing columns when it is opened for writing;
#: readers ask :meth:`Database.columns` and take a missing column as NULL.
#: Version 3 added ``jobs.external_id``: the batch system's id of the
#: attempt running now (the Slurm job id), set when it starts; and
#: ``integrity_events.cached``: a check satisfied by an unchanged
#: fingerprint of a file hashed earlier in the run, without reading it.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL, finished REAL, status TEXT,
    wffile TEXT, workdir TEXT, argv TEXT, host TEXT, pid INTEGER,
    backend TEXT, integrity TEXT, staging TEXT,
    jobs_total INTEGER, jobs_pruned INTEGER, exit_code INTEGER,
    submit_dir TEXT, external_id TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    run_id INTEGER, job_id TEXT, rule TEXT, kind TEXT, status TEXT,
    attempts INTEGER DEFAULT 0, started REAL, finished REAL, reason TEXT, external_id TEXT,
    PRIMARY KEY (run_id, job_id));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, run_id INTEGER, job_id TEXT, attempt INTEGER,
    host TEXT, started REAL, finished REAL, exit_code INTEGER, status TEXT,
    message TEXT, stdout TEXT, stderr TEXT, record TEXT, external_id TEXT,
    compare_count INTEGER, compare_seconds REAL,
    generate_count INTEGER, generate_seconds REAL, bytes_hashed INTEGER);
CREATE INDEX IF NOT EXISTS attempts_run ON attempts (run_id, job_id);
CREATE TABLE IF NOT EXISTS files (
    lfn TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, mtime_ns INTEGER,
    producer TEXT, run_id INTEGER, recorded REAL);
CREATE TABLE IF NOT EXISTS products (
    job_id TEXT PRIMARY KEY, command_sha TEXT, inputs TEXT, outputs TEXT,
    container_sha TEXT, run_id INTEGER, finished REAL);
CREATE TABLE IF NOT EXISTS integrity_events (
    id INTEGER PRIMARY KEY, run_id INTEGER, job_id TEXT, attempt INTEGER,
    file TEXT, stage TEXT, kind TEXT, host TEXT, expected TEXT, actual TEXT,
    ok INTEGER, seconds REAL, size INTEGER, time REAL, cached INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_run ON integrity_events (run_id);
CREATE TABLE IF NOT EXISTS chaos (
    id INTEGER PRIMARY KEY, run_id INTEGER, job_id TEXT, attempt INTEGER,
    kind TEXT, file TEXT, stage TEXT, detected INTEGER);
"""


def db_path(workdir: str | os.PathLike[str]) -> Path:
    """Where the workflow database of ``workdir`` lives."""
    return Path(workdir) / ".wf" / "wf.db"


def text_sha(text: str | None) -> str | None:
    """sha256 of a string (used for commands), None for None."""
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FileRow:
    """What the database knows of one file."""

    lfn: str
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    producer: str | None


class Database:
    """A connection to the workflow database; use from one thread only."""

    def __init__(self, path: str | os.PathLike[str] | None, readonly: bool = False):
        self.readonly = readonly
        if path is None:
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
        elif readonly:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            # WAL + NORMAL: a commit is durable against a crash of wf (kill -9)
            # without an fsync per job.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        if not readonly:
            self.conn.executescript(SCHEMA)
            _migrate(self.conn)
        self._in_tx = False

    def close(self) -> None:
        """Commit what is pending and close."""
        self.commit()
        self.conn.close()

    # -- transactions: batched, committed by the executor -------------------
    def begin(self) -> None:
        """Open a transaction if none is open."""
        if not self._in_tx and not self.readonly:
            self.conn.execute("BEGIN")
            self._in_tx = True

    @property
    def pending(self) -> bool:
        """Whether a transaction is open (something not yet committed)."""
        return self._in_tx

    def commit(self) -> None:
        """Commit the open transaction, if any."""
        if self._in_tx:
            self.conn.execute("COMMIT")
            self._in_tx = False

    # -- runs and jobs -------------------------------------------------------
    def start_run(self, **fields: Any) -> int:
        """Insert a run row; returns its id."""
        self.begin()
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        cur = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(fields.values()))
        self.commit()
        return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a run row (e.g. status and external_id after a submission)."""
        self.begin()
        sets = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))
        self.commit()

    def columns(self, table: str) -> set[str]:
        """The column names of ``table`` (empty if there is no such table)."""
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def finish_run(self, run_id: int, status: str, exit_code: int) -> None:
        """Mark a run finished."""
        self.begin()
        self.conn.execute("UPDATE runs SET finished=?, status=?, exit_code=? WHERE id=?",
                          (time.time(), status, exit_code, run_id))
        self.commit()

    def add_jobs(self, run_id: int, rows: Iterable[tuple[str, str | None, str, str, str]]) -> None:
        """Insert (job_id, rule, kind, status, reason) rows for a run."""
        self.begin()
        self.conn.executemany(
            "INSERT OR REPLACE INTO jobs (run_id, job_id, rule, kind, status, reason) VALUES (?,?,?,?,?,?)",
            ((run_id, *r) for r in rows))

    def set_job(self, run_id: int, job_id: str, status: str, **fields: Any) -> None:
        """Update a job's status (and started/finished/attempts)."""
        self.begin()
        sets = ", ".join(["status=?"] + [f"{k}=?" for k in fields])
        self.conn.execute(f"UPDATE jobs SET {sets} WHERE run_id=? AND job_id=?",
                          (status, *fields.values(), run_id, job_id))

    def add_attempt(self, run_id: int, job_id: str, record: dict[str, Any],
                    stdout: str | None, stderr: str | None, record_path: str | None,
                    external_id: str | None = None) -> None:
        """Store one attempt, its integrity events and chaos injections."""
        self.begin()
        t = record.get("totals", {})
        self.conn.execute(
            "INSERT INTO attempts (run_id, job_id, attempt, host, started, finished, exit_code, status,"
            " message, stdout, stderr, record, external_id, compare_count, compare_seconds,"
            " generate_count, generate_seconds, bytes_hashed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, job_id, record.get("attempt"), record.get("host"), record.get("start"),
             record.get("end"), record.get("exit_code"), record.get("status"), record.get("message"),
             stdout, stderr, record_path, external_id, t.get("compare_count", 0),
             t.get("compare_seconds", 0.0), t.get("generate_count", 0),
             t.get("generate_seconds", 0.0), t.get("bytes_hashed", 0)))
        now = time.time()
        events = record.get("events") or ()
        if events:
            self.conn.executemany(
                "INSERT INTO integrity_events (run_id, job_id, attempt, file, stage, kind, host,"
                " expected, actual, ok, seconds, size, time, cached) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ((run_id, job_id, record.get("attempt"), e.get("file"), e.get("stage"), e.get("kind"),
                  e.get("host"), e.get("expected"), e.get("actual"), int(bool(e.get("ok"))),
                  e.get("seconds", 0.0), e.get("size"), now, int(bool(e.get("cached"))))
                 for e in events))
        chaos = record.get("chaos") or ()
        if chaos:
            self.add_chaos(run_id, job_id, record.get("attempt"), chaos, record)

    def add_chaos(self, run_id: int, job_id: str, attempt: int | None,
                  faults: Iterable[dict[str, Any]], record: dict[str, Any] | None = None) -> None:
        """Store injected faults; a fault counts as detected when a failed
        comparison of the same file and stage is in the record."""
        failed = set()
        if record is not None:
            failed = {(e.get("file"), e.get("stage")) for e in record.get("events", ())
                      if e.get("kind") == "compare" and not e.get("ok")}
        self.begin()
        self.conn.executemany(
            "INSERT INTO chaos (run_id, job_id, attempt, kind, file, stage, detected) VALUES (?,?,?,?,?,?,?)",
            ((run_id, job_id, attempt, f.get("kind"), f.get("file"), f.get("stage"),
              f.get("detected", int((f.get("file"), f.get("stage")) in failed))) for f in faults))

    def mark_chaos_detected(self, run_id: int, file: str, kind: str = "rest") -> None:
        """A consumer caught an at-rest fault in ``file``."""
        self.begin()
        self.conn.execute("UPDATE chaos SET detected=1 WHERE run_id=? AND file=? AND kind=? AND detected=0",
                          (run_id, file, kind))

    def add_event(self, run_id: int, job_id: str | None, attempt: int | None, event: dict[str, Any]) -> None:
        """Store one integrity event made outside the wrapper (e.g. final verification)."""
        self.begin()
        self.conn.execute(
            "INSERT INTO integrity_events (run_id, job_id, attempt, file, stage, kind, host, expected,"
            " actual, ok, seconds, size, time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, job_id, attempt, event.get("file"), event.get("stage"), event.get("kind"),
             event.get("host"), event.get("expected"), event.get("actual"), int(bool(event.get("ok"))),
             event.get("seconds", 0.0), event.get("size"), time.time()))

    # -- files and products --------------------------------------------------
    def file(self, lfn: str) -> FileRow | None:
        """The recorded state of ``lfn``, or None."""
        row = self.conn.execute("SELECT lfn, sha256, size, mtime_ns, producer FROM files WHERE lfn=?",
                                (lfn,)).fetchone()
        return FileRow(*row) if row else None

    def record_file(self, lfn: str, sha256: str, size: int, mtime_ns: int | None,
                    producer: str | None, run_id: int | None) -> None:
        """Set the reference checksum of ``lfn``."""
        if self.readonly:
            return
        self.begin()
        self.conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?)",
                          (lfn, sha256, size, mtime_ns, producer, run_id, time.time()))

    def forget_file(self, lfn: str) -> None:
        """Drop the record of a file that is gone (e.g. a removed temp file)."""
        self.begin()
        self.conn.execute("DELETE FROM files WHERE lfn=?", (lfn,))

    def record_product(self, job_id: str, command: str | None, inputs: dict[str, str],
                       outputs: dict[str, str], container_sha: str | None, run_id: int) -> None:
        """Remember what a job's outputs were made from."""
        self.begin()
        self.conn.execute("INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?)",
                          (job_id, text_sha(command), json.dumps(inputs, sort_keys=True),
                           json.dumps(outputs, sort_keys=True), container_sha, run_id, time.time()))

    def product(self, job_id: str) -> tuple[str | None, dict[str, str], dict[str, str], str | None] | None:
        """(command_sha, inputs, outputs, container_sha) recorded for ``job_id``."""
        row = self.conn.execute("SELECT command_sha, inputs, outputs, container_sha FROM products WHERE job_id=?",
                                (job_id,)).fetchone()
        if row is None:
            return None
        return row[0], json.loads(row[1]), json.loads(row[2]), row[3]

    def recorded_files(self) -> Iterator[FileRow]:
        """Every file with a recorded checksum."""
        for row in self.conn.execute("SELECT lfn, sha256, size, mtime_ns, producer FROM files ORDER BY lfn"):
            yield FileRow(*row)

    def last_run(self) -> dict[str, Any] | None:
        """The newest run as a dict, or None."""
        cur = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (for reports)."""
        return self.conn.execute(sql, args).fetchall()


class DatabaseOracle(FilesystemOracle):
    """The planner's reuse interface over recorded checksums (see planner.reuse).

    Outputs are reused only when their checksums match what was recorded when
    they were made, and the job's inputs, command and container are the same.
    """


    def __init__(self, db: Database, workdir: str, images: dict[str, str | None] | None = None):
        super().__init__(workdir)
        self.db = db
        # Records outlive removed temp() files, so jobs with no output left
        # are asked too; with no record at all (a first run) nobody need be.
        self.keeps_records = bool(db.query("SELECT EXISTS (SELECT 1 FROM products)")[0][0]) \
            if _has_table(db, "products") else False
        self.images = images or {}  # staged image lfn -> declared sha256 (or None)
        self._current: dict[str, str | None] = {}

    def _stale_copy(self, job: Job) -> Reason | None:
        """A staged copy is stale when it no longer matches its reference: the
        declared checksum, or else the source as it is now."""
        out = job.outputs[0]
        if not self.present(out.lfn):
            return None
        reference = out.sha256 or self._source_sha(job.source)
        if reference is None or self.current_sha(out.lfn) == reference:
            return None
        if job.kind is JobKind.CONTAINER_STAGE_IN:
            return Reason(RUN_CONTAINER_CHANGED, out.lfn.split("/")[2])
        return Reason(RUN_OUTPUT_CHANGED, out.lfn)

    def _source_sha(self, source: str | None) -> str | None:
        """The checksum of a local source now (None for remote or missing ones)."""
        if not source or ("://" in source and not source.startswith("file://")):
            return None
        path = source[len("file://"):] if source.startswith("file://") else source
        path = os.path.join(self.workdir, path)
        key = "source:" + path
        if key not in self._current:
            self._current[key] = sha256_file(path)[0] if os.path.isfile(path) else None
        return self._current[key]

    def image_sha(self, lfn: str) -> str | None:
        """The image's checksum now: declared, else of the staged file, else unknown."""
        declared = self.images.get(lfn)
        if declared:
            return declared
        return self.current_sha(lfn) if self.present(lfn) else None

    def current_sha(self, lfn: str) -> str | None:
        """The file's checksum now: recorded if its fingerprint is unchanged, else hashed."""
        if lfn in self._current:
            return self._current[lfn]
        path = os.path.join(self.workdir, lfn)
        try:
            st = os.stat(path)
        except OSError:
            self._current[lfn] = None
            return None
        row = self.db.file(lfn)
        if row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
            sha = row.sha256
        else:
            sha = sha256_file(path)[0]
        self._current[lfn] = sha
        return sha

    def stale(self, job: Job) -> Reason | None:
        """Why ``job``'s present outputs cannot be reused, or None."""
        if job.kind in (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN):
            return self._stale_copy(job)
        if not job.outputs:
            return None
        product = self.db.product(job.id)
        present = [f for f in job.outputs if self.present(f.lfn)]
        if product is None:
            return Reason(RUN_NO_RECORD, present[0].lfn) if present else None
        command_sha, inputs, outputs, container_sha = product
        for f in present:
            recorded = outputs.get(f.lfn)
            if recorded is None:
                return Reason(RUN_NO_RECORD, f.lfn)
            if self.current_sha(f.lfn) != recorded:
                return Reason(RUN_OUTPUT_CHANGED, f.lfn)
        for f in job.inputs:
            if not self.present(f.lfn):
                continue  # a removed temp() input: its consumer's outputs stand
            if inputs.get(f.lfn) != self.current_sha(f.lfn):
                return Reason(RUN_INPUT_CHANGED, f.lfn)
        if command_sha != text_sha(job.command):
            return Reason(RUN_COMMAND_CHANGED)
        if container_sha is not None and job.container is not None:
            now = self.image_sha(job.container)
            if now is not None and now != container_sha:
                # .wf/images/NAME/FILE: the dry run names the container
                return Reason(RUN_CONTAINER_CHANGED, job.container.split("/")[2])
        return None


#: Columns added after version 1, by table: (name, type).
_ADDED_COLUMNS = {"runs": (("submit_dir", "TEXT"), ("external_id", "TEXT")),
                  "jobs": (("external_id", "TEXT"),),
                  "integrity_events": (("cached", "INTEGER DEFAULT 0"),)}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an earlier wf to SCHEMA_VERSION (idempotent).

    ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it was, so
    columns added since are added here; the stored version is raised, never
    lowered (a newer wf may have written this database).
    """
    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    stored = int(row[0]) if row and str(row[0]).isdigit() else 0
    if stored >= SCHEMA_VERSION:
        return
    for table, added in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in added:
            if name not in have:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as e:  # another process added it meanwhile
                    if "duplicate column" not in str(e):
                        raise
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def open_database(workdir: str | os.PathLike[str], readonly: bool = False) -> Database:
    """The workdir's database; read-only opens an empty in-memory one if none exists."""
    path = db_path(workdir)
    if readonly and not path.exists():
        db = Database(None)
        return db
    return Database(path, readonly=readonly)


def _has_table(db: Database, name: str) -> bool:
    return bool(db.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))


def image_references(workflow: Workflow) -> dict[str, str | None]:
    """Declared checksums of the workflow's container images, by staged file name."""
    return {container_lfn(c.name, c.image): c.sha256 for c in workflow.containers.values()}


def open_oracle(workdir: str | os.PathLike[str], readonly: bool = True,
                workflow: Workflow | None = None) -> DatabaseOracle:
    """A reuse oracle over the workdir's database (empty if there is none yet)."""
    images = image_references(workflow) if workflow is not None else None
    return DatabaseOracle(open_database(workdir, readonly=readonly), str(workdir), images)
