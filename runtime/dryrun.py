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
        f"[cyan]{n_pruned:,} reused[/cyan]"
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
    _job_lines(plan, console, run=True, limit=limit)
    _job_lines(plan, console, run=False, limit=limit)
    aux = Counter(j.kind for j in plan.jobs() if j.kind is not JobKind.COMPUTE)
    if aux:
        console.print("[bold]Auxiliary jobs:[/bold] " + ", ".join(
            f"{n} {k.value.replace('_', '-')}" for k, n in aux.items()))
        for job in plan.jobs():
            if job.kind is JobKind.STAGE_IN:
                d = plan.decisions[job.id]
                state = "stage in" if d.run else "reuse"
                console.print(f"  {state} {escape(job.outputs[0].lfn)} <- {escape(job.source or '')}"
                              + (f"  sha256 {job.outputs[0].sha256[:12]}…" if job.outputs[0].sha256 else ""))
    if n_run == 0:
        console.print("Nothing to be done: every requested output is present.")


def _job_lines(plan: Plan, console: Console, run: bool, limit: int | None) -> None:
    title = "Would run" if run else "Reused"
    shown = 0
    total = 0
    lines = []
    for job in plan.jobs():
        d = plan.decisions[job.id]
        if d.run != run:
            continue
        total += 1
        if limit is not None and shown >= limit:
            continue
        shown += 1
        line = f"  {escape(job.id)}  [dim]({escape(d.reason.text)})[/dim]"
        if run and job.command:
            line += f"\n      [dim]$ {escape(job.command)}[/dim]"
        lines.append(line)
    if not total:
        return
    console.print(f"[bold]{title}[/bold] ({total:,}):")
    for line in lines:
        console.print(line, soft_wrap=True)
    if total > shown:
        console.print(f"  … and {total - shown:,} more (use --verbose or --json to list all)")
