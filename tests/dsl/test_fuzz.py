"""Whatever text it is given, the parser returns a Workflow or raises a WffileError."""

from __future__ import annotations

import os
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.errors import WffileError
from dsl.model import Workflow
from dsl.parse import parse_string

VALID = '''\
# a small but complete Wffile
SAMPLES = ["A", "B"]
OPTS = {"min": 5, "flags": [1, 2]}
NAME = "run" + "-1"

wildcard_constraints:
    sample = "[A-Z]+"

replica "data/ref.fa":
    url: "file:///archive/ref.fa"
    sha256: "ca8ed5988cb4ca0b67c45fd80fd17423aba2a066ca8a63a4e1c6adab067a3e92"
    site: "local"

container tools:
    image: "images/tools.tar"
    sha256: "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"
    type: "docker"

localrules: all

rule all:
    input: expand("results/{sample}.txt", sample=SAMPLES)

rule count:
    input:
        data="data/{sample}.txt",  # the reads
        ref="data/ref.fa"
    output: "results/{sample}.txt", temp("tmp/{sample}.part")
    params: min=OPTS["min"], name=NAME
    threads: 2
    resources: mem_mb=100
    retries: 1
    priority: 3
    container: tools
    log: "logs/{sample}.log"
    message: "counting {wildcards.sample}"
    shell:
        """
        wc -l {input.data} > {output[0]}
        touch {output[1]} 2> {log}
        """
'''

SPECIAL = ':{}[]()"\'\n\t =,#'
PREFIX = re.compile(r"(Wffile:\d+:\d+: error: |error: )")


@pytest.fixture(scope="module", autouse=True)
def empty_directory(tmp_path_factory):
    """Run in an empty folder, so that an include: or configfile: the fuzzer
    writes finds no file of the developer's (every error is then in 'Wffile')."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("fuzz"))
    yield
    os.chdir(old)


def parse_or_error(text: str) -> None:
    """The property: a Workflow, or a WffileError that renders with a position or 'error:'."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a regex "Possible nested set"
            result = parse_string(text, "Wffile")
    except WffileError as e:
        rendered = e.render()
        assert e.diagnostics
        for d in e.diagnostics:
            assert PREFIX.match(d.render()), d.render()
        assert PREFIX.match(rendered), rendered
    else:
        assert isinstance(result, Workflow)


def test_the_valid_wffile_parses():
    wf = parse_string(VALID, "Wffile")
    assert [r.name for r in wf.rules] == ["all", "count"]


@st.composite
def mutations(draw) -> str:
    """VALID with a few characters deleted, duplicated or inserted."""
    text = VALID
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "insert"]))
        if kind == "delete" and text:
            at = min(at, len(text) - 1)
            text = text[:at] + text[at + 1:]
        elif kind == "duplicate" and text:
            at = min(at, len(text) - 1)
            text = text[:at] + text[at] + text[at:]
        else:
            text = text[:at] + draw(st.sampled_from(SPECIAL + "\r\\+")) + text[at:]
    return text


@st.composite
def line_edits(draw) -> str:
    """VALID with whole lines dropped, repeated, swapped or re-indented."""
    lines = VALID.split("\n")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "repeat", "swap", "indent", "dedent"]))
        if kind == "drop":
            del lines[i]
        elif kind == "repeat":
            lines.insert(i, lines[i])
        elif kind == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif kind == "indent":
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[i]
        else:
            lines[i] = lines[i][draw(st.integers(min_value=1, max_value=4)):]
        if not lines:
            break
    return "\n".join(lines)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text())
def test_arbitrary_text(text):
    parse_or_error(text)


WORDS = [*SPECIAL, "\r\n", "    ", "\\\n", "+", "-1", "2.5", "0", "x", "A", '"a"', "'b'", '"""c"""',
         '"{x}"', '"{input}"', '"{{"', '"{output[9]}"', "rule", "input", "output", "shell", "params",
         "threads", "resources", "log", "expand", "temp", "protected", "config", "replica",
         "container", "image", "sha256", "url", "localrules", "include", "configfile",
         "wildcard_constraints", "True", "allow_missing"]


@FUZZ
@given(st.lists(st.sampled_from(WORDS), max_size=60).map("".join))
def test_arbitrary_wffile_like_text(text):
    parse_or_error(text)


@FUZZ
@given(mutations())
def test_mutations_of_a_valid_wffile(text):
    parse_or_error(text)


@FUZZ
@given(line_edits())
def test_line_edits_of_a_valid_wffile(text):
    parse_or_error(text)
