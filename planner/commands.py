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
from dataclasses import dataclass
from typing import Any

from dsl.model import Rule
from dsl.template import Field, parse_template

from .patterns import Template, compile_template

Files = Sequence[tuple[str | None, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class JobFiles:
    """A job's files grouped as the rule's items: ``(name or None, [paths])``."""

    input: Files
    output: Files
    log: Files


class RuleCommands:
    """The rule's shell and message templates, parsed once and rendered per job."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.shell = parse_template(rule.shell) if rule.shell is not None else None
        self.message = parse_template(rule.message) if rule.message is not None else None
        self.params: dict[str, Any] = {p.name: _compile_param(p.value) for p in rule.params}
        self.resources = dict(rule.resources)

    def render_shell(self, files: JobFiles, wildcards: Mapping[str, str]) -> str | None:
        """The job's command; None when the rule has no ``shell:``."""
        if self.shell is None:
            return None
        return self._render(self.shell, files, wildcards, shlex.quote)

    def render_message(self, files: JobFiles, wildcards: Mapping[str, str]) -> str | None:
        """The job's message (values not quoted: it is shown, never run)."""
        if self.message is None:
            return None
        return self._render(self.message, files, wildcards, str)

    def _render(self, parts: tuple[str | Field, ...], files: JobFiles,
                wildcards: Mapping[str, str], quote: Callable[[str], str]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            root = part.root
            if root in ("input", "output", "log"):
                groups: Files = getattr(files, root)
                if part.attr is not None:
                    values = next(v for n, v in groups if n == part.attr)
                else:
                    values = [v for _, vs in groups for v in vs]
                if part.index is not None:
                    out.append(quote(values[part.index]))
                elif len(values) == 1:
                    out.append(quote(values[0]))
                else:
                    out.append(" ".join(map(quote, values)))
            elif root == "wildcards":
                out.append(quote(wildcards[part.attr]))  # type: ignore[index]
            elif root == "threads":
                out.append(str(self.rule.threads))
            elif root == "resources":
                out.append(str(self.resources[part.attr]))
            elif root == "params":
                value = _param_value(self.params[part.attr], wildcards)  # type: ignore[index]
                if isinstance(value, list):
                    if part.index is not None:
                        value = [value[part.index]]
                    out.append(" ".join(quote(_scalar(v)) for v in value))
                else:
                    out.append(quote(_scalar(value)))
        return "".join(out)


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
