"""The plan as JSON (``wf run -n --json``): streamed, so a million jobs fit."""

from __future__ import annotations

import json
from typing import Any, TextIO

from planner.plan import FileRef, Job, Plan


def _file(f: FileRef) -> dict[str, Any]:
    d: dict[str, Any] = {"lfn": f.lfn, "sha256": f.sha256, "producer": f.producer}
    if f.temp:
        d["temp"] = True
    if f.protected:
        d["protected"] = True
    return d


def job_dict(plan: Plan, job: Job) -> dict[str, Any]:
    """One job with its decision, as plain JSON-ready data."""
    d = plan.decisions[job.id]
    return {
        "id": job.id,
        "kind": job.kind.value,
        "rule": job.rule,
        "wildcards": dict(job.wildcards),
        "run": d.run,
        "reason": d.reason.code,
        "why": d.reason.text,
        "command": job.command,
        "inputs": [_file(f) for f in job.inputs],
        "outputs": [_file(f) for f in job.outputs],
        "log": list(job.log),
        "container": job.container,
        "threads": job.threads,
        "resources": dict(job.resources),
        "retries": job.retries,
        "priority": job.priority,
        "local": job.local,
        "source": job.source,
        "parents": list(plan.graph.pred[job.id]),
    }


def summary_dict(plan: Plan) -> dict[str, Any]:
    """Totals, per-rule counts and reason counts."""
    s = plan.summary()
    total_run = sum(r["run"] for r in s["rules"].values())
    total_pruned = sum(r["pruned"] for r in s["rules"].values())
    return {
        "total": total_run + total_pruned,
        "total_run": total_run,
        "total_pruned": total_pruned,
        "by_rule": s["rules"],
        "reasons": s["reasons"],
    }


def write_plan_json(plan: Plan, out: TextIO) -> None:
    """Write ``{"workdir", "targets", "summary", "jobs": [...]}`` to ``out``."""
    head = {
        "wffile": plan.workflow.path,
        "workdir": plan.workdir,
        "targets": list(plan.targets),
        "summary": summary_dict(plan),
    }
    text = json.dumps(head, indent=1)
    out.write(text[:-2] + ',\n "jobs": [\n')
    first = True
    for job in plan.jobs():
        if not first:
            out.write(",\n")
        first = False
        out.write("  " + json.dumps(job_dict(plan, job)))
    out.write("\n ]\n}\n")
