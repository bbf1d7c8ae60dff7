"""The lark parser for Wffiles, and syntax errors turned into positioned errors."""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.indenter import DedentError, Indenter

from grammar import grammar_text

from .errors import SourcePos, WffileError

_TOKEN_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "COLON": "':'",
    "EQUAL": "'='",
    "COMMA": "','",
    "PLUS": "'+'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "_NEWLINE": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of block",
    "$END": "end of file",
}


class _DedentAt(Exception):
    """A dedent to a level that matches no outer block, with where it happened."""

    def __init__(self, line: int, col: int):
        self.line, self.col = line, col


class _WfIndenter(Indenter):
    NL_type = "_NEWLINE"
    OPEN_PAREN_types = ["LPAR", "LSQB", "LBRACE"]
    CLOSE_PAREN_types = ["RPAR", "RSQB", "RBRACE"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def process(self, stream):
        self.open_brackets: list[Token] = []
        return super().process(self._track(stream))

    def _track(self, stream):
        # Unclosed brackets are remembered so that an error can point at them.
        for token in stream:
            if token.type in self.OPEN_PAREN_types:
                self.open_brackets.append(token)
            elif token.type in self.CLOSE_PAREN_types and self.open_brackets:
                self.open_brackets.pop()
            yield token

    def handle_NL(self, token: Token):
        # lark's DedentError carries no position; attach the line it happened on.
        try:
            yield from super().handle_NL(token)
        except DedentError:
            indent = token.rsplit("\n", 1)[1]
            raise _DedentAt(token.end_line or token.line, len(indent) + 1) from None


_INDENTER = _WfIndenter()


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        postlex=_INDENTER,
        propagate_positions=True,
        maybe_placeholders=False,
        # Building the LALR tables costs ~0.1 s per wf command; lark keeps
        # them in a cache file keyed by the grammar's hash (loads in ~7 ms).
        cache=True,
    )


def _describe(token: Token) -> str:
    if token.type in _TOKEN_WORDS and token.type not in ("NAME", "STRING", "NUMBER"):
        return _TOKEN_WORDS[token.type]
    return f"'{token}'"


def _expected(names: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(n, n) for n in names if n != "COMMENT"})
    if not words:
        return ""
    if len(words) > 6:
        words = words[:6] + ["…"]
    return "; expected " + ", ".join(words)


def parse_text(text: str, path: str) -> Tree:
    """Parse Wffile source into a lark tree, or raise a positioned WffileError."""
    if not text.endswith("\n"):
        text += "\n"
    # The indenter only sees indentation after a newline; the first line's is checked here.
    first = re.match(r"[\t ]+(?=[^\s#\\])", text)
    if first:
        raise WffileError.at(SourcePos(path, 1, first.end() + 1), "unexpected indent")
    try:
        return _parser().parse(text)
    except _DedentAt as e:
        raise WffileError.at(
            SourcePos(path, e.line, e.col),
            "unindent does not match any outer indentation level",
        ) from None
    except UnexpectedCharacters as e:
        at = e.pos_in_stream
        ch = text[at] if at is not None else "?"
        col = e.column
        if ch in "\"'" and at is not None and at >= 2 and text[at - 2:at] == ch * 2:
            # An unclosed """ lexes as "" and then an unclosed "; point at the first quote.
            msg, col = "unterminated triple-quoted string", col - 2
        elif ch in "\"'":
            msg = "unterminated string"
        elif ch == "\t" or ch == " ":
            msg = "unexpected whitespace"
        else:
            msg = f"unexpected character {ch!r}"
        raise WffileError.at(SourcePos(path, e.line, col), msg) from None
    except UnexpectedToken as e:
        tok = e.token
        line, col = tok.line or 1, tok.column or 1
        # Inside brackets the indenter emits no newlines, so a dedent is the end of file.
        if _INDENTER.open_brackets and tok.type in ("_DEDENT", "$END"):
            raise _unclosed(path, _INDENTER.open_brackets[-1]) from None
        if tok.type in ("_INDENT", "_DEDENT"):
            line = tok.end_line or line
            col = (tok.end_column or col)
            what = "unexpected indent" if tok.type == "_INDENT" else "unexpected end of block"
        elif tok.type == "$END":
            what = "unexpected end of file"
            line = text.count("\n")
            col = 1
        else:
            what = f"unexpected {_describe(tok)}"
        hint = "" if tok.type in ("_INDENT", "_DEDENT") else _expected(e.expected)
        opened = _INDENTER.open_brackets[-1] if _INDENTER.open_brackets else None
        if opened is not None and opened.line != line:
            if _starts_statement(text, tok, opened):
                # The next statement began inside the bracket: the bracket is the mistake.
                raise _unclosed(path, opened) from None
            hint += f" (inside the '{opened}' opened at {SourcePos(path, opened.line, opened.column)})"
        raise WffileError.at(SourcePos(path, line, col), what + hint) from None
    except UnexpectedEOF as e:
        if _INDENTER.open_brackets:
            raise _unclosed(path, _INDENTER.open_brackets[-1]) from None
        raise WffileError.at(
            SourcePos(path, max(text.count("\n"), 1), 1),
            "unexpected end of file" + _expected(set(e.expected)),
        ) from None
    except UnexpectedInput as e:  # any other lark input error still gets a position
        raise WffileError.at(SourcePos(path, e.line, e.column), "syntax error") from None


def _unclosed(path: str, bracket: Token) -> WffileError:
    return WffileError.at(SourcePos(path, bracket.line or 1, bracket.column or 1),
                          f"'{bracket}' was never closed")


def _starts_statement(text: str, tok: Token, opened: Token) -> bool:
    """Whether ``tok`` begins a line indented no deeper than the line of ``opened``."""
    lines = text.split("\n")
    line, start = lines[(tok.line or 1) - 1], lines[(opened.line or 1) - 1]
    before = line[: (tok.column or 1) - 1]
    return not before.strip() and len(before) <= len(start) - len(start.lstrip(" \t"))
