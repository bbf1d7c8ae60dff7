"""Formatting ``shell:`` and ``message:`` for one job, every value shell-quoted.

A sample named ``a b;c`` stays one argument: values are quoted with
:func:`shlex.quote`, never pasted raw. The same renderer serves the planner
(commands with final file names) and the runtime (the same command with
outputs redirected to partial names, so that no half-written file ever sits
under its final name).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from dsl.model import Rule
from dsl.template import Field, parse_template

from .patterns import Template, compile_template

Files = Sequence[tuple[str | None, Sequence[str]]]


class JobFiles(NamedTuple):
    """A job's files grouped as the rule's items: ``(name or None, [paths])``."""

    input: Files
    output: Files
    log: Files


Piece = Callable[[JobFiles, Mapping[str, str]], str]


class RuleCommands:
    """The rule's shell and message templates, compiled once and rendered per job.

    Each ``{field}`` becomes a small function of (files, wildcards), so that
    rendering a job is one join: this runs once per job of million-job plans.
    """

    def __init__(self, rule: Rule):
        self.rule = rule
        self.params: dict[str, Any] = {p.name: _compile_param(p.value) for p in rule.params}
        self.resources = dict(rule.resources)
        self.shell = self._compile(parse_template(rule.shell), shlex.quote) \
            if rule.shell is not None else None
        self.message = self._compile(parse_template(rule.message), str) \
            if rule.message is not None else None

    def render_shell(self, files: JobFiles, wildcards: Mapping[str, str]) -> str | None:
        """The job's command; None when the rule has no ``shell:``."""
        if self.shell is None:
            return None
        return "".join([p if p.__class__ is str else p(files, wildcards) for p in self.shell])

    def render_message(self, files: JobFiles, wildcards: Mapping[str, str]) -> str | None:
        """The job's message (values not quoted: it is shown, never run)."""
        if self.message is None:
            return None
        return "".join([p if p.__class__ is str else p(files, wildcards) for p in self.message])

    def _compile(self, parts: tuple[str | Field, ...], quote: Callable[[str], str]) -> list[str | Piece]:
        return [part if isinstance(part, str) else self._piece(part, quote) for part in parts]

    def _piece(self, part: Field, quote: Callable[[str], str]) -> Piece:
        root, attr, index = part.root, part.attr, part.index
        if root in ("input", "output", "log"):
            def files_piece(files: JobFiles, wildcards: Mapping[str, str]) -> str:
                groups: Files = getattr(files, root)
                if attr is not None:
                    values = next(v for n, v in groups if n == attr)
                elif len(groups) == 1:
                    values = groups[0][1]
                else:
                    values = [v for _, vs in groups for v in vs]
                if index is not None:
                    return quote(values[index])
                if len(values) == 1:
                    return quote(values[0])
                return " ".join(map(quote, values))
            return files_piece
        if root == "wildcards":
            return lambda files, wildcards: quote(wildcards[attr])  # type: ignore[index]
        if root == "threads":
            text = str(self.rule.threads)
            return lambda files, wildcards: text
        if root == "resources":
            text = str(self.resources[attr])
            return lambda files, wildcards: text
        param = self.params[attr]  # type: ignore[index]

        def param_piece(files: JobFiles, wildcards: Mapping[str, str]) -> str:
            value = _param_value(param, wildcards)
            if isinstance(value, list):
                if index is not None:
                    value = [value[index]]
                return " ".join(quote(_scalar(v)) for v in value)
            return quote(_scalar(value))
        return param_piece


def _compile_param(value: Any) -> Any:
    if isinstance(value, str):
        # A param string is a pattern like a file name: ``{{``/``}}`` are
        # literal braces whether or not the string also has a wildcard.
        t = compile_template(value)
        return t if t.wildcards else t.prefix
    if isinstance(value, tuple):
        return [_compile_param(v) for v in value]
    return value


def _param_value(value: Any, wildcards: Mapping[str, str]) -> Any:
    if isinstance(value, Template):
        return value.format(wildcards)
    if isinstance(value, list):
        return [_param_value(v, wildcards) for v in value]
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, tuple):  # a frozen dict: (key, value) pairs
        return " ".join(f"{k}={_scalar(v)}" for k, v in value)
    return str(value)


# The compiled rules of the last workflow seen, as one (workflow, rules) pair
# swapped atomically. The workflow object itself is held and compared with
# ``is``: an id() key would be reused by the next workflow once the first one
# is freed, and re-render that workflow's jobs with another workflow's rules.
_RERENDER: tuple[Any, dict[str, tuple[RuleCommands, list, list, list]]] = (None, {})


def rerender_command(workflow: Any, job: Any, output_paths: Mapping[str, str]) -> str | None:
    """``job``'s command with some outputs written elsewhere (e.g. partial names).

    Used by the runtime so that a command writes to a temporary location and
    only verified files are renamed to their final names.
    """
    global _RERENDER
    cached, rules = _RERENDER
    if cached is not workflow:
        rules = {}
        _RERENDER = (workflow, rules)
    entry = rules.get(job.rule)
    if entry is None:
        rule = workflow.rule(job.rule)
        entry = (
            RuleCommands(rule),
            [(it.name, [compile_template(v) for v in it.values]) for it in rule.input],
            [(it.name, [compile_template(v) for v in it.values]) for it in rule.output],
            [(it.name, [compile_template(v) for v in it.values]) for it in rule.log],
        )
        rules[job.rule] = entry
    commands, ins, outs, logs = entry
    wc = dict(job.wildcards)
    files = JobFiles(
        [(n, [t.format(wc) for t in ts]) for n, ts in ins],
        [(n, [output_paths.get(t.format(wc), t.format(wc)) for t in ts]) for n, ts in outs],
        [(n, [t.format(wc) for t in ts]) for n, ts in logs],
    )
    return commands.render_shell(files, wc)
