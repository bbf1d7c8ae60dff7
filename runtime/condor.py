"""The HTCondor DAGMan backend: a self-contained submit directory for a plan.

``write_submit_dir`` turns the jobs that run into a DAG (``wf.dag``, written
with ``htcondor2.dags``), one submit description per rule or job kind
(``count.sub``, ``stage_in.sub``, built with ``htcondor2.Submit``) with the
per-node values in ``VARS``, and one job spec per node for the job wrapper,
which is every node's executable. Layout of the directory::

    wf.dag  wf.index.json  RULE.sub …  wf_wrapper.py images.py sandbox.py wf_node.py
    specs/SHARD/NODE.json        the wrapper's spec (the PRE script fills references)
    logs/SHARD/NODE.{log,out,err,cmd.log}
    sandbox/SHARD/NODE/in/       placeholders of the rule's log files (PRE script)
    records/SHARD/NODE.N.json    provenance record of attempt N, with the POST script's verdict
    checksums/SHARD/NODE.json    verified output checksums: the ledger children read
    wf.dag.status  wf.dag.nodes.log  …   written by DAGMan once the DAG runs: what
                                 ``wf status`` reads (runtime/condor_status.py)

A shard holds SHARD_SIZE nodes, so no directory grows past ~1000 files. The
checksum flow (PRE and POST scripts) is described in runtime/condor_scripts.py.

Jobs run in the vanilla universe with HTCondor's file transfer and
``preserve_relative_paths``: each input is found on the submit side at its
lfn under the working directory (the jobs' ``initialdir``) and lands at the
same relative path in the scratch directory, where the wrapper runs with
``staging: copy``. Outputs come back in one directory per node,
``.wf/landing/DAG/SHARD/NODE`` under the working directory: the PRE script
makes it and it travels with the inputs, so it always exists when the job
exits, whatever happened (HTCondor holds a job whose listed output is
missing, and the record of what went wrong would be lost). On success the
wrapper copies each output into it, verified; its record and the command's
log are written there in any case. The POST script checks the record,
hashes each landed output against it, and only then moves it to its final
name: nothing unverified ever sits under a final name.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from planner.plan import FileRef, Job, JobKind, Plan

from . import condor_scripts as scripts
from .chaos import Chaos

__all__ = ["DAG_FILE", "INDEX_FILE", "NODES_LOG", "STATUS_FILE", "CondorUnavailable", "SubmitDirError",
           "load_htcondor", "node_name", "parse_rescue", "run_condor", "submit_dag", "write_submit_dir"]

DAG_FILE, INDEX_FILE = "wf.dag", "wf.index.json"
STATUS_FILE, DOT_FILE = "wf.dag.status", "wf.dot"
#: DAGMan's default node log (DAGMAN_DEFAULT_NODE_LOG, ``@(DAG_DIR)/@(DAG_FILE).nodes.log``):
#: every node job's events, and the POST script events DAGMan writes itself.
NODES_LOG = f"{DAG_FILE}.nodes.log"
#: Status of a condor run in the workflow database (runs.status).
RUN_WRITTEN, RUN_SUBMITTED, RUN_NOT_SUBMITTED = "written", "submitted", "not-submitted"
WRAPPER, NODE_SCRIPT = "wf_wrapper.py", "wf_node.py"
STAGEIN_CATEGORY, STAGEIN_MAXJOBS = "stagein", 10
#: Wrapper exit code for a bad spec: retrying cannot cure it (``RETRY … UNLESS-EXIT 5``).
NO_RETRY_EXIT = 5
#: Children per PARENT line: DAGMan reads any length, people and diff tools do not.
EDGE_CHUNK = 100
#: Threads creating spec files (file creation waits on the file system, in parallel).
WRITERS = 4
#: Holds that mean a transfer failed (12 output, 13 input): remove the job so that
#: the node fails, its POST script says why, and RETRY applies, instead of waiting held.
PERIODIC_REMOVE = "(JobStatus == 5) && (HoldReasonCode == 12 || HoldReasonCode == 13)"

_HERE = Path(__file__).resolve().parent
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
# Characters HTCondor's transfer lists or submit macros would take as syntax.
_BAD_LFN = re.compile(r'[,"\\$\n\r\t]')
_STAGE_KINDS = (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN)


class SubmitDirError(ValueError):
    """The submit directory cannot be written (exit 2): the message says why."""


class CondorUnavailable(Exception):
    """Nothing to submit to from here; ``problems`` says what is missing."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# -- htcondor2, imported safely -------------------------------------------------------
def load_htcondor() -> Any:
    """``htcondor2``, imported with CONDOR_CONFIG set to a config file written here.

    A missing or malformed configuration can kill the process at import;
    building submit descriptions needs none. The caller's CONDOR_CONFIG is
    restored right after, so :func:`submit_dag` can reload the real one.
    """
    if "htcondor2" in sys.modules:
        return sys.modules["htcondor2"]
    folder = tempfile.mkdtemp(prefix="wf-condor-config-")
    atexit.register(shutil.rmtree, folder, True)
    config = os.path.join(folder, "condor_config")
    with open(config, "w", encoding="utf-8") as f:
        f.write("# written by wf: enough to build submit descriptions, no daemons\n")
    saved = os.environ.get("CONDOR_CONFIG")
    os.environ["CONDOR_CONFIG"] = config
    try:
        import htcondor2
        import htcondor2.dags  # noqa: F401  (a subpackage: loaded while the config is ours)
    finally:
        if saved is None:
            os.environ.pop("CONDOR_CONFIG", None)
        else:
            os.environ["CONDOR_CONFIG"] = saved
    return htcondor2


# -- names --------------------------------------------------------------------------
def node_name(index: int, job_id: str, width: int = 5) -> str:
    """A DAGMan-safe, unique node name: ``j00001_count_s_A`` for job ``count[s=A]``.

    Only letters, digits and underscores, and always a lowercase ``j`` first:
    never a DAGMan keyword, and the rescue-file parser of htcondor2.dags
    25.14 (which strips the letters D, O, N, E from the front) leaves it whole.
    """
    tail = _UNSAFE.sub("_", job_id).strip("_")[:40].rstrip("_")
    return f"j{index:0{width}d}_{tail}" if tail else f"j{index:0{width}d}"


def _layer_label(job: Job) -> str:
    label = job.rule if job.kind is JobKind.COMPUTE and job.rule else job.kind.value
    return _UNSAFE.sub("_", label).strip("_") or "job"


def parse_rescue(text: str) -> set[str]:
    """Node names marked DONE in a DAGMan rescue file.

    htcondor2.dags 25.14 parses ``DONE name`` with ``line.lstrip("DONE ")``,
    which also eats leading D, O, N, E letters of the name; split instead.
    """
    done = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "DONE":
            done.add(parts[1])
    return done


# -- the submit directory -----------------------------------------------------------
def _prepare(out: Path, workdir: str) -> None:
    wd = Path(workdir).resolve()
    if out == wd or out in wd.parents:
        raise SubmitDirError(f"the submit directory {out} would hold the working directory {wd}")
    if out.exists():
        if not out.is_dir():
            raise SubmitDirError(f"{out} exists and is not a directory")
        if (out / f"{DAG_FILE}.lock").exists():
            raise SubmitDirError(f"a DAG may be running from {out} ({DAG_FILE}.lock exists): "
                                 f"wait for it or remove it with condor_rm first")
        if any(out.iterdir()):
            if not (out / INDEX_FILE).exists():
                raise SubmitDirError(f"{out} is not empty and is not a wf submit directory")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _copy_programs(out: Path) -> None:
    text = (_HERE / "wrapper.py").read_text(encoding="utf-8")
    # HTCondor runs the executable itself (as condor_exec.exe): it needs its interpreter line.
    (out / WRAPPER).write_text("#!/usr/bin/env python3\n" + text, encoding="utf-8")
    shutil.copyfile(_HERE / "condor_scripts.py", out / NODE_SCRIPT)
    for name in ("images.py", "sandbox.py"):  # the wrapper imports them for container jobs
        shutil.copyfile(_HERE / name, out / name)
    for name in (WRAPPER, NODE_SCRIPT):
        (out / name).chmod(0o755)


def _check_lfn(job: Job, lfn: str) -> None:
    if _BAD_LFN.search(lfn) or lfn.startswith(scripts.LANDING + "/") or lfn != lfn.strip():
        raise SubmitDirError(f"job {job.id}: file name {lfn!r} cannot go through HTCondor's file "
                             f"transfer (no , \" \\ $, tabs, newlines or outer spaces)")


def _local_source(source: str) -> str | None:
    """The path of a stage-in source on the submit side, or None for a URL the wrapper fetches."""
    if source.startswith("file://"):
        return source[len("file://"):]
    return None if "://" in source else source


class _Emitter:
    """Builds spec, VARS and transfer lists per job; one instance per submit directory."""

    def __init__(self, plan: Plan, out: Path, integrity: str, chaos: dict | None,
                 refs: Mapping[str, str | None], runtime: str):
        self.plan, self.out, self.integrity, self.chaos = plan, str(out), integrity, chaos
        self.refs, self.runtime = refs, runtime
        self.full = integrity == "full"
        self.workdir = plan.workdir
        self.node_of: dict[str, str] = {}
        # Two submit directories of one working directory never share landing places.
        self.dag_id = hashlib.sha1(str(out).encode()).hexdigest()[:8]
        self.checked: set[str] = set()

    def reference(self, f: FileRef, meta: dict[str, Any]) -> str | None:
        """The reference known now; or how the PRE script will find it (``meta``)."""
        producer = self.node_of.get(f.producer) if f.producer else None
        if producer is not None:
            meta["produced"][f.lfn] = producer
            return f.sha256
        sha = f.sha256 or self.refs.get(f.lfn)
        if sha is None and self.full:
            meta["first_sight"][f.lfn] = f.lfn
        return sha

    def job(self, job: Job, node: str, shard: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The node's spec and its VARS."""
        out = self.out
        landing = f"{scripts.LANDING}/{self.dag_id}/{shard}/{node}"
        meta: dict[str, Any] = {"node": node, "workdir": self.workdir, "landing": landing,
                                "produced": {}, "first_sight": {}, "logs": list(job.log),
                                "protected": [f.lfn for f in job.outputs if f.protected]}
        spec: dict[str, Any] = {
            "version": 1, "job_id": job.id, "attempt": 1, "command": job.command, "cwd": ".",
            "integrity": self.integrity, "staging": "copy",
            "stdout": f"{landing}/{scripts.COMMAND_LOG}", "stderr": f"{landing}/{scripts.COMMAND_LOG}",
            "record": f"{landing}/{scripts.RECORD}", "chaos": self.chaos,
        }
        transfer = [f"{out}/{scripts.SPECS}/{shard}/{node}.json", landing]
        for top in dict.fromkeys(lfn.split("/", 1)[0] for lfn in job.log):
            transfer.append(f"{out}/{scripts.SANDBOX}/{shard}/{node}/in/{top}")  # PRE placeholders
        checked = self.checked
        for lfn in (*job.log, *(f.lfn for f in job.inputs), *(f.lfn for f in job.outputs)):
            if lfn not in checked:
                _check_lfn(job, lfn)
                checked.add(lfn)
        if job.kind in _STAGE_KINDS:
            dest = job.outputs[0]
            source = job.source or ""
            path = _local_source(source)
            if path is None:
                scratch_source = source  # http(s): the wrapper fetches it on the execute node
            elif os.path.isabs(path) or path.startswith("../") or path == "..":
                full = os.path.normpath(os.path.join(self.workdir, path))
                transfer.append(full)  # an absolute path lands under its base name
                scratch_source = os.path.basename(full)
            else:
                transfer.append(path)
                scratch_source = path
            sha = dest.sha256 or self.refs.get(dest.lfn)
            if sha is None and self.full and path is not None:
                meta["first_sight"][dest.lfn] = path
            spec["inputs"] = [{"lfn": dest.lfn, "sha256": sha, "path": dest.lfn, "source": scratch_source}]
        else:
            spec["inputs"] = [{"lfn": f.lfn, "sha256": self.reference(f, meta), "path": f.lfn}
                              for f in job.inputs]
            transfer.extend(dict.fromkeys(f.lfn for f in job.inputs))
            if job.container is not None:
                image = self.plan.files[job.container]
                spec["container"] = {"lfn": image.lfn, "sha256": self.reference(image, meta),
                                     "image": image.lfn, "cache": "_wf_containers",
                                     "runtime": self.runtime}
                transfer += [image.lfn, f"{out}/images.py", f"{out}/sandbox.py"]
        spec["outputs"] = [{"lfn": f.lfn, "path": f.lfn, "dest": f"{landing}/{f.lfn}"}
                           for f in job.outputs]
        spec["condor"] = meta
        # The rule's logs exist in any case (placeholders): they come straight back to their names.
        back = [landing, *dict.fromkeys(job.log)]
        return spec, {"wf_node": node, "wf_shard": shard,
                      "wf_inputs": ", ".join(transfer), "wf_outputs": ", ".join(back)}

    def submit(self, htcondor: Any, label: str, job: Job) -> Any:
        """The submit description shared by a layer's nodes (built from its first job)."""
        out = self.out
        d = {
            "universe": "vanilla",
            "executable": f"{out}/{WRAPPER}",
            "arguments": "$(wf_node).json",
            "initialdir": self.workdir,
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT",
            "preserve_relative_paths": "True",
            "transfer_input_files": "$(wf_inputs)",
            "transfer_output_files": "$(wf_outputs)",
            "request_cpus": str(max(1, job.threads)),
        }
        resources = dict(job.resources)
        if "mem_mb" in resources:
            d["request_memory"] = str(resources["mem_mb"])
        if "disk_mb" in resources:
            d["request_disk"] = f"{resources['disk_mb']}MB"
        d.update({
            "log": f"{out}/logs/$(wf_shard)/$(wf_node).log",
            "output": f"{out}/logs/$(wf_shard)/$(wf_node).out",
            "error": f"{out}/logs/$(wf_shard)/$(wf_node).err",
            "periodic_remove": PERIODIC_REMOVE,
            "My.WfNode": '"$(wf_node)"',
            "My.WfLayer": f'"{label}"',
        })
        return htcondor.Submit(d)


def _writer_class(htcondor: Any) -> type:
    base = htcondor.dags.writer.DAGWriter

    class Writer(base):  # type: ignore[misc, valid-type]
        """htcondor2.dags' writer, with its 25.14 bugs worked around and our edge lines.

        Layers are written in plan order and edges come from the plan, job by
        job, rather than from the layer graph (whose walk starts at layers
        without parents: a rule whose jobs feed each other would be lost).
        """

        def __init__(self, dag: Any, formatter: Any, layers: list, edges: list[str], header: list[str]):
            super().__init__(dag, node_name_formatter=formatter)
            self.layers, self.edges, self.header = layers, edges, header

        def yield_dag_meta_lines(self) -> Iterator[str]:
            for line in super().yield_dag_meta_lines():
                if line.startswith("CATEGORY "):  # max_jobs_by_category is written as CATEGORY
                    line = "MAXJOBS " + line[len("CATEGORY "):]
                yield line

        def yield_dag_file_lines(self) -> Iterator[str]:
            yield from self.header
            yield from self.yield_dag_meta_lines()
            for layer in self.layers:
                yield from self.yield_node_lines(layer)
            yield from self.edges

    return Writer


def _formatter_class(htcondor: Any) -> type:
    class Names(htcondor.dags.NodeNameFormatter):  # type: ignore[misc, name-defined]
        """Our node names for (layer, index), and back."""

        def __init__(self) -> None:
            self.names: dict[str, list[str]] = {}
            self.back: dict[str, tuple[str, int]] = {}

        def add(self, layer: str, name: str) -> None:
            self.back[name] = (layer, len(self.names.setdefault(layer, [])))
            self.names[layer].append(name)

        def generate(self, layer_name: str, node_index: int) -> str:
            return self.names[layer_name][node_index]

        def parse(self, node_name: str) -> tuple[str, int]:
            return self.back[node_name]

    return Names


def write_submit_dir(plan: Plan, out_dir: str | os.PathLike[str], *, integrity: str = "full",
                     chaos: Chaos | None = None, refs: Mapping[str, str | None] | None = None,
                     container_runtime: str = "bwrap") -> Path:
    """Write the DAGMan submit directory for the jobs that run; returns the DAG file.

    ``refs`` are reference checksums known for files the plan reads but does
    not make (e.g. from the workflow database); declared replica checksums
    are used in any case. Costs one small file per node plus O(jobs + edges)
    lines; nothing is hashed (raw inputs without a reference are hashed by
    the PRE script of the first node that reads them). Raises SubmitDirError.
    """
    htcondor = load_htcondor()
    out = Path(out_dir).resolve()
    _prepare(out, plan.workdir)
    try:
        return _write(htcondor, plan, out, integrity, chaos, refs, container_runtime)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # half a submit directory is worse than none
        raise


def _write(htcondor: Any, plan: Plan, out: Path, integrity: str, chaos: Chaos | None,
           refs: Mapping[str, str | None] | None, container_runtime: str) -> Path:
    dags = htcondor.dags
    jobs = list(plan.to_run())
    width = max(5, len(str(len(jobs))))
    emitter = _Emitter(plan, out, integrity, chaos.transfer_spec() if chaos else None,
                       refs or {}, container_runtime)
    node_of = emitter.node_of
    for i, job in enumerate(jobs, 1):
        node_of[job.id] = node_name(i, job.id, width)

    formatter = _formatter_class(htcondor)()
    groups: dict[tuple, dict[str, Any]] = {}
    labels: dict[str, int] = {}
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    batch: list[tuple[str, str]] = []
    shard, shard_no = "", -1
    # Creating 100,000 small files is bound by the file system, not the CPU:
    # each shard's specs are written on a thread while the next one is built.
    # The many small dicts made here all stay alive: the cyclic GC would scan them for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            pending = []
            for i, job in enumerate(jobs, 1):
                node = node_of[job.id]
                if i // scripts.SHARD_SIZE != shard_no:
                    if batch:
                        pending.append(pool.submit(_write_files, batch))
                    shard_no, shard, batch = i // scripts.SHARD_SIZE, scripts.shard_for(i), []
                    for sub in (scripts.SPECS, scripts.LOGS):
                        os.makedirs(out / sub / shard, exist_ok=True)
                key = (job.kind, job.rule, job.retries, job.priority, job.threads, job.resources)
                group = groups.get(key)
                if group is None:
                    label = _layer_label(job)
                    labels[label] = labels.get(label, 0) + 1
                    name = label if labels[label] == 1 else f"{label}_{labels[label]}"
                    group = groups[key] = {"name": name, "job": job, "vars": []}
                spec, vars_ = emitter.job(job, node, shard)
                batch.append((f"{out}/{scripts.SPECS}/{shard}/{node}.json", dumps(spec)))
                group["vars"].append(vars_)
                formatter.add(group["name"], node)
            if batch:
                pending.append(pool.submit(_write_files, batch))
            for future in pending:
                future.result()  # re-raises a failed write
    finally:
        if gc_was_enabled:
            gc.enable()

    any_stage_in = any(job.kind in _STAGE_KINDS for job in jobs)
    dag = dags.DAG(
        max_jobs_by_category={STAGEIN_CATEGORY: STAGEIN_MAXJOBS} if any_stage_in else None,
        dot_config=dags.DotConfig(DOT_FILE),
        node_status_file=dags.NodeStatusFile(STATUS_FILE, update_time=30),
    )
    pre = dags.Script(NODE_SCRIPT, ["pre", "$JOB", "$RETRY"])
    post = dags.Script(NODE_SCRIPT, ["post", "$JOB", "$RETURN", "$RETRY"])
    layers = []
    for group in groups.values():
        job = group["job"]
        layers.append(dag.layer(
            name=group["name"], submit_description=emitter.submit(htcondor, group["name"], job),
            vars=group["vars"], retries=job.retries or None,
            retry_unless_exit=NO_RETRY_EXIT if job.retries else None, pre=pre, post=post,
            priority=job.priority, category=STAGEIN_CATEGORY if job.kind in _STAGE_KINDS else None,
        ))
    edges = list(_edge_lines(plan, jobs, node_of))
    header = [f"# wf: {len(jobs)} jobs of {os.path.basename(plan.workflow.path)} "
              f"(working directory {plan.workdir}); node -> job id in {INDEX_FILE}"]
    _writer_class(htcondor)(dag, formatter, layers, edges, header).write(out, dag_file_name=DAG_FILE)
    _copy_programs(out)
    index = {"version": 1, "dag": DAG_FILE, "workdir": plan.workdir, "integrity": integrity,
             "landing": f"{scripts.LANDING}/{emitter.dag_id}",
             "shard_size": scripts.SHARD_SIZE,
             "layers": {g["name"]: len(g["vars"]) for g in groups.values()},
             "nodes": {node_of[j.id]: j.id for j in jobs}}
    (out / INDEX_FILE).write_text(json.dumps(index, separators=(",", ":")), encoding="utf-8")
    return out / DAG_FILE


def _write_files(batch: list[tuple[str, str]]) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for path, text in batch:  # three system calls a file: open() would make six
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _edge_lines(plan: Plan, jobs: list[Job], node_of: dict[str, str]) -> Iterator[str]:
    """``PARENT p CHILD c…``: the plan's edges among the jobs that run."""
    succ = plan.graph.succ
    for job in jobs:
        kids = sorted(node_of[c] for c in succ[job.id] if c in node_of)
        parent = node_of[job.id]
        for i in range(0, len(kids), EDGE_CHUNK):
            yield f"PARENT {parent} CHILD {' '.join(kids[i:i + EDGE_CHUNK])}"


# -- submitting -----------------------------------------------------------------
_PROBE = r"""
import json, shutil
problems = []
try:
    import htcondor2
    htcondor2.Schedd().query(constraint="false", projection=["ClusterId"], limit=1)
except Exception as e:
    problems.append(f"no HTCondor schedd is reachable from here (htcondor2.Schedd(): {e})")
if shutil.which("condor_dagman") is None:
    problems.append("condor_dagman is not on PATH (htcondor2.Submit.from_dag needs it)")
print(json.dumps(problems))
"""


def probe_pool(timeout: float = 60) -> list[str]:
    """What is missing to submit a DAG from here (empty: nothing). Probed in a child
    process, since a broken HTCondor configuration can kill the one that imports it."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [f"the HTCondor probe did not answer within {timeout:.0f} s"]
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        where = os.environ.get("CONDOR_CONFIG", "the default locations")
        return [f"htcondor2 cannot start with the HTCondor configuration ({where}): {tail}"]
    return json.loads(lines[-1])


def submit_dag(dag_file: str | os.PathLike[str], batch_name: str | None = None) -> int:
    """Submit the DAG to the local schedd; returns the DAGMan job's cluster id.

    Raises CondorUnavailable naming what is missing when nothing can be submitted.
    """
    problems = probe_pool()
    if problems:
        raise CondorUnavailable(problems)
    htcondor = load_htcondor()
    htcondor.reload_config()  # the caller's configuration, now known to work
    dag = Path(dag_file).resolve()
    options: dict[str, Any] = {"Force": True}
    if batch_name:
        options["BatchName"] = batch_name
    # Relative paths in a DAG are relative to where it is submitted from: its folder.
    with contextlib.chdir(dag.parent):
        description = htcondor.Submit.from_dag(dag.name, options)
        return htcondor.Schedd().submit(description).cluster()


def run_condor(workflow: Any, workdir: Path, targets: list[str], *, integrity: str = "full",
               retries: int = 0, forcerun: list[str] | tuple[str, ...] = (),
               force: list[str] | tuple[str, ...] = (), chaos: str | None = None, chaos_seed: int = 0,
               container_runtime: str = "bwrap") -> int:
    """``wf run --backend condor``: plan, write ``.wf/condor/``, record the run, submit.

    The run is recorded in the workflow database (backend ``condor``, its
    submit directory, its jobs) as soon as the directory is written, with
    status ``written``; the submission then sets ``submitted`` and the DAGMan
    job's cluster (``external_id``), or ``not-submitted``. ``wf status`` reads
    the DAG's progress from the submit directory (runtime/condor_status.py).
    Returns the exit code.
    """
    from dsl.errors import WffileError
    from planner.resolve import build_plan

    from .chaos import ChaosSpecError, chaos_option
    from .condor_import import import_condor_results
    from .db import Database, DatabaseOracle, db_path, image_references
    from .execute import DirectoryBusy, RunLock, initial_refs

    try:
        chaos_cfg = chaos_option(chaos, chaos_seed, integrity)
    except ChaosSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if chaos_cfg is not None and chaos_cfg.rest:
        print("warning: --chaos rest is applied by the local executor only; ignored here", file=sys.stderr)
    wd = str(Path(workdir).resolve())
    try:
        lock = RunLock(wd).__enter__()
    except DirectoryBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        db = Database(db_path(wd))
        try:
            import_condor_results(db, wd)  # an earlier DAG's verified outputs are reused
            oracle = DatabaseOracle(db, wd, image_references(workflow))
            plan = build_plan(workflow, wd, targets, oracle=oracle, forcerun=forcerun,
                              force=force, default_retries=retries)
            jobs = sum(1 for _ in plan.to_run())
            if jobs == 0:
                print("Nothing to be done: every requested output is present and verified by its record.")
                return 0
            out = Path(wd) / ".wf" / "condor"
            dag = write_submit_dir(plan, out, integrity=integrity, chaos=chaos_cfg,
                                   refs=initial_refs(plan, db, oracle), container_runtime=container_runtime)
            run_id = _record_run(db, plan, workflow.path, wd, out, integrity, jobs)
        except WffileError as e:
            print(e.render(), file=sys.stderr)
            return 2
        except SubmitDirError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        finally:
            db.close()
    finally:
        lock.__exit__()
    print(f"wrote {dag} ({jobs} jobs)")
    try:
        cluster = submit_dag(dag, batch_name=f"wf:{os.path.basename(wd)}")
    except CondorUnavailable as e:
        _set_run(wd, run_id, status=RUN_NOT_SUBMITTED, exit_code=2)
        print("error: cannot submit to HTCondor: " + "; ".join(e.problems) + ".\n"
              f"The submit directory is ready: run 'condor_submit_dag {DAG_FILE}' in {out} "
              f"on an HTCondor access point ('wf status' follows it either way).", file=sys.stderr)
        return 2
    _set_run(wd, run_id, status=RUN_SUBMITTED, external_id=str(cluster), exit_code=0)
    print(f"submitted the DAG as cluster {cluster}: follow it with 'wf status', "
          f"'condor_q -dag {cluster}' or in {out / STATUS_FILE}")
    return 0


def _record_run(db: Any, plan: Plan, wffile: str, wd: str, out: Path, integrity: str, jobs: int) -> int:
    """The run row (before any submission attempt) and its jobs, as the local executor records them."""
    import socket
    import time

    run_id = db.start_run(
        started=time.time(), status=RUN_WRITTEN, wffile=os.path.abspath(wffile), workdir=wd,
        argv=" ".join(sys.argv), host=socket.gethostname(), pid=os.getpid(), backend="condor",
        integrity=integrity, staging="copy", jobs_total=jobs, jobs_pruned=len(plan.order) - jobs,
        submit_dir=str(out))
    decisions = plan.decisions
    db.add_jobs(run_id, ((j.id, j.rule, j.kind.value, "pending" if decisions[j.id].run else "reused",
                          decisions[j.id].reason.text) for j in plan.jobs()))
    db.commit()
    return run_id


def _set_run(wd: str, run_id: int, **fields: Any) -> None:
    from .db import Database, db_path

    db = Database(db_path(wd))
    try:
        db.update_run(run_id, **fields)
    finally:
        db.close()
