"""Replica catalog files: Pegasus 5 YAML and the legacy one-line-per-replica text form.

A Wffile names a catalog with ``replicas: "rc.yml"``. Every mistake in the
catalog is a WffileError whose position points into the catalog file, so the
user is shown the offending line of the catalog, not of the Wffile.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import secrets
from collections.abc import Iterable

import yaml

from .checks import normalize_sha256
from .errors import Diagnostic, ErrorCollector, SourcePos, WffileError, did_you_mean
from .model import Replica

__all__ = ["read_catalog", "write_yaml_catalog", "yaml_catalog_text"]

# libyaml composes 100k entries several times faster than the pure-Python loader.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_VERSION = re.compile(r"5(\.[0-9]+){0,2}")
_ENTRY_KEYS = ("lfn", "pfns", "regex", "checksum", "metadata")
_PFN_KEYS = ("site", "pfn")
# Shown once the catalog is known to be broken; the rest would only be noise.
_MAX_ERRORS = 25

# A file is YAML when so named, or when a top-level key of the Pegasus form
# starts a line (a legacy text line is "LFN PFN ...", never "replicas:").
_YAML_HINT = re.compile(r"""^(?:["']?(?:replicas|pegasus)["']?\s*:|\{)""", re.M)
# One shell-like word: plain characters, backslash escapes, quoted runs.
# Possessive runs: a long word is matched in one step, never backtracked.
_WORD = r"""(?:[^\s"'\\]++|\\.|"(?:[^"\\]++|\\.)*+"|'[^']*+')++"""
# A '#' starts a comment only at the start of a word (a '#' inside a URL is
# data); any other character that cannot start a word is an unclosed quote or
# a final backslash.
_TOKEN = re.compile(rf"(?P<comment>#.*)|(?P<word>{_WORD})|(?P<bad>\S)")
# The common attribute shape key="value", unquoted without the general loop.
_SIMPLE_DQ = re.compile(r'([^\s"\'\\]*)"([^"\\]*)"')
_WORD_PART = re.compile(r""""((?:[^"\\]|\\.)*)"|'([^']*)'|\\(.)|([^"'\\]+)""")
_DQ_ESCAPE = re.compile(r"""\\([\\"])""")
# Characters a YAML double-quoted scalar cannot hold as they are: the quote,
# the backslash, control characters, line breaks (folded otherwise) and
# characters YAML does not allow in a stream.
_YAML_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]')


class _Collector(ErrorCollector):
    """An ErrorCollector that keeps the first few errors and counts the rest."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.dropped = 0

    def add(self, pos: SourcePos | None, message: str) -> None:
        if len(self.diagnostics) < _MAX_ERRORS:
            super().add(pos, message)
        else:
            self.dropped += 1

    def raise_if_any(self) -> None:
        if self.dropped:
            self.diagnostics.append(
                Diagnostic(f"{self.dropped} more errors in replica catalog '{self.path}'")
            )
            self.dropped = 0
        super().raise_if_any()


def read_catalog(path: str, where: SourcePos) -> list[Replica]:
    """The replicas listed in the catalog file ``path``, in file order.

    ``path`` is opened as given and used in positions and messages; ``where``
    is the ``replicas:`` statement, blamed when the file cannot be read.
    Pegasus 5 YAML is recognised by a .yml/.yaml name or a top-level
    ``replicas:``/``pegasus:`` key; anything else is the legacy text form.
    Raises WffileError listing every mistake found. Costs one pass over the
    file; 100k entries take a few seconds as YAML, about one as text.
    """
    text = _read_text(path, where)
    errors = _Collector(path)
    # Every node and replica made here lives until the end, so the cyclic
    # collector would only rescan them again and again: it doubled the time
    # to read 100k entries. Collection is postponed, not skipped.
    paused = gc.isenabled()
    gc.disable()
    try:
        if path.lower().endswith((".yml", ".yaml")) or _YAML_HINT.search(text):
            replicas = _read_yaml(text, path, errors)
        else:
            replicas = _read_text_lines(text, path, errors)
    finally:
        if paused:
            gc.enable()
    _check_duplicates(replicas, errors)
    errors.raise_if_any()
    return replicas


def write_yaml_catalog(replicas: Iterable[Replica], path: str) -> None:
    """Write ``replicas`` to ``path`` as a Pegasus 5 YAML catalog (see yaml_catalog_text).

    The file is written under a temporary name and renamed, so a crash leaves
    the old catalog in place.
    """
    text = yaml_catalog_text(replicas)
    # A fresh name in the same directory (open() honours the umask, unlike
    # mkstemp), renamed over the old file only once it is complete.
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def yaml_catalog_text(replicas: Iterable[Replica]) -> str:
    """``replicas`` as the text of a Pegasus 5 YAML catalog that read_catalog reads back.

    A replica with a url but no site gets site ``local`` (the schema requires
    one); one without a url gets ``pfns: []``. Raises ValueError for a
    duplicate lfn or a checksum that is not a sha256.
    """
    # Emitted by hand: yaml.dump took 20 s for 100k entries, this takes well
    # under one. Every string is double-quoted, so no value can turn into a
    # number, a boolean or null when read back.
    lines = ["# Replica catalog (Pegasus 5.0), written by wf", 'pegasus: "5.0"', "replicas:"]
    seen: set[str] = set()
    for r in replicas:
        if r.lfn in seen:
            raise ValueError(f"duplicate lfn {r.lfn!r}")
        seen.add(r.lfn)
        lines.append(f"  - lfn: {_quote(r.lfn)}")
        if r.url is None:
            lines.append("    pfns: []")
        else:
            lines.append("    pfns:")
            lines.append(f"      - site: {_quote(r.site or 'local')}")
            lines.append(f"        pfn: {_quote(r.url)}")
        if r.sha256 is not None:
            sha = normalize_sha256(r.sha256)
            if sha is None:
                raise ValueError(f"checksum of {r.lfn!r} is not a sha256: {r.sha256!r}")
            lines.append("    checksum:")
            lines.append(f'      sha256: "{sha}"')
    if not seen:
        lines[-1] = "replicas: []"
    lines.append("")
    return "\n".join(lines)


def _quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar."""
    return '"' + _YAML_ESCAPE.sub(_escape_char, text) + '"'


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in '\\"':
        return "\\" + c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _read_text(path: str, where: SourcePos) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise WffileError.at(where, f"replica catalog '{path}' not found") from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise WffileError.at(where, f"replica catalog '{path}' cannot be read: {reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        pos = SourcePos(path, line, col)
        raise WffileError.at(pos, f"replica catalog '{path}' is not UTF-8 text") from None


def _check_duplicates(replicas: list[Replica], errors: ErrorCollector) -> None:
    first: dict[str, Replica] = {}
    for r in replicas:
        earlier = first.setdefault(r.lfn, r)
        if earlier is not r:
            errors.add(r.pos, f"duplicate lfn '{r.lfn}' (first at line {earlier.pos.line})")


# --- Pegasus 5 YAML ----------------------------------------------------------


def _read_yaml(text: str, path: str, errors: ErrorCollector) -> list[Replica]:
    def at(node: yaml.Node) -> SourcePos:
        return SourcePos(path, node.start_mark.line + 1, node.start_mark.column + 1)

    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = SourcePos(path, mark.line + 1, mark.column + 1) if mark else SourcePos(path, 1, 1)
        problem = e.problem or e.context or "invalid YAML"
        context = f" ({e.context})" if e.context and e.problem else ""
        raise WffileError.at(pos, f"YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as e:
        raise WffileError.at(SourcePos(path, 1, 1), f"YAML syntax error: {e}") from None

    top = SourcePos(path, 1, 1)
    if root is None:
        errors.add(top, 'replica catalog is empty; expected pegasus: "5.0" and replicas:')
        return []
    if not isinstance(root, yaml.MappingNode):
        errors.add(
            at(root), f'expected a mapping with pegasus: "5.0" and replicas:, found {_show(root)}'
        )
        return []
    keys = _mapping(root, errors, at)
    version = keys.get("pegasus")
    if version is None:
        errors.add(top, "replica catalog has no 'pegasus: \"5.0\"' line")
    elif not (_is_str(version) and _VERSION.fullmatch(version.value)):
        errors.add(
            at(version), f'expected pegasus: "5.0" (a quoted string), found {_show(version)}'
        )
    seq = keys.get("replicas")
    if seq is None:
        errors.add(top, "replica catalog has no 'replicas:' list")
        return []
    if not isinstance(seq, yaml.SequenceNode):
        errors.add(at(seq), f"'replicas' must be a list, found {_show(seq)}")
        return []
    replicas = []
    for node in seq.value:
        replica = _yaml_entry(node, path, errors, at)
        if replica is not None:
            replicas.append(replica)
    return replicas


def _yaml_entry(node: yaml.Node, path: str, errors: ErrorCollector, at) -> Replica | None:
    if not isinstance(node, yaml.MappingNode):
        errors.add(
            at(node), f"a replica must be a mapping with 'lfn' and 'pfns', found {_show(node)}"
        )
        return None
    keys = _mapping(node, errors, at)
    ok = True
    for key in keys:
        if key not in _ENTRY_KEYS and not key.startswith("x-"):
            ok = False
            hint = did_you_mean(key, _ENTRY_KEYS)
            errors.add(_key_pos(node, key, at), f"unknown replica key '{key}'{hint}")
    lfn_node = keys.get("lfn")
    if lfn_node is None:
        errors.add(at(node), "replica entry has no 'lfn'")
        return None
    if not _is_str(lfn_node) or not lfn_node.value:
        errors.add(at(lfn_node), f"'lfn' must be a non-empty string, found {_show(lfn_node)}")
        return None
    lfn = lfn_node.value
    regex = keys.get("regex")
    if regex is not None:
        if regex.tag != _BOOL:
            ok = False
            errors.add(at(regex), f"'regex' of '{lfn}' must be true or false, found {_show(regex)}")
        elif regex.value.lower() in ("true", "yes", "on", "y"):
            ok = False
            errors.add(at(regex), f"regex replicas are not supported ('{lfn}')")
    url = site = None
    pfns = keys.get("pfns")
    if pfns is None:
        ok = False
        errors.add(at(node), f"replica '{lfn}' has no 'pfns' (write pfns: [] for none)")
    elif not isinstance(pfns, yaml.SequenceNode):
        ok = False
        errors.add(at(pfns), f"'pfns' of '{lfn}' must be a list, found {_show(pfns)}")
    else:
        found = [_yaml_pfn(p, lfn, errors, at) for p in pfns.value]
        if None in found:
            ok = False
        elif found:
            url, site = next((f for f in found if f[1] == "local"), found[0])
    sha = None
    checksum = keys.get("checksum")
    if checksum is not None:
        sha = _yaml_checksum(checksum, lfn, errors, at)
        ok = ok and sha is not None
    metadata = keys.get("metadata")
    if metadata is not None and not _is_metadata(metadata):
        ok = False
        errors.add(
            at(metadata), f"'metadata' of '{lfn}' must be a non-empty mapping of strings or numbers"
        )
    return Replica(lfn, url, sha, site, at(lfn_node)) if ok else None


def _yaml_pfn(node: yaml.Node, lfn: str, errors: ErrorCollector, at) -> tuple[str, str] | None:
    if not isinstance(node, yaml.MappingNode):
        errors.add(at(node), f"a pfn of '{lfn}' must be a mapping with 'site' and 'pfn'")
        return None
    keys = _mapping(node, errors, at)
    ok = True
    for key in keys:
        if key not in _PFN_KEYS:
            ok = False
            hint = did_you_mean(key, _PFN_KEYS)
            errors.add(_key_pos(node, key, at), f"unknown pfn key '{key}' in '{lfn}'{hint}")
    for key in _PFN_KEYS:
        value = keys.get(key)
        if value is None:
            ok = False
            errors.add(at(node), f"a pfn of '{lfn}' has no '{key}'")
        elif not _is_str(value) or not value.value:
            ok = False
            errors.add(
                at(value), f"'{key}' of '{lfn}' must be a non-empty string, found {_show(value)}"
            )
    return (keys["pfn"].value, keys["site"].value) if ok else None


def _yaml_checksum(node: yaml.Node, lfn: str, errors: ErrorCollector, at) -> str | None:
    if not isinstance(node, yaml.MappingNode):
        errors.add(at(node), f"'checksum' of '{lfn}' must be a mapping like sha256: \"…\"")
        return None
    keys = _mapping(node, errors, at)
    for key in keys:
        if key != "sha256":
            errors.add(
                _key_pos(node, key, at),
                f"checksum type '{key}' of '{lfn}' is not supported (only sha256)",
            )
    value = keys.get("sha256")
    if value is None:
        if not keys:
            errors.add(at(node), f"'checksum' of '{lfn}' has no sha256")
        return None
    sha = normalize_sha256(value.value) if _is_str(value) else None
    if sha is None:
        errors.add(
            at(value),
            _bad_checksum(lfn, value.value if isinstance(value, yaml.ScalarNode) else _show(value)),
        )
    return sha if len(keys) == 1 else None


def _mapping(node: yaml.MappingNode, errors: ErrorCollector, at) -> dict[str, yaml.Node]:
    """The mapping's values by key text; non-string and repeated keys are errors."""
    keys: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            errors.add(at(key), "a key must be a plain name")
        elif key.value in keys:
            errors.add(at(key), f"key '{key.value}' given twice")
        else:
            keys[key.value] = value
    return keys


def _key_pos(node: yaml.MappingNode, key: str, at) -> SourcePos:
    return next(at(k) for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == key)


def _is_str(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _STR


def _is_metadata(node: yaml.Node) -> bool:
    if not isinstance(node, yaml.MappingNode) or not node.value:
        return False
    scalar = (_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    return all(isinstance(v, yaml.ScalarNode) and v.tag in scalar for _, v in node.value)


def _show(node: yaml.Node) -> str:
    """A short description of what was found, for messages."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR:
            return repr(node.value)
        return f"{node.value or 'nothing'} ({node.tag.rsplit(':', 1)[-1]})"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _bad_checksum(lfn: str, value: str) -> str:
    return f"checksum of '{lfn}' is not a sha256 (64 hex digits): '{value}'"


# --- legacy text form --------------------------------------------------------


def _read_text_lines(text: str, path: str, errors: ErrorCollector) -> list[Replica]:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    replicas = []
    # Not str.splitlines: it also splits at \f, \x1c, \u2028 and the like,
    # which would put line numbers out of step with what the user's editor shows.
    for number, line in enumerate(text.split("\n"), 1):
        words = _split_words(line, path, number, errors)
        if not words:
            continue
        if len(words) < 2:
            col, _, _ = words[0]
            errors.add(
                SourcePos(path, number, col),
                'malformed line: expected LFN PFN key="value" ...',
            )
            continue
        replica = _text_entry(words, path, number, errors)
        if replica is not None:
            replicas.append(replica)
    return replicas


def _text_entry(
    words: list[tuple[int, str, str]], path: str, number: int, errors: ErrorCollector
) -> Replica | None:
    (lfn_col, _, lfn), (pfn_col, _, pfn) = words[0], words[1]
    attrs: dict[str, tuple[int, str]] = {}
    ok = bool(lfn and pfn)
    if not lfn:
        errors.add(SourcePos(path, number, lfn_col), "the lfn is empty")
    elif not pfn:
        errors.add(SourcePos(path, number, pfn_col), f"the pfn of '{lfn}' is empty")
    for col, raw, word in words[2:]:
        key, eq, value = word.partition("=")
        if not eq or not key:
            ok = False
            errors.add(
                SourcePos(path, number, col), f'malformed attribute {raw!r}: expected key="value"'
            )
            continue
        if key in attrs:
            ok = False
            errors.add(SourcePos(path, number, col), f"attribute '{key}' given twice")
            continue
        # The value starts right after the first '=' of the word as written.
        attrs[key] = (col + raw.index("=") + 1, value)

    def at(key: str) -> SourcePos:
        return SourcePos(path, number, attrs[key][0])

    if "regex" in attrs and attrs["regex"][1].lower() == "true":
        ok = False
        errors.add(at("regex"), f"regex replicas are not supported ('{lfn}')")
    sha = None
    kind = attrs.get("checksum.type")
    value = attrs.get("checksum.value")
    if kind is not None and kind[1].lower() != "sha256":
        ok = False
        errors.add(
            at("checksum.type"),
            f"checksum type '{kind[1]}' of '{lfn}' is not supported (only sha256)",
        )
    elif value is not None and kind is None:
        ok = False
        errors.add(
            at("checksum.value"), f"checksum.value of '{lfn}' needs checksum.type=\"sha256\""
        )
    elif kind is not None and value is None:
        ok = False
        errors.add(at("checksum.type"), f"checksum.type of '{lfn}' is given without checksum.value")
    elif value is not None:
        sha = normalize_sha256(value[1])
        if sha is None:
            ok = False
            errors.add(at("checksum.value"), _bad_checksum(lfn, value[1]))
    site = attrs["site"][1] if "site" in attrs else None
    if not ok:
        return None
    return Replica(lfn, pfn, sha, site, SourcePos(path, number, lfn_col))


def _split_words(
    line: str, path: str, number: int, errors: ErrorCollector
) -> list[tuple[int, str, str]]:
    """``(column, word as written, word unquoted)`` for each word before a ``#`` comment.

    Unquoting follows shlex.split (POSIX mode); shlex itself is too slow for
    100k lines and does not report columns.
    """
    words = []
    for m in _TOKEN.finditer(line):
        kind = m.lastgroup
        if kind == "word":
            raw = m.group()
            words.append((m.start() + 1, raw, _unquote(raw)))
        elif kind == "bad":
            errors.add(
                SourcePos(path, number, m.start() + 1),
                "malformed line: unclosed quote or a backslash at the end",
            )
            return []
        else:
            break
    return words


def _unquote(raw: str) -> str:
    if '"' not in raw and "'" not in raw and "\\" not in raw:
        return raw
    simple = _SIMPLE_DQ.fullmatch(raw)
    if simple:
        return simple.group(1) + simple.group(2)
    out = []
    for dq, sq, esc, plain in _WORD_PART.findall(raw):
        # findall gives '' for the groups that did not take part.
        out.append(plain or esc or sq or _DQ_ESCAPE.sub(r"\1", dq))
    return "".join(out)
