"""Source positions and Wffile errors rendered as ``FILE:LINE:COL: error: …``.

Mistakes in a Wffile are exceptions (STYLE.md rule 5). Several can be
collected and raised once, so the user sees every problem in one go.
"""

from __future__ import annotations

import difflib
import linecache
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourcePos:
    """Where something was written: file, 1-based line and column."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error message, with the position it refers to (if any)."""

    message: str
    pos: SourcePos | None = None

    def render(self) -> str:
        """Render as ``FILE:LINE:COL: error: message``, the line and a caret."""
        if self.pos is None:
            return f"error: {self.message}"
        head = f"{self.pos}: error: {self.message}"
        linecache.checkcache(self.pos.path)  # the file may have changed since it was cached
        line = linecache.getline(self.pos.path, self.pos.line).rstrip("\r\n")
        if not line:
            return head
        # Tabs are kept so the caret lines up under the same character.
        lead = "".join(c if c == "\t" else " " for c in line[: max(self.pos.col - 1, 0)])
        return f"{head}\n    {line}\n    {lead}^"


class WffileError(Exception):
    """One or more mistakes in a Wffile (exit code 2)."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.render())

    @classmethod
    def at(cls, pos: SourcePos | None, message: str) -> WffileError:
        """A single error at ``pos``."""
        return cls([Diagnostic(message, pos)])

    def render(self) -> str:
        """All diagnostics, each with its source line and caret."""
        return "\n".join(d.render() for d in self.diagnostics)


class ErrorCollector:
    """Collects diagnostics and raises them together."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def add(self, pos: SourcePos | None, message: str) -> None:
        """Record one mistake."""
        self.diagnostics.append(Diagnostic(message, pos))

    def raise_if_any(self) -> None:
        """Raise a WffileError holding everything collected, if anything was."""
        if self.diagnostics:
            raise WffileError(self.diagnostics)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
