"""Small validators shared by the Wffile parser and the catalog readers."""

from __future__ import annotations

import re

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def normalize_sha256(value: object) -> str | None:
    """The lower-case checksum if ``value`` is exactly 64 hex digits, else None."""
    if isinstance(value, str) and _SHA256.fullmatch(value):
        return value.lower()
    return None
