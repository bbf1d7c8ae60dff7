"""`wf run -n` and `wf dag` on the examples, run as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def wf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["wf", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def bioinfo(tmp_path: Path) -> Path:
    dest = tmp_path / "bioinfo"
    shutil.copytree(EXAMPLES / "bioinfo", dest,
                    ignore=shutil.ignore_patterns(".wf", "results", "work", "logs"))
    stale = dest / "data" / "genome.fa"
    if stale.exists():
        stale.unlink()
    return dest


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_dry_run_summary_and_reasons(bioinfo: Path) -> None:
    before = snapshot(bioinfo)
    r = wf("run", "-n", cwd=bioinfo)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "19 jobs" in out and "19 would run" in out
    for rule in ("trim", "map", "stats", "coverage", "summary", "stage_in"):
        assert rule in out
    assert "stage in data/genome.fa <- archive/genome.fa" in out
    assert "output results/summary.csv missing" in out or "missing" in out
    # A dry run writes nothing outside .wf/ (and here nothing at all).
    after = snapshot(bioinfo)
    assert {k: v for k, v in after.items() if not k.startswith(".wf/")} == before


def test_dry_run_json_is_the_plan(bioinfo: Path) -> None:
    r = wf("run", "-n", "--json", cwd=bioinfo)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["summary"]["total"] == 19
    assert plan["summary"]["total_run"] == 19
    jobs = {j["id"]: j for j in plan["jobs"]}
    stage = jobs["stage_in[data/genome.fa]"]
    assert stage["kind"] == "stage_in"
    assert stage["outputs"][0]["sha256"] == \
        "f63457bc7587965f33a68475dee84c5121479b7499d8fe57eb5883071997e237"
    mapping = jobs["map[sample=ctrl1]"]
    assert "stage_in[data/genome.fa]" in mapping["parents"]
    assert "trim[sample=ctrl1]" in mapping["parents"]
    assert mapping["threads"] == 2 and mapping["retries"] == 2 and mapping["priority"] == 10
    assert mapping["resources"] == {"mem_mb": 512}
    trim = jobs["trim[sample=ctrl1]"]
    assert trim["outputs"][0]["temp"] is True
    # Topological: every parent is listed before its child.
    seen: set[str] = set()
    for j in plan["jobs"]:
        assert set(j["parents"]) <= seen
        seen.add(j["id"])


def test_dry_run_after_run_reuses_everything(bioinfo: Path) -> None:
    assert wf("run", "-j", "2", cwd=bioinfo).returncode == 0
    r = wf("run", "-n", "--json", cwd=bioinfo)
    plan = json.loads(r.stdout)
    assert plan["summary"]["total_run"] == 0
    reasons = {j["id"]: j["reason"] for j in plan["jobs"]}
    # trim's temp() outputs are gone: it is pruned as only needed by reused jobs.
    assert reasons["trim[sample=ctrl1]"] == "not-needed"
    assert reasons["summary"] == "outputs-present"
    # --config overrides reach commands: changing min_len changes trim's command,
    # so trim and everything downstream of it would run again.
    r = wf("run", "-n", "--json", "--config", "min_len=45", cwd=bioinfo)
    plan = json.loads(r.stdout)
    jobs = {j["id"]: j for j in plan["jobs"]}
    assert jobs["trim[sample=ctrl1]"]["run"] is True
    assert jobs["trim[sample=ctrl1]"]["reason"] == "command-changed"
    assert jobs["summary"]["run"] is True


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_dag_text_formats(bioinfo: Path, fmt: str) -> None:
    r = wf("dag", "--format", fmt, cwd=bioinfo)
    assert r.returncode == 0, r.stderr
    if fmt == "dot":
        assert r.stdout.lstrip().startswith("digraph")
        assert r.stdout.count("->") >= 18
    elif fmt == "mermaid":
        assert "flowchart" in r.stdout or "graph" in r.stdout
    else:
        assert "map[sample=heat2]" in r.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_dag_svg_and_png_files(bioinfo: Path, tmp_path: Path) -> None:
    svg = tmp_path / "dag.svg"
    png = tmp_path / "dag.png"
    assert wf("dag", "--format", "svg", "-o", str(svg), cwd=bioinfo).returncode == 0
    assert "<svg" in svg.read_text()
    assert wf("dag", "--format", "png", "-o", str(png), "--rules", cwd=bioinfo).returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_dag_without_graphviz_is_a_clear_error(bioinfo: Path, tmp_path: Path) -> None:
    env_path = tmp_path / "bin"
    env_path.mkdir()
    wf_exe = shutil.which("wf")
    assert wf_exe
    r = subprocess.run([wf_exe, "dag", "--format", "svg"], cwd=bioinfo, capture_output=True, text=True,
                       env={**os.environ, "PATH": str(env_path)}, timeout=60)
    assert r.returncode == 2
    assert "graphviz" in r.stderr and "Traceback" not in r.stderr


def test_quickstart_dry_run_and_targets(tmp_path: Path) -> None:
    dest = tmp_path / "quick"
    shutil.copytree(EXAMPLES / "quickstart", dest, ignore=shutil.ignore_patterns(".wf", "results", "counts"))
    r = wf("run", "-n", "--json", "counts/alice.txt", cwd=dest)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [j["id"] for j in plan["jobs"]] == ["count[name=alice]"]
    r = wf("run", "-n", "counts/nobody.txt", cwd=dest)
    assert r.returncode == 2
    assert "missing input 'texts/nobody.txt'" in r.stderr
    assert "Traceback" not in r.stderr
