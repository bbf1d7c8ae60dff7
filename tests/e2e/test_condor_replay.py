"""``wf plan --backend condor`` and ``wf run --backend condor`` as a user runs
them, and the submit directory replayed as a pool would run it (see
condor_replay.py): same outputs and checksums as the local backend, and the
integrity checks catch what a transfer breaks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runtime import condor_scripts as scripts
from tests.e2e.condor_replay import replay
from tests.e2e.conftest import (
    clone_dir,
    copy_example,
    flip_byte,
    recorded_files,
    sha256,
    tree_hashes,
    wf,
    wf_cmd,
    wf_env,
    wf_ok,
)

SAMPLES = ("ctrl1", "ctrl2", "heat1", "heat2")
RESULTS = ["results"]


@pytest.fixture(scope="module")
def local_bioinfo(tmp_path_factory) -> Path:
    """examples/bioinfo run once with the local backend: the reference."""
    d = copy_example("bioinfo", tmp_path_factory.mktemp("local") / "bioinfo")
    wf_ok("run", cwd=d)
    return d


def planned(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of examples/bioinfo and its submit directory, written by ``wf plan``."""
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    r = wf_ok("plan", "--backend", "condor", "-o", "submit", cwd=d)
    assert "condor_submit_dag wf.dag" in r.out
    return d, d / "submit"


def ledger(sub: Path) -> dict[str, str]:
    """Every checksum the POST scripts recorded: {lfn: sha256}."""
    out: dict[str, str] = {}
    for p in (sub / scripts.CHECKSUMS).glob("[0-9]*/*.json"):
        out.update(json.loads(p.read_text())["outputs"])
    return out


def records(sub: Path, fragment: str) -> list[dict]:
    """The provenance records of a node's attempts, first attempt first."""
    paths = sorted((sub / scripts.RECORDS).glob(f"*/*{fragment}*.json"))
    return [json.loads(p.read_text()) for p in paths]


def test_plan_writes_a_submit_directory(tmp_path):
    d, sub = planned(tmp_path)
    jobs = [line for line in (sub / "wf.dag").read_text().splitlines() if line.startswith("JOB ")]
    assert len(jobs) == 1 + 4 * len(SAMPLES) + 2  # stage-in, 4 rules per sample, summary, all
    assert sorted(p.name for p in sub.glob("*.sub")) == [
        "all.sub", "coverage.sub", "map.sub", "stage_in.sub", "stats.sub", "summary.sub", "trim.sub"]
    assert not (d / "results").exists()  # nothing ran


def test_plan_refuses_the_local_backend(tmp_path):
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    r = wf("plan", "--backend", "local", "-o", "submit", cwd=d)
    assert r.code == 2 and "--backend condor" in r.err


def test_run_condor_without_a_schedd_says_what_is_missing(tmp_path):
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    config = tmp_path / "condor_config"
    config.write_text("")  # a pool with nothing in it, whatever this machine has
    proc = subprocess.run(wf_cmd("run", "--backend", "condor"), cwd=d, capture_output=True, text=True,
                          env={**wf_env(), "CONDOR_CONFIG": str(config)}, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot submit to HTCondor: no HTCondor schedd is reachable" in proc.stderr
    assert "condor_submit_dag wf.dag" in proc.stderr and ".wf/condor" in proc.stderr
    assert (d / ".wf" / "condor" / "wf.dag").is_file()


def test_plan_after_a_local_run_reuses_and_takes_references_from_the_database(tmp_path, local_bioinfo):
    d = clone_dir(local_bioinfo, tmp_path / "bioinfo")
    r = wf_ok("plan", "--backend", "condor", "-o", "submit", cwd=d)
    assert "Nothing to be done" in r.out and not (d / "submit").exists()
    wf_ok("plan", "--backend", "condor", "-o", "submit", "--forcerun", "summary", cwd=d)
    sub = d / "submit"
    nodes = json.loads((sub / "wf.index.json").read_text())["nodes"]
    assert sorted(nodes.values()) == ["all", "summary"]
    summary = next(n for n, j in nodes.items() if j == "summary")
    spec = json.loads((sub / scripts.spec_path(summary)).read_text())
    known = recorded_files(d)
    assert {i["lfn"]: i["sha256"] for i in spec["inputs"]} == {
        f"results/stats/{s}.txt": known[f"results/stats/{s}.txt"] for s in SAMPLES}
    assert spec["condor"]["first_sight"] == {} and spec["condor"]["produced"] == {}
    before = sha256(d / "results" / "summary.csv")
    assert replay(sub).ok
    assert sha256(d / "results" / "summary.csv") == before


def test_replay_matches_the_local_backend(tmp_path, local_bioinfo):
    d, sub = planned(tmp_path)
    result = replay(sub)
    assert result.ok, {n: r.attempts for n, r in result.failed().items()}
    assert all(len(r.attempts) == 1 for r in result.nodes.values())
    assert tree_hashes(d, RESULTS) == tree_hashes(local_bioinfo, RESULTS)
    # The checksums the POST scripts recorded are the ones the local run recorded.
    local = recorded_files(local_bioinfo)
    recorded = ledger(sub)
    assert {lfn for lfn in recorded if lfn.startswith("results/")} == set(tree_hashes(d, RESULTS))
    for lfn, digest in recorded.items():
        assert digest == sha256(d / lfn)
        if lfn in local:  # (temp files are forgotten by the local run once removed)
            assert local[lfn] == digest, lfn
    # Every input was verified on the execute node against a reference.
    for rec in records(sub, "_map_"):
        assert rec["status"] == "ok"
        checks = {e["file"]: e for e in rec["events"] if e["stage"] == "pre-job"}
        assert checks["data/genome.fa"]["kind"] == "compare" and checks["data/genome.fa"]["ok"]
    assert (d / "logs" / "map" / "ctrl1.log").read_text().startswith("map ctrl1:")


def test_a_corrupted_input_transfer_fails_the_attempt_and_the_retry_cures_it(tmp_path, local_bioinfo):
    d, sub = planned(tmp_path)

    def corrupt(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "map_sample_ctrl1" in node and retry == 0 and direction == "in" and entry == "data/genome.fa":
            flip_byte(path, 100)

    result = replay(sub, corrupt)
    assert result.ok
    node = result.node("map_sample_ctrl1")
    assert [(a.job, a.post) for a in node.attempts] == [(3, 3), (0, 0)]  # wrapper exit 3, POST fails
    first, second = records(sub, "map_sample_ctrl1")
    assert first["status"] == "integrity" and "data/genome.fa" in first["message"]
    bad = [e for e in first["events"] if not e["ok"]]
    assert [(e["file"], e["stage"]) for e in bad] == [("data/genome.fa", "pre-job")]
    assert bad[0]["expected"] == sha256(d / "data" / "genome.fa")
    assert second["status"] == "ok" and second["attempt"] == 2
    assert tree_hashes(d, RESULTS) == tree_hashes(local_bioinfo, RESULTS)


def test_chaos_in_the_wrappers_copies_is_caught_and_cured(tmp_path, local_bioinfo):
    d = copy_example("bioinfo", tmp_path / "bioinfo")
    wf_ok("plan", "--backend", "condor", "-o", "submit", "--chaos", "transfer=0.2,truncate=0.1,silent=0.1",
          "--chaos-seed", "2", "--retries", "3", cwd=d)
    result = replay(d / "submit")
    assert result.ok
    faults = failed = 0
    for p in (d / "submit" / scripts.RECORDS).glob("*/*.json"):
        rec = json.loads(p.read_text())
        faults += len(rec["chaos"])
        failed += sum(1 for e in rec["events"] if not e["ok"])
    assert faults > 0 and failed == faults  # every fault seen by a check
    assert tree_hashes(d, RESULTS) == tree_hashes(local_bioinfo, RESULTS)


def test_an_output_corrupted_on_the_way_back_never_lands(tmp_path, local_bioinfo):
    d, sub = planned(tmp_path)
    final = d / "results" / "mapped" / "ctrl2.txt"
    seen = []

    def corrupt(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "map_sample_ctrl2" in node and retry == 0 and direction == "out" \
                and entry.startswith(".wf/landing/"):  # the node's landing folder
            flip_byte(path / "results" / "mapped" / "ctrl2.txt", 10)
            seen.append(final.exists())

    result = replay(sub, corrupt)
    assert result.ok
    assert [(a.job, a.post) for a in result.node("map_sample_ctrl2").attempts] == [(0, 3), (0, 0)]
    assert seen == [False]  # the bad copy sat in the sandbox, never under its final name
    # The kept record says ok (the wrapper's view); the POST script's verdict beside it does not.
    first, second = records(sub, "map_sample_ctrl2")
    assert first["status"] == "ok" and first["post"]["exit"] == 3
    assert "sha256 mismatch at stage-out" in first["post"]["message"]
    (bad,) = [e for e in first["post"]["events"] if not e["ok"]]
    assert (bad["file"], bad["stage"], bad["expected"]) == \
        ("results/mapped/ctrl2.txt", scripts.LANDED, sha256(final))
    assert second["post"] == {"exit": 0, "message": None, "events": second["post"]["events"]}
    assert [e["file"] for e in second["post"]["events"]] == ["results/mapped/ctrl2.txt"]
    assert tree_hashes(d, RESULTS) == tree_hashes(local_bioinfo, RESULTS)


def test_without_retries_a_corrupt_input_fails_the_node_and_its_descendants_wait(tmp_path):
    d, sub = planned(tmp_path)

    def corrupt(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "stats_sample_heat1" in node and direction == "in" and entry.startswith("results/mapped/"):
            flip_byte(path, 5)

    result = replay(sub, corrupt)
    node = result.node("stats_sample_heat1")
    assert node.status == "failed" and [(a.job, a.post) for a in node.attempts] == [(3, 3)]
    assert result.node("_summary").status == "not-run" and result.node("_all").status == "not-run"
    assert not (d / "results" / "summary.csv").exists()
    assert not (d / "results" / "stats" / "heat1.txt").exists()
    assert result.node("coverage_sample_heat1").status == "done"  # independent work went on


def test_an_output_the_job_did_not_make_fails_the_node(tmp_path):
    d, sub = planned(tmp_path)

    def break_command(node: str, retry: int, direction: str, entry: str, path: Path) -> None:
        if "trim_sample_ctrl1" in node and direction == "in" and entry.endswith(f"/{node}.json"):
            spec = json.loads(path.read_text())
            spec["command"] = "true"  # "succeeds" and makes nothing
            path.write_text(json.dumps(spec))

    result = replay(sub, break_command)
    node = result.node("trim_sample_ctrl1")
    # The landing folder always exists, so the job is never held for a missing
    # output: the record comes back and the POST script fails the node with it.
    assert [(a.job, a.post) for a in node.attempts] == [(4, 4)]
    assert node.status == "failed"  # trim has no retries
    assert records(sub, "trim_sample_ctrl1")[0]["status"] == "missing-output"
    assert not (d / "work" / "trimmed" / "ctrl1.fastq").exists()
    assert (d / "logs" / "trim" / "ctrl1.log").exists()  # a failed job keeps its log
