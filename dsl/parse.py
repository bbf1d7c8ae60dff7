"""Wffile → :class:`~dsl.model.Workflow`.

Statements are read in order (variables and config must be defined before
use, as in Python). Mistakes are collected per statement and raised once,
each as ``FILE:LINE:COL: error: …``.
"""

from __future__ import annotations

import copy
import linecache
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from lark import Token, Tree

from .catalog import read_catalog
from .checks import normalize_sha256
from .errors import ErrorCollector, SourcePos, WffileError, did_you_mean
from .model import (
    RULE_DIRECTIVES,
    Container,
    ContainerRef,
    Item,
    Param,
    Replica,
    Rule,
    Workflow,
)
from .syntax import parse_text
from .template import ROOTS, Field, TemplateError, parse_template
from .values import Evaluator, Flagged, decode_string, pos_of, type_name, wildcards_in

STATEMENTS = ("configfile", "include", "wildcard_constraints", "replicas", "localrules")
BLOCKS = ("rule", "container", "replica")
REPLICA_KEYS = ("url", "sha256", "site")
CONTAINER_KEYS = ("image", "sha256", "type")
#: Resources whose value is text: per-rule settings of the Slurm backend.
TEXT_RESOURCES = ("slurm_partition", "slurm_account", "slurm_extra")
CONTAINER_TYPES = ("docker", "oci", "singularity")

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_WILDCARD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INLINE_CONSTRAINT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*),((?:[^{}]|\{[^{}]*\})*)\}")


class _Poisoned(Exception):
    """Evaluation touched a variable whose own definition already failed."""


def parse_config_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings (values read as YAML scalars) → a mapping."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WffileError.at(None, f"--config expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.load(value, Loader=_SafeLoader) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def load_workflow(path: str, config_overrides: Mapping[str, Any] | None = None) -> Workflow:
    """Parse the Wffile at ``path`` (and what it includes) into a Workflow."""
    loader = _Loader(dict(config_overrides or {}))
    if not os.path.isfile(path):
        raise WffileError.at(None, f"no Wffile at '{path}'")
    loader.load_file(path, None)
    return loader.finish(path)


def parse_string(text: str, path: str = "Wffile",
                 config_overrides: Mapping[str, Any] | None = None) -> Workflow:
    """Parse Wffile source text (``path`` is used for positions and relative files)."""
    loader = _Loader(dict(config_overrides or {}))
    loader.load_text(text, path)
    return loader.finish(path)


class _Loader:
    def __init__(self, overrides: dict[str, Any]):
        self.overrides = overrides
        self.config: dict[str, Any] = {}
        _merge(self.config, overrides)
        self.variables: dict[str, Any] = {}
        self.poisoned: set[str] = set()
        self.errors = ErrorCollector()
        self.rules: list[Rule] = []
        self.rule_pos: dict[str, SourcePos] = {}
        self.replicas: dict[str, Replica] = {}
        self.containers: dict[str, Container] = {}
        self.constraints: dict[str, str] = {}
        self.localrules: list[tuple[str, SourcePos]] = []
        self.stack: list[str] = []
        self.sources: list[str] = []

    # -- files -------------------------------------------------------------
    def load_file(self, path: str, where: SourcePos | None) -> None:
        real = os.path.realpath(path)
        if real in self.stack:
            self.errors.add(where, f"'{path}' includes itself")
            return
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            self.errors.add(where, f"cannot read '{path}': {getattr(e, 'strerror', None) or e}")
            return
        self.stack.append(real)
        try:
            self.load_text(text, path)
        finally:
            self.stack.pop()

    def load_text(self, text: str, path: str) -> None:
        self.sources.append(path)
        # Errors are shown with the text that was parsed (also for parse_string,
        # whose text is on no disk); an mtime of None keeps checkcache off it.
        lines = [line + "\n" for line in text.split("\n")]  # lines as lark counts them
        linecache.cache[path] = (len(text), None, lines, path)
        try:
            tree = parse_text(text, path)
        except WffileError as e:
            self.errors.diagnostics.extend(e.diagnostics)
            return
        for stmt in tree.children:
            if not isinstance(stmt, Tree):
                continue
            try:
                self.statement(stmt, path)
            except WffileError as e:
                self.errors.diagnostics.extend(e.diagnostics)
            except _Poisoned:
                pass

    # -- statements ----------------------------------------------------------
    def ev(self, path: str) -> Evaluator:
        return _PoisonAwareEvaluator(path, self.variables, self.config, self.poisoned)

    def statement(self, stmt: Tree, path: str) -> None:
        kind = stmt.data
        if kind == "assign":
            name_tok, expr = stmt.children
            name = str(name_tok)
            if name in ("config",) or name in BLOCKS + STATEMENTS:
                raise WffileError.at(pos_of(path, name_tok), f"'{name}' is a reserved word and cannot be assigned")
            try:
                self.variables[name] = self.ev(path).eval(expr)
                self.poisoned.discard(name)
            except (WffileError, _Poisoned):
                self.poisoned.add(name)
                raise
        elif kind == "keyword":
            self.keyword(stmt, path)
        elif kind == "named_block":
            self.named_block(stmt, path)
        elif kind == "string_block":
            self.string_block(stmt, path)

    def keyword(self, stmt: Tree, path: str) -> None:
        name_tok, body = stmt.children
        name = str(name_tok)
        where = pos_of(path, name_tok)
        if name not in STATEMENTS:
            if name in BLOCKS:
                raise WffileError.at(where, f"'{name}' needs a name: write '{name} NAME:'")
            hint = did_you_mean(name, STATEMENTS + BLOCKS)
            raise WffileError.at(where, f"unknown statement '{name}:'{hint}")
        if name == "wildcard_constraints":
            for arg in self.args(body, path, name):
                if not (isinstance(arg, Tree) and arg.data == "named_arg"):
                    raise WffileError.at(pos_of(path, arg), "wildcard_constraints: expects name = \"regex\" lines")
                self.constraint(arg, path)
            return
        if name == "localrules":
            for arg in self.args(body, path, name):
                if not (isinstance(arg, Tree) and arg.data == "var"):
                    raise WffileError.at(pos_of(path, arg), "localrules: expects rule names")
                self.localrules.append((str(arg.children[0]), pos_of(path, arg)))
            return
        value, vnode = self.single(body, path, name)
        if not isinstance(value, str):
            raise WffileError.at(pos_of(path, vnode), f"{name}: expects a file name (a string), not a {type_name(value)}")
        target = os.path.join(os.path.dirname(path), value)
        vpos = pos_of(path, vnode)
        if name == "include":
            if not os.path.isfile(target):
                raise WffileError.at(vpos, f"included file '{value}' not found")
            self.load_file(target, vpos)
        elif name == "configfile":
            self.load_config(target, value, vpos)
        elif name == "replicas":
            for rep in read_catalog(target, vpos):
                self.add_replica(rep)

    def constraint(self, arg: Tree, path: str) -> None:
        key = str(arg.children[0])
        value = self.ev(path).eval(arg.children[1])
        if not isinstance(value, str):
            raise WffileError.at(pos_of(path, arg.children[1]), f"constraint for '{key}' must be a regex string")
        try:
            re.compile(value)
        except re.error as e:
            raise WffileError.at(pos_of(path, arg.children[1]), f"invalid regex for wildcard '{key}': {e}") from None
        self.constraints[key] = value

    def load_config(self, target: str, shown: str, where: SourcePos) -> None:
        if not os.path.isfile(target):
            raise WffileError.at(where, f"config file '{shown}' not found")
        try:
            with open(target, encoding="utf-8") as fh:
                data = yaml.load(fh, Loader=_SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            pos = SourcePos(target, mark.line + 1, mark.column + 1) if mark else where
            raise WffileError.at(pos, f"config file is not valid YAML: {getattr(e, 'problem', e)}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise WffileError.at(where, f"config file '{shown}' must hold a mapping, not a {type_name(data)}")
        _merge(self.config, data)
        _merge(self.config, self.overrides)

    def add_replica(self, rep: Replica) -> None:
        old = self.replicas.get(rep.lfn)
        if old is not None and (old.url, old.sha256) != (rep.url, rep.sha256):
            raise WffileError.at(rep.pos, f"replica '{rep.lfn}' declared twice (first at {old.pos})")
        self.replicas[rep.lfn] = rep

    def named_block(self, stmt: Tree, path: str) -> None:
        kind_tok, name_tok, body = stmt.children
        kind, name = str(kind_tok), str(name_tok)
        where = pos_of(path, kind_tok)
        if kind == "rule":
            self.rule(name, where, body, path)
        elif kind == "container":
            self.container(name, where, body, path)
        elif kind == "replica":
            raise WffileError.at(pos_of(path, name_tok), "a replica is named by its file, in quotes: replica \"data/x.txt\":")
        else:
            raise WffileError.at(where, f"unknown block '{kind}'{did_you_mean(kind, BLOCKS)}")

    def string_block(self, stmt: Tree, path: str) -> None:
        kind_tok, lfn_tok, body = stmt.children
        kind = str(kind_tok)
        where = pos_of(path, kind_tok)
        if kind != "replica":
            raise WffileError.at(where, f"unknown block '{kind}'{did_you_mean(kind, BLOCKS)}")
        lfn = decode_string(lfn_tok, path)
        fields = self.block_fields(body, path, "replica", REPLICA_KEYS)
        values: dict[str, str | None] = {}
        for key, (value, vnode) in fields.items():
            if not isinstance(value, str):
                raise WffileError.at(pos_of(path, vnode), f"replica {key}: expects a string, not a {type_name(value)}")
            values[key] = value
        sha = values.get("sha256")
        if sha is not None:
            norm = normalize_sha256(sha)
            if norm is None:
                raise WffileError.at(pos_of(path, fields["sha256"][1]),
                                     f"sha256 of replica '{lfn}' is not 64 hex digits: {sha!r}")
            sha = norm
        self.add_replica(Replica(lfn, values.get("url"), sha, values.get("site"), where))

    def container(self, name: str, where: SourcePos, body: Tree, path: str) -> None:
        fields = self.block_fields(body, path, f"container {name}", CONTAINER_KEYS)
        if "image" not in fields:
            raise WffileError.at(where, f"container '{name}' needs an image: line")
        values: dict[str, str] = {}
        for key, (value, vnode) in fields.items():
            if not isinstance(value, str):
                raise WffileError.at(pos_of(path, vnode), f"container {key}: expects a string, not a {type_name(value)}")
            values[key] = value
        sha = values.get("sha256")
        if sha is not None and normalize_sha256(sha) is None:
            raise WffileError.at(pos_of(path, fields["sha256"][1]),
                                 f"sha256 of container '{name}' is not 64 hex digits: {sha!r}")
        kind = values.get("type")
        if kind is not None and kind not in CONTAINER_TYPES:
            raise WffileError.at(pos_of(path, fields["type"][1]),
                                 f"container type must be one of {', '.join(CONTAINER_TYPES)}, not {kind!r}{did_you_mean(kind, CONTAINER_TYPES)}")
        if name in self.containers:
            raise WffileError.at(where, f"container '{name}' declared twice (first at {self.containers[name].pos})")
        self.containers[name] = Container(name, values["image"], normalize_sha256(sha) if sha else None, kind, where)

    # -- bodies ------------------------------------------------------------
    def args(self, body: Tree, path: str, owner: str) -> list[Tree | Token]:
        """The items of a directive body, inline or one per block line."""
        if body.data == "inline_body":
            return list(body.children[0].children)
        out: list[Tree | Token] = []
        for line in body.children:
            if line.data == "directive":
                raise WffileError.at(pos_of(path, line.children[0]),
                                     f"unexpected '{line.children[0]}:' inside '{owner}:'")
            out.extend(line.children[0].children)
        return out

    def single(self, body: Tree, path: str, owner: str) -> tuple[Any, Tree | Token]:
        args = self.args(body, path, owner)
        if len(args) != 1 or (isinstance(args[0], Tree) and args[0].data == "named_arg"):
            node = args[1] if len(args) > 1 else args[0]
            raise WffileError.at(pos_of(path, node), f"{owner}: expects exactly one value")
        return self.ev(path).eval(args[0]), args[0]

    def directives(self, body: Tree, path: str, owner: str) -> list[Tree]:
        if body.data != "block_body":
            raise WffileError.at(pos_of(path, body), f"{owner} needs an indented block of directives")
        out = []
        for line in body.children:
            if line.data != "directive":
                raise WffileError.at(pos_of(path, line), f"expected a directive ('name: value') in {owner}")
            out.append(line)
        return out

    def block_fields(self, body: Tree, path: str, owner: str,
                     keys: tuple[str, ...]) -> dict[str, tuple[Any, Tree | Token]]:
        fields: dict[str, tuple[Any, Tree | Token]] = {}
        for d in self.directives(body, path, owner):
            key = str(d.children[0])
            kpos = pos_of(path, d.children[0])
            if key not in keys:
                raise WffileError.at(kpos, f"unknown key '{key}' in {owner}{did_you_mean(key, keys)} (known: {', '.join(keys)})")
            if key in fields:
                raise WffileError.at(kpos, f"'{key}:' given twice in {owner}")
            fields[key] = self.single(d.children[1], path, key)
        return fields

    # -- rules -------------------------------------------------------------
    def rule(self, name: str, where: SourcePos, body: Tree, path: str) -> None:
        if name in self.rule_pos:
            raise WffileError.at(where, f"rule '{name}' defined twice (first at {self.rule_pos[name]})")
        self.rule_pos[name] = where
        kw: dict[str, Any] = {}
        positions: dict[str, SourcePos] = {}
        shell_tok: dict[str, Token | Tree] = {}
        rule_errors = ErrorCollector()
        poisoned = False
        for d in self.directives(body, path, f"rule '{name}'"):
            key = str(d.children[0])
            kpos = pos_of(path, d.children[0])
            if key not in RULE_DIRECTIVES:
                rule_errors.add(kpos, f"unknown directive '{key}' in rule '{name}'{did_you_mean(key, RULE_DIRECTIVES)}")
                continue
            if key in positions:
                rule_errors.add(kpos, f"'{key}:' given twice in rule '{name}'")
                continue
            positions[key] = kpos
            try:
                kw.update(self.directive(key, d.children[1], path, name, shell_tok))
            except WffileError as e:
                rule_errors.diagnostics.extend(e.diagnostics)
            except _Poisoned:
                poisoned = True
        rule_errors.raise_if_any()
        if poisoned:
            # A variable it uses is already reported; checking what is left would
            # only add errors that follow from that one.
            return
        rule = Rule(name=name, pos=where, positions=positions, **kw)
        self.check_wildcards(rule, path, shell_tok)
        self.rules.append(rule)

    def directive(self, key: str, body: Tree, path: str, rule: str,
                  shell_tok: dict[str, Token | Tree]) -> dict[str, Any]:
        ev = self.ev(path)
        if key in ("input", "output", "log"):
            return {key: self.items(key, body, path, rule)}
        if key == "params":
            params = []
            seen = set()
            for arg in self.args(body, path, key):
                if not (isinstance(arg, Tree) and arg.data == "named_arg"):
                    raise WffileError.at(pos_of(path, arg), "params: items need a name (name=value)")
                pname = str(arg.children[0])
                if pname in seen:
                    raise WffileError.at(pos_of(path, arg), f"params: '{pname}' given twice")
                seen.add(pname)
                value = ev.eval(arg.children[1])
                if isinstance(value, Flagged):
                    raise WffileError.at(pos_of(path, arg.children[1]), f"{value.flag}() is only meaningful in output:")
                params.append(Param(pname, _freeze(value), pos_of(path, arg)))
            return {"params": tuple(params)}
        if key in ("threads", "retries", "priority"):
            value, node = self.single(body, path, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise WffileError.at(pos_of(path, node), f"{key}: expects an integer, not a {type_name(value)}")
            low = {"threads": 1, "retries": 0}.get(key)
            if low is not None and value < low:
                raise WffileError.at(pos_of(path, node), f"{key}: must be at least {low}, got {value}")
            return {key: value}
        if key == "resources":
            res = []
            for arg in self.args(body, path, key):
                if not (isinstance(arg, Tree) and arg.data == "named_arg"):
                    raise WffileError.at(pos_of(path, arg), "resources: items are name=integer")
                value = ev.eval(arg.children[1])
                if str(arg.children[0]) in TEXT_RESOURCES:
                    # Per-rule batch-system settings (the Slurm backend), the only text resources.
                    if not isinstance(value, str) or not value.strip():
                        raise WffileError.at(pos_of(path, arg.children[1]),
                                             f"resource '{arg.children[0]}' must be a non-empty string, not {value!r}")
                    res.append((str(arg.children[0]), value))
                    continue
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise WffileError.at(pos_of(path, arg.children[1]),
                                         f"resource '{arg.children[0]}' must be a non-negative integer, not {value!r}")
                res.append((str(arg.children[0]), value))
            return {"resources": tuple(res)}
        if key == "container":
            args = self.args(body, path, key)
            if len(args) != 1:
                raise WffileError.at(pos_of(path, body), "container: expects one container name or image path")
            node = args[0]
            npos = pos_of(path, node)
            if isinstance(node, Tree) and node.data == "var":
                cname = str(node.children[0])
                value = self.variables.get(cname)
                if isinstance(value, str) and cname not in self.containers:
                    return {"container": ContainerRef(None, value, npos)}
                return {"container": ContainerRef(cname, None, npos)}
            value = ev.eval(node)
            if not isinstance(value, str):
                raise WffileError.at(npos, f"container: expects a name or an image path, not a {type_name(value)}")
            return {"container": ContainerRef(None, value, npos)}
        # message, shell
        value, node = self.single(body, path, key)
        if not isinstance(value, str):
            raise WffileError.at(pos_of(path, node), f"{key}: expects a string, not a {type_name(value)}")
        if isinstance(node, Tree) and node.data == "string":
            value = decode_string(node.children[0], path, dedent=True)
        shell_tok[key] = node
        return {key: value}

    def items(self, key: str, body: Tree, path: str, rule: str) -> tuple[Item, ...]:
        out: list[Item] = []
        names: set[str] = set()
        ev = self.ev(path)
        for arg in self.args(body, path, key):
            name = None
            expr = arg
            if isinstance(arg, Tree) and arg.data == "named_arg":
                name = str(arg.children[0])
                expr = arg.children[1]
                if name in names:
                    raise WffileError.at(pos_of(path, arg), f"{key}: '{name}' given twice")
                if name in ("index", "count"):
                    raise WffileError.at(pos_of(path, arg), f"{key}: '{name}' is a reserved name")
                names.add(name)
            value = ev.eval(expr)
            ipos = pos_of(path, arg)
            values: list[str] = []
            flags: list[str | None] = []
            self._flatten(value, None, values, flags, ipos, key)
            if key != "output" and any(flags):
                flag = next(f for f in flags if f)
                raise WffileError.at(ipos, f"{flag}() is only meaningful in output:")
            is_list = isinstance(value, list) or (isinstance(value, Flagged) and isinstance(value.value, list))
            out.append(Item(name, tuple(values), ipos,
                            tuple(flags) if any(flags) else (), is_list))
        return tuple(out)

    def _flatten(self, value: Any, flag: str | None, values: list[str],
                 flags: list[str | None], pos: SourcePos, key: str) -> None:
        if isinstance(value, Flagged):
            if flag is not None and flag != value.flag:
                raise WffileError.at(pos, f"a file cannot be both {flag}() and {value.flag}()")
            self._flatten(value.value, value.flag, values, flags, pos, key)
        elif isinstance(value, str):
            if not value:
                raise WffileError.at(pos, f"{key}: empty file name")
            values.append(value)
            flags.append(flag)
        elif isinstance(value, list):
            for v in value:
                self._flatten(v, flag, values, flags, pos, key)
        else:
            raise WffileError.at(pos, f"{key}: expects file names (strings), not a {type_name(value)}")

    def check_wildcards(self, rule: Rule, path: str, tokens: dict[str, Token | Tree]) -> None:
        errs = ErrorCollector()
        out_sets: list[tuple[str, list[str], SourcePos]] = []
        for item in rule.output:
            for v in item.values:
                out_sets.append((v, wildcards_in(v), item.pos))
                for m in _INLINE_CONSTRAINT.finditer(v):
                    try:
                        re.compile(m.group(2))
                    except re.error as e:
                        errs.add(item.pos, f"invalid regex for wildcard '{m.group(1)}' in {v!r}: {e}")
        wildcards = set(out_sets[0][1]) if out_sets else set()
        for v, names, pos in out_sets[1:]:
            if set(names) != wildcards:
                errs.add(pos, f"all outputs of rule '{rule.name}' must have the same wildcards: "
                              f"{v!r} has {{{', '.join(names)}}}, {out_sets[0][0]!r} has {{{', '.join(sorted(wildcards))}}}")
        # One error per item and wildcard, however many values the item expands to.
        for key in ("input", "log"):
            for item in getattr(rule, key):
                missing: dict[str, str] = {}
                for v in item.values:
                    for w in wildcards_in(v):
                        if w not in wildcards:
                            missing.setdefault(w, v)
                for w, v in missing.items():
                    errs.add(item.pos, f"wildcard '{{{w}}}' in {key} {v!r} of rule '{rule.name}' "
                                       f"does not appear in its output{did_you_mean(w, wildcards)}")
        for p in rule.params:
            names = dict.fromkeys(w for s in _strings(p.value) for w in wildcards_in(s))
            for w in names:
                if w not in wildcards:
                    errs.add(p.pos, f"wildcard '{{{w}}}' in params.{p.name} of rule '{rule.name}' "
                                    f"does not appear in its output{did_you_mean(w, wildcards)}")
        if rule.output and rule.shell is None:
            errs.add(rule.pos, f"rule '{rule.name}' has output: but no shell: to make it")
        for key in ("shell", "message"):
            text = getattr(rule, key)
            if text is not None:
                self.check_template(rule, key, text, tokens[key], path, wildcards, errs)
        errs.raise_if_any()

    def check_template(self, rule: Rule, key: str, text: str, node: Tree | Token, path: str,
                       wildcards: set[str], errs: ErrorCollector) -> None:
        tok = node.children[0] if isinstance(node, Tree) and node.data == "string" else None
        try:
            parts = parse_template(text)
        except TemplateError as e:
            errs.add(_pos_in_string(path, tok, node, text, e.offset), f"{key}: {e}")
            return
        named = {
            "input": {i.name for i in rule.input if i.name},
            "output": {i.name for i in rule.output if i.name},
            "log": {i.name for i in rule.log if i.name},
            "params": {p.name for p in rule.params},
            "wildcards": wildcards,
            "resources": {r for r, _ in rule.resources},
        }
        counts = {k: sum(len(i.values) for i in getattr(rule, k)) for k in ("input", "output", "log")}
        for part in parts:
            if not isinstance(part, Field):
                continue
            fpos = _pos_in_string(path, tok, node, text, part.offset)
            if part.root not in ROOTS:
                errs.add(fpos, f"unknown field '{{{part.text}}}' in {key}{did_you_mean(part.root, ROOTS)} "
                               f"(fields: {', '.join(ROOTS)})")
                continue
            if part.attr is not None:
                if part.root == "threads":
                    errs.add(fpos, "'{threads}' has no attributes")
                elif part.attr not in named[part.root]:
                    what = {"wildcards": "wildcard"}.get(part.root, f"named {part.root}")
                    known = ", ".join(sorted(named[part.root])) or "none"
                    errs.add(fpos, f"rule '{rule.name}' has no {what} '{part.attr}' for '{{{part.text}}}'"
                                   f"{did_you_mean(part.attr, named[part.root])} (known: {known})")
            elif part.root in ("params", "wildcards", "resources"):
                errs.add(fpos, f"'{{{part.root}}}' needs a name: '{{{part.root}.NAME}}'")
            if part.index is not None and part.attr is None and part.root in counts:
                n = counts[part.root]
                if not -n <= part.index < n:
                    errs.add(fpos, f"'{{{part.text}}}' is out of range: rule '{rule.name}' has {n} {part.root} file(s)")

    # -- the end -------------------------------------------------------------
    def finish(self, path: str) -> Workflow:
        names = [r.name for r in self.rules]
        local = set()
        for rname, pos in self.localrules:
            if rname not in self.rule_pos:
                self.errors.add(pos, f"localrules: no rule named '{rname}'{did_you_mean(rname, names)}")
            local.add(rname)
        rules = []
        for r in self.rules:
            c = r.container
            if c is not None and c.name is not None and c.name not in self.containers:
                self.errors.add(c.pos, f"container '{c.name}' is not declared{did_you_mean(c.name, self.containers)}"
                                       f" (declare it with 'container {c.name}:' or give an image path in quotes)")
            elif c is not None and c.image is not None and c.image in self.containers:
                c = ContainerRef(c.image, None, c.pos)
            rules.append(_replace(r, container=c, local=r.name in local))
        for cname, value in self.constraints.items():
            if not _WILDCARD_NAME.fullmatch(cname):
                self.errors.add(None, f"bad wildcard name {cname!r}")
            del value
        self.errors.raise_if_any()
        return Workflow(
            path=path,
            basedir=os.path.dirname(os.path.abspath(path)),
            rules=tuple(rules),
            replicas=self.replicas,
            containers=self.containers,
            config=self.config,
            wildcard_constraints=self.constraints,
            localrules=frozenset(local),
            sources=tuple(self.sources),
        )


class _PoisonAwareEvaluator(Evaluator):
    def __init__(self, path: str, variables: dict[str, Any], config: Mapping[str, Any],
                 poisoned: set[str]):
        super().__init__(path, variables, config)
        self.poisoned = poisoned

    def _eval_var(self, node: Tree) -> Any:
        if str(node.children[0]) in self.poisoned:
            raise _Poisoned()
        return super()._eval_var(node)


def _replace(rule: Rule, **changes: Any) -> Rule:
    from dataclasses import replace
    return replace(rule, **changes)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    # Copies, so that merging a config file later never alters the --config overrides.
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    return value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _strings(v)


def _pos_in_string(path: str, tok: Token | None, node: Tree | Token, text: str, offset: int) -> SourcePos:
    """Where ``text[offset]`` was written, when the string is a plain literal."""
    if tok is None:
        return pos_of(path, node)
    raw = str(tok)
    needle = text[offset:offset + 12].split("\n", 1)[0]
    if not needle:
        return pos_of(path, tok)
    # The same text may occur more than once ("{a} {"): take the occurrence with
    # as many like it before it in the raw literal as in the decoded text.
    idx = raw.find(needle, 1)
    for _ in range(_count(text[:offset], needle)):
        idx = raw.find(needle, idx + 1) if idx >= 0 else -1
    if idx < 0:
        return pos_of(path, tok)
    before = raw[:idx]
    line = (tok.line or 1) + before.count("\n")
    col = (tok.column or 1) + idx if "\n" not in before else len(before) - before.rfind("\n")
    return SourcePos(path, line, col)


def _count(text: str, needle: str) -> int:
    """Occurrences of ``needle`` in ``text``, overlapping ones included."""
    n, i = 0, text.find(needle)
    while i >= 0:
        n, i = n + 1, text.find(needle, i + 1)
    return n
