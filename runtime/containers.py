"""Can this machine run the plan's containers? Checked before anything runs."""

from __future__ import annotations

import shutil

from dsl.errors import Diagnostic
from planner.plan import Plan

SINGULARITY_RUNTIMES = ("apptainer", "singularity")


def _is_singularity(source: str, kind: str | None) -> bool:
    return kind == "singularity" or source.split("?", 1)[0].endswith(".sif")


def container_problems(plan: Plan, runtime: str) -> list[Diagnostic]:
    """Why the jobs that will run cannot run in their containers here (empty if they can).

    A ``.sif`` image can be staged and verified like any file, but running it
    needs apptainer or singularity; docker-archive and OCI images need the
    chosen runtime (bubblewrap by default).
    """
    wf = plan.workflow
    running_rules = {job.rule for job in plan.to_run() if job.container is not None}
    problems: list[Diagnostic] = []
    need_runtime = False
    for rule in wf.rules:
        ref = rule.container
        if ref is None or rule.name not in running_rules:
            continue
        if ref.name is not None:
            decl = wf.containers[ref.name]
            source, kind, pos = decl.image, decl.kind, decl.pos
        else:
            source, kind, pos = ref.image or "", None, ref.pos
        if _is_singularity(source, kind):
            if not any(shutil.which(r) for r in SINGULARITY_RUNTIMES):
                problems.append(Diagnostic(
                    f"rule '{rule.name}' runs in a Singularity image ({source}): it can be staged and "
                    f"verified, but running it needs apptainer or singularity, and neither is installed",
                    pos))
        else:
            need_runtime = True
    if need_runtime:
        exe = "bwrap" if runtime == "bwrap" else runtime
        if shutil.which(exe) is None:
            hint = "apt-get install bubblewrap" if runtime == "bwrap" else f"apt-get install {runtime}"
            problems.append(Diagnostic(
                f"container runtime '{runtime}' is not installed ({hint}); "
                f"choose another with --container-runtime"))
    return problems
