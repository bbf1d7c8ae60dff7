"""Replica catalog files: both formats, every error with its position, round trip, schema."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from dsl.catalog import read_catalog, write_yaml_catalog, yaml_catalog_text
from dsl.errors import SourcePos, WffileError
from dsl.model import Replica

# shared/ sits beside the repository (in development and in CI).
_BESIDE = Path(__file__).resolve().parents[3] / "shared" / "data" / "pegasus-5.0-schemas"
SCHEMAS = Path(os.environ.get("WF_PEGASUS_SCHEMAS", str(_BESIDE)))
WHERE = SourcePos("Wffile", 3, 1)
SHA_A = "ca8ed5988cb4ca0b67c45fd80fd17423aba2a066ca8a63a4e1c6adab067a3e92"
SHA_B = "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_text(path: str, where: SourcePos = WHERE) -> str:
    """The rendered errors read_catalog raises for ``path``."""
    with pytest.raises(WffileError) as info:
        read_catalog(path, where)
    return info.value.render()


def plain(replicas: list[Replica]) -> list[tuple]:
    return [(r.lfn, r.url, r.sha256, r.site) for r in replicas]


# --- legacy text form --------------------------------------------------------


def test_text_catalog_reads_every_entry(tmp_path):
    path = write(
        tmp_path / "rc.txt",
        "# replicas of the raw inputs\n"
        "\n"
        f'data/a.txt file:///archive/a.txt checksum.type="sha256" checksum.value="{SHA_A}" site="local"\n'
        f"  data/b.txt  /archive/b.txt  checksum.type=sha256 checksum.value={SHA_B.upper()}  # b\n"
        'data/c.txt "https://example.org/c d.txt" site="web" owner="me"\n',
    )
    replicas = read_catalog(path, WHERE)
    assert plain(replicas) == [
        ("data/a.txt", "file:///archive/a.txt", SHA_A, "local"),
        ("data/b.txt", "/archive/b.txt", SHA_B, None),
        ("data/c.txt", "https://example.org/c d.txt", None, "web"),
    ]
    assert [r.pos for r in replicas] == [
        SourcePos(path, 3, 1),
        SourcePos(path, 4, 3),
        SourcePos(path, 5, 1),
    ]


def test_text_catalog_unquotes_like_shlex(tmp_path):
    line = r"""'data/my file.txt' "file:///x/a \"q\" \\ b.txt" site=lo"ca"l note='#1'"""
    path = write(tmp_path / "rc.txt", line + "\n")
    (replica,) = read_catalog(path, WHERE)
    words = shlex.split(line)
    assert (replica.lfn, replica.url, replica.site) == (words[0], words[1], "local")


def test_text_catalog_crlf_and_empty_file(tmp_path):
    path = write(
        tmp_path / "rc.txt", f"a /x/a\r\nb /x/b checksum.type=sha256 checksum.value={SHA_A}\r\n"
    )
    assert plain(read_catalog(path, WHERE)) == [
        ("a", "/x/a", None, None),
        ("b", "/x/b", SHA_A, None),
    ]
    assert read_catalog(write(tmp_path / "empty.txt", ""), WHERE) == []


@pytest.mark.parametrize(
    ("line", "col", "message"),
    [
        (
            'data/a.txt file:///a checksum.type="sha256" checksum.value="xyz"',
            60,
            "checksum of 'data/a.txt' is not a sha256 (64 hex digits): 'xyz'",
        ),
        (
            f'data/a.txt file:///a checksum.type="md5" checksum.value="{SHA_A}"',
            36,
            "checksum type 'md5' of 'data/a.txt' is not supported (only sha256)",
        ),
        (
            f'data/a.txt file:///a checksum.value="{SHA_A}"',
            37,
            "checksum.value of 'data/a.txt' needs checksum.type=\"sha256\"",
        ),
        (
            'data/a.txt file:///a checksum.type="sha256"',
            36,
            "checksum.type of 'data/a.txt' is given without checksum.value",
        ),
        ("data/a.txt", 1, 'malformed line: expected LFN PFN key="value" ...'),
        ('data/a.txt file:///a site="local', 27, "malformed line: unclosed quote"),
        ("data/a.txt file:///a local", 22, "malformed attribute 'local': expected key=\"value\""),
        ('data/a.txt file:///a site="x" site="y"', 31, "attribute 'site' given twice"),
        ('data/a.txt "" site="x"', 12, "the pfn of 'data/a.txt' is empty"),
        ('data/.*\\.txt file:///a regex="true"', 30, "regex replicas are not supported"),
    ],
)
def test_text_catalog_errors_point_into_the_catalog(tmp_path, line, col, message):
    path = write(tmp_path / "rc.txt", f"# header\n{line}\n")
    text = error_text(path)
    assert f"{path}:2:{col}: error: {message}" in text
    # The offending catalog line is shown with a caret under the column.
    assert f"\n    {line}\n    {' ' * (col - 1)}^" in text


def test_text_catalog_duplicate_lfn(tmp_path):
    path = write(tmp_path / "rc.txt", "a /x/1\nb /x/2\n  a /x/3\n")
    assert f"{path}:3:3: error: duplicate lfn 'a' (first at line 1)" in error_text(path)


def test_text_catalog_collects_every_error_and_raises_once(tmp_path):
    path = write(tmp_path / "rc.txt", "a /x checksum.value=1\nok /y\nb\nc /z checksum.type=md5\n")
    with pytest.raises(WffileError) as info:
        read_catalog(path, WHERE)
    assert [(d.pos.line, d.pos.col) for d in info.value.diagnostics] == [(1, 21), (3, 1), (4, 20)]


def test_many_errors_are_cut_short(tmp_path):
    path = write(tmp_path / "rc.txt", "".join(f"f{i}\n" for i in range(40)))
    with pytest.raises(WffileError) as info:
        read_catalog(path, WHERE)
    diagnostics = info.value.diagnostics
    assert len(diagnostics) == 26
    assert diagnostics[-1].message == f"15 more errors in replica catalog '{path}'"


# --- Pegasus 5 YAML ----------------------------------------------------------

YAML_CATALOG = f"""\
# a Pegasus 5 replica catalog
pegasus: "5.0"
replicas:
  - lfn: data/a.txt
    pfns:
      - {{site: condorpool, pfn: "gsiftp://remote/a.txt"}}
      - site: local
        pfn: file:///archive/a.txt
    checksum:
      sha256: "{SHA_A.upper()}"
  - lfn: "data/b.txt"
    pfns:
      - site: isi
        pfn: https://example.org/b.txt
    regex: false
    metadata:
      owner: me
      size: 12
    x-note: anything goes here
  - lfn: data/c.txt
    pfns: []
    checksum: {{sha256: {SHA_B}}}
"""


def test_yaml_catalog_reads_every_entry(tmp_path):
    path = write(tmp_path / "rc.yml", YAML_CATALOG)
    replicas = read_catalog(path, WHERE)
    assert plain(replicas) == [
        ("data/a.txt", "file:///archive/a.txt", SHA_A, "local"),
        ("data/b.txt", "https://example.org/b.txt", None, "isi"),
        ("data/c.txt", None, SHA_B, None),
    ]
    # Each replica points at its lfn in the catalog.
    assert [r.pos for r in replicas] == [
        SourcePos(path, 4, 10),
        SourcePos(path, 11, 10),
        SourcePos(path, 20, 10),
    ]


def test_yaml_is_recognised_by_content(tmp_path):
    path = write(tmp_path / "replicas.catalog", YAML_CATALOG)
    assert len(read_catalog(path, WHERE)) == 3


def test_yaml_empty_replica_list(tmp_path):
    path = write(tmp_path / "rc.yaml", 'pegasus: "5.0"\nreplicas: []\n')
    assert read_catalog(path, WHERE) == []


def entry(body: str) -> str:
    """A catalog whose one entry (from line 3) is ``body``."""
    return 'pegasus: "5.0"\nreplicas:\n' + body


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        (
            entry('  - lfn: data/a.txt\n    pfns: []\n    checksum:\n      sha256: "xyz"\n'),
            6,
            15,
            "checksum of 'data/a.txt' is not a sha256 (64 hex digits): 'xyz'",
        ),
        (
            entry(f"  - pfns: []\n    checksum: {{sha256: {SHA_A}}}\n"),
            3,
            5,
            "replica entry has no 'lfn'",
        ),
        (
            entry("  - lfn: data/a.txt\n    pfns: [\n    - site: local\n"),
            5,
            5,
            "YAML syntax error: did not find expected node content (while parsing a flow node)",
        ),
        (
            entry("  - lfn: data/a.txt\n    pfns:\n      - pfn: file:///a\n"),
            5,
            9,
            "a pfn of 'data/a.txt' has no 'site'",
        ),
        (
            entry("  - lfn: data/a.txt\n    pfn: file:///a\n"),
            4,
            5,
            "unknown replica key 'pfn' (did you mean 'pfns'?)",
        ),
        (
            entry("  - lfn: data/.*\n    pfns: []\n    regex: true\n"),
            5,
            12,
            "regex replicas are not supported ('data/.*')",
        ),
        (
            entry(f"  - lfn: a\n    pfns: []\n    checksum: {{md5: {SHA_A}}}\n"),
            5,
            16,
            "checksum type 'md5' of 'a' is not supported (only sha256)",
        ),
        (
            entry("  - lfn: 2024\n    pfns: []\n"),
            3,
            10,
            "'lfn' must be a non-empty string, found 2024 (int)",
        ),
        (
            "pegasus: 5.0\nreplicas: []\n",
            1,
            10,
            'expected pegasus: "5.0" (a quoted string), found 5.0 (float)',
        ),
        ("replicas: []\n", 1, 1, "replica catalog has no 'pegasus: \"5.0\"' line"),
        ('pegasus: "5.0"\nreplicas:\n', 2, 10, "'replicas' must be a list, found nothing (null)"),
        ("# nothing\n", 1, 1, 'replica catalog is empty; expected pegasus: "5.0" and replicas:'),
    ],
)
def test_yaml_catalog_errors_point_into_the_catalog(tmp_path, text, line, col, message):
    path = write(tmp_path / "rc.yml", text)
    rendered = error_text(path)
    assert f"{path}:{line}:{col}: error: {message}" in rendered


def test_yaml_catalog_duplicate_lfn_and_several_errors(tmp_path):
    path = write(
        tmp_path / "rc.yml",
        entry(
            "  - lfn: a\n    pfns: []\n"
            "  - lfn: b\n    pfns: []\n    checksum: {sha256: '00'}\n"
            "  - lfn: a\n    pfns: []\n"
        ),
    )
    with pytest.raises(WffileError) as info:
        read_catalog(path, WHERE)
    rendered = info.value.render()
    assert len(info.value.diagnostics) == 2
    assert f"{path}:7:24: error: checksum of 'b' is not a sha256 (64 hex digits): '00'" in rendered
    assert f"{path}:8:10: error: duplicate lfn 'a' (first at line 3)" in rendered
    # The caret is under the repeated lfn, column 10.
    assert "\n      - lfn: a\n    " + " " * 9 + "^" in rendered


# --- reading the file at all -------------------------------------------------


def test_missing_catalog_is_blamed_on_the_replicas_statement(tmp_path):
    wffile = write(tmp_path / "Wffile", 'rule all:\n    input: "x"\nreplicas: "rc.yml"\n')
    where = SourcePos(wffile, 3, 1)
    missing = str(tmp_path / "rc.yml")
    rendered = error_text(missing, where)
    assert rendered.startswith(f"{wffile}:3:1: error: replica catalog '{missing}' not found\n")
    assert '\n    replicas: "rc.yml"\n    ^' in rendered


def test_unreadable_catalog(tmp_path):
    (tmp_path / "rc.yml").mkdir()
    rendered = error_text(str(tmp_path / "rc.yml"))
    assert rendered.startswith(
        f"Wffile:3:1: error: replica catalog '{tmp_path / 'rc.yml'}' cannot be read"
    )


def test_catalog_that_is_not_utf8(tmp_path):
    path = tmp_path / "rc.txt"
    path.write_bytes(b"a /x/a\nb /x/\xff\n")
    assert f"{path}:2:6: error: replica catalog '{path}' is not UTF-8 text" in error_text(str(path))


# --- writing -----------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path):
    replicas = [
        Replica("data/a.txt", "file:///archive/a.txt", SHA_A, "local", WHERE),
        Replica("true", "1.0", SHA_B.upper(), "null", WHERE),
        Replica('we"ird \\ name: #x', "- [x]", None, "ÿ site ✓ 🧬", WHERE),
        Replica("tab\there\nnewline\u2028\x85", "no site", None, None, WHERE),
        Replica("not/staged", None, SHA_A, None, WHERE),
    ]
    path = str(tmp_path / "rc.yml")
    write_yaml_catalog(replicas, path)
    assert plain(read_catalog(path, WHERE)) == [
        ("data/a.txt", "file:///archive/a.txt", SHA_A, "local"),
        ("true", "1.0", SHA_B, "null"),
        ('we"ird \\ name: #x', "- [x]", None, "ÿ site ✓ 🧬"),
        ("tab\there\nnewline\u2028\x85", "no site", None, "local"),
        ("not/staged", None, SHA_A, None),
    ]
    assert yaml.safe_load(Path(path).read_text())["pegasus"] == "5.0"
    assert not [p for p in tmp_path.iterdir() if p.name != "rc.yml"]


def test_write_empty_catalog(tmp_path):
    path = str(tmp_path / "rc.yml")
    write_yaml_catalog([], path)
    assert read_catalog(path, WHERE) == []


def test_catalog_text_is_what_write_writes(tmp_path):
    replicas = [Replica("a", "file:///a", SHA_A, "local", WHERE)]
    path = tmp_path / "rc.yml"
    write_yaml_catalog(replicas, str(path))
    assert path.read_text(encoding="utf-8") == yaml_catalog_text(replicas)
    assert yaml_catalog_text(replicas).endswith('      sha256: "' + SHA_A + '"\n')


def test_write_rejects_what_it_could_not_read_back(tmp_path):
    with pytest.raises(ValueError, match="duplicate lfn 'a'"):
        write_yaml_catalog([Replica("a", None, None, None, WHERE)] * 2, str(tmp_path / "rc.yml"))
    with pytest.raises(ValueError, match="not a sha256"):
        write_yaml_catalog([Replica("a", None, "abc", None, WHERE)], str(tmp_path / "rc.yml"))
    assert list(tmp_path.iterdir()) == []


names = st.text(min_size=1, max_size=30)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
rows = st.lists(
    st.tuples(names, st.none() | names, st.none() | hexes, st.none() | names),
    unique_by=lambda row: row[0],
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows)
def test_round_trip_property(tmp_path, rows):
    path = str(tmp_path / "rc.yml")
    write_yaml_catalog([Replica(lfn, url, sha, site, WHERE) for lfn, url, sha, site in rows], path)
    expected = [
        (lfn, url, sha, (site or "local") if url is not None else None)
        for lfn, url, sha, site in rows
    ]
    assert plain(read_catalog(path, WHERE)) == expected


# --- the Pegasus 5.0 schema --------------------------------------------------


@pytest.fixture(scope="module")
def rc_validator() -> Draft7Validator:
    """A validator for rc-5.0.yml; it refers to common.yml by file name."""
    if not (SCHEMAS / "rc-5.0.yml").is_file():
        pytest.fail(f"Pegasus schemas not found in {SCHEMAS} (set WF_PEGASUS_SCHEMAS)")
    schemas = {
        name: yaml.safe_load((SCHEMAS / name).read_text()) for name in ("rc-5.0.yml", "common.yml")
    }
    registry = Registry().with_resources(
        (name, DRAFT7.create_resource(schema)) for name, schema in schemas.items()
    )
    return Draft7Validator(schemas["rc-5.0.yml"], registry=registry)


def test_accepted_yaml_catalog_is_valid_pegasus(tmp_path, rc_validator):
    path = write(tmp_path / "rc.yml", YAML_CATALOG)
    read_catalog(path, WHERE)
    rc_validator.validate(yaml.safe_load(YAML_CATALOG))


def test_written_catalog_is_valid_pegasus(tmp_path, rc_validator):
    path = str(tmp_path / "rc.yml")
    write_yaml_catalog(
        [
            Replica("a", "file:///a", SHA_A, None, WHERE),
            Replica("b", None, None, None, WHERE),
        ],
        path,
    )
    rc_validator.validate(yaml.safe_load(Path(path).read_text()))


@pytest.mark.parametrize(
    "bad_entry",
    [
        "  - lfn: a\n    pfns:\n      - pfn: file:///a\n",
        "  - lfn: a\n    pfns: []\n    checksum: {md5: abc}\n",
        "  - lfn: a\n    pfns: []\n    owner: me\n",
        "  - lfn: a\n",
    ],
)
def test_schema_and_reader_both_reject(tmp_path, rc_validator, bad_entry):
    text = entry(bad_entry)
    errors = list(rc_validator.iter_errors(yaml.safe_load(text)))
    assert errors, "the schema validator accepted an invalid catalog"
    with pytest.raises(WffileError):
        read_catalog(write(tmp_path / "rc.yml", text), WHERE)
