"""Book what a DAGMan run verified into the workflow database, so later runs reuse it.

A condor run's POST scripts move each node's verified outputs to their
final names and write the node's ledger (``checksums/SHARD/NODE.json``:
job id and output checksums); raw inputs hashed on the submit side are in
``checksums/raw/``. Nothing of that reaches ``.wf/wf.db`` by itself, so a
later ``wf run`` would find outputs with no record and make them again.

:func:`import_condor_results` reads the ledgers of the newest condor run and
records, for each output that is still where the POST script put it and
still hashes to the ledger's checksum, the file (its checksum, size, mtime
and producer) and the producing job (command, inputs with their checksums,
outputs, image): exactly what the local executor records after a job, so
the planner's reuse rules apply unchanged. An output that changed since is
not recorded (its job runs again, "no record"). Importing is incremental
and idempotent: files already recorded with the same checksum, size and
mtime are skipped without hashing, so it can run before every ``wf run``
while a DAG is still going.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import condor_scripts as scripts
from .db import Database
from .wrapper import sha256_file


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def import_condor_results(db: Database, workdir: str | os.PathLike[str]) -> int:
    """Record the outputs of the newest condor run's finished nodes; returns how many files."""
    if "submit_dir" not in db.columns("runs"):
        return 0
    rows = db.query("SELECT id, submit_dir FROM runs WHERE backend='condor' AND submit_dir IS NOT NULL"
                    " ORDER BY id DESC LIMIT 1")
    if not rows or not rows[0][1]:
        return 0
    run_id, submit = rows[0][0], Path(rows[0][1])
    checks = submit / scripts.CHECKSUMS
    if not checks.is_dir():
        return 0
    kinds = dict(db.query("SELECT job_id, kind FROM jobs WHERE run_id=?", (run_id,)))
    ledgers: list[tuple[str, dict[str, Any]]] = []
    known: dict[str, str] = {}  # every checksum the DAG established: {lfn: sha256}
    for path in sorted(checks.glob("*/*.json")):
        data = _load(path)
        if data is None:
            continue
        if path.parent.name == "raw":
            if isinstance(data.get("lfn"), str) and isinstance(data.get("sha256"), str):
                known[data["lfn"]] = data["sha256"]
            continue
        outputs = data.get("outputs")
        if isinstance(data.get("job_id"), str) and isinstance(outputs, dict):
            ledgers.append((path.stem, data))
            known.update({k: v for k, v in outputs.items() if isinstance(v, str)})
    imported = 0
    root = str(workdir)
    for node, data in ledgers:
        job_id, outputs = data["job_id"], data["outputs"]
        landed = {}
        for lfn, sha in outputs.items():
            if _record_output(db, root, lfn, sha, job_id, run_id):
                imported += 1
            landed[lfn] = sha
        if kinds.get(job_id) != "compute" or not landed:
            continue
        spec = _load(submit / scripts.spec_path(node))
        if spec is None or spec.get("job_id") != job_id:
            continue
        inputs = {i["lfn"]: i.get("sha256") or known.get(i["lfn"]) or "" for i in spec.get("inputs") or ()}
        image = spec.get("container") or {}
        image_sha = image.get("sha256") or known.get(image.get("lfn", "")) if image else None
        db.record_product(job_id, spec.get("command"), inputs, landed, image_sha, run_id)
    db.commit()
    return imported


def _record_output(db: Database, root: str, lfn: str, sha: str, producer: str, run_id: int) -> bool:
    """Record one landed output if it still is what the POST script verified."""
    try:
        st = os.stat(os.path.join(root, lfn))
    except OSError:
        return False  # gone (a temp file cleaned up, or removed since): nothing to reuse
    row = db.file(lfn)
    if row is not None and row.sha256 == sha and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
        return False  # imported before, unchanged
    if sha256_file(os.path.join(root, lfn))[0] != sha:
        return False  # changed since it landed: its job runs again
    db.record_file(lfn, sha, st.st_size, st.st_mtime_ns, producer, run_id)
    return True
