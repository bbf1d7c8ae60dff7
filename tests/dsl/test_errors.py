"""Every Wffile mistake is reported as ``FILE:LINE:COL: error: …`` with its line and a caret."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.errors import Diagnostic, SourcePos, WffileError
from dsl.parse import load_workflow, parse_config_overrides, parse_string

SHA = "ca8ed5988cb4ca0b67c45fd80fd17423aba2a066ca8a63a4e1c6adab067a3e92"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def fail(tmp_path: Path, text: str, name: str = "Wffile", **config) -> WffileError:
    """Parse ``text`` written to tmp_path/name; it must raise a WffileError."""
    path = write(tmp_path / name, text)
    with pytest.raises(WffileError) as info:
        load_workflow(str(path), config or None)
    return info.value


def diagnostic(err: WffileError, path: Path | str, line: int, col: int, fragment: str) -> str:
    """The rendered diagnostic at path:line:col, checked for the message and the caret."""
    prefix = f"{path}:{line}:{col}: error: "
    rendered = [d.render() for d in err.diagnostics]
    found = [r for r in rendered if r.startswith(prefix)]
    assert found, f"no error at {prefix!r} in:\n{err.render()}"
    text = next((r for r in found if fragment in r.splitlines()[0]), None)
    assert text is not None, f"{fragment!r} not in the error(s) at {prefix!r}:\n{err.render()}"
    assert text in err.render()
    head, source, caret = text.split("\n")
    src = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")[line - 1]
    assert source == "    " + src
    lead = "".join("\t" if c == "\t" else " " for c in src[: col - 1])
    assert caret == "    " + lead + "^"
    return head


def check(tmp_path: Path, text: str, line: int, col: int, fragment: str, **config) -> WffileError:
    err = fail(tmp_path, text, **config)
    diagnostic(err, tmp_path / "Wffile", line, col, fragment)
    return err


# --- syntax errors ---------------------------------------------------------------

SYNTAX = [
    ("unclosed bracket", 'X = ["a", "b"\n', 1, 5, "'[' was never closed"),
    ("unclosed paren", 'rule r:\n    input: expand("{s}", s=[1]\n', 2, 18, "'(' was never closed"),
    ("unclosed brace", 'D = {"a": 1,\n     "b": 2\n', 1, 5, "'{' was never closed"),
    ("unclosed bracket followed by more", 'X = [1, 2\nrule r:\n    output: "o"\n', 1, 5,
     "'[' was never closed"),
    ("unclosed bracket in a rule", 'rule r:\n    input: expand("a", s=[1\n    output: "o"\n', 2, 26,
     "'[' was never closed"),
    ("missing comma in a bracket", 'X = [1,\n  2\n  3]\n', 3, 3,
     "unexpected '3'; expected "),
    ("missing comma names the bracket", 'X = [1,\n  2\n  3]\n', 3, 3,
     "(inside the '[' opened at "),
    ("mismatched bracket", 'X = [1, (2]\n', 1, 11, "unexpected ']'"),
    ("unterminated string", 'X = 1\nY = "abc\n', 2, 5, "unterminated string"),
    ("unterminated single-quoted string", "X = 'abc\n", 1, 5, "unterminated string"),
    ("unterminated triple-quoted string", 'rule r:\n    shell: """echo\n    hi\n', 2, 12,
     "unterminated triple-quoted string"),
    ("unexpected indent", 'rule r:\n    output: "o"\n      shell: "y"\n', 3, 7, "unexpected indent"),
    ("indented first line", '  X = 1\n', 1, 3, "unexpected indent"),
    ("indented statement", 'X = 1\n    Y = 2\n', 2, 5, "unexpected indent"),
    ("bad unindent", 'rule r:\n        output: "o"\n    shell: "y"\n', 3, 5,
     "unindent does not match any outer indentation level"),
    ("missing colon after rule name", 'rule r\n    output: "o"\n', 1, 7, "expected ':'"),
    ("missing colon after directive", 'rule r:\n    output "o"\n', 2, 12, "unexpected '\"o\"'"),
    ("missing value", 'X =\n', 1, 4, "unexpected end of line"),
    ("dangling plus", 'X = "a" +\n', 1, 10, "unexpected end of line"),
    ("bad character", 'X = 1 $ 2\n', 1, 7, "unexpected character '$'"),
    ("rule without body", 'rule r:\nX = 1\n', 2, 1, "unexpected"),
    ("invalid escape", 'X = "\\x4"\n', 1, 5, "invalid string"),
]


@pytest.mark.parametrize("text, line, col, fragment", [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_syntax_errors(tmp_path, text, line, col, fragment):
    err = check(tmp_path, text, line, col, fragment)
    assert len(err.diagnostics) == 1


def test_a_syntax_error_in_an_included_file_points_into_it(tmp_path):
    write(tmp_path / "rules" / "inc.wf", 'Y = 1\nX = [1,\n')
    err = fail(tmp_path, 'A = 1\ninclude: "rules/inc.wf"\n')
    diagnostic(err, tmp_path / "rules" / "inc.wf", 2, 5, "'[' was never closed")


def test_syntax_errors_with_windows_line_endings_and_tabs(tmp_path):
    check(tmp_path, 'rule r:\r\n\toutput: "o"\r\n\tshell: "{nope}"\r\n', 3, 10, "unknown field '{nope}'")
    check(tmp_path, 'X = 1\r\nY = [\r\n', 2, 5, "'[' was never closed")


# --- statements, directives, values ------------------------------------------------

RULE = 'rule r:\n    output: "{s}.txt"\n'

CASES = [
    ("unknown directive", 'rule r:\n    inptu: "a"\n    output: "o"\n    shell: "x"\n', 2, 5,
     "unknown directive 'inptu' in rule 'r' (did you mean 'input'?)"),
    ("directive given twice", 'rule r:\n    output: "o"\n    output: "p"\n    shell: "x"\n', 3, 5,
     "'output:' given twice in rule 'r'"),
    ("unknown statement", 'X = 1\nwildcard_constraint:\n    a = "b"\n', 2, 1,
     "unknown statement 'wildcard_constraint:' (did you mean 'wildcard_constraints'?)"),
    ("unknown statement without hint", 'frobnicate: 3\n', 1, 1, "unknown statement 'frobnicate:'"),
    ("unknown block", 'rul r:\n    output: "o"\n', 1, 1, "unknown block 'rul' (did you mean 'rule'?)"),
    ("rule without name", 'rule:\n    output: "o"\n', 1, 1, "'rule' needs a name"),
    ("replica named without quotes", 'replica data:\n    url: "x"\n', 1, 9, "in quotes"),
    ("reserved word assigned", 'config = 3\n', 1, 1, "'config' is a reserved word"),
    ("undefined variable with hint", 'SAMPLES = ["A"]\nrule r:\n    input: SAMPLE\n', 3, 12,
     "undefined variable 'SAMPLE' (did you mean 'SAMPLES'?)"),
    ("undefined variable", 'X = NOPE + "a"\n', 1, 5, "undefined variable 'NOPE'"),
    ("undefined config key", 'X = config["refrence"]\n', 1, 12,
     "config key 'refrence' is not defined (did you mean 'reference'?) (defined: reference, threads)"),
    ("undefined nested config key", 'X = config["reference"]["x"]\n', 1, 25,
     "config key 'x' is not defined (defined: path)"),
    ("missing dict key", 'D = {"a": 1}\nX = D["b"]\n', 2, 7, "key 'b' is not in the dict"),
    ("list index out of range", 'L = [1]\nX = L[3]\n', 2, 7, "index 3 is out of range for a list of 1"),
    ("unhashable key", 'X = config[[1]]\n', 1, 12, "a dict key must be a string or number, not a list"),
    ("indexing a number", 'X = 3\nY = X[0]\n', 2, 5, "a number cannot be indexed"),
    ("adding a string and a number", 'X = "a" + 1\n', 1, 5, "cannot add a string and a number"),
    ("adding a list and a string", 'X = ["a"] + "b"\n', 1, 5, "cannot add a list and a string"),
    ("unknown function", 'X = tmep("a")\n', 1, 5, "unknown function 'tmep' (did you mean 'temp'?)"),
    ("unknown function without hint", 'rule r:\n    input: glob("*.txt")\n', 2, 12,
     "unknown function 'glob' (known: expand, temp, protected)"),
    ("expand with a missing key", 'X = expand("{s}_{n}.txt", s=["A"])\n', 1, 12,
     "expand(): no value for '{n}' in '{s}_{n}.txt'"),
    ("expand without a pattern", 'X = expand(s=["A"])\n', 1, 5, "expand() takes one pattern"),
    ("expand with a dict", 'X = expand("{s}", s={"a": 1})\n', 1, 19, "s must be a string or a list of strings"),
    ("temp with two arguments", RULE.replace('"{s}.txt"', 'temp("a", "b")') + '    shell: "x"\n', 2, 13,
     "temp() takes exactly one file pattern"),
    ("temp of a number", 'X = temp(3)\n', 1, 10, "temp() wraps a file pattern"),
    ("temp and protected nested", 'X = temp(protected("a"))\n', 1, 10, "temp() wraps a file pattern"),
    ("temp in input", 'rule r:\n    input: "a", temp("b")\n    output: "o"\n    shell: "x"\n', 2, 17,
     "temp() is only meaningful in output:"),
    ("protected in log", 'rule r:\n    output: "o"\n    log: protected("l")\n    shell: "x"\n', 3, 10,
     "protected() is only meaningful in output:"),
    ("temp in params", 'rule r:\n    output: "o"\n    params: p=temp("l")\n    shell: "x"\n', 3, 15,
     "temp() is only meaningful in output:"),
    ("number as output", 'rule r:\n    output: "o", 3\n    shell: "x"\n', 2, 18,
     "output: expects file names (strings), not a number"),
    ("empty file name", 'rule r:\n    input: ""\n', 2, 12, "input: empty file name"),
    ("item name given twice", 'rule r:\n    input: a="x", a="y"\n', 2, 19, "input: 'a' given twice"),
    ("wildcard in input not in output",
     'rule r:\n    input: "data/{sample}.txt", "{smaple}.idx"\n    output: "out/{sample}.txt"\n    shell: "x"\n',
     2, 33, "wildcard '{smaple}' in input '{smaple}.idx' of rule 'r' does not appear in its output"
            " (did you mean 'sample'?)"),
    ("wildcard in input of a rule without output", 'rule all:\n    input: "{s}.txt"\n', 2, 12,
     "wildcard '{s}' in input '{s}.txt' of rule 'all' does not appear in its output"),
    ("wildcard in log not in output", RULE + '    log: "logs/{x}.log"\n    shell: "x"\n', 3, 10,
     "wildcard '{x}' in log 'logs/{x}.log' of rule 'r' does not appear in its output"),
    ("wildcard in params not in output", RULE + '    params: p="{s}", q=["{t}"]\n    shell: "x"\n', 3, 22,
     "wildcard '{t}' in params.q of rule 'r' does not appear in its output"),
    ("outputs with different wildcards", 'rule r:\n    output: "{a}.x", "{a}/{b}.y"\n    shell: "x"\n', 2, 22,
     "all outputs of rule 'r' must have the same wildcards: '{a}/{b}.y' has {a, b}, '{a}.x' has {a}"),
    ("bad inline wildcard regex", 'rule r:\n    output: "{a,[0-9}.x"\n    shell: "x"\n', 2, 13,
     "invalid regex for wildcard 'a'"),
    ("output but no shell", 'X = 1\nrule r:\n    output: "o"\n', 2, 1, "rule 'r' has output: but no shell: to make it"),
    ("threads zero", RULE + '    threads: 0\n    shell: "x"\n', 3, 14, "threads: must be at least 1, got 0"),
    ("threads not a number", RULE + '    threads: "4"\n    shell: "x"\n', 3, 14,
     "threads: expects an integer, not a string"),
    ("threads decimal", RULE + '    threads: 1.5\n    shell: "x"\n', 3, 14,
     "threads: expects an integer, not a decimal number"),
    ("threads two values", RULE + '    threads: 1, 2\n    shell: "x"\n', 3, 17, "threads: expects exactly one value"),
    ("retries negative", RULE + '    retries: -1\n    shell: "x"\n', 3, 14, "retries: must be at least 0, got -1"),
    ("priority boolean", RULE + '    priority: True\n    shell: "x"\n', 3, 15,
     "priority: expects an integer, not a boolean"),
    ("resources decimal", RULE + '    resources: mem_mb=1.5\n    shell: "x"\n', 3, 23,
     "resource 'mem_mb' must be a non-negative integer, not 1.5"),
    ("resources string", RULE + '    resources: mem_mb=100, disk_mb="2G"\n    shell: "x"\n', 3, 36,
     "resource 'disk_mb' must be a non-negative integer, not '2G'"),
    ("resources negative", RULE + '    resources: gpus=-1\n    shell: "x"\n', 3, 21,
     "resource 'gpus' must be a non-negative integer, not -1"),
    ("resources without name", RULE + '    resources: 100\n    shell: "x"\n', 3, 16, "resources: items are name=integer"),
    ("params without name", RULE + '    params: 5\n    shell: "x"\n', 3, 13, "params: items need a name"),
    ("shell not a string", RULE + '    shell: 5\n', 3, 12, "shell: expects a string, not a number"),
    ("unknown shell field", RULE + '    shell: "cat {input} > {inptu}"\n', 3, 27,
     "unknown field '{inptu}' in shell (did you mean 'input'?)"),
    ("unknown named input", 'rule r:\n    input: data="d"\n    output: "o"\n    shell: "cat {input.nope}"\n', 4, 17,
     "rule 'r' has no named input 'nope' for '{input.nope}' (known: data)"),
    ("unknown wildcard in shell", RULE + '    shell: "echo {wildcards.s} {wildcards.nope}"\n', 3, 32,
     "rule 'r' has no wildcard 'nope' for '{wildcards.nope}' (known: s)"),
    ("output index out of range", 'rule r:\n    output: "a", "b"\n    shell: "touch {output[3]}"\n', 3, 19,
     "'{output[3]}' is out of range: rule 'r' has 2 output file(s)"),
    ("unknown param in message", RULE + '    params: x=1\n    message: "doing {params.y}"\n    shell: "x"\n',
     4, 21, "rule 'r' has no named params 'y' for '{params.y}'"),
    ("params without name in shell", RULE + '    shell: "echo {params}"\n', 3, 18, "'{params}' needs a name"),
    ("threads with attribute", RULE + '    shell: "echo {threads.n}"\n', 3, 18, "'{threads}' has no attributes"),
    ("single brace in shell", RULE + '    shell: "awk {print} { x"\n', 3, 25, "malformed format string"),
    ("closing brace in shell", RULE + '    shell: "echo {output} }"\n', 3, 27, "Single '}' encountered"),
    ("brace after escaped braces", RULE + '    shell: "echo {{output}} {output[1]}"\n', 3, 29,
     "'{output[1]}' is out of range"),
    ("conversion in shell", RULE + '    shell: "echo {output!r}"\n', 3, 18, "unsupported format in '{output!r}'"),
    ("field in a triple-quoted shell", RULE + '    shell:\n        """\n        echo {output}\n          > {nope}\n        """\n',
     6, 13, "unknown field '{nope}'"),
    ("container not declared",
     f'container tools:\n    image: "t.tar"\n    sha256: "{SHA}"\nrule r:\n    output: "o"\n    container: tols\n    shell: "x"\n',
     6, 16, "container 'tols' is not declared (did you mean 'tools'?)"),
    ("container with two values", RULE + '    container: "a", "b"\n    shell: "x"\n', 3, 16,
     "container: expects one container name or image path"),
    ("replica sha256 too short", 'replica "a.txt":\n    url: "/x/a.txt"\n    sha256: "abc123"\n', 3, 13,
     "sha256 of replica 'a.txt' is not 64 hex digits: 'abc123'"),
    ("replica sha256 not hex", f'replica "a.txt":\n    url: "/x/a.txt"\n    sha256: "{"g" + SHA[1:]}"\n', 3, 13,
     "sha256 of replica 'a.txt' is not 64 hex digits"),
    ("container sha256 too long", f'container tools:\n    image: "t.tar"\n    sha256: "{SHA}0"\n', 3, 13,
     "sha256 of container 'tools' is not 64 hex digits"),
    ("container without image", f'container tools:\n    sha256: "{SHA}"\n', 1, 1,
     "container 'tools' needs an image: line"),
    ("container bad type", 'container tools:\n    image: "t.tar"\n    type: "dockr"\n', 3, 11,
     "container type must be one of docker, oci, singularity, not 'dockr' (did you mean 'docker'?)"),
    ("container declared twice", 'container t:\n    image: "a"\ncontainer t:\n    image: "b"\n', 3, 1,
     "container 't' declared twice (first at "),
    ("unknown replica key", 'replica "a":\n    ur: "x"\n', 2, 5, "unknown key 'ur' in replica (did you mean 'url'?)"),
    ("replica url not a string", 'replica "a":\n    url: ["x"]\n', 2, 10, "replica url: expects a string, not a list"),
    ("replica declared twice differently", 'replica "a":\n    url: "x"\nreplica "a":\n    url: "y"\n', 3, 1,
     "replica 'a' declared twice"),
    ("localrules naming an unknown rule", 'localrules: all, cuont\nrule count:\n    input: "x"\n', 1, 18,
     "localrules: no rule named 'cuont' (did you mean 'count'?)"),
    ("localrules with a string", 'localrules: "all"\n', 1, 13, "localrules: expects rule names"),
    ("wildcard constraint not a regex", 'wildcard_constraints:\n    s = "[A-Z"\n', 2, 9,
     "invalid regex for wildcard 's'"),
    ("wildcard constraint not a string", 'wildcard_constraints:\n    s = 3\n', 2, 9,
     "constraint for 's' must be a regex string"),
    ("wildcard constraint without name", 'wildcard_constraints:\n    "[A-Z]+"\n', 2, 5,
     "wildcard_constraints: expects name = \"regex\" lines"),
    ("include of a number", 'include: 3\n', 1, 10, "include: expects a file name (a string), not a number"),
    ("directive line inside a directive", 'rule r:\n    output:\n        x: "y"\n', 3, 9,
     "unexpected 'x:' inside 'output:'"),
    ("rule body on one line", 'rule r: "x"\n', 1, 9, "rule 'r' needs an indented block of directives"),
    ("item where a directive belongs", 'rule r:\n    "x"\n', 2, 5, "expected a directive ('name: value') in rule 'r'"),
]


@pytest.mark.parametrize("text, line, col, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_errors(tmp_path, text, line, col, fragment):
    check(tmp_path, text, line, col, fragment, reference={"path": "ref.fa"}, threads=4)


def test_each_error_is_reported_once(tmp_path):
    err = check(tmp_path, 'rule r:\n    input: expand("{x}.{n}", n=[1, 2, 3], allow_missing=True)\n', 2, 12,
                "wildcard '{x}' in input '{x}.1'")
    assert len(err.diagnostics) == 1


def test_duplicate_rule_names_mention_the_first(tmp_path):
    write(tmp_path / "inc.wf", 'rule count:\n    input: "b"\n')
    err = fail(tmp_path, 'rule count:\n    input: "a"\n\ninclude: "inc.wf"\n')
    head = diagnostic(err, tmp_path / "inc.wf", 1, 1, "rule 'count' defined twice")
    assert f"(first at {tmp_path / 'Wffile'}:1:1)" in head


def test_include_errors(tmp_path):
    check(tmp_path, 'X = 1\ninclude: "rules/missing.wf"\n', 2, 10, "included file 'rules/missing.wf' not found")
    write(tmp_path / "loop.wf", 'include: "Wffile"\n')
    err = fail(tmp_path, 'include: "loop.wf"\n')
    diagnostic(err, tmp_path / "loop.wf", 1, 10, "includes itself")


def test_an_error_in_an_included_file_points_into_it(tmp_path):
    write(tmp_path / "sub" / "inc.wf", 'Y = X + 1\nZ = UNDEFINED\n')
    err = fail(tmp_path, 'X = 1\ninclude: "sub/inc.wf"\n')
    diagnostic(err, tmp_path / "sub" / "inc.wf", 2, 5, "undefined variable 'UNDEFINED'")


def test_config_file_errors(tmp_path):
    check(tmp_path, '\nconfigfile: "missing.yaml"\n', 2, 13, "config file 'missing.yaml' not found")
    write(tmp_path / "list.yaml", "- a\n- b\n")
    check(tmp_path, 'configfile: "list.yaml"\n', 1, 13, "config file 'list.yaml' must hold a mapping, not a list")
    check(tmp_path, 'configfile: 7\n', 1, 13, "configfile: expects a file name (a string), not a number")


def test_config_file_with_bad_yaml_points_into_the_yaml(tmp_path):
    bad = write(tmp_path / "cfg" / "config.yaml", "samples: [A, B\nreference: ref.fa\n")
    err = fail(tmp_path, 'configfile: "cfg/config.yaml"\n')
    diagnostic(err, bad, 2, 10, "config file is not valid YAML")
    bad = write(tmp_path / "cfg" / "config.yaml", "a:\n  - x\n b: 1\n")
    err = fail(tmp_path, 'configfile: "cfg/config.yaml"\n')
    diagnostic(err, bad, 3, 2, "config file is not valid YAML")


def test_undefined_config_key_lists_the_keys_of_the_config_file(tmp_path):
    write(tmp_path / "config.yaml", "reference: ref.fa\nsamples: [A]\n")
    check(tmp_path, 'configfile: "config.yaml"\nX = config["sample"]\n', 2, 12,
          "config key 'sample' is not defined (did you mean 'samples'?) (defined: reference, samples)")
    check(tmp_path, 'X = config["a"]\n', 1, 12, "config key 'a' is not defined (defined: none)")


def test_replica_catalog_errors_point_into_the_catalog(tmp_path):
    check(tmp_path, 'replicas: "rc.yml"\n', 1, 11, "rc.yml' not found")
    rc = write(tmp_path / "rc.yml", f"pegasus: '5.0'\nreplicas:\n  - lfn: a\n    pfns:\n      - site: local\n"
                                    f"        pfn: /a\n    checksum:\n      sha256: {SHA[:10]}\n")
    err = fail(tmp_path, 'replicas: "rc.yml"\n')
    assert any(d.pos is not None and d.pos.path == str(rc) for d in err.diagnostics)
    assert str(rc) + ":" in err.render()


def test_several_independent_errors_are_reported_in_one_go(tmp_path):
    text = (
        'X = NOPE\n'                               # 1: undefined variable
        'Y = X + "a"\n'                            # 2: follows from line 1: not reported
        'rule a:\n'                                # 3
        '    outptu: "o"\n'                        # 4: unknown directive
        '    threads: 0\n'                         # 5: bad threads, same rule
        'rule b:\n'                                # 6
        '    output: Y\n'                          # 7: uses a broken variable: not reported
        '    shell: "{output[0]}"\n'               # 8
        'rule c:\n'                                # 9
        '    output: "o"\n'                        # 10
        '    shell: "{inptu}"\n'                   # 11: unknown field
        'replica "r":\n'                           # 12
        '    sha256: "xyz"\n'                      # 13: bad checksum
        'Z = config["k"]\n'                        # 14: undefined config key
        'localrules: nope\n'                       # 15: unknown rule
        'rule a:\n'                                # 16: duplicate
        '    input: "i"\n'
    )
    err = fail(tmp_path, text)
    path = tmp_path / "Wffile"
    diagnostic(err, path, 1, 5, "undefined variable 'NOPE'")
    diagnostic(err, path, 4, 5, "unknown directive 'outptu'")
    diagnostic(err, path, 5, 14, "threads: must be at least 1")
    diagnostic(err, path, 11, 13, "unknown field '{inptu}'")
    diagnostic(err, path, 13, 13, "sha256 of replica 'r'")
    diagnostic(err, path, 14, 12, "config key 'k' is not defined")
    diagnostic(err, path, 15, 13, "localrules: no rule named 'nope'")
    diagnostic(err, path, 16, 1, "rule 'a' defined twice (first at")
    assert len(err.diagnostics) == 8
    rendered = err.render()
    assert rendered.count(": error: ") == 8
    assert rendered.startswith(f"{path}:1:5: error: ")


def test_errors_without_a_position_and_the_render_format():
    d = Diagnostic("something is wrong")
    assert d.render() == "error: something is wrong"
    with pytest.raises(WffileError) as info:
        parse_config_overrides(["novalue"])
    assert info.value.render() == "error: --config expects KEY=VALUE, got 'novalue'"
    with pytest.raises(WffileError) as info:
        load_workflow("/nonexistent/dir/Wffile")
    assert info.value.render().startswith("error: no Wffile at")
    assert str(SourcePos("W", 3, 4)) == "W:3:4"


def test_parse_string_renders_the_text_it_was_given(tmp_path):
    with pytest.raises(WffileError) as info:
        parse_string('X = 1\nY = [1,\n', str(tmp_path / "not-on-disk"))
    assert info.value.render() == (
        f"{tmp_path / 'not-on-disk'}:2:5: error: '[' was never closed\n"
        "    Y = [1,\n"
        "        ^"
    )


def test_the_rendered_line_is_the_one_that_was_parsed(tmp_path):
    fail(tmp_path, 'X = 1\nY = NOPE\n')
    err = fail(tmp_path, 'A = "first line changed"\nB = 2\nC = MISSING\n')
    diagnostic(err, tmp_path / "Wffile", 3, 5, "undefined variable 'MISSING'")


def test_caret_under_a_tab_indented_line(tmp_path):
    err = fail(tmp_path, 'rule r:\n\toutput: "o"\n\tthreads: 0\n\tshell: "x"\n')
    head = diagnostic(err, tmp_path / "Wffile", 3, 11, "threads: must be at least 1")
    assert head.endswith("got 0")
    assert err.render().splitlines()[2] == "    \t         ^"
