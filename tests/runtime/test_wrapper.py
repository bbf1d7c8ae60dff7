"""The job wrapper on real files and real subprocesses, in-process and as a script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import wrapper
from runtime.wrapper import (
    EXIT_BAD_SPEC,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_MISSING_OUTPUT,
    EXIT_OK,
    SpecError,
    run_spec,
    sha256_file,
)

WRAPPER = Path(wrapper.__file__)
DATA = b"alpha\nbeta\ngamma\n" * 50


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_spec(tmp: Path, staging: str = "shared", **over) -> dict:
    """A job that counts the lines of data/A.txt into results/A.txt.

    shared: runs in ``tmp`` and writes under .wf/partial, renamed to results/.
    copy: runs in a scratch dir, the input staged in from ``tmp/data``.
    """
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "data" / "A.txt").write_bytes(DATA)
    if staging == "shared":
        cwd = tmp
        inputs = [{"lfn": "data/A.txt", "sha256": None, "path": "data/A.txt", "source": None}]
        out_path = ".wf/partial/j1/results/A.txt"
    else:
        cwd = tmp / ".wf" / "scratch" / "j1"
        inputs = [
            {
                "lfn": "data/A.txt",
                "sha256": sha(DATA),
                "path": "data/A.txt",
                "source": str(tmp / "data" / "A.txt"),
            }
        ]
        out_path = "results/A.txt"
    spec = {
        "version": 1,
        "job_id": "count[sample=A]",
        "attempt": 1,
        "command": f"wc -l < data/A.txt > {out_path}",
        "cwd": str(cwd),
        "integrity": "full",
        "staging": staging,
        "inputs": inputs,
        "outputs": [
            {"lfn": "results/A.txt", "path": out_path, "dest": str(tmp / "results" / "A.txt")}
        ],
        "stdout": str(tmp / ".wf" / "logs" / "j1.out"),
        "stderr": str(tmp / ".wf" / "logs" / "j1.err"),
        "record": str(tmp / ".wf" / "records" / "j1.json"),
        "env": None,
        "chaos": None,
    }
    spec.update(over)
    return spec


def run_script(spec: dict, tmp: Path, *flags: str, script: Path = WRAPPER) -> int:
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, *flags, str(script), str(spec_path)], capture_output=True, text=True
    )
    return proc.returncode


def failed_events(rec: dict) -> list[dict]:
    return [e for e in rec["events"] if not e["ok"]]


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


EXPECTED_OUT = b"150\n"


def test_success_shared(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    rec = run_spec(spec)
    assert rec["status"] == "ok", rec["message"]
    assert rec["exit_code"] == 0 and EXIT_CODES[rec["status"]] == EXIT_OK
    assert (tmp_path / "results" / "A.txt").read_bytes() == EXPECTED_OUT
    assert not (tmp_path / ".wf/partial/j1/results/A.txt").exists()  # renamed, not copied
    assert json.loads(Path(spec["record"]).read_text()) == rec
    files = {(f["lfn"], f["role"]): f for f in rec["files"]}
    assert files["data/A.txt", "input"]["sha256"] == sha(DATA)
    assert files["data/A.txt", "input"]["size"] == len(DATA)
    assert files["results/A.txt", "output"]["sha256"] == sha(EXPECTED_OUT)
    kinds = [(e["stage"], e["kind"]) for e in rec["events"]]
    assert kinds == [("pre-job", "generate"), ("output", "generate")]
    assert rec["totals"]["generate_count"] == 2 and rec["totals"]["compare_count"] == 0
    assert rec["totals"]["bytes_hashed"] == len(DATA) + len(EXPECTED_OUT)
    assert rec["start"] <= rec["command_start"] <= rec["command_end"] <= rec["end"]
    assert rec["host"] and rec["chaos"] == []


def test_success_copy(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "copy")
    rec = run_spec(spec)
    assert rec["status"] == "ok", rec["message"]
    assert (tmp_path / "results" / "A.txt").read_bytes() == EXPECTED_OUT
    scratch = Path(spec["cwd"])
    assert (scratch / "data" / "A.txt").read_bytes() == DATA
    # Scratch is cleaned by the executor once every final output is verified, not here.
    assert (scratch / "results" / "A.txt").read_bytes() == EXPECTED_OUT
    kinds = [(e["stage"], e["kind"], e["ok"]) for e in rec["events"]]
    assert kinds == [
        ("stage-in", "compare", True),
        ("pre-job", "compare", True),
        ("output", "generate", True),
        ("stage-out", "compare", True),
    ]
    assert rec["totals"]["compare_count"] == 3
    assert not any(".wf-tmp" in p for p in listing(tmp_path))


def test_copy_generates_reference_from_source(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "copy")
    spec["inputs"][0]["sha256"] = None
    rec = run_spec(spec)
    assert rec["status"] == "ok"
    first = rec["events"][0]
    assert (first["stage"], first["kind"], first["actual"]) == ("stage-in", "generate", sha(DATA))
    assert rec["events"][1]["expected"] == sha(DATA)


def test_env_and_stdout(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        env={"WF_TEST_GREETING": "hi"},
        command='echo "$WF_TEST_GREETING" && echo out > .wf/partial/j1/results/A.txt',
    )
    assert run_spec(spec)["status"] == "ok"
    assert Path(spec["stdout"]).read_text() == "hi\n"


def test_missing_output(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, command="true")
    rec = run_spec(spec)
    assert rec["status"] == "missing-output" and rec["exit_code"] == 0
    assert EXIT_CODES[rec["status"]] == EXIT_MISSING_OUTPUT
    assert "results/A.txt" in rec["message"]
    assert not (tmp_path / "results").exists()


def test_stale_output_does_not_hide_a_missing_one(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, command="true")
    stale = tmp_path / ".wf/partial/j1/results/A.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier attempt\n")
    assert run_spec(spec)["status"] == "missing-output"


def test_command_failure_keeps_exit_code_and_stderr(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, command="echo oops >&2; echo x > .wf/partial/j1/results/A.txt; exit 7"
    )
    rec = run_spec(spec)
    assert rec["status"] == "failed" and rec["exit_code"] == 7
    assert EXIT_CODES[rec["status"]] == EXIT_FAILED
    assert Path(spec["stderr"]).read_text() == "oops\n"
    assert not (tmp_path / "results").exists()
    assert json.loads(Path(spec["record"]).read_text())["exit_code"] == 7


def test_input_mismatch_stops_before_the_command(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, command="touch ran; wc -l < data/A.txt > .wf/partial/j1/results/A.txt"
    )
    spec["inputs"][0]["sha256"] = sha(b"something else")
    rec = run_spec(spec)
    assert rec["status"] == "integrity" and rec["exit_code"] is None
    assert EXIT_CODES[rec["status"]] == EXIT_INTEGRITY
    assert not (tmp_path / "ran").exists()
    [ev] = failed_events(rec)
    assert (ev["stage"], ev["expected"], ev["actual"]) == (
        "pre-job",
        sha(b"something else"),
        sha(DATA),
    )


def test_missing_input_is_an_integrity_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, command="touch ran")
    (tmp_path / "data" / "A.txt").unlink()
    spec["inputs"][0]["sha256"] = sha(DATA)
    rec = run_spec(spec)
    assert rec["status"] == "integrity" and not (tmp_path / "ran").exists()
    assert failed_events(rec)[0]["actual"] is None


def test_bad_source_reference_in_copy_mode(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "copy", command="touch ran")
    spec["inputs"][0]["sha256"] = sha(b"not the data")
    rec = run_spec(spec)
    assert rec["status"] == "integrity"
    assert failed_events(rec)[0]["stage"] == "stage-in"
    scratch = Path(spec["cwd"])
    assert listing(scratch / "data") == []  # neither the bad copy nor its temporary
    assert not (scratch / "ran").exists()


@pytest.mark.parametrize("kind", wrapper.CHAOS_KINDS)
def test_chaos_detected_at_stage_in(tmp_path: Path, kind: str) -> None:
    spec = make_spec(tmp_path, "copy", command="touch ran", chaos={kind: 1.0, "seed": 3})
    rec = run_spec(spec)
    assert rec["status"] == "integrity"
    # Every copy is tried TRANSFER_TRIES times; at probability 1 each one is harmed.
    assert [(c["kind"], c["file"], c["stage"]) for c in rec["chaos"]] == [
        (kind, "data/A.txt", "stage-in")
    ] * wrapper.TRANSFER_TRIES
    bad = failed_events(rec)
    assert len(bad) == wrapper.TRANSFER_TRIES
    assert {(ev["file"], ev["stage"], ev["expected"]) for ev in bad} == {
        ("data/A.txt", "stage-in", sha(DATA))}
    scratch = Path(spec["cwd"])
    assert listing(scratch / "data") == [] and not (scratch / "ran").exists()
    assert (tmp_path / "data" / "A.txt").read_bytes() == DATA  # the source is never harmed


@pytest.mark.parametrize("kind", wrapper.CHAOS_KINDS)
def test_chaos_detected_at_stage_out(tmp_path: Path, kind: str) -> None:
    # The input is read in place (no source), so the only copies are the stage-outs.
    spec = make_spec(tmp_path, "copy", chaos={kind: 1.0, "seed": 3})
    spec["inputs"] = [
        {"lfn": "data/A.txt", "sha256": sha(DATA), "path": str(tmp_path / "data/A.txt")}
    ]
    spec["command"] = "wc -l < $IN > results/A.txt && echo more > results/B.txt"
    spec["env"] = {"IN": str(tmp_path / "data/A.txt")}
    spec["outputs"].append(
        {
            "lfn": "results/B.txt",
            "path": "results/B.txt",
            "dest": str(tmp_path / "results" / "B.txt"),
        }
    )
    rec = run_spec(spec)
    assert rec["status"] == "integrity" and rec["exit_code"] == 0
    assert [(c["kind"], c["stage"]) for c in rec["chaos"]] == [(kind, "stage-out")] * wrapper.TRANSFER_TRIES
    bad = failed_events(rec)
    assert len(bad) == wrapper.TRANSFER_TRIES
    assert {(ev["stage"], ev["file"]) for ev in bad} == {("stage-out", rec["chaos"][0]["file"])}
    # No output lands when one is bad, and no temporary is left beside the final names.
    assert listing(tmp_path / "results") == []
    assert (Path(spec["cwd"]) / "results" / "A.txt").read_bytes() == EXPECTED_OUT


def test_chaos_sweep_injected_equals_detected(tmp_path: Path) -> None:
    injected = detected = clean = 0
    seen: set[tuple[str, str]] = set()
    for seed in range(200):
        d = tmp_path / str(seed)
        d.mkdir()
        kind = wrapper.CHAOS_KINDS[seed % 3]
        spec = make_spec(d, "copy", chaos={kind: 0.3, "seed": seed}, record=None)
        spec["inputs"].append(
            {"lfn": "data/B.txt", "sha256": None, "path": "data/B.txt", "source": str(d / "B.txt")}
        )
        (d / "B.txt").write_bytes(DATA[::-1])
        spec["command"] += " && cat data/B.txt > results/B.txt"
        spec["outputs"].append(
            {"lfn": "results/B.txt", "path": "results/B.txt", "dest": str(d / "results" / "B.txt")}
        )
        rec = run_spec(spec)
        faults, bad = rec["chaos"], failed_events(rec)
        # Each fault is caught by the comparison right after its copy.
        assert [(f["file"], f["stage"]) for f in faults] == [(e["file"], e["stage"]) for e in bad]
        tries: dict[tuple[str, str], int] = {}
        for f in faults:
            tries[(f["file"], f["stage"])] = tries.get((f["file"], f["stage"]), 0) + 1
        exhausted = any(n == wrapper.TRANSFER_TRIES for n in tries.values())
        assert rec["status"] == ("integrity" if exhausted else "ok")
        # Deterministic from (seed, job, attempt, file, stage): a rerun injects the same.
        assert run_spec(spec)["chaos"] == faults
        seen.update((f["kind"], f["stage"]) for f in faults)
        if exhausted:
            assert listing(d / "results") == []
        else:
            clean += 1
            assert (d / "results" / "A.txt").read_bytes() == EXPECTED_OUT
            assert (d / "results" / "B.txt").read_bytes() == DATA[::-1]
        injected += len(faults)
        detected += len(bad)
        assert (d / "data" / "A.txt").read_bytes() == DATA
    # A transfer fails only when all its copies are harmed (0.3**3 = 2.7 %):
    # nearly every job ends clean despite about one fault per job.
    assert injected == detected and injected > 100 and clean > 170
    assert seen == {(k, st) for k in wrapper.CHAOS_KINDS for st in ("stage-in", "stage-out")}


def test_chaos_depends_on_attempt(tmp_path: Path) -> None:
    seen = set()
    for attempt in range(1, 30):
        spec = make_spec(tmp_path, "copy", attempt=attempt, chaos={"transfer": 0.5, "seed": 1})
        seen.add(run_spec(spec)["status"])
    assert seen == {"ok", "integrity"}


def test_integrity_none_skips_hashing_but_checks_outputs(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "copy", integrity="none")
    spec["inputs"][0]["sha256"] = sha(b"wrong, but not checked")
    rec = run_spec(spec)
    assert rec["status"] == "ok" and rec["events"] == []
    assert rec["totals"]["bytes_hashed"] == 0
    assert {f["sha256"] for f in rec["files"]} == {None}  # nothing verified, nothing claimed
    assert (tmp_path / "results" / "A.txt").read_bytes() == EXPECTED_OUT
    assert (
        run_spec(make_spec(tmp_path, integrity="none", command="true"))["status"]
        == "missing-output"
    )


def test_cross_device_shared_stage_out_is_verified(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    dest = shm / f"wf-test-{os.getpid()}" / "A.txt"
    try:
        spec = make_spec(tmp_path)
        spec["outputs"][0]["dest"] = str(dest)
        rec = run_spec(spec)
        assert rec["status"] == "ok" and dest.read_bytes() == EXPECTED_OUT
        assert rec["events"][-1]["stage"] == "stage-out" and rec["events"][-1]["ok"]
        assert not (tmp_path / spec["outputs"][0]["path"]).exists()
    finally:
        if dest.exists():
            dest.unlink()
        if dest.parent.exists():
            dest.parent.rmdir()


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"command": 5},
        {"integrity": "some"},
        {"staging": "rsync"},
        {"inputs": [{"lfn": "x", "sha256": "abc"}]},
        {"outputs": [{"path": "x"}]},
        {"chaos": {"transfer": 2}},
        {"chaos": {"flip": 0.1}},
        {"env": {"A": 1}},
        {"attempt": True},
    ],
)
def test_bad_spec(tmp_path: Path, change: dict) -> None:
    spec = make_spec(tmp_path, command="touch ran")
    spec.update(change)
    with pytest.raises(SpecError):
        run_spec(spec)
    assert run_script(spec, tmp_path) == EXIT_BAD_SPEC
    assert json.loads(Path(spec["record"]).read_text())["status"] == "bad-spec"
    assert not (tmp_path / "ran").exists()


def test_script_exit_codes_match_in_process(tmp_path: Path) -> None:
    cases = {
        "ok": ({}, EXIT_OK),
        "failed": ({"command": "exit 9"}, EXIT_FAILED),
        "missing": ({"command": "true"}, EXIT_MISSING_OUTPUT),
        "chaos": ({"chaos": {"truncate": 1.0, "seed": 0}}, EXIT_INTEGRITY),
    }
    for name, (over, code) in cases.items():
        d = tmp_path / name
        d.mkdir()
        spec = make_spec(d, "copy", **over)
        rec = run_spec(spec)
        assert EXIT_CODES[rec["status"]] == code, name
        assert run_script(spec, d) == code, name
        script_rec = json.loads(Path(spec["record"]).read_text())
        assert (script_rec["status"], script_rec["exit_code"]) == (rec["status"], rec["exit_code"])
    assert run_script(make_spec(tmp_path), tmp_path, "-I", "-S") == EXIT_OK
    (tmp_path / "spec.json").write_text("{not json")
    proc = subprocess.run([sys.executable, str(WRAPPER), str(tmp_path / "spec.json")])
    assert proc.returncode == EXIT_BAD_SPEC


PROBE = """
import json, runpy, sys
sys.argv = [sys.argv[1], sys.argv[2]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
std = sys.stdlib_module_names | set(sys.builtin_module_names)
foreign = sorted(m for m in sys.modules if m.split(".")[0] not in std and m != "__main__")
print(json.dumps({"code": code, "foreign": foreign, "random": "random" in sys.modules}))
"""


def test_script_is_stdlib_only_and_ships_unchanged(tmp_path: Path) -> None:
    # A copy away from the project, run isolated (-I: no cwd, no PYTHONPATH;
    # -S: no site-packages, so not the editable install either).
    shipped = tmp_path / "node" / "wrapper.py"
    shipped.parent.mkdir()
    shipped.write_bytes(WRAPPER.read_bytes())
    spec = make_spec(tmp_path, "copy", chaos={"transfer": 1e-9, "seed": 5})
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(shipped), str(spec_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=shipped.parent,
    )
    probe = json.loads(out.stdout)
    assert probe == {"code": EXIT_OK, "foreign": [], "random": True}
    assert (tmp_path / "results" / "A.txt").read_bytes() == EXPECTED_OUT
    # And the source names no project package.
    text = WRAPPER.read_text()
    for pkg in ("runtime", "planner", "dsl", "grammar"):
        assert f"import {pkg}" not in text and f"from {pkg}" not in text


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    for chunk in (4096, wrapper.CHUNK_SIZE):
        digest, n, secs = sha256_file(p, chunk)
        assert (digest, n) == (sha(data), size) and secs >= 0


@pytest.fixture
def http_dir(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``; yields (dir, base URL)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    www = tmp_path / "www"
    www.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_source_with_and_without_reference(tmp_path: Path, http_dir, monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    www, base = http_dir
    (www / "A.txt").write_bytes(DATA)
    for ref, status, injected in ((sha(DATA), "integrity", wrapper.TRANSFER_TRIES), (None, "ok", 0)):
        d = tmp_path / f"ref-{ref is not None}"
        d.mkdir()
        spec = make_spec(d, "copy", chaos={"transfer": 1.0, "seed": 1})
        spec["inputs"][0].update(source=f"{base}/A.txt", sha256=ref)
        spec["outputs"] = [{"lfn": "n", "path": "n", "dest": None}]
        spec["command"] = "wc -l < data/A.txt > n"
        rec = run_spec(spec)
        # With no reference the first copy's checksum becomes it, so no fault may be
        # injected there: it could never be detected.
        assert (rec["status"], len(rec["chaos"]), len(failed_events(rec))) == (
            status,
            injected,
            injected,
        )
        if ref is None:
            first = rec["events"][0]
            assert (first["stage"], first["kind"], first["actual"]) == (
                "stage-in",
                "generate",
                sha(DATA),
            )


# -- inputs the caller verified (a job with no command) ------------------------------
def _target_spec(tmp: Path, **over) -> dict:
    spec = make_spec(tmp, command=None, outputs=[])
    spec["inputs"][0].update(sha256=sha(DATA), verified=True)
    spec.update(over)
    return spec


def test_verified_input_of_a_commandless_job_is_checked_not_hashed(tmp_path: Path) -> None:
    rec = run_spec(_target_spec(tmp_path))
    assert rec["status"] == "ok", rec["message"]
    [ev] = rec["events"]
    assert ev["cached"] is True and ev["ok"] and (ev["stage"], ev["kind"]) == ("pre-job", "compare")
    assert ev["expected"] == ev["actual"] == sha(DATA) and ev["size"] == 0 and ev["seconds"] == 0
    assert rec["totals"]["bytes_hashed"] == 0 and rec["totals"]["compare_count"] == 1
    assert rec["files"] == [{"lfn": "data/A.txt", "role": "input", "sha256": sha(DATA), "size": len(DATA)}]


def test_verified_input_must_still_exist(tmp_path: Path) -> None:
    spec = _target_spec(tmp_path)
    (tmp_path / "data" / "A.txt").unlink()
    rec = run_spec(spec)
    assert rec["status"] == "integrity" and "missing at pre-job" in rec["message"]
    [ev] = failed_events(rec)
    assert ev["actual"] is None and ev["cached"] is True


def test_unverified_input_of_a_commandless_job_is_hashed(tmp_path: Path) -> None:
    # Without the caller's word (its fingerprint no longer matched) the file
    # is read again, and a change since it was made is caught.
    spec = _target_spec(tmp_path)
    spec["inputs"][0]["verified"] = False
    (tmp_path / "data" / "A.txt").write_bytes(DATA + b"appended\n")
    rec = run_spec(spec)
    assert rec["status"] == "integrity"
    [ev] = failed_events(rec)
    assert "cached" not in ev and ev["size"] == len(DATA) + 9 and ev["actual"] == sha(DATA + b"appended\n")


@pytest.mark.parametrize("case", ["command", "no-reference", "source"])
def test_verified_is_ignored_where_it_could_hide_something(tmp_path: Path, case: str) -> None:
    # A job with a command reads its inputs: it hashes each one, whatever the
    # caller says; so does a job given no reference, or one that stages in.
    if case == "command":
        spec = _target_spec(tmp_path, command="touch ran")
        spec["inputs"][0]["sha256"] = sha(b"something else")
    elif case == "no-reference":
        spec = _target_spec(tmp_path)
        spec["inputs"][0]["sha256"] = None
    else:
        spec = _target_spec(tmp_path, cwd=str(tmp_path / "scratch"), staging="copy")
        spec["inputs"][0]["source"] = str(tmp_path / "data" / "A.txt")
    rec = run_spec(spec)
    assert not any(e.get("cached") for e in rec["events"])
    assert rec["totals"]["bytes_hashed"] >= len(DATA)
    if case == "command":
        assert rec["status"] == "integrity" and not (tmp_path / "ran").exists()
    else:
        assert rec["status"] == "ok", rec["message"]


def test_verified_must_be_a_boolean(tmp_path: Path) -> None:
    spec = _target_spec(tmp_path)
    spec["inputs"][0]["verified"] = "yes"
    with pytest.raises(SpecError, match="verified"):
        run_spec(spec)
