"""Containers as data, run as a user would: images built offline, run with bwrap."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.runtime.imagebuild import build_docker_archive, build_oci_archive

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or not os.path.exists("/bin/busybox"),
    reason="needs bubblewrap and busybox-static (.ci/run installs them)")

# A tool that exists only inside the image: the host has no `wfcount`.
TOOL = b"#!/bin/sh\n# count the words of a file, the image's way\nwc -w < \"$1\" | tr -d ' '\n"


def wf(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["wf", *args], cwd=tmp, capture_output=True, text=True, timeout=180)


def make_project(tmp: Path, fmt: str = "docker", declared_sha: bool = True, extra: bytes = b"") -> str:
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    files = {"usr": ("dir", 0o755), "usr/bin": ("dir", 0o755), "usr/bin/wfcount": (TOOL, 0o755),
             "etc/flavour": b"inside\n" + extra}
    build = build_docker_archive if fmt == "docker" else build_oci_archive
    built = build(tmp / "images" / "tools.tar", files, env=("PATH=/usr/bin:/bin",))
    (tmp / "data").mkdir(exist_ok=True)
    for s, text in (("A", "one two three\n"), ("B", "four five\n")):
        (tmp / "data" / f"{s}.txt").write_text(text)
    sha = f'\n    sha256: "{built.sha256}"' if declared_sha else ""
    (tmp / "Wffile").write_text(f'''
container tools:
    image: "images/tools.tar"{sha}

rule all:
    input: expand("counts/{{s}}.txt", s=["A", "B"])

rule count:
    input: "data/{{s}}.txt"
    output: "counts/{{s}}.txt"
    container: tools
    shell: "echo $(cat /etc/flavour | head -n 1) $(wfcount {{input}}) > {{output}}"
''')
    return built.sha256


def events(tmp: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(tmp / ".wf" / "wf.db") as c:
        return c.execute(sql).fetchall()


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_pipeline_runs_with_commands_that_exist_only_in_the_image(tmp_path: Path, fmt: str) -> None:
    assert shutil.which("wfcount") is None
    make_project(tmp_path, fmt)
    r = wf(tmp_path, "run", "-j", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "counts" / "A.txt").read_text() == "inside 3\n"
    assert (tmp_path / "counts" / "B.txt").read_text() == "inside 2\n"
    # The image is unpacked once, into a cache keyed by its sha256.
    cache = list((tmp_path / ".wf" / "containers").iterdir())
    assert len([c for c in cache if not c.name.startswith(".")]) == 1
    # Every job's image check is recorded; the first after staging may reuse the
    # stage-in's verification of that very file, never skipping the record.
    checks = events(tmp_path, "SELECT job_id, ok FROM integrity_events WHERE stage='container'")
    assert sorted(j for j, _ in checks) == ["count[s=A]", "count[s=B]"] and all(ok for _, ok in checks)
    # The provenance record names the image's digests.
    rec_files = list((tmp_path / ".wf" / "records").rglob("count_s=A_*.json"))
    rec = json.loads(rec_files[0].read_text())
    assert rec["container"]["format"] == ("docker-archive" if fmt == "docker" else "oci-archive")
    assert rec["container"]["config_digest"].startswith("sha256:")


def test_tampered_image_is_refused_before_any_job_runs_in_it(tmp_path: Path) -> None:
    make_project(tmp_path)
    image = tmp_path / "images" / "tools.tar"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    r = wf(tmp_path, "run")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "sha256 mismatch" in r.stdout and "tools.tar" in r.stdout
    assert not (tmp_path / "counts").exists()
    ran = events(tmp_path, "SELECT count(*) FROM attempts WHERE job_id LIKE 'count%'")
    assert ran == [(0,)]


def test_undeclared_image_checksum_is_taken_at_first_sight_and_enforced(tmp_path: Path) -> None:
    make_project(tmp_path, declared_sha=False)
    assert wf(tmp_path, "run").returncode == 0
    # A changed image (rebuilt with other content) makes the jobs run again, and says why.
    make_project(tmp_path, declared_sha=False, extra=b"v2\n")
    r = wf(tmp_path, "run", "-n")
    assert "count[s=A]  (container image tools changed)" in r.stdout, r.stdout
    assert wf(tmp_path, "run").returncode == 0
    assert (tmp_path / "counts" / "A.txt").read_text() == "inside 3\n"


def test_changed_declared_image_reruns_its_jobs_and_the_dry_run_says_why(tmp_path: Path) -> None:
    make_project(tmp_path)
    assert wf(tmp_path, "run").returncode == 0
    assert "0 would run" in wf(tmp_path, "run", "-n").stdout  # an unchanged image is reused
    make_project(tmp_path, extra=b"v2\n")
    r = wf(tmp_path, "run", "-n", "--json")
    plan = {j["id"]: j for j in json.loads(r.stdout)["jobs"]}
    assert plan["count[s=A]"]["run"] is True
    assert plan["count[s=A]"]["why"] == "container image tools changed"
    assert plan["all"]["why"] == "input counts/A.txt will be remade"


def test_copy_staging_verifies_the_copied_image(tmp_path: Path) -> None:
    make_project(tmp_path)
    r = wf(tmp_path, "run", "--staging", "copy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "counts" / "A.txt").read_text() == "inside 3\n"
    staged = events(tmp_path, "SELECT count(*) FROM integrity_events WHERE stage='stage-in' "
                              "AND file='.wf/images/tools/tools.tar' AND job_id LIKE 'count%'")
    assert staged == [(2,)]


def test_chaos_on_image_staging_is_caught_and_cured(tmp_path: Path) -> None:
    make_project(tmp_path)
    r = wf(tmp_path, "run", "--staging", "copy", "--chaos", "transfer=0.4", "--chaos-seed", "5",
           "--retries", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    injected = events(tmp_path, "SELECT count(*), sum(detected) FROM chaos")[0]
    assert injected[0] > 0 and injected[0] == injected[1]
    assert (tmp_path / "counts" / "B.txt").read_text() == "inside 2\n"


def test_sif_image_fails_at_plan_time_without_a_runtime(tmp_path: Path) -> None:
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("a singularity runtime is installed here")
    (tmp_path / "img.sif").write_bytes(b"SIF image bytes")
    (tmp_path / "Wffile").write_text('''
container sing:
    image: "img.sif"
    type: "singularity"
rule all:
    output: "x.txt"
    container: sing
    shell: "echo > {output}"
''')
    for args in (("run", "-n"), ("run",)):
        r = wf(tmp_path, *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Wffile:2:1: error:" in r.stderr and "apptainer or singularity" in r.stderr
        assert "Traceback" not in r.stderr


def test_missing_container_runtime_is_a_clear_error(tmp_path: Path) -> None:
    if shutil.which("podman"):
        pytest.skip("podman is installed here")
    make_project(tmp_path)
    r = wf(tmp_path, "run", "--container-runtime", "podman")
    assert r.returncode == 2
    assert "container runtime 'podman' is not installed" in r.stderr


def test_containers_example_builds_its_image_and_runs(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    dest = tmp_path / "examples" / "containers"
    shutil.copytree(repo / "examples" / "containers", dest,
                    ignore=shutil.ignore_patterns(".wf", "results", "images"))
    (tmp_path / "tests" / "runtime").mkdir(parents=True)
    shutil.copy(repo / "tests" / "runtime" / "imagebuild.py", tmp_path / "tests" / "runtime")
    build = subprocess.run(["./build_image.sh"], cwd=dest, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    r = wf(dest, "run")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split("\t") for line in (dest / "results" / "gc.tsv").read_text().splitlines()]
    assert len(rows) == 9 and rows[0][0].startswith("leaf")
    assert [float(v) for _, v in rows] == sorted((float(v) for _, v in rows), reverse=True)
