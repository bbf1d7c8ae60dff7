"""Chaos: inject faults with ``--chaos`` and prove every one is caught.

For each kind, many seeds over a small pipeline (a replica staged in, two
raw inputs, two steps per input, a merge): every injected fault must be
detected, no corrupted byte may ever sit under a final output name, and a
run ends with the clean run's outputs, byte for byte.

A run may also end with exit 3 when one job drew a fault in every one of
its attempts (with ``transfer=0.3`` a job making three transfers fails an
attempt about two times in three, so six attempts all fail now and then):
then it must be exactly that, and a plain ``wf run`` afterwards finishes
the workflow with the clean outputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import Result, query, sha256, tree_hashes, wf, wf_ok, write_workflow

RETRIES = 5
#: How often the executor remakes one intermediate found corrupt at rest (runtime.local).
MAX_REMAKES = 3
WORKERS = max(2, min(4, 2 * (os.cpu_count() or 1)))

RAW_A = "".join(f"line {i} of a: the quick brown fox\n" for i in range(300))
RAW_B = "".join(f"line {i} of b: jumps over the lazy dog\n" for i in range(300))

PIPELINE = """
replica "raw/b.txt":
    url: "archive/b.txt"
    sha256: "{sha_b}"

NAMES = ["a", "b"]

rule all:
    input: "final/merged.txt"

rule prep:
    input: "raw/{{n}}.txt"
    output: "mid/{{n}}.txt"
    shell: "tr a-z A-Z < {{input}} > {{output}}"

rule rev:
    input: "mid/{{n}}.txt"
    output: "out/{{n}}.txt"
    shell: "LC_ALL=C sort -r {{input}} > {{output}}"

rule merge:
    input: {merge_inputs}
    output: "final/merged.txt"
    shell: "cat {{input}} > {{output}}"
"""
#: Declared outputs (final names) and sources that must never change.
OUTPUTS = ["raw/b.txt", "mid/a.txt", "mid/b.txt", "out/a.txt", "out/b.txt", "final/merged.txt"]
FINAL = "final/merged.txt"
SOURCES = ["raw/a.txt", "archive/b.txt"]


def make_pipeline(dest: Path, merge_reads_mid: bool = False, corrupt_archive: bool = False) -> Path:
    """The chaos pipeline; merge_reads_mid makes mid/a.txt feed two jobs, one of
    them waiting for other parents too."""
    merge_inputs = 'expand("out/{n}.txt", n=NAMES)'
    if merge_reads_mid:
        merge_inputs += ', "mid/a.txt"'
    archive = RAW_B if not corrupt_archive else RAW_B.replace("lazy", "lacy", 1)
    return write_workflow(
        dest,
        PIPELINE.format(
            sha_b=hashlib.sha256(RAW_B.encode()).hexdigest(), merge_inputs=merge_inputs
        ),
        {"raw/a.txt": RAW_A, "archive/b.txt": archive},
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Output checksums of clean runs, by pipeline variant."""
    out = {}
    for variant in (False, True):
        d = make_pipeline(tmp_path_factory.mktemp("clean") / "w", merge_reads_mid=variant)
        wf_ok("run", "-j", "2", cwd=d)
        out[variant] = tree_hashes(d, OUTPUTS)
        assert sorted(out[variant]) == sorted(OUTPUTS)
    # Staging does not change a byte.
    d = make_pipeline(tmp_path_factory.mktemp("clean") / "w")
    wf_ok("run", "-j", "2", "--staging", "copy", cwd=d)
    assert tree_hashes(d, OUTPUTS) == out[False]
    return out


@dataclass
class Tally:
    """Injected and detected faults over every seed of one kind."""

    injected: int = 0
    detected: int = 0
    caught_on_resume: int = 0
    exhausted: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"injected {self.injected}, detected {self.detected} in the run"
            f" (+{self.caught_on_resume} caught by the resume of a run that ended first), "
            f"runs ended by exhausted retries/remakes: {len(self.exhausted)} (seeds {self.exhausted})"
        )


def present_outputs(d: Path) -> dict[str, str]:
    return {p: sha256(d / p) for p in OUTPUTS if (d / p).exists()}


def check_never_corrupt(d: Path, expected: dict[str, str], seed: int, what: str) -> None:
    """Whatever happened, no file under an output's name holds a wrong byte,
    except an intermediate that chaos corrupted at rest and the run ended
    (exit 3) before it was remade: the caller checks that the next run does."""
    rotten = {f for (f,) in query(d, "SELECT DISTINCT file FROM chaos WHERE kind='rest'")}
    assert FINAL not in rotten
    for lfn, digest in present_outputs(d).items():
        if lfn not in rotten:
            assert digest == expected[lfn], (
                f"seed {seed}: corrupted {lfn} at its final name ({what})"
            )
    for src in SOURCES:
        assert (d / src).read_text() == (RAW_A if src == "raw/a.txt" else RAW_B), (
            f"seed {seed}: chaos harmed the raw source {src}"
        )


def run_seeds(
    tmp_path: Path,
    spec: str,
    staging: str,
    seeds: range,
    *,
    merge_reads_mid: bool = False,
    jobs: int = 2,
) -> list[tuple[int, Path, Result]]:
    """One workflow per seed, run concurrently in separate directories."""

    def one(seed: int) -> tuple[int, Path, Result]:
        d = make_pipeline(tmp_path / f"seed{seed}", merge_reads_mid=merge_reads_mid)
        chaos = ["--chaos", spec, "--chaos-seed", str(seed), "--retries", str(RETRIES)]
        r = wf("run", "-j", str(jobs), "--staging", staging, *chaos, cwd=d)
        return seed, d, r

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, seeds))


def settle(
    seed: int,
    d: Path,
    r: Result,
    expected: dict[str, str],
    staging: str,
    tally: Tally,
    exhausted_ok,
) -> None:
    """Check one chaos run; resume an exhausted one and check that too."""
    assert r.code in (0, 3), f"seed {seed}: exit {r.code}\n{r.text}"
    check_never_corrupt(d, expected, seed, f"after the chaos run, exit {r.code}")
    rows = query(d, "SELECT kind, file, stage, detected FROM chaos")
    tally.injected += len(rows)
    tally.detected += sum(1 for row in rows if row[3])
    undetected = [row for row in rows if not row[3]]
    if r.code == 0:
        assert not undetected, f"seed {seed}: faults not detected: {undetected}\n{r.text}"
        assert present_outputs(d) == expected, f"seed {seed}: outputs differ from the clean run"
        return
    failed = query(d, "SELECT job_id FROM jobs WHERE status='failed'")
    assert failed, f"seed {seed}: exit 3 without a failed job\n{r.text}"
    for (job_id,) in failed:
        assert exhausted_ok(d, job_id), f"seed {seed}: {job_id} failed for another reason\n{r.text}"
    tally.exhausted.append(seed)
    resumed = wf("run", "--staging", staging, cwd=d)
    assert resumed.code == 0, f"seed {seed}: resume after exit 3 failed\n{resumed.text}"
    assert present_outputs(d) == expected, f"seed {seed}: outputs differ after resuming"
    # A fault no consumer read before the run ended is caught by the next run.
    caught = {f for (f,) in query(d, "SELECT file FROM integrity_events WHERE run_id=2 AND ok=0")}
    for kind, lfn, stage, _ in undetected:
        assert kind == "rest" and lfn in caught, (
            f"seed {seed}: {kind} fault in {lfn} at {stage} never caught\n{resumed.text}"
        )
        tally.caught_on_resume += 1


def every_attempt_drew_a_fault(d: Path, job_id: str) -> bool:
    """The job used all its attempts, and each one had a fault injected (and caught)."""
    attempts = query(d, "SELECT attempt, status FROM attempts WHERE job_id=?", (job_id,))
    faulty = {
        a for (a,) in query(d, "SELECT attempt FROM chaos WHERE job_id=? AND detected=1", (job_id,))
    }
    return (
        len(attempts) == RETRIES + 1
        and all(s == "integrity" for _, s in attempts)
        and faulty == {a for a, _ in attempts}
    )


@pytest.mark.parametrize(
    ("kind", "seeds"),
    [
        ("transfer", range(30)),
        ("truncate", range(100, 108)),
        ("silent", range(200, 208)),
    ],
)
def test_transfer_faults_are_all_caught_and_cured(tmp_path, clean, kind, seeds):
    expected = clean[False]
    tally = Tally()
    for seed, d, r in run_seeds(tmp_path, f"{kind}=0.3", "copy", seeds):
        settle(seed, d, r, expected, "copy", tally, every_attempt_drew_a_fault)
        # The kind asked for, and only that kind, was injected.
        kinds = {k for (k,) in query(d, "SELECT DISTINCT kind FROM chaos")}
        assert kinds <= {kind}, f"seed {seed}: {kinds}"
        # A bad copy is cured by retrying the job that made it, never by
        # remaking the file it was copied from: each job succeeds once.
        twice = query(
            d,
            "SELECT job_id FROM attempts WHERE status='ok' AND run_id=1 "
            "GROUP BY job_id HAVING count(*) > 1",
        )
        assert not twice, f"seed {seed}: jobs remade after a transfer fault: {twice}"
        shutil.rmtree(d)
    assert tally.injected > 0 and tally.injected == tally.detected, str(tally)
    # Retries cure transient faults: exhausting six attempts must stay rare.
    assert len(tally.exhausted) <= len(seeds) // 3, str(tally)
    print(f"{kind}: {tally}")


def producer_exhausted_by_rest_faults(d: Path, job_id: str) -> bool:
    """A consumer failed because one of its inputs was found corrupt at rest
    more often than the executor remakes it."""
    bad = query(
        d,
        "SELECT DISTINCT file FROM integrity_events WHERE job_id=? AND ok=0 AND stage='pre-job'",
        (job_id,),
    )
    return any(
        query(d, "SELECT count(*) FROM chaos WHERE file=? AND kind='rest'", (f,))[0][0]
        > MAX_REMAKES
        for (f,) in bad
    )


@pytest.mark.parametrize("merge_reads_mid", [False, True])
def test_rest_faults_are_caught_by_the_consumer_and_the_producer_remade(
    tmp_path, clean, merge_reads_mid
):
    expected = clean[merge_reads_mid]
    tally = Tally()
    remade = 0
    seeds = range(300, 308) if merge_reads_mid else range(400, 408)
    for seed, d, r in run_seeds(
        tmp_path, "rest=0.5", "shared", seeds, merge_reads_mid=merge_reads_mid, jobs=1
    ):
        faults = query(d, "SELECT job_id, attempt, file, detected FROM chaos WHERE kind='rest'")
        # Only intermediates: the final output is never harmed, even though the
        # target rule 'all' reads it.
        assert FINAL not in {f for _, _, f, _ in faults}, f"seed {seed}: chaos corrupted {FINAL}"
        # No consumer ever started before all its inputs were made: a missing
        # input at pre-job would mean a job was released too early.
        missing = query(
            d, "SELECT job_id, file FROM integrity_events WHERE stage='pre-job' AND actual IS NULL"
        )
        assert not missing, f"seed {seed}: jobs started before their inputs existed: {missing}"
        for job_id, attempt, lfn, detected in faults:
            if not detected:
                continue  # the run ended first (exit 3): settle() checks that the resume caught it
            later = query(
                d,
                "SELECT count(*) FROM attempts WHERE run_id=1 AND job_id=? AND attempt>?",
                (job_id, attempt),
            )[0][0]
            total = query(d, "SELECT count(*) FROM chaos WHERE file=?", (lfn,))[0][0]
            # Remade after each fault, unless this was one fault too many.
            assert later > 0 or total > MAX_REMAKES, (
                f"seed {seed}: {lfn} was corrupted after {job_id} attempt {attempt} and never remade"
            )
            remade += later > 0
        settle(seed, d, r, expected, "shared", tally, producer_exhausted_by_rest_faults)
        shutil.rmtree(d)
    assert tally.injected > 0, str(tally)
    assert tally.injected == tally.detected + tally.caught_on_resume, str(tally)
    assert remade > 0, str(tally)
    print(f"rest (merge reads mid: {merge_reads_mid}): {tally}, {remade} remakes")


def test_a_persistent_fault_is_not_cured_by_retries(tmp_path):
    d = make_pipeline(tmp_path / "w", corrupt_archive=True)
    chaos = ["--chaos", "transfer=0.3", "--chaos-seed", "7"]
    r = wf("run", "--staging", "copy", "--retries", "3", *chaos, cwd=d)
    assert r.code == 3, r.text
    assert "raw/b.txt" in r.text and "source" in r.text
    attempts = query(d, "SELECT status FROM attempts WHERE job_id='stage_in[raw/b.txt]'")
    assert attempts == [("integrity",)] * 4
    assert not (d / "raw/b.txt").exists()
    assert not query(d, "SELECT * FROM attempts WHERE job_id IN ('prep[n=b]', 'merge')")
