"""``shell:`` and ``message:`` format strings: parsed once, checked, rendered later.

Fields are ``{input}``, ``{input.name}``, ``{input[0]}``, ``{output…}``,
``{log…}``, ``{params.x}``, ``{wildcards.x}``, ``{threads}``,
``{resources.x}``; ``{{``/``}}`` are literal braces. ``{x:q}`` is accepted
for Snakemake compatibility and means nothing more: every value is quoted.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

ROOTS = ("input", "output", "log", "params", "wildcards", "threads", "resources")
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?(?:\[(-?\d+)\])?$")


@dataclass(frozen=True, slots=True)
class Field:
    """A ``{root.attr[index]}`` reference; ``offset`` is where it starts in the text."""

    root: str
    attr: str | None
    index: int | None
    text: str
    offset: int


class TemplateError(ValueError):
    """A malformed format string; ``offset`` locates it in the text."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def parse_template(text: str) -> tuple[str | Field, ...]:
    """Split a format string into literal text and :class:`Field` references."""
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as e:
        raise TemplateError(f"malformed format string: {e} (write '{{{{' or '}}}}' for a literal brace)",
                            _first_bad_brace(text)) from None
    out: list[str | Field] = []
    pos = 0  # where the next piece starts in ``text``
    for literal, name, spec, conversion in pieces:
        if literal:
            out.append(literal)
            # Every brace in a literal piece was written doubled.
            pos += len(literal) + literal.count("{") + literal.count("}")
        if name is None:
            continue
        offset = pos
        pos = text.find("}", pos) + 1
        if conversion or (spec and spec != "q"):
            raise TemplateError(f"unsupported format in '{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}'", offset)
        m = _FIELD.match(name)
        if not m:
            raise TemplateError(f"cannot read field '{{{name}}}'", offset)
        root, attr, index = m.group(1), m.group(2), m.group(3)
        out.append(Field(root, attr, int(index) if index is not None else None, name, offset))
    return tuple(out)


def _first_bad_brace(text: str) -> int:
    depth_open = -1
    i = 0
    while i < len(text):
        c = text[i]
        if c in "{}" and text[i + 1:i + 2] == c:
            i += 2
            continue
        if c == "{":
            depth_open = i
        elif c == "}":
            if depth_open < 0:
                return i
            depth_open = -1
        i += 1
    return max(depth_open, 0)
