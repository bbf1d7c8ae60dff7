"""Every construct of the Wffile language (WFFILE.md), checked on the resulting model."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dsl.errors import SourcePos
from dsl.model import PROTECTED, TEMP, ContainerRef, Workflow
from dsl.parse import load_workflow, parse_config_overrides, parse_string

SHA = "ca8ed5988cb4ca0b67c45fd80fd17423aba2a066ca8a63a4e1c6adab067a3e92"
SHA_B = "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"


def write(path: Path, text: str, newline: str | None = None) -> Path:
    """Write ``text`` (dedented) to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline=newline) as fh:
        fh.write(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, name: str = "Wffile", **overrides) -> Workflow:
    """Write a Wffile into tmp_path and parse it."""
    return load_workflow(str(write(tmp_path / name, text)), overrides or None)


def params(wf: Workflow, rule: str) -> dict:
    return {p.name: p.value for p in wf.rule(rule).params}


def values(items) -> list[tuple[str, ...]]:
    return [i.values for i in items]


# --- assignments -------------------------------------------------------------------


def test_assignments_of_every_kind(tmp_path):
    wf = load(tmp_path, """\
        S = "text"
        S2 = 'single'
        I = 42
        NEG = -3
        F = 2.5
        EXP = 1e3
        T = True
        FA = False
        L = ["a", 1, [2, 3]]
        EMPTY = []
        D = {"k": [1, {"n": True}], 2: "two"}
        ED = {}
        CAT = S + "-" + S2
        LCAT = ["x"] + L[2] + []
        V = CAT
        IDX = L[-1][0]
        DEEP = D["k"][1]["n"]
        PAREN = ("a" + "b")
        TRAIL = [1, 2,]

        rule r:
            output: "out"
            params:
                s=S, s2=S2, i=I, neg=NEG, f=F, exp=EXP, t=T, fa=FA, l=L, empty=EMPTY,
                d=D, ed=ED, cat=CAT, lcat=LCAT, v=V, idx=IDX, deep=DEEP, paren=PAREN,
                trail=TRAIL
            shell: "true"
        """)
    assert params(wf, "r") == {
        "s": "text", "s2": "single", "i": 42, "neg": -3, "f": 2.5, "exp": 1000.0,
        "t": True, "fa": False,
        "l": ("a", 1, (2, 3)), "empty": (),
        "d": (("k", (1, (("n", True),))), (2, "two")), "ed": (),
        "cat": "text-single", "lcat": ("x", 2, 3),
        "v": "text-single", "idx": 2, "deep": True, "paren": "ab", "trail": (1, 2),
    }
    assert type(params(wf, "r")["i"]) is int
    assert type(params(wf, "r")["t"]) is bool


def test_a_variable_can_be_redefined_and_the_latest_value_is_used(tmp_path):
    wf = load(tmp_path, """\
        X = "one"
        rule a:
            output: X
            shell: "true"
        X = X + "-two"
        rule b:
            output: X
            shell: "true"
        """)
    assert values(wf.rule("a").output) == [("one",)]
    assert values(wf.rule("b").output) == [("one-two",)]


def test_string_escapes_and_raw_strings(tmp_path):
    wf = load(tmp_path, r"""
        rule r:
            output: "a\tb"
            params: raw=r"\d+\.txt", esc="q\"uote", hexed="\x41", regex="\d"
            shell: "true"
        """)
    assert values(wf.rule("r").output) == [("a\tb",)]
    assert params(wf, "r") == {"raw": r"\d+\.txt", "esc": 'q"uote', "hexed": "A", "regex": r"\d"}


# --- config --------------------------------------------------------------------------


def test_configfile_is_relative_to_the_wffile_folder(tmp_path, monkeypatch):
    write(tmp_path / "proj" / "config.yaml", """\
        reference: ref/genome.fa
        samples: [A, B]
        n: 3
        nested:
          a:
            b: deep
        """)
    wffile = write(tmp_path / "proj" / "Wffile", """\
        configfile: "config.yaml"
        REF = config["reference"]
        rule r:
            input: REF, config["samples"]
            output: "out"
            params: n=config["n"], deep=config["nested"]["a"]["b"], whole=config["nested"]
            shell: "true"
        """)
    monkeypatch.chdir(tmp_path)  # not the Wffile's folder
    wf = load_workflow(str(wffile))
    assert values(wf.rule("r").input) == [("ref/genome.fa",), ("A", "B")]
    assert params(wf, "r") == {"n": 3, "deep": "deep", "whole": (("a", (("b", "deep"),)),)}
    assert wf.config["samples"] == ["A", "B"]


def test_parse_config_overrides_reads_yaml_scalars():
    assert parse_config_overrides([
        "n=7", "f=1.5", "b=true", "s=hello world", "empty=", "eq=a=b", "zero=007", "q='7'",
        " spaced = x",
    ]) == {"n": 7, "f": 1.5, "b": True, "s": "hello world", "empty": "", "eq": "a=b",
           "zero": 7, "q": "7", "spaced": "x"}
    assert parse_config_overrides([]) == {}


def test_config_overrides_win_over_the_config_file(tmp_path):
    write(tmp_path / "config.yaml", """\
        n: 3
        keep: kept
        nested:
          a: 1
          b: 2
        """)
    wffile = write(tmp_path / "Wffile", """\
        configfile: "config.yaml"
        rule r:
            output: "out"
            params: n=config["n"], keep=config["keep"], a=config["nested"]["a"], b=config["nested"]["b"], new=config["new"]
            shell: "true"
        """)
    overrides = parse_config_overrides(["n=10", "nested={a: 5}", "new=yes please"])
    wf = load_workflow(str(wffile), overrides)
    assert params(wf, "r") == {"n": 10, "keep": "kept", "a": 5, "b": 2, "new": "yes please"}
    assert type(params(wf, "r")["n"]) is int
    # Merging the file into the config must not have altered the overrides given.
    assert overrides == {"n": 10, "nested": {"a": 5}, "new": "yes please"}


def test_config_overrides_without_a_config_file(tmp_path):
    wf = load(tmp_path, """\
        rule r:
            output: config["out"]
            shell: "true"
        """, out="result.txt")
    assert values(wf.rule("r").output) == [("result.txt",)]
    assert wf.config == {"out": "result.txt"}


def test_an_empty_config_file_is_an_empty_mapping(tmp_path):
    write(tmp_path / "config.yaml", "# nothing yet\n")
    wf = load(tmp_path, 'configfile: "config.yaml"\n')
    assert wf.config == {}


# --- include -----------------------------------------------------------------------


def test_include_is_relative_to_the_including_file_and_shares_variables(tmp_path):
    write(tmp_path / "rules" / "common.wf", """\
        # sees what the Wffile defined before the include
        OUT = PREFIX + "/common.txt"
        include: "more/leaf.wf"
        rule common:
            output: OUT
            shell: "touch {output}"
        """)
    write(tmp_path / "rules" / "more" / "leaf.wf", """\
        LEAF = OUT + ".leaf"
        """)
    wf = load(tmp_path, """\
        PREFIX = "results"
        include: "rules/common.wf"
        rule all:
            input: OUT, LEAF
        """)
    assert [r.name for r in wf.rules] == ["common", "all"]
    assert values(wf.rule("all").input) == [("results/common.txt",), ("results/common.txt.leaf",)]
    assert wf.rule("common").pos == SourcePos(str(tmp_path / "rules" / "common.wf"), 4, 1)
    assert wf.sources == (
        str(tmp_path / "Wffile"),
        str(tmp_path / "rules" / "common.wf"),
        str(tmp_path / "rules" / "more" / "leaf.wf"),
    )


def test_the_same_file_may_be_included_twice_in_sequence(tmp_path):
    write(tmp_path / "vars.wf", 'N = N + 1\n')
    wf = load(tmp_path, """\
        N = 0
        include: "vars.wf"
        include: "vars.wf"
        rule r:
            output: "o"
            params: n=N
            shell: "true"
        """)
    assert params(wf, "r") == {"n": 2}


# --- wildcard constraints, replicas, containers, localrules ------------------------


def test_wildcard_constraints_block_and_inline(tmp_path):
    wf = load(tmp_path, """\
        DIGITS = "[0-9]+"
        wildcard_constraints:
            sample = "[A-Za-z0-9]+"
            n = DIGITS
        wildcard_constraints: lane = "L[0-9]"
        rule r:
            output: "{sample,[A-Z]+}/{n}.txt"
            shell: "true"
        """)
    assert wf.wildcard_constraints == {"sample": "[A-Za-z0-9]+", "n": "[0-9]+", "lane": "L[0-9]"}
    assert values(wf.rule("r").output) == [("{sample,[A-Z]+}/{n}.txt",)]


def test_replicas_catalog_statement_reads_a_yaml_catalog(tmp_path):
    write(tmp_path / "rc.yml", f"""\
        pegasus: "5.0"
        replicas:
          - lfn: data/a.txt
            pfns:
              - site: local
                pfn: /archive/a.txt
            checksum:
              sha256: {SHA.upper()}
          - lfn: data/b.txt
            pfns:
              - site: web
                pfn: https://example.org/b.txt
        """)
    wf = load(tmp_path, 'replicas: "rc.yml"\n')
    a, b = wf.replicas["data/a.txt"], wf.replicas["data/b.txt"]
    assert (a.url, a.sha256, a.site) == ("/archive/a.txt", SHA, "local")
    assert (b.url, b.sha256, b.site) == ("https://example.org/b.txt", None, "web")
    assert a.pos.path == str(tmp_path / "rc.yml")


def test_replica_block(tmp_path):
    wf = load(tmp_path, f"""\
        replica "data/genome.fa":
            url: "file:///archive/genome.fa"
            sha256: "{SHA.upper()}"
            site: "archive"
        replica 'data/plain.txt':
            url: "/archive/plain.txt"
        """)
    g = wf.replicas["data/genome.fa"]
    assert (g.lfn, g.url, g.sha256, g.site) == ("data/genome.fa", "file:///archive/genome.fa", SHA, "archive")
    assert g.pos == SourcePos(str(tmp_path / "Wffile"), 1, 1)
    p = wf.replicas["data/plain.txt"]
    assert (p.url, p.sha256, p.site) == ("/archive/plain.txt", None, None)


def test_container_block_and_rule_references(tmp_path):
    wf = load(tmp_path, f"""\
        IMG = "images/other.sif"
        container tools:
            image: "images/tools.tar"
            sha256: "{SHA.upper()}"
            type: "docker"
        container bare:
            image: "https://example.org/bare.sif"
        rule by_name:
            output: "a"
            container: tools
            shell: "true"
        rule by_quoted_name:
            output: "b"
            container: "tools"
            shell: "true"
        rule by_path:
            output: "c"
            container: "docker://alpine:3"
            shell: "true"
        rule by_variable:
            output: "d"
            container: IMG
            shell: "true"
        rule without:
            output: "e"
            shell: "true"
        """)
    tools = wf.containers["tools"]
    assert (tools.name, tools.image, tools.sha256, tools.kind) == ("tools", "images/tools.tar", SHA, "docker")
    bare = wf.containers["bare"]
    assert (bare.image, bare.sha256, bare.kind) == ("https://example.org/bare.sif", None, None)
    ref = wf.rule("by_name").container
    assert (ref.name, ref.image) == ("tools", None)
    assert ref.pos == SourcePos(str(tmp_path / "Wffile"), 10, 16)
    assert (wf.rule("by_quoted_name").container.name, wf.rule("by_quoted_name").container.image) == ("tools", None)
    assert (wf.rule("by_path").container.name, wf.rule("by_path").container.image) == (None, "docker://alpine:3")
    assert (wf.rule("by_variable").container.name, wf.rule("by_variable").container.image) == (None, "images/other.sif")
    assert wf.rule("without").container is None
    assert isinstance(ref, ContainerRef)


def test_localrules(tmp_path):
    wf = load(tmp_path, """\
        localrules: a, b
        rule a:
            input: "x"
        rule b:
            input: "y"
        rule c:
            input: "z"
        """)
    assert wf.localrules == frozenset({"a", "b"})
    assert [(r.name, r.local) for r in wf.rules] == [("a", True), ("b", True), ("c", False)]


# --- rules ---------------------------------------------------------------------------


def test_rule_with_every_directive(tmp_path):
    wf = load(tmp_path, f"""\
        container tools:
            image: "images/tools.tar"
            sha256: "{SHA}"

        rule count:
            input:
                data="data/{{sample}}.txt",
                ref="ref.fa"
            output: "results/{{sample}}.txt", temp("tmp/{{sample}}.part")
            params: min=5, label="s-{{sample}}"
            threads: 4
            resources: mem_mb=100, disk_mb=2000, gpus=0
            retries: 2
            priority: -10
            container: tools
            log: "logs/{{sample}}.log"
            message: "counting {{wildcards.sample}} with {{threads}} threads"
            shell: "wc -l {{input.data}} > {{output[0]}} && touch {{output[1]}} 2> {{log}}"
        """)
    r = wf.rule("count")
    path = str(tmp_path / "Wffile")
    assert r.pos == SourcePos(path, 5, 1)
    assert [(i.name, i.values) for i in r.input] == [("data", ("data/{sample}.txt",)), ("ref", ("ref.fa",))]
    assert values(r.output) == [("results/{sample}.txt",), ("tmp/{sample}.part",)]
    assert [i.flags for i in r.output] == [(), (TEMP,)]
    assert params(wf, "count") == {"min": 5, "label": "s-{sample}"}
    assert r.threads == 4
    assert r.resources == (("mem_mb", 100), ("disk_mb", 2000), ("gpus", 0))
    assert r.retries == 2
    assert r.priority == -10
    assert r.container == ContainerRef("tools", None, SourcePos(path, 15, 16))
    assert values(r.log) == [("logs/{sample}.log",)]
    assert r.message == "counting {wildcards.sample} with {threads} threads"
    assert r.shell == "wc -l {input.data} > {output[0]} && touch {output[1]} 2> {log}"
    assert dict(r.positions) == {
        key: SourcePos(path, line, 5) for line, key in enumerate(
            ["input", None, None, "output", "params", "threads", "resources", "retries",
             "priority", "container", "log", "message", "shell"], start=6) if key
    }
    assert r.where("shell") == SourcePos(path, 18, 5)
    assert r.where("input") == SourcePos(path, 6, 5)


def test_rule_defaults(tmp_path):
    wf = load(tmp_path, """\
        rule all:
            input: "a.txt"
        """)
    r = wf.rule("all")
    assert (r.threads, r.resources, r.retries, r.priority, r.container, r.message, r.shell, r.local) == \
        (1, (), None, 0, None, None, None, False)
    assert r.output == r.log == r.params == ()
    assert r.where("shell") == r.pos


def test_named_and_positional_items_and_lists_inside_items(tmp_path):
    wf = load(tmp_path, """\
        PAIR = ["r1.fq", "r2.fq"]
        rule r:
            input: "first", reads=PAIR, ["l1", "l2"], idx="genome.idx"
            output:
                "out/{s}.bam",
                stats="out/{s}.stats",
            shell: "true"
        """)
    inp = wf.rule("r").input
    assert [(i.name, i.values, i.is_list) for i in inp] == [
        (None, ("first",), False),
        ("reads", ("r1.fq", "r2.fq"), True),
        (None, ("l1", "l2"), True),
        ("idx", ("genome.idx",), False),
    ]
    path = str(tmp_path / "Wffile")
    assert [i.pos for i in inp] == [SourcePos(path, 3, 12), SourcePos(path, 3, 21),
                                    SourcePos(path, 3, 33), SourcePos(path, 3, 47)]
    out = wf.rule("r").output
    assert [(i.name, i.values) for i in out] == [(None, ("out/{s}.bam",)), ("stats", ("out/{s}.stats",))]
    assert [i.pos for i in out] == [SourcePos(path, 5, 9), SourcePos(path, 6, 9)]


def test_items_spread_over_several_lines(tmp_path):
    wf = load(tmp_path, """\
        rule r:
            input:
                "a",
                "b", "c"
                "d"
            output: ["x",
                     "y"]
            shell: "true"
        """)
    assert values(wf.rule("r").input) == [("a",), ("b",), ("c",), ("d",)]
    assert values(wf.rule("r").output) == [("x", "y")]


# --- expand, temp, protected -------------------------------------------------------


def test_expand(tmp_path):
    wf = load(tmp_path, """\
        S = ["A", "B"]
        rule r:
            input:
                product=expand("{s}/{n}.txt", s=S, n=[1, 2]),
                single=expand("{s}.txt", s="only"),
                kept=expand("{{sample}}/{s}.txt", s=S),
                missing=expand("{s}/{sample}.txt", s=S, allow_missing=True),
                patterns=expand(["{s}.a", "{s}.b"], s=S),
                literal=expand("plain.txt"),
                braces=expand("{{{{x}}}}-{s}", s="v")
            output: "{sample}.out"
            shell: "true"
        """)
    got = {i.name: i.values for i in wf.rule("r").input}
    assert got == {
        "product": ("A/1.txt", "A/2.txt", "B/1.txt", "B/2.txt"),
        "single": ("only.txt",),
        "kept": ("{sample}/A.txt", "{sample}/B.txt"),
        "missing": ("A/{sample}.txt", "B/{sample}.txt"),
        "patterns": ("A.a", "B.a", "A.b", "B.b"),
        "literal": ("plain.txt",),
        "braces": ("{{x}}-v",),
    }


def test_expand_with_an_empty_list_gives_nothing(tmp_path):
    wf = load(tmp_path, """\
        rule all:
            input: expand("{s}.txt", s=[])
        """)
    assert values(wf.rule("all").input) == [()]


def test_temp_and_protected_flags(tmp_path):
    wf = load(tmp_path, """\
        rule r:
            output:
                temp("tmp/{s}.part"),
                protected("final/{s}.txt"),
                parts=temp(expand("tmp/{{s}}.{i}", i=[1, 2])),
                both=[protected("p/{s}"), "plain/{s}"],
                plain="x/{s}"
            shell: "true"
        """)
    out = wf.rule("r").output
    assert [(i.values, i.flags) for i in out] == [
        (("tmp/{s}.part",), (TEMP,)),
        (("final/{s}.txt",), (PROTECTED,)),
        (("tmp/{s}.1", "tmp/{s}.2"), (TEMP, TEMP)),
        (("p/{s}", "plain/{s}"), (PROTECTED, None)),
        (("x/{s}",), ()),
    ]
    assert out[3].flag(0) == PROTECTED and out[3].flag(1) is None and out[4].flag(0) is None


# --- shell strings -----------------------------------------------------------------


def test_shell_strings_single_double_and_triple_quoted(tmp_path):
    wf = load(tmp_path, '''\
        rule single:
            output: "a"
            shell: 'echo "hi" > {output}'
        rule double:
            output: "b"
            shell: "echo 'hi' > {output}"
        rule triple:
            output: "c"
            shell:
                """
                set -e
                for x in 1 2; do
                    echo $x >> {output}
                done
                """
        rule triple_single:
            output: "d"
            shell: \'\'\'echo {output}\'\'\'
        rule braces:
            output: "e"
            shell: "awk '{{print $1}}' > {output:q}"
        ''')
    assert wf.rule("single").shell == 'echo "hi" > {output}'
    assert wf.rule("double").shell == "echo 'hi' > {output}"
    assert wf.rule("triple").shell == "set -e\nfor x in 1 2; do\n    echo $x >> {output}\ndone"
    assert wf.rule("triple_single").shell == "echo {output}"
    assert wf.rule("braces").shell == "awk '{{print $1}}' > {output:q}"


def test_a_triple_quoted_string_outside_shell_is_kept_as_written(tmp_path):
    wf = load(tmp_path, '''\
        rule r:
            output: "o"
            params: text="""
              two
            """
            message: """
                starting
            """
            shell: "true"
        ''')
    assert params(wf, "r") == {"text": "\n      two\n    "}
    assert wf.rule("r").message == "starting"


# --- layout: comments, blank lines, tabs, line endings ------------------------------


def test_comments_and_blank_lines_everywhere(tmp_path):
    wf = load(tmp_path, """\
        # a comment first

        X = "x"   # after an assignment
        # between statements


        rule r:  # after a rule header
            # before a directive
            input:   # after a directive key

                "in",   # after an item

                # between items
                "in2"
            # between directives

            output: "out"  # after an inline body
            shell: "echo '#not a comment' {input}"  # after a string with a '#'
        # at the end""")
    r = wf.rule("r")
    assert values(r.input) == [("in",), ("in2",)]
    assert r.shell == "echo '#not a comment' {input}"


def test_tab_indentation(tmp_path):
    path = tmp_path / "Wffile"
    path.write_text('rule r:\n\tinput:\n\t\t"a",\n\t\t"b"\n\toutput: "o"\n\tshell: "true"\n', encoding="utf-8")
    wf = load_workflow(str(path))
    assert values(wf.rule("r").input) == [("a",), ("b",)]
    assert wf.rule("r").positions["output"] == SourcePos(str(path), 5, 2)


def test_trailing_comment_at_eof_without_newline(tmp_path):
    path = tmp_path / "Wffile"
    path.write_text('rule r:\n    output: "o"\n    shell: "true"\n# the end', encoding="utf-8")
    assert load_workflow(str(path)).rule("r").shell == "true"
    path.write_text('rule r:\n    output: "o"\n    shell: "true"  # the end', encoding="utf-8")
    assert load_workflow(str(path)).rule("r").shell == "true"


def test_last_line_without_newline(tmp_path):
    path = tmp_path / "Wffile"
    path.write_text('X = "o"\nrule r:\n    output: X\n    shell: "true"', encoding="utf-8")
    assert values(load_workflow(str(path)).rule("r").output) == [("o",)]


def test_windows_line_endings(tmp_path):
    text = (
        '# made on Windows\r\n'
        'S = ["A",\r\n'
        '     "B"]\r\n'
        '\r\n'
        'rule r:\r\n'
        '    input: expand("{s}.in", s=S)  # comment\r\n'
        '    output: "o"\r\n'
        '    shell:\r\n'
        '        """\r\n'
        '        echo one\r\n'
        '        echo two\r\n'
        '        """\r\n'
    )
    path = tmp_path / "Wffile"
    path.write_bytes(text.encode())
    wf = load_workflow(str(path))
    r = wf.rule("r")
    assert values(r.input) == [("A.in", "B.in")]
    assert r.shell == "echo one\necho two"
    assert r.positions["output"] == SourcePos(str(path), 7, 5)


def test_empty_and_comment_only_files(tmp_path):
    assert load(tmp_path, "").rules == ()
    assert load(tmp_path, "# nothing\n\n   \n").rules == ()


def test_line_continuation_with_backslash(tmp_path):
    wf = load(tmp_path, 'X = "a" + \\\n    "b"\nrule r:\n    output: X\n    shell: "true"\n')
    assert values(wf.rule("r").output) == [("ab",)]


# --- the workflow as a whole --------------------------------------------------------


def test_the_example_of_wffile_md(tmp_path):
    write(tmp_path / "config.yaml", "reference: data/genome.fa\n")
    write(tmp_path / "rc.yml", f"pegasus: '5.0'\nreplicas:\n  - lfn: data/A.txt\n    pfns:\n      - site: local\n        pfn: /archive/A.txt\n"
                               f"    checksum:\n      sha256: {SHA_B}\n")
    wf = load(tmp_path, f"""\
        configfile: "config.yaml"          # YAML mapping, available as config["..."]

        SAMPLES = ["A", "B", "C"]          # assignments: strings, numbers, lists, dicts
        REF = config["reference"]          # config look-ups; --config key=value overrides

        wildcard_constraints:
            sample = "[A-Za-z0-9]+"

        replicas: "rc.yml"                 # a replica catalog file

        replica "data/genome.fa":          # one raw input
            url: "file:///archive/genome.fa"
            sha256: "{SHA}"

        container tools:                   # a container image is data
            image: "images/tools.tar"
            sha256: "{SHA_B}"

        localrules: all

        rule all:
            input: expand("results/{{sample}}.txt", sample=SAMPLES)

        rule count:
            input:
                data="data/{{sample}}.txt",
                ref=REF
            output: "results/{{sample}}.txt", temp("tmp/{{sample}}.part")
            params: min=5
            threads: 1
            resources: mem_mb=100
            retries: 2
            priority: 10
            container: tools
            log: "logs/{{sample}}.log"
            shell: "wc -l {{input.data}} > {{output[0]}} && touch {{output[1]}}"
        """)
    assert [r.name for r in wf.rules] == ["all", "count"]
    assert values(wf.rule("all").input) == [("results/A.txt", "results/B.txt", "results/C.txt")]
    assert wf.rule("all").local and not wf.rule("count").local
    assert wf.rule("count").input[1].values == ("data/genome.fa",)
    assert set(wf.replicas) == {"data/A.txt", "data/genome.fa"}
    assert wf.containers["tools"].sha256 == SHA_B
    assert wf.wildcard_constraints == {"sample": "[A-Za-z0-9]+"}
    assert wf.path == str(tmp_path / "Wffile")
    assert wf.basedir == str(tmp_path)


def test_parse_string_uses_path_for_relative_files(tmp_path):
    write(tmp_path / "inc.wf", 'X = "from include"\n')
    wf = parse_string('include: "inc.wf"\nrule r:\n    output: X\n    shell: "true"\n',
                      str(tmp_path / "Wffile"), {"k": 1})
    assert values(wf.rule("r").output) == [("from include",)]
    assert wf.config == {"k": 1}


@pytest.mark.parametrize("text", [
    'rule r:\n    output: "o"\n    shell: "true"\n',
    'rule r:\n  output: "o"\n  shell: "true"\n',
    'rule r:\n        output: "o"\n        shell: "true"\n',
    'rule r:\n    output: "o"\n    shell: "true"\n\n\n',
    'rule r:\n    output: "o"\n\n    shell: "true"\n',
    'rule r:\n    output:\n        "o"\n    shell:\n        "true"\n',
])
def test_layout_variants_give_the_same_rule(tmp_path, text):
    r = load(tmp_path, text).rule("r")
    assert (values(r.output), r.shell) == ([("o",)], "true")
