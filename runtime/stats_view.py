"""Terminal views of :mod:`runtime.stats`: ``wf status``, ``wf statistics``,
``wf analyze`` and ``wf verify`` (rich lives here, the data does not).

Everything is printed as :class:`rich.text.Text` (names from the database
are never read as markup) and stays plain and aligned when stdout is not a
terminal. ``wf statistics`` keeps the layout of pegasus-statistics.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .stats import VERIFY_CHANGED, VERIFY_MISSING, VERIFY_OK

__all__ = ["format_seconds", "show_analyze", "show_statistics", "show_status", "show_verify"]

_RULE = "-" * 78
_LABELS = {"compute": "Tasks", "stage_in": "Stage-in", "container_stage_in": "Container stage-in",
           "stage_out": "Stage-out", "cleanup": "Cleanup", "all": "Jobs"}
_COLUMNS = (("Succeeded", "succeeded", 10), ("Failed", "failed", 8), ("Incomplete", "incomplete", 12),
            ("Total", "total", 10), ("Retries", "retries", 10), ("Total+Retries", "total_retries", 0))
_STATUS_STYLE = {"success": "green", "failed": "red", "crashed": "red", "running": "yellow",
                 "removed": "red", "held": "red"}
_LABEL_WIDTH = 57  # "Cumulative job wall time as seen from submit side" + padding, as Pegasus


def format_seconds(seconds: float | None) -> str:
    """Pegasus style: ``0.439 secs``, ``1 min, 56 secs``, ``2 hrs, 5 mins``; None is ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{round(seconds, 3)} secs"
    parts = []
    rest = int(round(seconds))
    for name, size in (("day", 86400), ("hr", 3600), ("min", 60), ("sec", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n} {name}{'' if n == 1 else 's'}")
    return ", ".join(parts[:2])


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _line(console: Console, *parts: str | tuple[str, str]) -> None:
    console.print(Text.assemble(*parts), soft_wrap=True)


def _short(sha: str | None, n: int = 12) -> str:
    if sha is None:
        return "missing"
    return sha if len(sha) <= n else sha[:n] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# -- wf statistics ------------------------------------------------------------
def show_statistics(data: dict[str, Any], console: Console) -> None:
    """Print ``stats.statistics()`` like pegasus-statistics does."""
    run = data["run"]
    _line(console, ("Run ", "bold"), (str(run["id"]), "bold"), " (",
          (run["status"], _STATUS_STYLE.get(run["status"], "")), ")",
          f" of {run['wffile'] or '?'} in {run['workdir'] or '?'}")
    condor = data.get("condor")
    if condor is not None:
        _line(console, ("# HTCondor DAG in ", "dim"), (condor["submit_dir"], "dim"),
              ("; attempts and integrity from the POST scripts' provenance records, "
               "submit-side times from the nodes log.", "dim"))
        for problem in condor["problems"]:
            _line(console, ("warning: ", "yellow"), problem)
    _line(console, ("# Tasks: compute jobs; Jobs: every job, auxiliary ones included.", "dim"))
    _line(console, ("# Incomplete: not run, or not finished; Retries: attempts beyond the first.", "dim"))
    summary = data["summary"]
    width = max(15, *(len(_LABELS.get(k, k)) + 1 for k in summary))
    console.print(_RULE)
    head = "Type".ljust(width) + "".join(name.ljust(w) for name, _, w in _COLUMNS)
    console.print(Text(head.rstrip(), style="bold"))
    for kind, counts in summary.items():
        row = _LABELS.get(kind, kind).ljust(width) + "".join(
            str(counts[key]).ljust(w) for _, key, w in _COLUMNS)
        console.print(Text(row.rstrip(), style="bold" if kind == "all" else ""))
    console.print(_RULE)
    reused = summary["all"]["reused"]
    if reused:
        _line(console, f"{_plural(reused, 'job')} reused from earlier runs (not counted above)")
    console.print()
    for label, key in (("Workflow wall time", "wall_seconds"),
                       ("Cumulative job wall time", "job_seconds"),
                       ("Cumulative job wall time as seen from submit side", "job_seconds_submit")):
        _line(console, f"{label:<{_LABEL_WIDTH}}: {format_seconds(data[key])}")

    i = data["integrity"]
    console.print()
    _line(console, ("# Integrity Metrics", "bold"))
    _line(console, ("# Number of files for which checksums were compared/computed along with "
                    "total time spent doing it.", "dim"))
    _line(console, f"{i['compared']['count']:,} files checksums compared with total duration of "
                   f"{format_seconds(i['compared']['seconds'])}")
    _line(console, f"{i['generated']['count']:,} files checksums generated with total duration of "
                   f"{format_seconds(i['generated']['seconds'])}")
    if i.get("cached"):
        _line(console, f"{i['cached']:,} files checks satisfied by the unchanged fingerprint of a file "
                       f"hashed earlier in the run (nothing read)")
    pct = i["percent_of_job_time"]
    _line(console, f"Integrity checking took {format_seconds(i['seconds'])}"
                   + ("" if pct is None else f", {pct:.2f}% of the cumulative job wall time"))
    console.print()
    _line(console, ("# Integrity Errors", "bold"))
    bad = "red" if i["errors"] else ""
    _line(console, "Total:    ", (f"{i['errors']:,} total integrity errors", bad),
          " encountered in the workflow")
    _line(console, "Failures: ", (f"{i['failed_attempts']:,} job failures had integrity errors",
                                  "red" if i["failed_attempts"] else ""),
          f"; {_plural(i['failed_jobs'], 'job')} failed for good on one" if i["failed_jobs"] else "")

    chaos = data.get("chaos")
    if chaos:
        console.print()
        _line(console, ("# Chaos", "bold"))
        _line(console, ("# Faults injected on purpose, and how many a checksum caught.", "dim"))
        for kind, c in chaos.items():
            missed = c["injected"] - c["detected"]
            _line(console, f"{kind:<10}{c['injected']:>6,} injected {c['detected']:>6,} detected",
                  (f"  {missed:,} not detected", "yellow") if missed else "")

    if data["rules"]:
        console.print()
        _line(console, ("# Per rule", "bold"))
        console.print(_rules_table(data["rules"]))


def _rules_table(rules: list[dict[str, Any]]) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name in ("Rule", "Count", "Succeeded", "Failed", "Reused", "Retries",
                 "Min", "Max", "Mean", "Total"):
        table.add_column(name, justify="left" if name == "Rule" else "right")

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in rules:
        table.add_row(Text(r["rule"]), f"{r['count']:,}", f"{r['succeeded']:,}", f"{r['failed']:,}",
                      f"{r['reused']:,}", f"{r['retries']:,}", secs(r["min_seconds"]),
                      secs(r["max_seconds"]), secs(r["mean_seconds"]), secs(r["total_seconds"]))
    return table


# -- wf status ----------------------------------------------------------------
def show_status(data: dict[str, Any], console: Console) -> None:
    """Print ``stats.status()``: the run, its job counts, the failed jobs."""
    if data.get("backend") == "condor":
        _show_condor_status(data, console)
        return
    st = data["status"]
    _line(console, ("Run ", "bold"), (str(data["id"]), "bold"), ": ", (st, _STATUS_STYLE.get(st, "")),
          f"  started {_when(data['started'])}",
          f", finished {_when(data['finished'])}" if data["finished"] else "",
          f" ({format_seconds(data['wall_seconds'])})" if data["wall_seconds"] is not None else "")
    c = data["counts"]
    _line(console, f"Jobs: {c['total']:,} total, ", (f"{c['done']:,} done", "green"), ", ",
          (f"{c['running']:,} running", "yellow" if c["running"] else ""), ", ",
          *((f"{c['queued']:,} queued", ""), ", ") if c.get("queued") else (),
          (f"{c['failed']:,} failed", "red" if c["failed"] else ""), ", ",
          f"{c['left']:,} left, ", (f"{c['reused']:,} reused", "cyan"))
    ids = data.get("external_ids") or {}
    label = "Slurm job" if data.get("backend") == "slurm" else "id"

    def with_id(jid: str) -> str:
        return f"  {jid}  ({label} {ids[jid]})" if jid in ids else f"  {jid}"

    if data.get("backend") not in (None, "local"):
        _line(console, f"Backend: {data['backend']}")
    if data["running_jobs"]:
        _line(console, ("Running:", "bold"))
        for jid in data["running_jobs"]:
            _line(console, with_id(jid))
    if data.get("queued_jobs"):
        _line(console, ("Queued:", "bold"))
        for jid in data["queued_jobs"]:
            _line(console, with_id(jid))
    if data["failed_jobs"]:
        _line(console, ("Failed:", "bold red"))
        for jid in data["failed_jobs"]:
            _line(console, with_id(jid))
        _line(console, ("Run 'wf analyze' to see why.", "dim"))
    if st == "crashed":
        _line(console, ("The run stopped without finishing; 'wf run' resumes it, "
                        "reusing every verified output.", "dim"))


_CONDOR_STATES = (("done", "done", "green"), ("running", "running", "yellow"), ("idle", "queued", ""),
                  ("held", "held", "red"), ("pre", "in PRE", ""), ("post", "in POST", ""),
                  ("ready", "ready", ""), ("waiting", "waiting", ""), ("failed", "failed", "red"),
                  ("futile", "futile", "red"))
#: Jobs listed one by one (running, held, failed) before the rest is summed up.
_LIST_RUNNING = 20


def _clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def _condor_submission(c: dict[str, Any], started: bool) -> str:
    where = c["submit_dir"]
    if c["submitted"]:
        return f"submitted as cluster {c['cluster']} from {where} (condor_q -dag {c['cluster']})"
    if c["submitted"] is False:
        if started:
            return f"not submitted by wf; the DAG in {where} was submitted by hand"
        return (f"not submitted: wf found no HTCondor schedd; run 'condor_submit_dag wf.dag' "
                f"in {where} on an access point")
    return f"written to {where}; no submission recorded"


def _show_condor_status(data: dict[str, Any], console: Console) -> None:
    st = data["status"]
    c = data["condor"]
    started = c["dag_started"] is not None or c["status_file"] is not None
    _line(console, ("Run ", "bold"), (str(data["id"]), "bold"), " (condor): ",
          (st, _STATUS_STYLE.get(st, "")), f"  written {_when(data['started'])}",
          f", DAG from {_when(c['dag_started'])}" if c["dag_started"] else "",
          f" to {_when(data['finished'])}" if data["finished"] else "",
          f" ({format_seconds(data['wall_seconds'])})" if data["wall_seconds"] is not None else "")
    _line(console, _condor_submission(c, started))
    for problem in c["problems"]:
        _line(console, ("warning: ", "yellow"), problem)
    if not started:
        _line(console, ("The DAG has not started: no node status file and no nodes log yet.", "dim"))
    else:
        dag = c["dag_status"]
        parts = []
        if dag is not None:
            parts.append(f"DAGMan says {dag['name']}" + (f" ({dag['note']})" if dag["note"] else "")
                         + f" at {_clock(c['status_updated'])}")
        else:
            parts.append("no node status file yet")
        parts.append(f"nodes log: {_plural(c['events'], 'event')}"
                     + (f", the last at {_clock(c['last_event'])}" if c["last_event"] else ""))
        _line(console, ("; ".join(parts), "dim"))
    counts = data["counts"]
    pieces: list[str | tuple[str, str]] = [f"Jobs: {counts['total']:,} total"]
    for key, label, style in _CONDOR_STATES:
        n = counts[key]
        if n or key in ("done", "running", "idle", "failed"):
            pieces += [", ", (f"{n:,} {label}", style if n else "")]
    pieces += [", ", (f"{counts['reused']:,} reused", "cyan")]
    _line(console, *pieces)
    if counts["retried"]:
        retries = counts["retries"]
        _line(console, f"Retried: {_plural(counts['retried'], 'job')}, "
                       f"{retries:,} {'retry' if retries == 1 else 'retries'} in all")
    running = data["running_jobs"]
    if running:
        _line(console, ("Running:", "bold"))
        for jid in running[:_LIST_RUNNING]:
            _line(console, f"  {jid}")
        if len(running) > _LIST_RUNNING:
            _line(console, f"  … and {len(running) - _LIST_RUNNING:,} more")
    for h in data["held"][:_LIST_RUNNING]:
        _line(console, ("held ", "red"), h["job"], f": {h['reason'] or 'no reason given'}")
    if len(data["held"]) > _LIST_RUNNING:
        _line(console, f"  … and {len(data['held']) - _LIST_RUNNING:,} more held")
    if data["failed"]:
        _line(console, ("Failed:", "bold red"))
        for f in data["failed"][:_LIST_RUNNING]:
            codes = []
            if f["removed"]:
                codes.append(f"job removed ({f['removed']})")
            elif f["exit_code"] is not None:
                codes.append(f"job exit {f['exit_code']}")
            if f["post_exit"] is not None:
                codes.append(f"POST script exit {f['post_exit']}")
            _line(console, "  ", (f["job"], "bold"), f" (node {f['node']}), {_plural(f['attempts'], 'attempt')}",
                  f": {', '.join(codes)}" if codes else "")
            if f["status"]:
                _line(console, f"    {f['status']}: {f['message'] or ''}")
            if f["details"]:
                _line(console, f"    DAGMan: {f['details']}")
            for key, label in (("log", "job log"), ("err", "stderr"), ("command", "command log"),
                               ("record", "record"), ("landing", "landing")):
                if key in f["logs"]:
                    _line(console, (f"    {label}: ", "dim"), f["logs"][key])
        if len(data["failed"]) > _LIST_RUNNING:
            _line(console, f"  … and {len(data['failed']) - _LIST_RUNNING:,} more ('wf status --json' lists all)")
        _line(console, ("Run 'wf analyze' to see why.", "dim"))


# -- wf analyze ---------------------------------------------------------------
def show_analyze(data: dict[str, Any], console: Console) -> None:
    """Print ``stats.analyze()``: each failure in detail, then integrity errors grouped."""
    run = data["run"]
    failed = data["failed"]
    _line(console, ("Run ", "bold"), (str(run["id"]), "bold"), ": ",
          (run["status"], _STATUS_STYLE.get(run["status"], "")), ", ",
          (_plural(len(failed), "failed job"), "red" if failed else "green"), ", ",
          (_plural(data["integrity_errors"], "integrity error"), "red" if data["integrity_errors"] else ""))
    for f in failed:
        console.print()
        where = f" on {f['host']}" if f["host"] else ""
        if f.get("external_id") and (data["run"].get("backend") == "slurm"):
            where += f" (Slurm job {f['external_id']})"
        rule = f" (rule {f['rule']})" if f["rule"] else f" ({f['kind']})"
        _line(console, ("failed ", "bold red"), (f["job"], "bold"), rule,
              f", attempt {f['attempt']} of {f['attempts']}{where}")
        code = "-" if f["exit_code"] is None else str(f["exit_code"])
        _line(console, f"  status: {f['status'] or '-'}, exit code {code}")
        if f["message"]:
            _line(console, f"  message: {f['message']}")
        if f.get("details"):
            _line(console, f"  DAGMan (node {f['node']}): {f['details']}")
        for e in f["events"]:
            _line(console, f"  integrity: {e['file']} at {e['stage']} ({e['kind']}, attempt {e['attempt']}"
                           f"{', ' + e['host'] if e['host'] else ''}): expected {_short(e['expected'])}, "
                           f"found {_short(e['actual'])}")
        if f["stderr"]:
            tail = f["stderr_tail"]
            if tail is None:
                _line(console, f"  stderr: {f['stderr']} (cannot be read)")
            elif not tail:
                _line(console, f"  stderr: {f['stderr']} (empty)")
            else:
                _line(console, f"  stderr ({f['stderr']}), last {_plural(len(tail), 'line')}:")
                for line in tail:
                    _line(console, ("    | ", "dim"), line)
    if data["recovered"]:
        console.print()
        _line(console, ("Recovered after failed attempts:", "bold"))
        for r in data["recovered"]:
            _line(console, f"  {r['job']}: {_plural(r['failed_attempts'], 'failed attempt')} "
                           f"({', '.join(r['statuses'])})")
    if not data["integrity_errors"]:
        return
    console.print()
    _line(console, ("Integrity errors by host", "bold"))
    table = _table("Host", "Errors")
    for h in data["by_host"]:
        table.add_row(Text(h["host"]), f"{h['count']:,}")
    console.print(table)
    _line(console, ("Integrity errors by file", "bold"))
    table = _table("File", "Errors", "Stages", "Jobs")
    for f in data["by_file"]:
        table.add_row(Text(str(f["file"])), f"{f['count']:,}", Text(", ".join(map(str, f["stages"]))),
                      Text(", ".join(map(str, f["jobs"]))))
    console.print(table)
    _line(console, ("Integrity errors by checksum (expected -> actual)", "bold"))
    for p in data["by_checksum"]:
        _line(console, f"  {p['expected'] or '-'} -> {p['actual'] or 'missing'}: "
                       f"{_plural(p['count'], 'error')} in {', '.join(map(str, p['files']))}")


def _table(*columns: str) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=True, header_style="bold")
    for i, name in enumerate(columns):
        table.add_column(name, justify="right" if i == 1 else "left")
    return table


# -- wf verify ----------------------------------------------------------------
def show_verify(results: list[dict[str, Any]], console: Console, verbose: bool = False) -> None:
    """Print ``stats.verify()``: every changed or missing file (every file with
    ``verbose``), then the totals."""
    counts = {VERIFY_OK: 0, VERIFY_CHANGED: 0, VERIFY_MISSING: 0}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] == VERIFY_CHANGED:
            _line(console, ("changed ", "bold red"), r["lfn"],
                  f"  expected {r['expected']}, found {r['actual']}")
        elif r["status"] == VERIFY_MISSING:
            _line(console, ("missing ", "bold red"), r["lfn"],
                  f"  expected {r['expected']}" + (f" ({r['error']})" if r.get("error") else ""))
        elif verbose:
            _line(console, ("ok      ", "green"), r["lfn"], f"  {r['actual']}")
    bad = counts[VERIFY_CHANGED] + counts[VERIFY_MISSING]
    _line(console, (f"{_plural(len(results), 'recorded file')} verified: ", "bold"),
          (f"{counts[VERIFY_OK]:,} ok", "green"), ", ",
          (f"{counts[VERIFY_CHANGED]:,} changed", "red" if counts[VERIFY_CHANGED] else ""), ", ",
          (f"{counts[VERIFY_MISSING]:,} missing", "red" if counts[VERIFY_MISSING] else ""))
    if bad:
        _line(console, ("These files no longer match the checksums recorded when they were made.", "dim"))
