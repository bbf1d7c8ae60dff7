"""File patterns with ``{wildcards}``: compiled once, matched through an index.

Matching a requested file must not scan every rule (a million files times
every rule is too slow), so output patterns are indexed by their literal
prefix: a look-up tries one dict probe per distinct prefix length, then
checks the literal suffix and only then runs the regex.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:,((?:[^{}]|\{[^{}]*\})*))?\}")
DEFAULT_CONSTRAINT = ".+"


@dataclass(frozen=True, slots=True)
class Template:
    """A pattern split into literal text and wildcard names.

    ``parts`` alternates literals (str) and wildcard names (a 1-tuple), so
    formatting is a join, not a regex substitution.
    """

    text: str
    parts: tuple[str | tuple[str], ...]
    wildcards: tuple[str, ...]
    prefix: str
    suffix: str
    inline: tuple[tuple[str, str], ...]

    def format(self, wildcards: Mapping[str, str]) -> str:
        """The file name for these wildcard values."""
        if not self.wildcards:
            return self.prefix
        parts = self.parts
        if len(parts) == 3 and len(self.wildcards) == 1 and isinstance(parts[1], tuple):
            # prefix{w}suffix, by far the most common shape
            return parts[0] + wildcards[parts[1][0]] + parts[2]  # type: ignore[operator]
        return "".join(p if isinstance(p, str) else wildcards[p[0]] for p in parts)

    def regex(self, constraints: Mapping[str, str]) -> re.Pattern[str]:
        """A regex matching the files this pattern can make, capturing wildcards."""
        inline = dict(self.inline)
        seen: set[str] = set()
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(re.escape(p))
            elif p[0] in seen:
                out.append(f"(?P={p[0]})")
            else:
                seen.add(p[0])
                rx = inline.get(p[0]) or constraints.get(p[0]) or DEFAULT_CONSTRAINT
                out.append(f"(?P<{p[0]}>{rx})")
        return re.compile("".join(out) + r"\Z", re.DOTALL)


def compile_template(text: str) -> Template:
    """Parse ``text`` into a :class:`Template` (``{{``/``}}`` are literal braces)."""
    parts: list[str | tuple[str]] = []
    names: list[str] = []
    inline: list[tuple[str, str]] = []
    literal: list[str] = []
    last = 0
    for m in _FIELD.finditer(text):
        literal.append(text[last:m.start()])
        last = m.end()
        if m.group(1) is None:
            literal.append(m.group(0)[0])
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        name = m.group(1)
        parts.append((name,))
        if name not in names:
            names.append(name)
        if m.group(2) is not None:
            inline.append((name, m.group(2)))
    literal.append(text[last:])
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    parts = [p for p in parts if p != ""]
    prefix = parts[0] if parts and isinstance(parts[0], str) else ""
    suffix = parts[-1] if parts and isinstance(parts[-1], str) and len(parts) > 1 else ""
    if not names:
        prefix, suffix = "".join(parts), ""  # type: ignore[arg-type]
    return Template(text, tuple(parts), tuple(names), prefix, suffix, tuple(inline))


@dataclass(frozen=True, slots=True)
class OutputPattern:
    """One output pattern of one rule, ready to match."""

    rule_index: int
    item_index: int
    value_index: int
    template: Template
    regex: re.Pattern[str] | None
    temp: bool = False
    protected: bool = False
    #: The wildcard's name when the pattern is ``prefix{w}suffix`` with the
    #: default constraint: matching is then slicing, no regex needed.
    simple: str | None = None


def simple_wildcard(t: Template, constraints: Mapping[str, str]) -> str | None:
    """The single unconstrained wildcard of ``t``, if that is all it has."""
    fields = [p for p in t.parts if isinstance(p, tuple)]
    if len(fields) != 1 or t.inline:
        return None
    name = fields[0][0]
    return None if name in constraints else name


class OutputIndex:
    """Finds the output patterns that can make a given file."""

    def __init__(self, patterns: list[OutputPattern]):
        self._exact: dict[str, list[OutputPattern]] = {}
        self._by_prefix: dict[str, list[OutputPattern]] = {}
        lengths: set[int] = set()
        for p in patterns:
            if not p.template.wildcards:
                self._exact.setdefault(p.template.prefix, []).append(p)
            else:
                self._by_prefix.setdefault(p.template.prefix, []).append(p)
                lengths.add(len(p.template.prefix))
        self._lengths = sorted(lengths)

    def lookup(self, path: str) -> list[tuple[OutputPattern, dict[str, str]]]:
        """Every (pattern, wildcards) that makes ``path``; usually zero or one."""
        hits: list[tuple[OutputPattern, dict[str, str]]] = []
        for p in self._exact.get(path, ()):
            hits.append((p, {}))
        by_prefix = self._by_prefix
        n = len(path)
        for length in self._lengths:
            if length > n:
                break
            for p in by_prefix.get(path[:length], ()):
                suffix = p.template.suffix
                if suffix and not path.endswith(suffix):
                    continue
                if p.simple is not None:
                    # ``.+`` between a matched prefix and suffix: any non-empty middle.
                    end = n - len(suffix)
                    if end > length:
                        hits.append((p, {p.simple: path[length:end]}))
                    continue
                m = p.regex.match(path)  # type: ignore[union-attr]
                if m is not None:
                    hits.append((p, m.groupdict()))
        return hits
