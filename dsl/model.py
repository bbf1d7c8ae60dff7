"""The workflow model: what a Wffile says, evaluated, with source positions.

Plain frozen dataclasses with no behaviour hidden in them. Variables,
``config[...]`` look-ups and ``expand(...)`` are already evaluated here;
wildcards (``{sample}``) are still present in file patterns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import SourcePos

TEMP = "temp"
PROTECTED = "protected"

#: Directives a rule may carry, in the order WFFILE.md lists them.
RULE_DIRECTIVES = (
    "input",
    "output",
    "params",
    "threads",
    "resources",
    "retries",
    "priority",
    "container",
    "log",
    "message",
    "shell",
)

EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Item:
    """One item of ``input:``, ``output:`` or ``log:``: a pattern or a named list.

    ``flags`` is empty when no value is wrapped in ``temp()``/``protected()``;
    otherwise it holds one flag (or None) per value.
    """

    name: str | None
    values: tuple[str, ...]
    pos: SourcePos
    flags: tuple[str | None, ...] = ()
    is_list: bool = False

    def flag(self, i: int) -> str | None:
        """The flag of value ``i`` (``temp``, ``protected`` or None)."""
        return self.flags[i] if self.flags else None


@dataclass(frozen=True, slots=True)
class Param:
    """One ``params:`` entry: a name and an evaluated value."""

    name: str
    value: Any
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A rule's ``container:``: a declared container name or an image path/URL."""

    name: str | None
    image: str | None
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule with its directives evaluated.

    ``positions`` maps each directive that was written to where it was written.
    """

    name: str
    pos: SourcePos
    input: tuple[Item, ...] = ()
    output: tuple[Item, ...] = ()
    log: tuple[Item, ...] = ()
    params: tuple[Param, ...] = ()
    threads: int = 1
    resources: tuple[tuple[str, int | str], ...] = ()
    retries: int | None = None
    priority: int = 0
    container: ContainerRef | None = None
    message: str | None = None
    shell: str | None = None
    local: bool = False
    positions: Mapping[str, SourcePos] = field(default_factory=lambda: EMPTY)

    def where(self, directive: str) -> SourcePos:
        """Position of ``directive`` if written, else of the rule itself."""
        return self.positions.get(directive, self.pos)


@dataclass(frozen=True, slots=True)
class Replica:
    """A raw input: its logical name, where it lives, and what it must hash to."""

    lfn: str
    url: str | None
    sha256: str | None
    site: str | None
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class Container:
    """A container image declared with ``container NAME:``; an image is data."""

    name: str
    image: str
    sha256: str | None
    kind: str | None
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class Workflow:
    """Everything a Wffile (and its includes, config and catalogs) declares.

    ``basedir`` is the directory of the main Wffile; data paths in rules are
    relative to the working directory chosen at run time, not to it.
    """

    path: str
    basedir: str
    rules: tuple[Rule, ...]
    replicas: Mapping[str, Replica] = field(default_factory=lambda: EMPTY)
    containers: Mapping[str, Container] = field(default_factory=lambda: EMPTY)
    config: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    wildcard_constraints: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    localrules: frozenset[str] = frozenset()
    sources: tuple[str, ...] = ()

    def rule(self, name: str) -> Rule:
        """The rule called ``name`` (KeyError if there is none)."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)
