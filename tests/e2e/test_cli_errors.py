"""``wf run -n`` on broken Wffiles: exit 2, ``Wffile:LINE:COL: error:``, never a traceback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

BROKEN = [
    ("unclosed bracket", 'SAMPLES = ["A", "B"\n\nrule all:\n    input: "x"\n', [(1, 11, "'[' was never closed")]),
    ("unknown directive", 'rule all:\n    inptu: "x"\n', [(2, 5, "did you mean 'input'?")]),
    ("bad indentation", 'rule r:\n        output: "o"\n    shell: "x"\n',
     [(3, 5, "unindent does not match any outer indentation level")]),
    ("bad escape in a string", 'X = "\\N{nope}"\n', [(1, 5, "invalid string")]),
    # Read with universal newlines, as Python does: a bare CR ends the line.
    ("bare carriage return in a string", 'X = "a\rb"\n', [(1, 5, "unterminated string")]),
    ("unknown shell field", 'rule r:\n    output: "o"\n    shell: "touch {ouput}"\n',
     [(3, 19, "unknown field '{ouput}' in shell (did you mean 'output'?)")]),
    ("undefined config key", 'rule r:\n    output: config["out"]\n    shell: "touch {output}"\n',
     [(2, 20, "config key 'out' is not defined (defined: none)")]),
    ("several errors", 'X = NOPE\nrule a:\n    threads: 0\nrule b:\n    output: "{s}"\n    log: "{t}"\n'
                       '    shell: "x"\n',
     [(1, 5, "undefined variable 'NOPE'"), (3, 14, "threads: must be at least 1"),
      (6, 10, "wildcard '{t}' in log")]),
]


def wf(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["wf", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text, errors", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
@pytest.mark.parametrize("args", [["run", "-n"], ["run", "-n", "Wffile"]], ids=["default", "named"])
def test_broken_wffile(tmp_path, text, errors, args):
    (tmp_path / "Wffile").write_bytes(text.encode())
    proc = wf(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for line, col, fragment in errors:
        head = next((h for h in proc.stderr.splitlines() if h.startswith(f"Wffile:{line}:{col}: error: ")), None)
        assert head is not None, proc.stderr
        assert fragment in head
    heads = re.findall(r"^Wffile:\d+:\d+: error: ", proc.stderr, re.M)
    assert len(heads) == len(errors), proc.stderr
    assert "^" in proc.stderr  # the caret line
    assert not (tmp_path / "results").exists()


def test_error_in_an_included_file_and_in_the_config_file(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "inc.wf").write_text('rule r:\n    output: "o"\n    shell: "{output[1]}"\n')
    (tmp_path / "Wffile").write_text('include: "rules/inc.wf"\n')
    proc = wf(tmp_path, "run", "-n")
    assert proc.returncode == 2
    assert proc.stderr.startswith("rules/inc.wf:3:13: error: '{output[1]}' is out of range")
    assert "Traceback" not in proc.stdout + proc.stderr

    (tmp_path / "config.yaml").write_text("samples: [A, B\n")
    (tmp_path / "Wffile").write_text('configfile: "config.yaml"\n')
    proc = wf(tmp_path, "run", "-n")
    assert proc.returncode == 2
    assert re.match(r"config\.yaml:\d+:\d+: error: config file is not valid YAML", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_config_override_reaches_the_wffile(tmp_path):
    (tmp_path / "Wffile").write_text('rule r:\n    output: "o"\n    threads: config["t"]\n    shell: "true"\n')
    proc = wf(tmp_path, "run", "-n", "--config", "t=0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("Wffile:3:14: error: threads: must be at least 1, got 0")
    proc = wf(tmp_path, "run", "-n", "--config", "t")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --config expects KEY=VALUE")
    assert "Traceback" not in proc.stdout + proc.stderr
