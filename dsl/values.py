"""Evaluating Wffile expressions: literals, variables, config, ``+``, calls.

No Python is executed: the only functions are ``expand``, ``temp`` and
``protected``. Values are str, int, float, bool, list, dict, or a
:class:`Flagged` file pattern.
"""

from __future__ import annotations

import ast
import itertools
import re
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lark import Token, Tree

from .errors import SourcePos, WffileError, did_you_mean
from .model import PROTECTED, TEMP

FUNCTIONS = ("expand", "temp", "protected")
CONSTANTS = {"True": True, "False": False}

# `{name}` or `{name,regex}`; `{{` and `}}` are literal braces.
_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:,((?:[^{}]|\{[^{}]*\})*))?\}")


@dataclass(frozen=True, slots=True)
class Flagged:
    """A file pattern (or list of them) wrapped in ``temp()`` or ``protected()``."""

    value: Any
    flag: str


def pos_of(path: str, node: Tree | Token) -> SourcePos:
    """The source position of a parse-tree node or token."""
    if isinstance(node, Token):
        return SourcePos(path, node.line or 1, node.column or 1)
    meta = node.meta
    return SourcePos(path, getattr(meta, "line", 1), getattr(meta, "column", 1))


def decode_string(token: Token, path: str, dedent: bool = False) -> str:
    """The value of a STRING token (Python literal rules, prefixes allowed)."""
    try:
        # "\d" in a regex is a Python DeprecationWarning, but it is what users write.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(str(token))
    except (SyntaxError, ValueError) as e:
        # The grammar accepts what Python does not: a bare CR, NUL, a bad \x or \N escape.
        reason = getattr(e, "msg", None) or str(e)
        raise WffileError.at(pos_of(path, token), f"invalid string: {reason}") from None
    if dedent and str(token).lstrip("rR").startswith(('"""', "'''")):
        value = textwrap.dedent(value).strip()
    return value


def type_name(value: Any) -> str:
    """How a value's type is named in error messages."""
    if isinstance(value, Flagged):
        return f"{value.flag}(...)"
    return {str: "string", bool: "boolean", int: "number", float: "decimal number",
            list: "list", dict: "dict"}.get(type(value), type(value).__name__)


class Evaluator:
    """Evaluates expression trees against variables and the config mapping."""

    def __init__(self, path: str, variables: dict[str, Any], config: Mapping[str, Any]):
        self.path = path
        self.variables = variables
        self.config = config

    def error(self, node: Tree | Token, message: str) -> WffileError:
        """A positioned error at ``node``."""
        return WffileError.at(pos_of(self.path, node), message)

    def eval(self, node: Tree | Token) -> Any:
        """The value of an expression node."""
        kind = node.data if isinstance(node, Tree) else node.type
        method = getattr(self, f"_eval_{kind}", None)
        if method is None:
            raise self.error(node, "expected an expression")
        return method(node)

    def _eval_string(self, node: Tree) -> str:
        return decode_string(node.children[0], self.path)

    def _eval_number(self, node: Tree) -> int | float:
        text = str(node.children[0])
        try:
            return int(text)
        except ValueError:
            return float(text)

    def _eval_var(self, node: Tree) -> Any:
        name = str(node.children[0])
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name == "config":
            return dict(self.config)
        if name in self.variables:
            return self.variables[name]
        hint = did_you_mean(name, [*self.variables, "config", *CONSTANTS])
        raise self.error(node, f"undefined variable '{name}'{hint}")

    def _eval_list(self, node: Tree) -> list[Any]:
        if not node.children:
            return []
        return [self.eval(c) for c in node.children[0].children]

    def _eval_dict(self, node: Tree) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        if node.children:
            for item in node.children[0].children:
                key = self.eval(item.children[0])
                if not isinstance(key, str | int | float | bool):
                    raise self.error(item.children[0], f"a dict key must be a string or number, not a {type_name(key)}")
                out[key] = self.eval(item.children[1])
        return out

    def _eval_add(self, node: Tree) -> Any:
        left, right = self.eval(node.children[0]), self.eval(node.children[1])
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        if isinstance(left, int | float) and isinstance(right, int | float) \
                and not isinstance(left, bool) and not isinstance(right, bool):
            return left + right
        raise self.error(node, f"cannot add a {type_name(left)} and a {type_name(right)}")

    def _eval_subscript(self, node: Tree) -> Any:
        target_node, key_node = node.children
        key = self.eval(key_node)
        root = target_node
        while isinstance(root, Tree) and root.data == "subscript":
            root = root.children[0]
        # config["a"]["b"] is a config look-up too, and is reported as one.
        is_config = isinstance(root, Tree) and root.data == "var" and str(root.children[0]) == "config"
        target = self.config if is_config and root is target_node else self.eval(target_node)
        if isinstance(target, Mapping):
            if not isinstance(key, str | int | float | bool):
                raise self.error(key_node, f"a dict key must be a string or number, not a {type_name(key)}")
            if key in target:
                return target[key]
            if is_config:
                known = ", ".join(sorted(map(str, target))) or "none"
                raise self.error(key_node, f"config key {key!r} is not defined{did_you_mean(str(key), map(str, target))} (defined: {known})")
            raise self.error(key_node, f"key {key!r} is not in the dict{did_you_mean(str(key), map(str, target))}")
        if isinstance(target, list):
            if not isinstance(key, int) or isinstance(key, bool):
                raise self.error(key_node, f"a list index must be an integer, not a {type_name(key)}")
            if not -len(target) <= key < len(target):
                raise self.error(key_node, f"index {key} is out of range for a list of {len(target)}")
            return target[key]
        raise self.error(node, f"a {type_name(target)} cannot be indexed")

    def _eval_call(self, node: Tree) -> Any:
        name_tok = node.children[0]
        name = str(name_tok)
        args: list[tuple[Tree | Token, Any]] = []
        kwargs: dict[str, tuple[Tree | Token, Any]] = {}
        if len(node.children) > 1:
            for arg in node.children[1].children:
                if isinstance(arg, Tree) and arg.data == "named_arg":
                    kwargs[str(arg.children[0])] = (arg, self.eval(arg.children[1]))
                else:
                    args.append((arg, self.eval(arg)))
        if name in (TEMP, PROTECTED):
            if len(args) != 1 or kwargs:
                raise self.error(node, f"{name}() takes exactly one file pattern")
            value = args[0][1]
            if not _is_patterns(value):
                raise self.error(args[0][0], f"{name}() wraps a file pattern or a list of them, not a {type_name(value)}")
            return Flagged(value, name)
        if name == "expand":
            return self._expand(node, args, kwargs)
        raise self.error(name_tok, f"unknown function '{name}'{did_you_mean(name, FUNCTIONS)} (known: {', '.join(FUNCTIONS)})")

    def _expand(self, node: Tree, args: list, kwargs: dict) -> list[str]:
        if len(args) != 1:
            raise self.error(node, "expand() takes one pattern (or list of patterns) and name=list arguments")
        pat_node, patterns = args[0]
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise self.error(pat_node, f"expand() needs a string pattern, not a {type_name(patterns)}")
        allow_missing = False
        if "allow_missing" in kwargs:
            allow_missing = bool(kwargs.pop("allow_missing")[1])
        names = list(kwargs)
        lists: list[list[str]] = []
        for key in names:
            arg_node, value = kwargs[key]
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
                raise self.error(arg_node, f"expand(): {key} must be a string or a list of strings, not a {type_name(value)}")
            lists.append([str(v) for v in value])
        out: list[str] = []
        for pattern in patterns:
            parts = _split_pattern(pattern)
            for part in parts:
                if isinstance(part, tuple) and part[0] not in kwargs and not allow_missing:
                    raise self.error(
                        pat_node,
                        f"expand(): no value for '{{{part[0]}}}' in {pattern!r} "
                        f"(give {part[0]}=[...], or write {{{{{part[0]}}}}} to keep it a wildcard)",
                    )
            index = {n: i for i, n in enumerate(names)}
            for combo in itertools.product(*lists):
                out.append("".join(
                    p if isinstance(p, str)
                    else (combo[index[p[0]]] if p[0] in index else p[1])
                    for p in parts
                ))
        return out


def _split_pattern(pattern: str) -> list[str | tuple[str, str]]:
    """Literal text and ``(name, original_field_text)`` for each ``{field}``."""
    parts: list[str | tuple[str, str]] = []
    last = 0
    for m in _FIELD.finditer(pattern):
        parts.append(pattern[last:m.start()])
        if m.group(0) == "{{":
            parts.append("{")
        elif m.group(0) == "}}":
            parts.append("}")
        else:
            parts.append((m.group(1), m.group(0)))
        last = m.end()
    parts.append(pattern[last:])
    return [p for p in parts if p != ""]


def _is_patterns(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def wildcards_in(pattern: str) -> list[str]:
    """Names of the ``{wildcards}`` in a file pattern, in order, without repeats."""
    seen: list[str] = []
    for m in _FIELD.finditer(pattern):
        name = m.group(1)
        if name and name not in seen:
            seen.append(name)
    return seen
