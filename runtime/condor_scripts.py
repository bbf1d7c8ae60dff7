#!/usr/bin/env python3
"""The PRE and POST scripts of the DAGMan backend, shipped as ``wf_node.py``.

Standard library only (plus :func:`sha256_file` from the wrapper shipped
beside it as ``wf_wrapper.py``: one hashing helper). DAGMan runs them on the
submit side, in the submit directory::

    SCRIPT PRE  NODE wf_node.py pre  $JOB $RETRY
    SCRIPT POST NODE wf_node.py post $JOB $RETURN $RETRY

Checksums flow like Pegasus's ``.meta`` files. A node's POST script reads
the provenance record the wrapper wrote on the execute node (it comes back
in the node's landing directory with the outputs), refuses anything short
of a verified success, hashes each landed output against the record (the
stage-out check on the submit side), moves the outputs to their final
names, and only then records their checksums in ``checksums/SHARD/NODE.json``.
A child's PRE script fills the ``sha256`` of each input made in this DAG
from its producer's ledger, so the wrapper verifies the transferred copy
against it before the command starts; an input whose reference cannot be
found fails the node (exit 5, no retry) rather than letting it run
unverified. A raw input with no reference known when the DAG was written is
hashed here, on the submit side, the first time a node needs it
(``checksums/raw/…``, first writer wins): that checksum is the reference for
every later use, and the wrapper checks each transferred copy against it.

Exit codes: 0 ok; 1 the job failed (retry); 3 an integrity error (retry);
4 a missing output (retry); 5 do not retry (``RETRY … UNLESS-EXIT 5``): a
bad spec, or an input reference that cannot be found.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import sys

SHARD_SIZE = 250
#: Under the working directory: where each node's outputs, record and command log come back.
LANDING = ".wf/landing"
#: The record's and the command log's names in a landing directory.
RECORD = "_wf_record.json"
#: Stage of the POST script's checks of the outputs landed on the submit side.
LANDED = "landed"
COMMAND_LOG = "_wf_command.log"
SPECS, SANDBOX, RECORDS, CHECKSUMS, LOGS = "specs", "sandbox", "records", "checksums", "logs"

EXIT_OK, EXIT_FAILED, EXIT_INTEGRITY, EXIT_MISSING_OUTPUT, EXIT_NO_RETRY = 0, 1, 3, 4, 5
_STATUS_EXIT = {"failed": EXIT_FAILED, "integrity": EXIT_INTEGRITY,
                "missing-output": EXIT_MISSING_OUTPUT, "bad-spec": EXIT_NO_RETRY}
_NODE = re.compile(r"j(\d+)")


def _hash(path: str) -> tuple[str, int, float]:
    """(sha256, size, seconds) of a file, with the wrapper's helper."""
    if __package__:
        from .wrapper import sha256_file
    else:  # shipped: wf_wrapper.py sits beside this script
        from wf_wrapper import sha256_file  # type: ignore[import-not-found,no-redef]
    return sha256_file(path)


def _sha256_file(path: str) -> str:
    return _hash(path)[0]


# -- where a node's files live (the emitter uses the same functions) ------------
def shard_for(index: int) -> str:
    """The shard directory of the node with this index: SHARD_SIZE nodes per shard."""
    return f"{index // SHARD_SIZE:04d}"


def shard_of(node: str) -> str:
    """The shard directory of a node, from the index in its name (``j00042_…``)."""
    m = _NODE.match(node)
    if m is None:
        raise ValueError(f"not a wf node name: {node!r}")
    return shard_for(int(m.group(1)))


def spec_path(node: str) -> str:
    return f"{SPECS}/{shard_of(node)}/{node}.json"


def sandbox_dir(node: str) -> str:
    """``in/`` holds the placeholders of the rule's log files, made by the PRE script."""
    return f"{SANDBOX}/{shard_of(node)}/{node}"


def ledger_path(node: str) -> str:
    return f"{CHECKSUMS}/{shard_of(node)}/{node}.json"


def raw_ledger_path(path: str) -> str:
    key = hashlib.sha1(path.encode()).hexdigest()
    return f"{CHECKSUMS}/raw/{key[:2]}/{key}.json"


# -- small helpers ------------------------------------------------------------------
def _say(node: str, message: str) -> None:
    print(f"wf {node}: {message}", flush=True)


def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- PRE ------------------------------------------------------------------------
def _raw_reference(meta: dict, lfn: str, path: str) -> str:
    """The first-sight checksum of a raw input (hashed here once; first writer wins)."""
    ledger = raw_ledger_path(path)
    known = _load(ledger)
    if known is not None:
        return known["sha256"]
    full = path if os.path.isabs(path) else os.path.join(meta["workdir"], path)
    try:
        sha = _sha256_file(full)
    except OSError as e:
        raise _Fail(EXIT_NO_RETRY, f"raw input {lfn}: cannot hash {full}: {e}") from None
    os.makedirs(os.path.dirname(ledger), exist_ok=True)
    tmp = f"{ledger}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"lfn": lfn, "path": path, "sha256": sha}, f)
    try:
        os.link(tmp, ledger)  # fails if another PRE script got there first: its value wins
    except FileExistsError:
        sha = _load(ledger)["sha256"]
    finally:
        os.unlink(tmp)
    return sha


def _reference(meta: dict, lfn: str, ledgers: dict[str, dict]) -> str | None:
    producer = meta["produced"].get(lfn)
    if producer is not None:
        if producer not in ledgers:
            ledgers[producer] = _load(ledger_path(producer)) or {}
        sha = (ledgers[producer].get("outputs") or {}).get(lfn)
        if not sha:
            raise _Fail(EXIT_NO_RETRY, f"input {lfn}: no checksum recorded by its producer "
                                       f"{producer} ({ledger_path(producer)}): refusing to run unverified")
        return sha
    path = meta["first_sight"].get(lfn)
    return _raw_reference(meta, lfn, path) if path is not None else None


def pre(node: str, retry: int) -> int:
    """Fill the spec's input references, set the attempt, prepare the sandbox."""
    spec = _load(spec_path(node))
    if spec is None:
        raise _Fail(EXIT_NO_RETRY, f"no spec at {spec_path(node)}")
    meta = spec["condor"]
    spec["attempt"] = retry + 1
    if spec.get("integrity", "full") == "full":
        ledgers: dict[str, dict] = {}
        items = list(spec["inputs"])
        if spec.get("container"):
            items.append(spec["container"])
        for item in items:
            sha = _reference(meta, item["lfn"], ledgers)
            if sha is None:
                continue
            if item.get("sha256") and item["sha256"] != sha:
                raise _Fail(EXIT_NO_RETRY, f"input {item['lfn']}: declared checksum {item['sha256']} "
                                           f"but {sha} was recorded")
            item["sha256"] = sha
    # Nothing from an earlier attempt may pass for this one.
    landing = os.path.join(meta["workdir"], meta["landing"])
    shutil.rmtree(landing, ignore_errors=True)
    os.makedirs(landing)
    open(os.path.join(landing, COMMAND_LOG), "wb").close()  # the landing folder is never empty
    box = sandbox_dir(node)
    shutil.rmtree(box, ignore_errors=True)
    for lfn in meta["logs"]:
        # Empty placeholders, transferred in: the command finds its log's folder,
        # and the log always exists to be transferred back.
        path = os.path.join(box, "in", lfn)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    _write_json(spec_path(node), spec)
    return EXIT_OK


# -- POST -----------------------------------------------------------------------
def _promote(src: str, dest: str, sha: str | None, full: bool) -> None:
    """Move a verified landed copy to its final name (a verified copy across file systems)."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    try:
        os.replace(src, dest)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    tmp = f"{dest}.wf-tmp.{os.getpid()}"
    shutil.copyfile(src, tmp)
    if full and _sha256_file(tmp) != sha:
        os.unlink(tmp)
        raise _Fail(EXIT_INTEGRITY, f"{dest}: copy to its final location does not match {sha}")
    os.replace(tmp, dest)
    os.unlink(src)


def _verdict(spec: dict, landing: str, record: dict | None, ret: int,
             checks: list[dict]) -> dict[str, str | None]:
    """The outputs' checksums if the attempt is a verified success; raises _Fail otherwise.
    Each hash of a landed output is appended to ``checks`` (an integrity event)."""
    if record is None:
        code = EXIT_NO_RETRY if ret == EXIT_NO_RETRY else EXIT_FAILED
        raise _Fail(code, f"no provenance record came back (job exit {ret})")
    if record.get("job_id") != spec["job_id"] or record.get("attempt") != spec["attempt"]:
        raise _Fail(EXIT_FAILED, f"the record is for {record.get('job_id')} attempt "
                                 f"{record.get('attempt')}, not this attempt")
    status = record.get("status")
    if status != "ok":
        raise _Fail(_STATUS_EXIT.get(status, EXIT_FAILED), f"{status}: {record.get('message')}")
    if ret != 0:
        raise _Fail(EXIT_FAILED, f"the record says ok but the job exited {ret}")
    full = spec.get("integrity", "full") == "full"
    made = {f["lfn"]: f.get("sha256") for f in record.get("files") or () if f.get("role") == "output"}
    out: dict[str, str | None] = {}
    for o in spec["outputs"]:
        lfn = o["lfn"]
        if lfn not in made:
            raise _Fail(EXIT_MISSING_OUTPUT, f"output {lfn} is not in the record")
        sha = made[lfn]
        if full and not sha:
            raise _Fail(EXIT_MISSING_OUTPUT, f"output {lfn} has no checksum in the record")
        landed = os.path.join(landing, lfn)
        if not os.path.isfile(landed):
            raise _Fail(EXIT_INTEGRITY, f"output {lfn} did not come back from the execute node")
        if full:
            actual, size, seconds = _hash(landed)
            checks.append({"file": lfn, "stage": LANDED, "kind": "compare", "expected": sha,
                           "actual": actual, "ok": actual == sha, "size": size, "seconds": seconds,
                           "host": socket.gethostname()})
            if actual != sha:
                raise _Fail(EXIT_INTEGRITY, f"{lfn}: sha256 mismatch at stage-out "
                                            f"(expected {sha}, found {actual})")
        out[lfn] = sha
    return out


def _keep_record(node: str, retry: int, record: dict | None, verdict: dict) -> None:
    """The attempt's record, with this POST script's verdict and checks under ``post``."""
    if record is not None:
        _write_json(f"{RECORDS}/{shard_of(node)}/{node}.{retry + 1}.json", {**record, "post": verdict})


def post(node: str, ret: int, retry: int) -> int:
    """Check the attempt; on success promote the outputs and record their checksums."""
    spec = _load(spec_path(node))
    if spec is None:
        raise _Fail(EXIT_NO_RETRY, f"no spec at {spec_path(node)}")
    meta = spec["condor"]
    landing = os.path.join(meta["workdir"], meta["landing"])
    record = _load(os.path.join(landing, RECORD))
    shard = shard_of(node)
    log = os.path.join(landing, COMMAND_LOG)
    if os.path.isfile(log):
        os.makedirs(f"{LOGS}/{shard}", exist_ok=True)
        shutil.copyfile(log, f"{LOGS}/{shard}/{node}.cmd.log")
    checks: list[dict] = []
    verdict = {"exit": EXIT_OK, "message": None, "events": checks}
    full = spec.get("integrity", "full") == "full"
    try:
        outputs = _verdict(spec, landing, record, ret, checks)
        for lfn, sha in outputs.items():
            _promote(os.path.join(landing, lfn), os.path.join(meta["workdir"], lfn), sha, full)
    except _Fail as e:
        verdict.update(exit=e.code, message=str(e))
        raise
    except (ValueError, OSError, KeyError) as e:
        verdict.update(exit=EXIT_FAILED, message=f"{type(e).__name__}: {e}")
        raise
    finally:
        _keep_record(node, retry, record, verdict)
    for lfn in meta["protected"]:
        dest = os.path.join(meta["workdir"], lfn)
        mode = stat.S_IMODE(os.stat(dest).st_mode)
        os.chmod(dest, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    # The ledger is the commit point: a child's PRE script trusts only what is here.
    _write_json(ledger_path(node), {"node": node, "job_id": spec["job_id"],
                                    "attempt": spec["attempt"], "outputs": outputs})
    # A failed attempt's landing folder stays for a look (the next PRE script clears it).
    shutil.rmtree(landing, ignore_errors=True)
    shutil.rmtree(sandbox_dir(node), ignore_errors=True)
    _say(node, f"ok: {len(outputs)} output(s) verified and recorded")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``wf_node.py pre NODE RETRY`` or ``wf_node.py post NODE RETURN RETRY``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 3 and args[0] == "pre":
            return pre(args[1], int(args[2]))
        if len(args) == 4 and args[0] == "post":
            return post(args[1], int(args[2]), int(args[3]))
    except _Fail as e:
        _say(args[1], f"{'PRE' if args[0] == 'pre' else 'POST'} failed (exit {e.code}): {e}")
        return e.code
    except (ValueError, OSError, KeyError) as e:
        print(f"wf_node.py {' '.join(args)}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print("usage: wf_node.py pre NODE RETRY | wf_node.py post NODE RETURN RETRY", file=sys.stderr)
    return EXIT_NO_RETRY


if __name__ == "__main__":
    sys.exit(main())
