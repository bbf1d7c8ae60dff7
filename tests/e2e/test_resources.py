"""`resources:` budgets in the local executor (`--resources NAME=N`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

WFFILE = '''
rule all:
    input: expand("o/{i}.txt", i=["1", "2", "3", "4"])
rule big:
    output: "o/{i}.txt"
    resources: mem_mb=600
    log: "logs/{i}.log"
    shell: "date +%s.%N > {log}; sleep 0.3; date +%s.%N >> {log}; echo {wildcards.i} > {output}"
'''


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["wf", "run", *args], cwd=tmp, capture_output=True, text=True, timeout=120)


def spans(tmp: Path) -> list[tuple[float, float]]:
    out = []
    for i in "1234":
        start, end = (tmp / "logs" / f"{i}.log").read_text().split()
        out.append((float(start), float(end)))
    return sorted(out)


def test_budget_serialises_jobs_that_do_not_fit_together(tmp_path: Path) -> None:
    (tmp_path / "Wffile").write_text(WFFILE)
    r = run(tmp_path, "-j", "4", "--resources", "mem_mb=1000")
    assert r.returncode == 0, r.stderr
    s = spans(tmp_path)
    # 600 + 600 > 1000: never two at once.
    assert all(a_end <= b_start + 0.01 for (_, a_end), (b_start, _) in zip(s, s[1:], strict=False))


def test_budget_allows_parallel_jobs_when_they_fit(tmp_path: Path) -> None:
    (tmp_path / "Wffile").write_text(WFFILE)
    assert run(tmp_path, "-j", "4", "--resources", "mem_mb=2400").returncode == 0
    s = spans(tmp_path)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(s, s[1:], strict=False))


def test_a_job_bigger_than_the_budget_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "Wffile").write_text(WFFILE)
    r = run(tmp_path, "--resources", "mem_mb=100")
    assert r.returncode == 2
    assert "big[i=1] needs mem_mb=600, but only 100 is available" in r.stderr
    assert not (tmp_path / "o").exists()
