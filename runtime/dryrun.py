"""The dry-run view: what would run, what is reused and why, auxiliary jobs.

Bounded output: per-rule counts and grouped reasons always; individual
jobs only up to a limit, so a million-job plan prints a screenful.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.plan import JobKind, Plan, reason_label

JOB_LINES = 40


def show_dry_run(plan: Plan, console: Console, verbose: bool = False) -> None:
    """Print the dry-run summary of ``plan`` to ``console``."""
    summary = plan.summary()
    rules = summary["rules"]
    n_run = sum(r["run"] for r in rules.values())
    n_pruned = sum(r["pruned"] for r in rules.values())
    console.print(
        f"[bold]Dry run[/bold] of {escape(plan.workflow.path)} in {escape(plan.workdir)}: "
        f"{n_run + n_pruned:,} jobs, [green]{n_run:,} would run[/green], "
        f"[cyan]{n_pruned:,} reused[/cyan]", soft_wrap=True,
    )
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("rule")
    table.add_column("run", justify="right")
    table.add_column("reused", justify="right")
    table.add_column("why")
    for key, row in rules.items():
        reasons = summary["reasons"][key]
        why = ", ".join(
            f"{reason_label(code)} ({count:,})"
            for code, count in sorted(reasons.items(), key=lambda kv: -kv[1])
        )
        table.add_row(escape(key), f"{row['run']:,}", f"{row['pruned']:,}", escape(why))
    table.add_row("[bold]total[/bold]", f"[bold]{n_run:,}[/bold]", f"[bold]{n_pruned:,}[/bold]", "")
    console.print(table)

    limit = None if verbose else JOB_LINES
    # One pass over the jobs for everything listed below (plans can be huge).
    run_lines: list[str] = []
    reused_lines: list[str] = []
    aux: Counter[JobKind] = Counter()
    for kind in (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN, JobKind.STAGE_OUT, JobKind.CLEANUP):
        row = rules.get(kind.value)
        if row:
            aux[kind] = row["run"] + row["pruned"]
    transfers = aux[JobKind.STAGE_IN] + aux[JobKind.CONTAINER_STAGE_IN]
    stage_ins: list[str] = []
    seen_transfers = 0
    decisions = plan.decisions
    for job in plan.jobs():
        if limit is not None and len(run_lines) >= min(limit, n_run) \
                and len(reused_lines) >= min(limit, n_pruned) \
                and seen_transfers >= min(transfers, JOB_LINES):
            break  # everything shown is collected: no need to walk a million more
        d = decisions[job.id]
        lines = run_lines if d.run else reused_lines
        if limit is None or len(lines) < limit:
            line = f"  {escape(job.id)}  [dim]({escape(d.reason.text)})[/dim]"
            if d.run and job.command:
                line += f"\n      [dim]$ {escape(job.command)}[/dim]"
            lines.append(line)
        if job.kind is not JobKind.COMPUTE:
            if job.kind in (JobKind.STAGE_IN, JobKind.CONTAINER_STAGE_IN) and len(stage_ins) < JOB_LINES:
                seen_transfers += 1
                out = job.outputs[0]
                state = "stage in" if d.run else "reuse"
                stage_ins.append(f"  {state} {escape(out.lfn)} <- {escape(job.source or '')}"
                                 + (f"  sha256 {out.sha256[:12]}…" if out.sha256 else ""))
    _job_lines(console, "Would run", run_lines, n_run)
    _job_lines(console, "Reused", reused_lines, n_pruned)
    if aux:
        console.print("[bold]Auxiliary jobs:[/bold] " + ", ".join(
            f"{n:,} {k.value.replace('_', '-')}" for k, n in aux.items()))
        for line in stage_ins:
            console.print(line, soft_wrap=True)
    if n_run == 0:
        console.print("Nothing to be done: every requested output is present.")


def _job_lines(console: Console, title: str, lines: list[str], total: int) -> None:
    if not total:
        return
    console.print(f"[bold]{title}[/bold] ({total:,}):")
    for line in lines:
        console.print(line, soft_wrap=True)
    if total > len(lines):
        console.print(f"  … and {total - len(lines):,} more (use --verbose or --json to list all)")
