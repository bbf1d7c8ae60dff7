"""The job wrapper: stage in, verify, run, hash, stage out, record.

Standard library only, so the file can be shipped unchanged to a worker node
and run as ``python3 wrapper.py SPEC.json`` (the exit code says how the job
went); the local executor calls :func:`run_spec` in-process instead. It is
also the project's one hashing helper, :func:`sha256_file`.

Job spec (JSON object; ``path`` and ``source`` relative to ``cwd`` unless
absolute; ``source`` may also be a ``file://``, ``http://`` or ``https://``
URL)::

    {
      "version": 1,                          # required
      "job_id": "count[sample=A]",           # required
      "attempt": 1,                          # default 1
      "command": "wc -l data/A.txt > …",     # required, run as /bin/sh -c COMMAND;
                                             # null: a transfer job (stage in, stage out)
      "cwd": "/abs/dir",                     # required, created if missing
      "integrity": "full" | "none",          # default "full"
      "staging": "shared" | "copy",          # default "shared"
      "inputs":  [{"lfn": "data/A.txt", "sha256": "<64 hex>" | null,
                   "path": "data/A.txt",     # default: lfn
                   "source": null | "/where/to/copy/it/from",
                   "verified": false}],      # default false; true: the caller
                                             # hashed this very file (same inode,
                                             # size and times) earlier in the run;
                                             # honoured only with a null command
                                             # (nothing reads it) and a sha256
      "outputs": [{"lfn": "results/A.txt",
                   "path": "where the command writes it",   # default: lfn
                   "dest": null | "/abs/final/location"}], # null: stays at path
      "stdout": "/abs/path" | null,          # null: discarded
      "stderr": "/abs/path" | null,          # may equal stdout
      "record": "/abs/provenance.json" | null,
      "env": {"NAME": "value"} | null,       # added to os.environ
      "chaos": null | {"transfer": 0.1, "truncate": 0.0, "silent": 0.0,
                       "rest": 0.0, "seed": 7}  # "rest" is the executor's, ignored here
      "cleanup": ["dir", …],                 # removed (if empty) after a success
      "scratch": null | {"root": null | "/dir",   # run in a fresh directory made
                         "logs": [{"path", "dest"}]},  # here (root: $TMPDIR or
                                             # /tmp): node-local scratch; ``cwd`` is
                                             # then ignored; ``logs`` are copied
                                             # back whatever the outcome, and the
                                             # directory is removed at the end
      "container": null | {"lfn", "image", "sha256", "verified", "cache",
                           "runtime": "bwrap" | "podman", "source",
                           "ro_binds": [...], "rw_binds": [...]}
    }

Steps: (1) stage-in: copy each input with a source to a temporary name beside
``path``, hash the copy, compare, rename; (2) pre-job: hash every input at
``path`` and compare with its reference (a null reference is generated and
reported; an input marked ``verified`` of a job with no command is only
checked to exist, recorded as a compare event with ``"cached": true`` and
size 0); (3) run the command, stdin from /dev/null, after creating the
outputs' directories and removing stale outputs; (4) every output must exist
and is hashed; (5) stage-out: ``shared`` renames ``path`` to ``dest`` (a
verified copy across file systems); ``copy`` copies to a temporary name
beside ``dest``, hashes, compares, then renames all outputs once every copy
is verified; (6) write the record.
Nothing half-written or unverified ever sits under a final name. A missing
input or source is an integrity error. ``integrity: "none"`` hashes nothing
but still stages atomically and still requires every output.

Exit codes (``EXIT_CODES[record["status"]]`` in-process): 0 ok, 1 failed
(the command's own code is in the record), 3 integrity, 4 missing-output,
5 bad-spec (:func:`run_spec` raises SpecError instead).

Provenance record (JSON, written atomically to ``record``, also returned)::

    {"version": 1, "job_id", "attempt", "host", "start", "end",  # epoch floats
     "command_start", "command_end",      # null when the command did not run
     "exit_code",                         # the command's, null when not run
     "status": "ok" | "failed" | "integrity" | "missing-output" | "bad-spec",
     "message", "integrity", "staging",
     "files":  [{"lfn", "role": "input" | "output", "sha256", "size"}],
     "events": [{"file", "stage": "stage-in" | "source" | "pre-job" | "output"
                          | "stage-out",   # source: re-hashed after a bad stage-in copy
                 "kind": "compare" | "generate", "expected", "actual", "ok",
                 "size", "seconds", "host",
                 "cached": true}],   # only on a check the caller's verification
                                     # stood for: nothing hashed (size 0)
     "chaos":  [{"kind", "file", "stage", …}],
     "totals": {"compare_count", "compare_seconds", "generate_count",
                "generate_seconds", "bytes_hashed"}}

An event with ``actual`` null means the file was missing. Chaos harms only
copies, at most one fault per copy: ``transfer`` flips a byte, ``truncate``
cuts the copy short, ``silent`` leaves it empty. The dice are a
``random.Random`` seeded by sha256 of (seed, job_id, attempt, lfn, stage),
so a run is reproducible; no fault is injected where it could not show
(an empty file).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
import time

__all__ = [
    "CHUNK_SIZE",
    "EXIT_BAD_SPEC",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTEGRITY",
    "EXIT_MISSING_OUTPUT",
    "EXIT_OK",
    "SpecError",
    "check_spec",
    "main",
    "run_spec",
    "sha256_file",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTEGRITY = 3
EXIT_MISSING_OUTPUT = 4
EXIT_BAD_SPEC = 5

OK = "ok"
FAILED = "failed"
INTEGRITY = "integrity"
MISSING_OUTPUT = "missing-output"
BAD_SPEC = "bad-spec"

#: Record status -> wrapper exit code.
EXIT_CODES = {
    OK: EXIT_OK,
    FAILED: EXIT_FAILED,
    INTEGRITY: EXIT_INTEGRITY,
    MISSING_OUTPUT: EXIT_MISSING_OUTPUT,
    BAD_SPEC: EXIT_BAD_SPEC,
}

SPEC_VERSION = 1
RECORD_VERSION = 1

#: Bytes read per call; chosen with benchmarks/hashing.py (best of 256 KiB–16 MiB).
CHUNK_SIZE = 1 << 20

CHAOS_KINDS = ("transfer", "truncate", "silent")
#: Copies tried per transfer before the attempt fails as an integrity error.
TRANSFER_TRIES = 3
_HEX = frozenset("0123456789abcdef")
_tmp_ids = itertools.count()


def sha256_file(
    path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE
) -> tuple[str, int, float]:
    """Hash a file: (hex sha256, size in bytes, seconds taken).

    Reads with ``readinto`` into one preallocated buffer; hashlib releases the
    GIL on large updates, so files hashed on different threads run in parallel.
    Costs one pass over the file; raises OSError if it cannot be read.
    """
    t0 = time.perf_counter()
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        known = os.fstat(fd).st_size
        # A small file needs no big buffer: zeroing 1 MiB would cost more than hashing it.
        bufsize = chunk_size if known >= chunk_size or known <= 0 else known + 1
        if known > (256 << 10):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)  # bigger read-ahead when cold
        buf = bytearray(bufsize)
        view = memoryview(buf)
        readinto = f.readinto
        update = h.update
        while n := readinto(buf):
            update(buf if n == bufsize else view[:n])
            size += n
        view.release()
    return h.hexdigest(), size, time.perf_counter() - t0


class SpecError(ValueError):
    """The job spec is malformed (wrapper exit code 5)."""


class _Stop(Exception):
    """Ends a job early with a status and a message."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _want(d: dict, key: str, types: type | tuple[type, ...], where: str, default=...):
    if key not in d:
        if default is ...:
            raise SpecError(f"{where}: missing key {key!r}")
        return default
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        names = "/".join("null" if t is type(None) else t.__name__ for t in _tuple(types))
        raise SpecError(f"{where}: {key!r} must be {names}, found {value!r}")
    return value


def _tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _one_of(d: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = d.get(key, default)
    if value not in allowed:
        raise SpecError(f"spec: {key!r} must be one of {', '.join(allowed)}, found {value!r}")
    return value


def _source_path(src: str, where: str) -> str:
    if "://" in src:
        if src.startswith(("http://", "https://")):
            return src
        if not src.startswith("file://"):
            raise SpecError(
                f"{where}: sources must be paths, file://, http:// or https:// URLs, found {src!r}"
            )
        src = src[len("file://") :]
    return src


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _download(url: str, dst: str) -> None:
    import urllib.request  # only jobs that fetch over HTTP pay for it

    with urllib.request.urlopen(url, timeout=60) as resp, open(dst, "wb") as out:
        shutil.copyfileobj(resp, out, CHUNK_SIZE)


def check_spec(spec: object) -> dict:
    """Validate a job spec; return a normalized copy with absolute paths.

    Raises SpecError naming the key, what was expected and what was found.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"spec: expected a JSON object, found {type(spec).__name__}")
    version = _want(spec, "version", int, "spec")
    if version != SPEC_VERSION:
        raise SpecError(f"spec: 'version' must be {SPEC_VERSION}, found {version!r}")
    job_id = _want(spec, "job_id", str, "spec")
    attempt = _want(spec, "attempt", int, "spec", 1)
    # A null command makes a transfer job: stage in (verified), stage out.
    command = _want(spec, "command", (str, type(None)), "spec")
    cwd = os.path.abspath(_want(spec, "cwd", str, "spec"))
    join = os.path.join
    out = {
        "job_id": job_id,
        "attempt": attempt,
        "command": command,
        "cwd": cwd,
        "full": _one_of(spec, "integrity", ("full", "none"), "full") == "full",
        "copy": _one_of(spec, "staging", ("shared", "copy"), "shared") == "copy",
        "stdout": _want(spec, "stdout", (str, type(None)), "spec", None),
        "stderr": _want(spec, "stderr", (str, type(None)), "spec", None),
        "record": _want(spec, "record", (str, type(None)), "spec", None),
    }
    for key in ("stdout", "stderr", "record"):
        if out[key] is not None:
            out[key] = join(cwd, out[key])
    env = _want(spec, "env", (dict, type(None)), "spec", None)
    if env:
        bad = [k for k, v in env.items() if not isinstance(v, str)]
        if bad:
            raise SpecError(f"spec: 'env' values must be strings, found {bad[0]}={env[bad[0]]!r}")
        env = {**os.environ, **env}
    out["env"] = env or None

    inputs = []
    for i, item in enumerate(_want(spec, "inputs", list, "spec")):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: expected an object, found {item!r}")
        lfn = _want(item, "lfn", str, where)
        ref = _want(item, "sha256", (str, type(None)), where, None)
        if ref is not None:
            ref = ref.lower()
            if len(ref) != 64 or not _HEX.issuperset(ref):
                raise SpecError(
                    f"{where}: 'sha256' must be 64 hex digits, found {item['sha256']!r}"
                )
        src = _want(item, "source", (str, type(None)), where, None)
        verified = _want(item, "verified", bool, where, False)
        inputs.append(
            {
                "lfn": lfn,
                "ref": ref,
                # Only where nothing runs that could read it, and with a reference.
                "verified": verified and command is None and ref is not None and src is None,
                "path": join(cwd, _want(item, "path", str, where, lfn)),
                "source": None if src is None else _join_source(cwd, _source_path(src, where)),
            }
        )
    outputs = []
    dests = set()
    for i, item in enumerate(_want(spec, "outputs", list, "spec")):
        where = f"outputs[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: expected an object, found {item!r}")
        lfn = _want(item, "lfn", str, where)
        path = join(cwd, _want(item, "path", str, where, lfn))
        dest = _want(item, "dest", (str, type(None)), where, None)
        dest = os.path.normpath(join(cwd, dest)) if dest is not None else None
        if dest == os.path.normpath(path):
            dest = None
        final = os.path.normpath(dest or path)
        if final in dests:
            raise SpecError(f"{where}: two outputs land on {final}")
        dests.add(final)
        outputs.append({"lfn": lfn, "path": path, "dest": dest})
    out["inputs"] = inputs
    out["outputs"] = outputs

    out["chaos"] = _check_chaos(_want(spec, "chaos", (dict, type(None)), "spec", None))
    out["rule_env"] = _want(spec, "env", (dict, type(None)), "spec", None) or {}
    out["cleanup"] = [join(cwd, d) for d in _want(spec, "cleanup", list, "spec", [])]
    out["container"] = _check_container(_want(spec, "container", (dict, type(None)), "spec", None), cwd)
    return out


def _check_container(c: dict | None, cwd: str) -> dict | None:
    """The container part of a spec: the image file, its reference, where to unpack."""
    if c is None:
        return None
    where = "container"
    ref = _want(c, "sha256", (str, type(None)), where, None)
    if ref is not None and (len(ref) != 64 or not _HEX.issuperset(ref.lower())):
        raise SpecError(f"{where}: 'sha256' must be 64 hex digits, found {ref!r}")
    src = _want(c, "source", (str, type(None)), where, None)
    return {
        "lfn": _want(c, "lfn", str, where),
        "image": os.path.join(cwd, _want(c, "image", str, where)),
        "ref": ref.lower() if ref else None,
        "verified": bool(_want(c, "verified", bool, where, False)),
        "cache": os.path.join(cwd, _want(c, "cache", str, where)),
        "runtime": _one_of(c, "runtime", ("bwrap", "podman"), "bwrap"),
        "source": None if src is None else _join_source(cwd, _source_path(src, where)),
        "ro_binds": [os.path.join(cwd, p) for p in _want(c, "ro_binds", list, where, [])],
        "rw_binds": [os.path.join(cwd, p) for p in _want(c, "rw_binds", list, where, [])],
    }


def _sibling(name: str):
    """A module shipped beside this file (``runtime.NAME``, or ``NAME`` when run as a script)."""
    import importlib

    return importlib.import_module(f"{__package__}.{name}" if __package__ else name)


def _join_source(cwd: str, src: str) -> str:
    return src if _is_url(src) else os.path.join(cwd, src)


def _check_chaos(chaos: dict | None) -> dict | None:
    """Probabilities per kind and the seed, or None when no fault can happen here."""
    if not chaos:
        return None
    for key, value in chaos.items():
        if key == "seed":
            ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        elif key in CHAOS_KINDS or key == "rest":  # rest is the executor's, not a transfer
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
        else:
            raise SpecError(
                f"chaos: unknown kind {key!r} (expected {', '.join(CHAOS_KINDS)}, rest)"
            )
        if not ok:
            raise SpecError(
                f"chaos: {key!r} must be {'an int or a string' if key == 'seed' else 'a probability in [0, 1]'}, found {value!r}"
            )
    probs = {k: float(chaos.get(k, 0)) for k in CHAOS_KINDS}
    return {"seed": chaos.get("seed", 0), **probs} if any(probs.values()) else None


def _tmp_beside(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.wf-tmp.{os.getpid()}.{next(_tmp_ids)}")


def _unlink(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _copy(src: str, dst: str) -> None:
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)


class _Job:
    """The state of one wrapper run: what was hashed, injected and decided."""

    def __init__(self, s: dict, host: str) -> None:
        self.s = s
        self.host = host
        self.events: list[dict] = []
        self.chaos: list[dict] = []
        self.files: list[dict] = []

    def hash_event(self, path: str, lfn: str, stage: str, expected: str | None) -> dict:
        """Hash ``path``; record a compare (expected given) or generate event."""
        try:
            actual, size, secs = sha256_file(path)
        except FileNotFoundError:
            actual, size, secs = None, 0, 0.0
        ev = {
            "file": lfn,
            "stage": stage,
            "kind": "generate" if expected is None else "compare",
            "expected": expected,
            "actual": actual,
            "ok": actual is not None and (expected is None or actual == expected),
            "size": size,
            "seconds": secs,
            "host": self.host,
        }
        self.events.append(ev)
        return ev

    def inject(self, path: str, lfn: str, stage: str, copy_try: int = 1) -> None:
        """Maybe corrupt the copy at ``path`` (chaos); record what was done."""
        chaos = self.s["chaos"]
        if chaos is None:
            return
        import random  # only chaos runs pay for it

        fields = [chaos["seed"], self.s["job_id"], self.s["attempt"], lfn, stage]
        if copy_try > 1:
            fields.append(copy_try)
        key = json.dumps(fields)
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest(), "big"))
        # Draw every kind, always, so one kind's probability never shifts another's dice.
        draws = [(kind, rng.random()) for kind in CHAOS_KINDS]
        kind = next((k for k, u in draws if u < chaos[k]), None)
        if kind is None:
            return
        size = os.stat(path).st_size
        if size == 0:
            return  # no fault can show in an empty file
        fault = {"kind": kind, "file": lfn, "stage": stage}
        if kind == "transfer":
            offset = rng.randrange(size)
            with open(path, "r+b") as f:
                f.seek(offset)
                byte = f.read(1)[0] ^ rng.randrange(1, 256)
                f.seek(offset)
                f.write(bytes((byte,)))
            fault["offset"] = offset
        elif kind == "truncate":
            fault["size"] = rng.randrange(size)
            os.truncate(path, fault["size"])
        else:  # silent: the transfer "succeeded" and wrote nothing
            os.truncate(path, 0)
        self.chaos.append(fault)

    def verified_copy(
        self, src: str, dst_tmp: str, lfn: str, stage: str, expected: str | None
    ) -> str | None:
        """Copy src to dst_tmp, maybe inject chaos, and (integrity full) verify the copy.

        A copy that does not match is made again, up to TRANSFER_TRIES times
        (as pegasus-transfer does), each failure recorded; a source that does
        not match its reference stops at once: copying it again cannot help.
        """
        for attempt in range(1, TRANSFER_TRIES + 1):
            if _is_url(src):
                try:
                    _download(src, dst_tmp)
                except OSError as e:  # URLError is an OSError
                    raise _Stop(FAILED, f"{lfn}: cannot fetch {src}: {e}") from None
            else:
                _copy(src, dst_tmp)
            if expected is not None or not self.s["full"]:
                # With no reference (a URL fetched for the first time) this copy's
                # checksum becomes the reference: a fault here could never be seen.
                self.inject(dst_tmp, lfn, stage, attempt)
            if not self.s["full"]:
                return None
            ev = self.hash_event(dst_tmp, lfn, stage, expected)
            if ev["ok"]:
                return ev["actual"]
            message = _mismatch(lfn, stage, ev)
            if stage == "stage-in" and expected is not None and not _is_url(src):
                # Was it the transfer or the source? A corrupt source is
                # persistent (its producer must remake it); a bad copy is not.
                source_ev = self.hash_event(src, lfn, "source", expected)
                if not source_ev["ok"]:
                    raise _Stop(INTEGRITY, _mismatch(lfn, "source", source_ev))
            if attempt == TRANSFER_TRIES:
                raise _Stop(INTEGRITY, f"{message}, {TRANSFER_TRIES} copies tried")
            _unlink(dst_tmp)
        return None

    def stage_in(self) -> None:
        for item in self.s["inputs"]:
            src = item["source"]
            if src is None:
                continue
            lfn = item["lfn"]
            url = _is_url(src)
            if not url and not os.path.isfile(src):
                raise _Stop(INTEGRITY, f"input {lfn}: source {src} not found")
            if self.s["full"] and item["ref"] is None and not url:
                item["ref"] = self.hash_event(src, lfn, "stage-in", None)["actual"]
            dst = item["path"]
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = _tmp_beside(dst)
            try:
                actual = self.verified_copy(src, tmp, lfn, "stage-in", item["ref"])
                if item["ref"] is None and actual is not None:
                    # A URL with no reference: the first copy's checksum becomes it.
                    self.events[-1]["kind"] = "generate"
                    item["ref"] = actual
                os.replace(tmp, dst)
                item["staged"] = actual
                tmp = None
            finally:
                _unlink(tmp)

    def container_pre_job(self, rec: dict) -> None:
        """Stage the image if asked, verify it (unless the caller just did), unpack it once."""
        c = self.s["container"]
        if c is None:
            return
        lfn = c["lfn"]
        if c["source"] is not None:
            os.makedirs(os.path.dirname(c["image"]), exist_ok=True)
            tmp = _tmp_beside(c["image"])
            try:
                actual = self.verified_copy(c["source"], tmp, lfn, "stage-in", c["ref"])
                os.replace(tmp, c["image"])
                tmp = None
            finally:
                _unlink(tmp)
            c["ref"] = c["ref"] or actual
            c["verified"] = actual is not None  # just hashed, as it landed
        if c["verified"] and c["ref"]:
            # The caller verified this very file (same inode, size and times)
            # since it was staged: the check is recorded, the bytes not re-read.
            self.events.append({"file": lfn, "stage": "container", "kind": "compare",
                                "expected": c["ref"], "actual": c["ref"], "ok": True, "size": 0,
                                "seconds": 0.0, "host": self.host, "cached": True})
        elif self.s["full"] or c["ref"] is None:
            ev = self.hash_event(c["image"], lfn, "container", c["ref"])
            if not ev["ok"]:
                raise _Stop(INTEGRITY, _mismatch(lfn, "container", ev))
            c["ref"] = ev["actual"]
        images = _sibling("images")
        try:
            rootfs = images.unpack_image(c["image"], c["cache"], c["ref"])
            info = images.unpacked_info(rootfs)
        except images.ImageError as e:
            raise _Stop(INTEGRITY, f"container {lfn}: {e}") from None
        c["rootfs"] = rootfs
        c["env"] = list(info.env)
        rec["container"] = {"lfn": lfn, "sha256": c["ref"], "format": info.format,
                            "manifest_digest": info.manifest_digest,
                            "config_digest": info.config_digest, "runtime": c["runtime"]}

    def pre_job(self) -> None:
        for item in self.s["inputs"]:
            lfn = item["lfn"]
            if self.s["command"] is None and item.get("staged"):
                # A transfer job: the copy was verified a moment ago, nothing runs in between.
                self.files.append(
                    {
                        "lfn": lfn,
                        "role": "input",
                        "sha256": item["staged"],
                        "size": os.stat(item["path"]).st_size,
                    }
                )
                continue
            if not self.s["full"]:
                try:
                    size = os.stat(item["path"]).st_size
                except FileNotFoundError:
                    size = None
                # Nothing was hashed: claim no checksum, not even the unverified reference.
                self.files.append({"lfn": lfn, "role": "input", "sha256": None, "size": size})
                continue
            if item["verified"]:
                # No command reads it, and the caller hashed this very file
                # earlier in the run: it must exist; the check is recorded,
                # marked cached, the bytes are not read again.
                try:
                    size = os.stat(item["path"]).st_size
                except FileNotFoundError:
                    size = None
                ev = {"file": lfn, "stage": "pre-job", "kind": "compare", "expected": item["ref"],
                      "actual": None if size is None else item["ref"], "ok": size is not None,
                      "size": 0, "seconds": 0.0, "host": self.host, "cached": True}
                self.events.append(ev)
                if size is None:
                    raise _Stop(INTEGRITY, _mismatch(lfn, "pre-job", ev))
                self.files.append({"lfn": lfn, "role": "input", "sha256": item["ref"], "size": size})
                continue
            ev = self.hash_event(item["path"], lfn, "pre-job", item["ref"])
            if not ev["ok"]:
                raise _Stop(INTEGRITY, _mismatch(lfn, "pre-job", ev))
            item["ref"] = ev["actual"]
            self.files.append(
                {"lfn": lfn, "role": "input", "sha256": ev["actual"], "size": ev["size"]}
            )

    def run_command(self, rec: dict) -> int:
        s = self.s
        os.makedirs(s["cwd"], exist_ok=True)
        for o in s["outputs"]:
            # A stale output from an earlier attempt would hide a command that wrote nothing.
            _unlink(o["path"])
            os.makedirs(os.path.dirname(o["path"]), exist_ok=True)
        handles = []
        try:
            out = err = subprocess.DEVNULL
            if s["stdout"] is not None:
                out = _open_log(s["stdout"], handles)
            if s["stderr"] is not None:
                err = out if s["stderr"] == s["stdout"] else _open_log(s["stderr"], handles)
            argv, env = ["/bin/sh", "-c", s["command"]], s["env"]
            c = s["container"]
            if c is not None:
                sandbox = _sibling("sandbox")
                env = sandbox.container_env(c["env"], s["rule_env"])
                build = sandbox.bwrap_argv if c["runtime"] == "bwrap" else sandbox.podman_argv
                try:
                    exe = sandbox.find_runtime(c["runtime"])
                except sandbox.RuntimeMissing as e:
                    raise _Stop(FAILED, str(e)) from None
                argv = build(c["rootfs"], s["cwd"], s["cwd"], s["command"], env,
                             ro_binds=c["ro_binds"], rw_binds=c["rw_binds"],
                             **{"bwrap" if c["runtime"] == "bwrap" else "podman": exe})
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # for the runtime itself
            rec["command_start"] = time.time()
            try:
                proc = subprocess.run(
                    argv,
                    cwd=s["cwd"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            finally:
                rec["command_end"] = time.time()
        finally:
            for h in handles:
                h.close()
        rec["exit_code"] = proc.returncode
        return proc.returncode

    def check_outputs(self) -> None:
        missing = []
        for o in self.s["outputs"]:
            try:
                st = os.stat(o["path"])
            except FileNotFoundError:
                missing.append(o["lfn"])
                continue
            if not stat.S_ISREG(st.st_mode):
                missing.append(f"{o['lfn']} (not a regular file)")
                continue
            o["size"] = st.st_size
            o["sha256"] = None
        if missing:
            raise _Stop(MISSING_OUTPUT, "command exited 0 but did not make " + ", ".join(missing))
        staged = {os.path.normpath(i["path"]): i.get("staged") for i in self.s["inputs"]}
        for o in self.s["outputs"]:
            known = staged.get(os.path.normpath(o["path"])) if self.s["command"] is None else None
            if known:
                o["sha256"] = known  # a transfer job's output is its verified input
            elif self.s["full"]:
                ev = self.hash_event(o["path"], o["lfn"], "output", None)
                if not ev["ok"]:  # vanished between stat and hash
                    raise _Stop(
                        MISSING_OUTPUT, f"output {o['lfn']} disappeared before it was hashed"
                    )
                o["sha256"], o["size"] = ev["actual"], ev["size"]
            self.files.append(
                {"lfn": o["lfn"], "role": "output", "sha256": o["sha256"], "size": o["size"]}
            )

    def stage_out(self) -> None:
        todo = [o for o in self.s["outputs"] if o["dest"] is not None]
        for o in todo:
            os.makedirs(os.path.dirname(o["dest"]), exist_ok=True)
        if not self.s["copy"]:
            for o in todo:
                try:
                    os.replace(o["path"], o["dest"])  # a rename cannot change bytes
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    self._copy_out([o])
                    _unlink(o["path"])
            return
        self._copy_out(todo)

    def _copy_out(self, todo: list[dict]) -> None:
        # Verify every copy before the first rename: all outputs land, or none.
        temps: list[str] = []
        try:
            for o in todo:
                temps.append(_tmp_beside(o["dest"]))
                self.verified_copy(o["path"], temps[-1], o["lfn"], "stage-out", o["sha256"])
            for o, tmp in zip(todo, temps, strict=True):
                os.replace(tmp, o["dest"])
            temps = []
        finally:
            for tmp in temps:
                _unlink(tmp)


def _totals(events: list[dict]) -> dict:
    t = dict.fromkeys(("compare_count", "generate_count", "bytes_hashed"), 0)
    t.update(compare_seconds=0.0, generate_seconds=0.0)
    for ev in events:
        t[ev["kind"] + "_count"] += 1
        t[ev["kind"] + "_seconds"] += ev["seconds"]
        t["bytes_hashed"] += ev["size"]
    return t


def _open_log(path: str, handles: list):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = open(path, "wb")
    handles.append(h)
    return h


def _mismatch(lfn: str, stage: str, ev: dict) -> str:
    if ev["actual"] is None:
        return (
            f"input {lfn}: missing at {stage}"
            if stage == "pre-job"
            else f"{lfn}: copy missing at {stage}"
        )
    return f"{lfn}: sha256 mismatch at {stage} (expected {ev['expected']}, found {ev['actual']})"


def _write_record(path: str, rec: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        # One line: json.dump with indent falls back to the pure-Python encoder (~0.7 ms).
        data = json.dumps(rec, separators=(",", ":")).encode()
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        tmp = None
    finally:
        _unlink(tmp)


def _hostname() -> str:
    # os.uname() is what socket.gethostname() returns, without importing
    # socket (6 ms of every batch job's start-up).
    return os.uname().nodename


def _new_record(job_id, attempt, host: str, start: float) -> dict:
    return {
        "version": RECORD_VERSION,
        "job_id": job_id,
        "attempt": attempt,
        "host": host,
        "start": start,
        "end": None,
        "command_start": None,
        "command_end": None,
        "exit_code": None,
        "status": None,
        "message": "",
        "integrity": None,
        "staging": None,
        "files": [],
        "events": [],
        "chaos": [],
        "totals": _totals([]),
    }


def _make_scratch(scratch: object) -> str:
    """A fresh node-local directory for one attempt (the spec's ``scratch``)."""
    import tempfile

    if not isinstance(scratch, dict):
        raise SpecError(f"spec: 'scratch' must be an object, found {scratch!r}")
    root = _want(scratch, "root", (str, type(None)), "scratch", None)
    for i, item in enumerate(_want(scratch, "logs", list, "scratch", [])):
        where = f"scratch.logs[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: expected an object, found {item!r}")
        _want(item, "path", str, where)
        _want(item, "dest", str, where)
    root = root or os.environ.get("TMPDIR") or "/tmp"
    os.makedirs(root, exist_ok=True)
    cwd = tempfile.mkdtemp(prefix="wf-", dir=root)
    for item in scratch.get("logs") or ():  # the command writes its logs there
        os.makedirs(os.path.dirname(os.path.join(cwd, item["path"])), exist_ok=True)
    return cwd


def _leave_scratch(scratch: dict, cwd: str) -> None:
    # A failed job keeps its log: copy the logs back whatever the outcome.
    for item in scratch.get("logs") or ():
        src = os.path.join(cwd, item["path"])
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(item["dest"]) or ".", exist_ok=True)
            shutil.copyfile(src, item["dest"])
    shutil.rmtree(cwd, ignore_errors=True)


def run_spec(spec: dict) -> dict:
    """Run one job attempt from its spec; return (and write) its provenance record.

    Raises SpecError on a malformed spec (nothing is run or written). Costs
    one hash per input per stage and per output per stage with integrity
    full, plus the command itself; nothing else is spawned.
    """
    scratch = spec.get("scratch") if isinstance(spec, dict) else None
    if scratch is None:
        return _run_spec(spec)
    cwd = _make_scratch(scratch)
    try:
        return _run_spec({**spec, "cwd": cwd})
    finally:
        _leave_scratch(scratch, cwd)


def _run_spec(spec: dict) -> dict:
    start = time.time()
    s = check_spec(spec)
    host = _hostname()
    job = _Job(s, host)
    rec = _new_record(s["job_id"], s["attempt"], host, start)
    rec["integrity"] = "full" if s["full"] else "none"
    rec["staging"] = "copy" if s["copy"] else "shared"
    try:
        job.stage_in()
        job.pre_job()
        job.container_pre_job(rec)
        if s["command"] is not None:
            code = job.run_command(rec)
            if code != 0:
                how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
                raise _Stop(FAILED, f"command {how}")
        job.check_outputs()
        job.stage_out()
        rec["status"] = OK
        for d in s["cleanup"]:  # directories the caller wants gone once they are empty
            try:
                os.rmdir(d)
            except OSError:
                pass
    except _Stop as stop:
        rec["status"], rec["message"] = stop.status, stop.message
    except OSError as e:
        rec["status"], rec["message"] = FAILED, f"wrapper: {e}"
    rec["files"], rec["events"], rec["chaos"] = job.files, job.events, job.chaos
    rec["totals"] = _totals(job.events)
    rec["end"] = time.time()
    if s["record"] is not None:
        _write_record(s["record"], rec)
    return rec


def main(argv: list[str] | None = None) -> int:
    """``wrapper.py SPEC.json`` (or ``-`` for stdin) -> exit code.

    ``wrapper.py --array LIST`` is one task of a job array: LIST is a JSON
    list of lists of spec paths; the task runs the specs of entry
    ``$SLURM_ARRAY_TASK_ID`` one after another (each with its own checks and
    record) and exits with the first non-zero code.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--array":
        try:
            with open(args[1], encoding="utf-8") as f:
                specs = json.load(f)[int(os.environ["SLURM_ARRAY_TASK_ID"])]
            if not isinstance(specs, list) or not all(isinstance(p, str) for p in specs):
                raise ValueError(f"expected a list of spec paths, found {specs!r}")
        except (OSError, KeyError, ValueError, IndexError, TypeError) as e:
            print(f"wf-wrapper: bad-spec: no spec for this array task: {e!r}", file=sys.stderr)
            return EXIT_BAD_SPEC
        codes = [main([p]) for p in specs]
        return next((c for c in codes if c), EXIT_OK)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: wrapper.py SPEC.json | wrapper.py --array LIST", file=sys.stderr)
        return EXIT_BAD_SPEC
    start = time.time()
    spec = None
    try:
        if args[0] == "-":
            spec = json.load(sys.stdin)
        else:
            with open(args[0], encoding="utf-8") as f:
                spec = json.load(f)
        rec = run_spec(spec)
    except (OSError, ValueError) as e:  # SpecError and JSONDecodeError are ValueErrors
        status = BAD_SPEC if isinstance(e, ValueError) or spec is None else FAILED
        print(f"wf-wrapper: {status}: {e}", file=sys.stderr)
        record = spec.get("record") if isinstance(spec, dict) else None
        if isinstance(record, str):
            rec = _new_record(spec.get("job_id"), spec.get("attempt"), _hostname(), start)
            rec.update(status=status, message=str(e), end=time.time())
            cwd = spec.get("cwd")
            try:
                _write_record(os.path.join(cwd, record) if isinstance(cwd, str) else record, rec)
            except OSError:
                pass
        return EXIT_CODES[status]
    if rec["status"] != OK:
        print(f"wf-wrapper: {rec['job_id']}: {rec['status']}: {rec['message']}", file=sys.stderr)
    return EXIT_CODES[rec["status"]]


if __name__ == "__main__":
    sys.exit(main())
