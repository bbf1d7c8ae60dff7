"""``wf run`` as a user runs it: the examples, reuse and invalidation, failures,
retries, staging, scheduling, and the integrity checks, on real files."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    attempted,
    clone_dir,
    copy_example,
    flip_byte,
    query,
    recorded_files,
    sha256,
    succeeded,
    tree_hashes,
    wf,
    wf_ok,
    write_workflow,
)

TEXTS = ("alice", "moby", "pride")
SAMPLES = ("ctrl1", "ctrl2", "heat1", "heat2")
QS_OUTPUTS = [f"counts/{t}.txt" for t in TEXTS] + ["results/summary.txt"]
BIO_OUTPUTS = ["results/summary.csv"] + [
    f"results/{kind}/{s}.txt" for kind in ("mapped", "stats", "coverage") for s in SAMPLES
]
#: results/summary.csv as the bioinfo README documents it.
BIO_SUMMARY = """\
sample,reads,placed,placed_pct,reverse,mean_length
ctrl1,218,198,90.8,102,59.8
ctrl2,226,194,85.8,104,59.4
heat1,220,162,73.6,78,59.5
heat2,222,166,74.8,71,60.8
all,886,720,81.3,355,59.9
"""


def would_run(dry_run_out: str) -> int:
    m = re.search(r"(\d+) would run", dry_run_out)
    assert m, dry_run_out
    return int(m.group(1))


def job_line(dry_run_out: str, job_id: str) -> str:
    """The dry run's line about one job (its id, then the reason in parentheses)."""
    for line in dry_run_out.splitlines():
        if line.strip().startswith(job_id + "  ("):
            return line.strip()
    raise AssertionError(f"no line for {job_id} in:\n{dry_run_out}")


def would_run_jobs(dry_run_out: str) -> set[str]:
    """Job ids listed under 'Would run' by ``wf run -n`` (commands lines skipped)."""
    jobs, inside = set(), False
    for line in dry_run_out.splitlines():
        if line.startswith(("Would run", "Reused", "Auxiliary", "Nothing")):
            inside = line.startswith("Would run")
        elif inside and (m := re.match(r"^  (\S+)  \([^)]*\)$", line)):
            jobs.add(m.group(1))
    return jobs


# -- the examples, run once per module and cloned by the tests that change them -----
@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    d = copy_example("quickstart", tmp_path_factory.mktemp("qs") / "quickstart")
    return d, wf("run", cwd=d)


@pytest.fixture(scope="module")
def bioinfo_run(tmp_path_factory):
    d = copy_example("bioinfo", tmp_path_factory.mktemp("bio") / "bioinfo")
    return d, wf("run", "-j", "2", cwd=d)


@pytest.fixture
def qs(quickstart_run, tmp_path) -> Path:
    """A finished quickstart run of this test's own (database included)."""
    d, r = quickstart_run
    assert r.code == 0, r.text
    return clone_dir(d, tmp_path / "qs")


@pytest.fixture
def bio(bioinfo_run, tmp_path) -> Path:
    """A finished bioinfo run of this test's own (database included)."""
    d, r = bioinfo_run
    assert r.code == 0, r.text
    return clone_dir(d, tmp_path / "bio")


def test_quickstart_runs_reports_and_is_then_up_to_date(quickstart_run):
    d, r = quickstart_run
    assert r.code == 0, r.text
    for out in QS_OUTPUTS:
        assert (d / out).stat().st_size > 0, out
    summary = (d / "results/summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == list(TEXTS)
    # counts/alice.txt is "count word" lines, most frequent first.
    counts = [int(line.split()[0]) for line in (d / "counts/alice.txt").read_text().splitlines()]
    assert counts == sorted(counts, reverse=True) and counts[0] > 1

    stats = wf_ok("statistics", cwd=d).out
    m_cmp = re.search(r"^(\d+) files checksums compared with total duration of", stats, re.M)
    m_gen = re.search(r"^(\d+) files checksums generated", stats, re.M)
    assert m_cmp and m_gen, stats
    data = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    integ = data["integrity"]
    # Every input with a producer is compared before its job (3 counts read by
    # summary); the summary read by all (no command) was hashed as it was made
    # and is unchanged: a check by fingerprint, counted apart; raw inputs and
    # outputs are generated.
    assert integ["compared"]["count"] == int(m_cmp.group(1)) == 3
    assert integ["cached"] == 1
    assert re.search(r"^1 files checks satisfied by the unchanged fingerprint", stats, re.M)
    assert integ["generated"]["count"] == int(m_gen.group(1)) == 3 + 4
    assert integ["errors"] == 0
    run_id = data["run"]["id"]
    events = dict(
        query(
            d, "SELECT kind, count(*) FROM integrity_events WHERE run_id=? GROUP BY kind", (run_id,)
        )
    )
    assert events == {"compare": 4, "generate": 7}
    assert data["summary"]["all"]["succeeded"] == data["summary"]["all"]["total"] == 5
    assert data["summary"]["all"]["failed"] == 0
    assert data["run"]["exit_code"] == 0

    before = {p: os.stat(d / p).st_mtime_ns for p in QS_OUTPUTS}
    again = wf_ok("run", cwd=d)
    assert "Nothing to be done" in again.out
    assert {p: os.stat(d / p).st_mtime_ns for p in QS_OUTPUTS} == before
    dry = wf_ok("run", "-n", cwd=d).out
    assert would_run(dry) == 0, dry


def test_bioinfo_runs_with_stage_in_temp_files_and_logs(bioinfo_run):
    d, r = bioinfo_run
    assert r.code == 0, r.text
    assert (d / "results/summary.csv").read_text() == BIO_SUMMARY
    for out in BIO_OUTPUTS:
        assert (d / out).is_file(), out
    # The replica was staged in and matches its declared checksum.
    assert sha256(d / "data/genome.fa") == sha256(d / "archive/genome.fa")
    for s in SAMPLES:
        assert "trim: kept" in (d / f"logs/trim/{s}.log").read_text()
        assert "map: placed" in (d / f"logs/map/{s}.log").read_text()
        assert not (d / f"work/trimmed/{s}.fastq").exists(), "temp() file left behind"
    assert not (d / ".wf/partial").exists() or not any((d / ".wf/partial").iterdir())

    data = json.loads(wf_ok("statistics", "--json", cwd=d).out)
    assert data["integrity"]["compared"]["count"] > 0
    assert data["summary"]["stage_in"]["succeeded"] == 1
    assert data["summary"]["all"]["succeeded"] == 19
    text = wf_ok("statistics", cwd=d).out
    assert "files checksums compared with total duration of" in text
    assert "files checksums generated" in text

    # The temp() files are gone, yet nothing needs to run again.
    again = wf_ok("run", cwd=d)
    assert "Nothing to be done" in again.out, again.out
    assert would_run(wf_ok("run", "-n", cwd=d).out) == 0


# -- reuse and invalidation --------------------------------------------------------------
def test_edited_raw_input_reruns_only_its_consumers(qs):
    sums = {p: sha256(qs / p) for p in QS_OUTPUTS}
    with open(qs / "texts/alice.txt", "a") as f:
        f.write("\nRabbit rabbit rabbit rabbit rabbit rabbit.\n")
    dry = wf_ok("run", "-n", cwd=qs).out
    assert "input texts/alice.txt changed" in job_line(dry, "count[name=alice]")
    assert would_run_jobs(dry) == {"count[name=alice]", "summary", "all"}
    wf_ok("run", cwd=qs)
    assert succeeded(qs) == {"count[name=alice]", "summary", "all"}
    assert sha256(qs / "counts/alice.txt") != sums["counts/alice.txt"]
    assert sha256(qs / "counts/moby.txt") == sums["counts/moby.txt"]
    assert "rabbit" in (qs / "counts/alice.txt").read_text()


def test_edited_intermediate_output_is_remade_by_its_producer(qs):
    original = sha256(qs / "counts/moby.txt")
    (qs / "counts/moby.txt").write_text("999 whale\n")
    dry = wf_ok("run", "-n", cwd=qs).out
    assert "output counts/moby.txt changed since it was made" in job_line(dry, "count[name=moby]")
    assert "count[name=alice]" not in would_run_jobs(dry)
    wf_ok("run", cwd=qs)
    assert "count[name=moby]" in succeeded(qs)
    assert not succeeded(qs) & {"count[name=alice]", "count[name=pride]"}
    assert sha256(qs / "counts/moby.txt") == original


def test_changed_command_reruns_that_rule(qs):
    wffile = qs / "Wffile"
    text = wffile.read_text()
    assert text.count("{input} > {output}") == 1  # the summary rule's redirection
    wffile.write_text(text.replace("{input} > {output}", "{input} | tr a-z A-Z > {output}"))
    dry = wf_ok("run", "-n", cwd=qs).out
    assert "command changed" in job_line(dry, "summary")
    assert would_run_jobs(dry) == {"summary", "all"}
    wf_ok("run", cwd=qs)
    assert succeeded(qs) == {"summary", "all"}
    assert (qs / "results/summary.txt").read_text().startswith("ALICE:")


def test_deleted_final_output_reruns_only_its_job_despite_removed_temp_files(bio):
    sums = tree_hashes(bio, ["results"])
    (bio / "results/coverage/ctrl1.txt").unlink()
    dry = wf_ok("run", "-n", cwd=bio).out
    assert "output results/coverage/ctrl1.txt missing" in job_line(dry, "coverage[sample=ctrl1]")
    assert would_run_jobs(dry) == {"coverage[sample=ctrl1]", "all"}
    wf_ok("run", cwd=bio)
    # The trimmed reads (temp) are gone, but map's outputs stand: no trim, no map.
    assert succeeded(bio) == {"coverage[sample=ctrl1]", "all"}
    assert tree_hashes(bio, ["results"]) == sums


def test_forcerun_reruns_the_rule_and_everything_downstream(bio):
    sums = tree_hashes(bio, ["results"])
    r = wf_ok("run", "--forcerun", "stats", cwd=bio)
    assert succeeded(bio) == {f"stats[sample={s}]" for s in SAMPLES} | {"summary", "all"}, r.out
    assert tree_hashes(bio, ["results"]) == sums


# -- failures, logs, keep-going, retries -----------------------------------------------------
def test_exit_zero_without_the_declared_output_fails_the_job(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        """
        rule all:
            input: "r/x.txt"
        rule make:
            output: "r/{n}.txt", "r/{n}.extra"
            shell: "echo made > {output[0]}"
        """,
    )
    r = wf("run", cwd=d)
    assert r.code == 1, r.text
    assert "r/x.extra" in r.text and "did not make" in r.text
    # All outputs land or none: the one that was made is not at its final name.
    assert not (d / "r/x.txt").exists()
    assert query(d, "SELECT status, message FROM attempts WHERE job_id='make[n=x]'") == [
        ("missing-output", "command exited 0 but did not make r/x.extra")
    ]
    assert "r/x.txt" not in recorded_files(d)


@pytest.mark.parametrize("staging", ["shared", "copy"])
def test_failing_command_keeps_its_log_and_stderr(tmp_path, staging):
    d = write_workflow(
        tmp_path / "w",
        """
        rule all:
            input: "r/x.txt"
        rule fail:
            output: "r/{n}.txt"
            log: "logs/{n}.log"
            shell: "echo progress-so-far > {log}; echo the-error-text >&2; exit 7"
        """,
    )
    r = wf("run", "--staging", staging, cwd=d)
    assert r.code == 1, r.text
    assert "exited 7" in r.text and "the-error-text" in r.text
    assert (d / "logs/x.log").read_text() == "progress-so-far\n"
    (stderr_path,) = [
        row[0] for row in query(d, "SELECT stderr FROM attempts WHERE job_id='fail[n=x]'")
    ]
    assert Path(stderr_path).read_text() == "the-error-text\n"
    assert not (d / "r/x.txt").exists()


KEEP_GOING = """
    rule all:
        input: "bad/x.txt", expand("good/{n}.txt", n=["1", "2", "3"])
    rule bad:
        output: "bad/{n}.txt"
        priority: 10
        shell: "echo boom >&2; exit 1"
    rule good:
        output: "good/{n}.txt"
        shell: "echo {wildcards.n} > {output}"
    """


def test_keep_going_runs_independent_jobs_after_a_failure(tmp_path):
    d = write_workflow(tmp_path / "w", KEEP_GOING)
    r = wf("run", "-j", "1", "-k", cwd=d)
    assert r.code == 1, r.text
    assert attempted(d)[0] == "bad[n=x]"  # priority 10: the failure comes first
    for n in "123":
        assert (d / f"good/{n}.txt").read_text() == f"{n}\n"
    assert succeeded(d) == {"good[n=1]", "good[n=2]", "good[n=3]"}
    assert query(d, "SELECT status FROM jobs WHERE job_id='all'") == [("pending",)]


def test_without_keep_going_nothing_new_starts_after_a_failure(tmp_path):
    d = write_workflow(tmp_path / "w", KEEP_GOING)
    r = wf("run", "-j", "1", cwd=d)
    assert r.code == 1, r.text
    assert attempted(d) == ["bad[n=x]"]
    assert not (d / "good").exists()
    assert "1 failed, 4 not run" in r.out, r.out
    assert dict(query(d, "SELECT job_id, status FROM jobs")) == {
        "bad[n=x]": "failed",
        "good[n=1]": "pending",
        "good[n=2]": "pending",
        "good[n=3]": "pending",
        "all": "pending",
    }


def _flaky(name: str, succeed_at: int) -> str:
    # Fails until its counter file reaches succeed_at: one line per attempt.
    return (
        f"echo attempt >> tries_{name}; test $(wc -l < tries_{name}) -ge {succeed_at} || exit 1; "
        "echo ok > {output}"
    )


def test_rule_retries_and_default_retries_cure_a_flaky_command(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        f"""
        rule all:
            input: "r/a.txt", "r/b.txt", "r/c.txt"
        rule a:
            output: "r/a.txt"
            retries: 2
            shell: "{_flaky("a", 3)}"
        rule b:
            output: "r/b.txt"
            shell: "{_flaky("b", 2)}"
        rule c:
            output: "r/c.txt"
            retries: 2
            shell: "{_flaky("c", 4)}"
        """,
    )
    r = wf("run", "-k", "--retries", "1", cwd=d)
    assert r.code == 1, r.text  # c needs 4 attempts, it has 3
    tries = {n: (d / f"tries_{n}").read_text().count("attempt") for n in "abc"}
    assert tries == {"a": 3, "b": 2, "c": 3}
    rows = query(d, "SELECT job_id, attempt, status FROM attempts ORDER BY job_id, attempt")
    assert [(j, a, s) for j, a, s in rows if j != "c"] == [
        ("a", 1, "failed"),
        ("a", 2, "failed"),
        ("a", 3, "ok"),
        ("b", 1, "failed"),
        ("b", 2, "ok"),
    ]
    assert [s for j, _, s in rows if j == "c"] == ["failed"] * 3
    assert (d / "r/a.txt").read_text() == (d / "r/b.txt").read_text() == "ok\n"
    assert not (d / "r/c.txt").exists()


# -- staging and scheduling ----------------------------------------------------------------
def test_copy_staging_makes_identical_outputs_and_cleans_scratch(bioinfo_run, tmp_path):
    shared, r = bioinfo_run
    assert r.code == 0, r.text
    d = copy_example("bioinfo", tmp_path / "bio")
    wf_ok("run", "--staging", "copy", "-j", "2", cwd=d)
    assert tree_hashes(d, ["results", "logs"]) == tree_hashes(shared, ["results", "logs"])
    assert (d / ".wf/scratch").is_dir() is False or not any((d / ".wf/scratch").iterdir())
    # Every compute job's input came through a verified copy.
    stages = {s for (s,) in query(d, "SELECT DISTINCT stage FROM integrity_events")}
    assert {"stage-in", "stage-out"} <= stages
    failed = query(d, "SELECT count(*) FROM integrity_events WHERE ok=0")[0][0]
    assert failed == 0


def _timed(name: str) -> str:
    return (
        f"echo start {name} $(date +%s.%N) >> timeline.log; sleep 0.3; "
        f"echo end {name} $(date +%s.%N) >> timeline.log; echo {name} > {{output}}"
    )


def test_threads_are_honoured_on_two_cores(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        f"""
        rule all:
            input: expand("small/{{n}}.txt", n=["a", "b", "c", "d"]), "big/x.txt"
        rule small:
            output: "small/{{n}}.txt"
            shell: "{_timed("small-{wildcards.n}")}"
        rule big:
            output: "big/{{n}}.txt"
            threads: 2
            shell: "{_timed("big")}"
        """,
    )
    wf_ok("run", "-j", "2", cwd=d)
    spans: dict[str, list[float]] = {}
    for line in (d / "timeline.log").read_text().splitlines():
        what, name, t = line.split()
        spans.setdefault(name, []).append(float(t))
    assert len(spans) == 5 and all(len(s) == 2 for s in spans.values()), spans
    b0, b1 = spans.pop("big")
    for name, (s0, s1) in spans.items():
        assert s1 <= b0 or s0 >= b1, f"{name} ran {s0}-{s1} while big (threads: 2) ran {b0}-{b1}"
    # -j 2 does run two one-thread jobs at once.
    small = sorted(spans.values())
    assert any(small[i + 1][0] < small[i][1] for i in range(len(small) - 1)), small


def test_priority_orders_ready_jobs_on_one_core(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        """
        rule all:
            input: expand("lo/{n}.txt", n=["1", "2"]), expand("mid/{n}.txt", n=["1", "2"]), expand("hi/{n}.txt", n=["1", "2"])
        rule lo:
            output: "lo/{n}.txt"
            priority: 1
            shell: "echo lo >> order.log; echo > {output}"
        rule mid:
            output: "mid/{n}.txt"
            shell: "echo mid >> order.log; echo > {output}"
        rule hi:
            output: "hi/{n}.txt"
            priority: 10
            shell: "echo hi >> order.log; echo > {output}"
        """,
    )
    wf_ok("run", "-j", "1", cwd=d)
    assert (d / "order.log").read_text().split() == ["hi", "hi", "lo", "lo", "mid", "mid"]


# -- integrity ---------------------------------------------------------------------------
REPLICA = """
    replica "data/ref.txt":
        url: "archive/ref.txt"
        sha256: "{sha}"
    rule all:
        input: "out/ref.txt"
    rule use:
        input: "data/ref.txt"
        output: "out/ref.txt"
        shell: "touch consumer_ran; cat {{input}} > {{output}}"
    """


def test_corrupt_replica_source_stops_the_run_with_exit_3(tmp_path):
    good = b"ACGT" * 500
    bad = bytearray(good)
    bad[777] ^= 0x01
    declared = hashlib.sha256(good).hexdigest()
    found = hashlib.sha256(bad).hexdigest()
    d = write_workflow(
        tmp_path / "w", REPLICA.format(sha=declared), {"archive/ref.txt": bytes(bad)}
    )
    r = wf("run", "--retries", "2", cwd=d)
    assert r.code == 3, r.text
    assert "data/ref.txt" in r.text
    assert declared in r.text and found in r.text
    assert "mismatch at source" in r.text  # the stage: the archived file itself is wrong
    assert not (d / "consumer_ran").exists(), "the consumer's command ran"
    assert not (d / "out").exists() and not (d / "data/ref.txt").exists()
    # Retried, as integrity failures are, and never cured: the source is wrong.
    statuses = [s for (s,) in query(d, "SELECT status FROM attempts ORDER BY id")]
    assert statuses == ["integrity"] * 3


def test_silently_corrupted_raw_input_is_caught_before_its_consumer_runs(tmp_path):
    d = write_workflow(
        tmp_path / "w",
        """
        rule all:
            input: "out/a.txt"
        rule step:
            input: "raw/a.txt"
            output: "out/a.txt"
            shell: "echo ran >> ran.log; cat {input} > {output}"
        """,
        {"raw/a.txt": "some precious raw data\n" * 20},
    )
    wf_ok("run", cwd=d)
    first = sha256(d / "out/a.txt")
    flip_byte(d / "raw/a.txt", offset=5)  # same size, same mtime: only a checksum can tell
    r = wf("run", "--forcerun", "step", cwd=d)
    assert r.code == 3, r.text
    assert "raw/a.txt" in r.text and "pre-job" in r.text
    assert (d / "ran.log").read_text() == "ran\n", "the consumer's command ran on corrupt input"
    assert sha256(d / "out/a.txt") == first
    v = wf("verify", cwd=d)
    assert v.code == 1 and "raw/a.txt" in v.out, v.text


def test_verify_finds_a_corrupted_final_output(qs):
    r = wf_ok("verify", cwd=qs)
    assert "0 changed" in r.out and "0 missing" in r.out, r.out
    flip_byte(qs / "results/summary.txt", offset=3)
    r = wf("verify", cwd=qs)
    assert r.code == 1, r.text
    changed = [line for line in r.out.splitlines() if line.startswith("changed")]
    assert len(changed) == 1 and "results/summary.txt" in changed[0], r.out
    # The fingerprint is unchanged, so the planner trusts the record; verify does not.
    assert wf_ok("verify", "counts", cwd=qs).code == 0


def test_checksum_prints_a_replica_entry(qs):
    r = wf_ok("checksum", "texts/alice.txt", "texts/moby.txt", cwd=qs)
    for name in ("alice", "moby"):
        expect = f'replica "texts/{name}.txt":\n    sha256: "{sha256(qs / f"texts/{name}.txt")}"'
        assert expect in r.out, r.out


# -- a target (no command) does not re-read what this run hashed -------------------
TARGET = """
rule all:
    input: expand("out/{i}.txt", i=["1", "2", "3", "4"]), "data/1.txt", "data/only.txt"

rule copy:
    input: "data/{i}.txt"
    output: "out/{i}.txt"
    shell: "cp {input} {output}"
"""


def _target_inputs() -> dict[str, str]:
    files = {f"data/{i}.txt": f"payload {i}\n" * 1000 for i in "1234"}
    files["data/only.txt"] = "listed by the target alone\n"
    return files


def _all_record(d: Path, attempt: int) -> dict:
    for path in (d / ".wf" / "records").rglob("*.json"):
        rec = json.loads(path.read_text())
        if rec["job_id"] == "all" and rec["attempt"] == attempt:
            return rec
    raise AssertionError("no record of the target job 'all'")


def test_target_takes_files_hashed_in_this_run_as_verified(tmp_path):
    d = write_workflow(tmp_path / "w", TARGET, _target_inputs())
    wf_ok("run", "-j", "2", cwd=d)
    rows = query(d, "SELECT file, kind, size FROM integrity_events WHERE job_id='all'")
    by_file = {f: (k, s) for f, k, s in rows}
    # The outputs (hashed when made) and data/1.txt (hashed at first sight by
    # copy[i=1], which left it as it was) are not read again: a check, 0 bytes.
    for lfn in ["out/1.txt", "out/2.txt", "out/3.txt", "out/4.txt", "data/1.txt"]:
        assert by_file[lfn] == ("compare", 0), (lfn, rows)
    # A raw input nobody hashed before is hashed by the target, as always.
    assert by_file["data/only.txt"] == ("generate", len("listed by the target alone\n"))
    assert len(rows) == 6
    rec = _all_record(d, 1)
    cached = {e["file"] for e in rec["events"] if e.get("cached")}
    assert cached == {"out/1.txt", "out/2.txt", "out/3.txt", "out/4.txt", "data/1.txt"}
    assert all(e["ok"] and e["size"] == 0 and e["seconds"] == 0 for e in rec["events"] if e.get("cached"))
    # The record still names every input with its checksum.
    assert {f["lfn"]: f["sha256"] for f in rec["files"] if f["role"] == "input"} == {
        lfn: sha256(d / lfn) for lfn in [*by_file]
    }
    # Each byte was hashed once in the run: 4 raw inputs, 4 outputs, data/only.txt.
    hashed = query(d, "SELECT sum(size) FROM integrity_events WHERE kind IN ('compare', 'generate')")
    assert hashed[0][0] == 2 * 4 * len("payload 1\n" * 1000) + len("listed by the target alone\n")


def test_target_hashes_a_file_changed_since_it_was_made(tmp_path):
    # A buggy tool appends to an input it does not own, after that input was
    # made and hashed: the target sees another file than the one hashed,
    # reads it, and the mismatch is caught (the producer remakes it).
    wffile = TARGET.replace(
        '"data/only.txt"', '"data/only.txt", "touched.txt"'
    ) + """
rule touchup:
    input: "out/2.txt"
    output: "touched.txt"
    shell: "cat {input} > {output}; echo appended >> {input}"
"""
    d = write_workflow(tmp_path / "w", wffile, _target_inputs())
    r = wf("run", "-j", "1", cwd=d)
    bad = query(d, "SELECT file, stage, size FROM integrity_events WHERE job_id='all' AND ok=0")
    assert bad and bad[0][0] == "out/2.txt" and bad[0][1] == "pre-job" and bad[0][2] > 0, (bad, r.text)
    first = _all_record(d, 1)
    assert first["status"] == "integrity"
    assert not any(e.get("cached") and e["file"] == "out/2.txt" for e in first["events"])
    # The copy job remade out/2.txt; the target then took the remade file as verified.
    assert r.code == 0, r.text
    assert (d / "out/2.txt").read_text() == (d / "data/2.txt").read_text()
    last = _all_record(d, 2)
    assert last["status"] == "ok"
    assert any(e.get("cached") and e["file"] == "out/2.txt" for e in last["events"])


def test_integrity_none_target_marks_nothing_verified(tmp_path):
    d = write_workflow(tmp_path / "w", TARGET, _target_inputs())
    wf_ok("run", "--integrity", "none", cwd=d)
    assert query(d, "SELECT count(*) FROM integrity_events") == [(0,)]
    assert not any(e.get("cached") for e in _all_record(d, 1)["events"])
