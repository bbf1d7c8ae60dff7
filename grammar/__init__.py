"""The Wffile grammar (``wffile.lark``), shipped as package data."""

from pathlib import Path

GRAMMAR_PATH = Path(__file__).with_name("wffile.lark")


def grammar_text() -> str:
    """Return the text of the Wffile lark grammar."""
    return GRAMMAR_PATH.read_text(encoding="utf-8")
