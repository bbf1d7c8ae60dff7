"""The ``wf`` command (typer). Names and exit codes follow shared/design/CLI.md.

Exit codes: 0 success; 1 a job failed; 2 a usage or Wffile error; 3 an
integrity error that retries did not cure.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dsl.errors import WffileError
from dsl.model import Workflow
from dsl.parse import load_workflow, parse_config_overrides
from planner.plan import Plan
from planner.resolve import build_plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTEGRITY = 0, 1, 2, 3

app = typer.Typer(
    name="wf",
    help="An integrity-checked workflow system: Snakemake-style rules, end-to-end sha256.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: ``wf run --backend slurm`` without -j: at most this many batch jobs at once.
SLURM_MAX_JOBS = 1000


class Backend(StrEnum):
    local = "local"
    condor = "condor"
    slurm = "slurm"


class Integrity(StrEnum):
    full = "full"
    none = "none"


class Staging(StrEnum):
    shared = "shared"
    copy = "copy"


class ContainerRuntime(StrEnum):
    bwrap = "bwrap"
    podman = "podman"


class DagFormat(StrEnum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"
    png = "png"


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def locate(args: list[str], directory: Path) -> tuple[Path, list[str]]:
    """Split ``[WFFILE] [TARGET…]``: the first argument is the Wffile when it is one.

    It is taken as the Wffile if it is an existing file named ``Wffile*`` or
    ``*.wf``, or any existing file when the working directory has no Wffile.
    """
    if args:
        first = Path(args[0])
        if first.is_file() and (
            first.name.startswith("Wffile") or first.suffix == ".wf"
            or not (directory / "Wffile").is_file()
        ):
            return first, args[1:]
    for candidate in (directory / "Wffile", Path("Wffile")):
        if candidate.is_file():
            return candidate, args
    raise fail(f"no Wffile found in '{directory}' (give its path: wf run PATH/Wffile)")


def load(args: list[str], directory: Path, config: list[str]) -> tuple[Workflow, list[str]]:
    """Locate and parse the Wffile; Wffile errors exit 2 with positions."""
    wffile, targets = locate(args, directory)
    try:
        return load_workflow(str(wffile), parse_config_overrides(config)), targets
    except WffileError as e:
        print(e.render(), file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None


def plan_workflow(workflow: Workflow, directory: Path, targets: list[str], *,
                  oracle=None, forcerun: list[str] | None = None,
                  force: list[str] | None = None, retries: int = 0) -> Plan:
    """Plan, turning Wffile/plan errors into exit 2."""
    try:
        return build_plan(workflow, str(directory), targets, oracle=oracle,
                          forcerun=forcerun or (), force=force or (), default_retries=retries)
    except WffileError as e:
        print(e.render(), file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None


def _directory(directory: Path | None) -> Path:
    d = directory or Path(".")
    if not d.is_dir():
        raise fail(f"working directory '{d}' does not exist")
    return d


DirectoryOpt = Annotated[Path | None, typer.Option("-d", "--directory", help="Working directory holding outputs and .wf/ (default: current).")]
ConfigOpt = Annotated[list[str] | None, typer.Option("--config", help="Override a config key: KEY=VALUE (repeatable).")]
ArgsArg = Annotated[list[str] | None, typer.Argument(help="[WFFILE] [TARGET…]: the Wffile (default ./Wffile), then files or rules to build.", show_default=False)]


@app.command()
def run(
    args: ArgsArg = None,
    dry_run: Annotated[bool, typer.Option("-n", "--dry-run", help="Plan only: show what would run and why; run nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With -n: print the plan as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="With -n: list every job.")] = False,
    cores: Annotated[int | None, typer.Option("-j", "--cores", min=1, help="Cores the local backend may use (default: all); with slurm, jobs queued or running at once (default: 1000).")] = None,
    directory: DirectoryOpt = None,
    backend: Annotated[Backend, typer.Option("--backend", help="local (embedded), condor or slurm.")] = Backend.local,
    integrity: Annotated[Integrity, typer.Option("--integrity", help="The integrity dial.")] = Integrity.full,
    staging: Annotated[Staging, typer.Option("--staging", help="Run jobs in place, or in scratch directories with verified transfers.")] = Staging.shared,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Default retries for rules that set none.")] = 0,
    keep_going: Annotated[bool, typer.Option("-k", "--keep-going", help="Go on with independent jobs after a failure.")] = False,
    config: ConfigOpt = None,
    forcerun: Annotated[list[str] | None, typer.Option("--forcerun", help="Rerun every job of RULE (repeatable).")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Rerun the job making TARGET (repeatable).")] = None,
    chaos: Annotated[str | None, typer.Option("--chaos", help="Inject faults: kind=probability,… (transfer, truncate, silent, rest).")] = None,
    chaos_seed: Annotated[int, typer.Option("--chaos-seed", help="Seed for --chaos.")] = 0,
    container_runtime: Annotated[ContainerRuntime, typer.Option("--container-runtime", help="Run container jobs with bubblewrap (default) or podman.")] = ContainerRuntime.bwrap,
    resources: Annotated[list[str] | None, typer.Option("--resources", help="Budget for rules' resources: NAME=N (repeatable; mem_mb defaults to the machine's memory).")] = None,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", help="With --backend slurm: the partition (a rule's resources: slurm_partition=\"…\" wins).")] = None,
    slurm_account: Annotated[str | None, typer.Option("--slurm-account", help="With --backend slurm: the account to charge.")] = None,
    slurm_extra: Annotated[str | None, typer.Option("--slurm-extra", help="With --backend slurm: more sbatch options, e.g. \"--qos=short --time=10\".")] = None,
    slurm_bundle: Annotated[int | None, typer.Option("--slurm-bundle", min=1, help="With --backend slurm: run up to N ready jobs of one rule one after another in one array task (default: automatic, keeping at least twice as many tasks as the cluster has CPUs; 1: one batch job per job).")] = None,
) -> None:
    """Plan and run the workflow (WFFILE defaults to ./Wffile)."""
    workdir = _directory(directory)
    workflow, targets = load(args or [], workdir, config or [])
    if backend is Backend.condor and not dry_run:
        from .condor import run_condor
        raise typer.Exit(run_condor(workflow, workdir, targets, integrity=integrity.value, retries=retries,
                                    forcerun=forcerun or [], force=force or [], chaos=chaos,
                                    chaos_seed=chaos_seed, container_runtime=container_runtime.value))
    oracle = _oracle(workdir, workflow) if dry_run else None
    plan = plan_workflow(workflow, workdir, targets, oracle=oracle, forcerun=forcerun,
                         force=force, retries=retries)
    if dry_run:
        from .containers import container_problems
        problems = [d for d in container_problems(plan, container_runtime.value) if d.pos is not None]
        if problems:  # a .sif that cannot run here is a planning error, even in a dry run
            print("\n".join(d.render() for d in problems), file=sys.stderr)
            raise typer.Exit(EXIT_USAGE)
        if json_out:
            from .planjson import write_plan_json
            write_plan_json(plan, sys.stdout)
        else:
            from .dryrun import show_dry_run
            show_dry_run(plan, _stdout(), verbose=verbose)
        raise typer.Exit(EXIT_OK)
    budgets: dict[str, int] = {}
    for item in resources or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit():
            raise fail(f"--resources expects NAME=N with N a whole number, got {item!r}")
        budgets[name] = int(value)
    slurm = None
    if backend is Backend.slurm:
        import shlex

        from .slurm import SlurmOptions
        try:
            extra = tuple(shlex.split(slurm_extra or ""))
        except ValueError as e:
            raise fail(f"--slurm-extra: {e}") from None
        slurm = SlurmOptions(partition=slurm_partition, account=slurm_account, extra=extra,
                             bundle=slurm_bundle)
        cores = cores or SLURM_MAX_JOBS
    elif slurm_partition or slurm_account or slurm_extra or slurm_bundle is not None:
        raise fail("--slurm-partition, --slurm-account, --slurm-extra and --slurm-bundle need --backend slurm")
    from .execute import run_workflow
    code = run_workflow(
        workflow, workdir, targets,
        cores=cores or os.cpu_count() or 1, integrity=integrity.value, staging=staging.value,
        retries=retries, keep_going=keep_going, forcerun=forcerun or [], force=force or [],
        chaos=chaos, chaos_seed=chaos_seed, resources=budgets,
        container_runtime=container_runtime.value, console=_stdout(), slurm=slurm,
    )
    raise typer.Exit(code)


def _oracle(workdir: Path, workflow: Workflow):
    """The database-backed reuse oracle, read-only (empty when there is no database yet).

    A DAGMan run's verified outputs are booked first (inside .wf/, under the
    run lock, skipped while a run holds it), so the dry run says what
    ``wf run`` will do.
    """
    from .db import db_path, open_oracle
    if db_path(workdir).exists():
        from .condor_import import import_condor_results
        from .db import Database
        from .execute import DirectoryBusy, RunLock
        try:
            with RunLock(str(workdir)):
                db = Database(db_path(workdir))
                import_condor_results(db, workdir)
                db.close()
        except DirectoryBusy:
            pass
    return open_oracle(workdir, readonly=True, workflow=workflow)


@app.command()
def dag(
    args: ArgsArg = None,
    fmt: Annotated[DagFormat, typer.Option("--format", "-f", help="text, dot, mermaid, svg or png.")] = DagFormat.text,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE instead of stdout.")] = None,
    rules: Annotated[bool, typer.Option("--rules", help="Draw the rule graph instead of the job graph.")] = False,
    directory: DirectoryOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Draw the planned DAG (jobs, reused and pending states)."""
    from .draw import DrawError, render

    workdir = _directory(directory)
    workflow, targets = load(args or [], workdir, config or [])
    plan = plan_workflow(workflow, workdir, targets, oracle=_oracle(workdir, workflow))
    try:
        data = render(plan, fmt.value, rules=rules)
    except DrawError as e:
        raise fail(str(e)) from None
    if fmt is DagFormat.png and output is None and sys.stdout.isatty():
        raise fail("refusing to write PNG bytes to a terminal: use -o FILE")
    if output is not None:
        if isinstance(data, bytes):
            output.write_bytes(data)
        else:
            output.write_text(data, encoding="utf-8")
        return
    if isinstance(data, bytes):
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data if data.endswith("\n") else data + "\n")


@app.command("plan")
def plan_cmd(
    args: ArgsArg = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The submit directory to write (replaced if it holds an earlier one).")] = ...,  # type: ignore[assignment]
    backend: Annotated[Backend, typer.Option("--backend", help="Only condor: an HTCondor DAGMan submit directory.")] = Backend.condor,
    directory: DirectoryOpt = None,
    integrity: Annotated[Integrity, typer.Option("--integrity", help="The integrity dial.")] = Integrity.full,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Default retries for rules that set none.")] = 0,
    config: ConfigOpt = None,
    forcerun: Annotated[list[str] | None, typer.Option("--forcerun", help="Rerun every job of RULE (repeatable).")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Rerun the job making TARGET (repeatable).")] = None,
    chaos: Annotated[str | None, typer.Option("--chaos", help="Inject faults into the wrapper's copies on the execute nodes: kind=probability,…")] = None,
    chaos_seed: Annotated[int, typer.Option("--chaos-seed", help="Seed for --chaos.")] = 0,
    container_runtime: Annotated[ContainerRuntime, typer.Option("--container-runtime", help="Runtime for container jobs on the execute nodes.")] = ContainerRuntime.bwrap,
) -> None:
    """Write the HTCondor DAGMan submit directory without submitting."""
    from .chaos import ChaosSpecError, chaos_option
    from .condor import DAG_FILE, SubmitDirError, write_submit_dir
    from .execute import initial_refs

    if backend is not Backend.condor:
        raise fail("wf plan writes an HTCondor submit directory: use --backend condor")
    try:
        chaos_cfg = chaos_option(chaos, chaos_seed, integrity.value)
    except ChaosSpecError as e:
        raise fail(str(e)) from None
    workdir = _directory(directory)
    workflow, targets = load(args or [], workdir, config or [])
    oracle = _oracle(workdir, workflow)
    planned = plan_workflow(workflow, workdir, targets, oracle=oracle, forcerun=forcerun,
                            force=force, retries=retries)
    jobs = sum(1 for _ in planned.to_run())
    if jobs == 0:
        print("Nothing to be done: every requested output is present and verified by its record.")
        return
    try:
        dag_file = write_submit_dir(planned, output, integrity=integrity.value, chaos=chaos_cfg,
                                    refs=initial_refs(planned, oracle.db, oracle),
                                    container_runtime=container_runtime.value)
    except SubmitDirError as e:
        raise fail(str(e)) from None
    print(f"wrote {dag_file} ({jobs} jobs); submit it on an HTCondor access point with: "
          f"cd {dag_file.parent} && condor_submit_dag {DAG_FILE}")


@app.command()
def checksum(
    files: Annotated[list[Path], typer.Argument(help="Files to checksum.", show_default=False)],
    yaml_out: Annotated[bool, typer.Option("--yaml", help="Print a Pegasus 5 YAML replica catalog.")] = False,
) -> None:
    """Print replica entries (lfn, sha256) ready to paste into a Wffile or catalog."""
    from .wrapper import sha256_file

    entries = []
    for f in files:
        if not f.is_file():
            raise fail(f"'{f}' is not a file")
        digest, _size, _secs = sha256_file(str(f))
        entries.append((f.as_posix(), digest))
    if yaml_out:
        from dsl.catalog import yaml_catalog_text
        from dsl.errors import SourcePos
        from dsl.model import Replica

        sys.stdout.write(yaml_catalog_text(
            Replica(lfn, os.path.abspath(lfn), digest, "local", SourcePos("-", 1, 1))
            for lfn, digest in entries))
        return
    for lfn, digest in entries:
        print(f'replica "{lfn}":\n    sha256: "{digest}"\n')


def _open_db(directory: Path | None):
    from .db import db_path, open_database

    workdir = _directory(directory)
    if not db_path(workdir).exists():
        raise fail(f"no workflow database in '{workdir}' (.wf/wf.db): run 'wf run' there first")
    return workdir, open_database(workdir, readonly=True)


def _report(directory: Path | None, json_out: bool, compute, show) -> None:
    import json

    from .stats import NoRunError

    _, db = _open_db(directory)
    try:
        data = compute(db)
    except NoRunError as e:
        raise fail(str(e)) from None
    if json_out:
        print(json.dumps(data, indent=2))
    else:
        show(data, _stdout())


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def status(directory: DirectoryOpt = None, json_out: JsonOpt = False) -> None:
    """State of the last run in DIR: jobs done, running, failed, left.

    A condor run (wf run --backend condor) is read from its DAGMan submit
    directory: the node status file and the nodes log, with the failed
    nodes' exit codes and where their logs are.
    """
    from .stats import status as compute
    from .stats_view import show_status
    _report(directory, json_out, compute, show_status)


@app.command()
def statistics(directory: DirectoryOpt = None, json_out: JsonOpt = False) -> None:
    """pegasus-statistics-style summary of the last run, integrity metrics included.

    For a condor run: from the provenance records the POST scripts kept and
    the nodes log of its DAGMan submit directory.
    """
    from .stats import statistics as compute
    from .stats_view import show_statistics
    _report(directory, json_out, compute, show_statistics)


@app.command()
def analyze(directory: DirectoryOpt = None, json_out: JsonOpt = False) -> None:
    """Why jobs failed: exit codes, stderr tails, integrity errors by host, file and checksum."""
    from .stats import analyze as compute
    from .stats_view import show_analyze
    _report(directory, json_out, compute, show_analyze)


@app.command()
def verify(
    paths: Annotated[list[str] | None, typer.Argument(help="Files or folders to check (default: every recorded file).", show_default=False)] = None,
    directory: DirectoryOpt = None,
    json_out: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List unchanged files too.")] = False,
) -> None:
    """Recompute checksums of recorded files; exit 1 if any changed or vanished."""
    import json

    from .stats import UnknownPathError
    from .stats import verify as compute
    from .stats_view import show_verify

    workdir, db = _open_db(directory)
    try:
        results = compute(db, workdir, paths or None)
    except UnknownPathError as e:
        raise fail(str(e)) from None
    if json_out:
        print(json.dumps(results, indent=2))
    else:
        show_verify(results, _stdout(), verbose=verbose)
    if any(r["status"] != "ok" for r in results):
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    # Leave without freeing every object one by one: after a million-job plan
    # that teardown alone takes seconds, and the kernel reclaims it at once.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (wf … | head) is no error of ours
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
