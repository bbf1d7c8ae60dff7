"""Fault injection for ``--chaos SPEC --chaos-seed N`` (CLI.md).

Transfer faults (``transfer``, ``truncate``, ``silent``) are injected by the
job wrapper into staged copies; ``rest`` is injected here, by the executor,
into an intermediate file after it was produced, keeping its size and
modification time as real bit rot would, so that only a checksum can tell.
Raw inputs at their source are never harmed.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

KINDS = ("transfer", "truncate", "silent", "rest")


class ChaosSpecError(ValueError):
    """A malformed ``--chaos`` value."""


def chaos_option(spec: str | None, seed: int, integrity: str) -> Chaos | None:
    """``--chaos SPEC --chaos-seed N`` as every command takes them.

    Raises ChaosSpecError with the message for the user (prefix it with
    ``error: ``): a malformed SPEC, or chaos without checks, which would let
    the faults go unseen into final outputs.
    """
    if not spec:
        return None
    try:
        chaos = Chaos.parse(spec, seed)
    except ChaosSpecError as e:
        raise ChaosSpecError(f"--chaos: {e}") from None
    if integrity == "none":
        raise ChaosSpecError("--chaos needs --integrity full: with no checks the faults would go "
                             "unseen and reach final outputs")
    return chaos


@dataclass(frozen=True, slots=True)
class Chaos:
    """Probabilities per fault kind and the seed that makes a run reproducible."""

    transfer: float = 0.0
    truncate: float = 0.0
    silent: float = 0.0
    rest: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> Chaos:
        """``transfer=0.1,rest=0.05`` → Chaos; ChaosSpecError on mistakes."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kind, sep, prob = part.partition("=")
            kind = kind.strip()
            if kind not in KINDS:
                raise ChaosSpecError(f"unknown chaos kind {kind!r} (known: {', '.join(KINDS)})")
            try:
                p = float(prob) if sep else 1.0
            except ValueError:
                raise ChaosSpecError(f"chaos {kind}: {prob!r} is not a probability") from None
            if not 0.0 <= p <= 1.0:
                raise ChaosSpecError(f"chaos {kind}: probability must be in [0, 1], got {p}")
            values[kind] = p
        return cls(seed=seed, **values)

    def transfer_spec(self) -> dict[str, float | int] | None:
        """The part of the spec the job wrapper applies to staged copies."""
        if not (self.transfer or self.truncate or self.silent):
            return None
        return {"transfer": self.transfer, "truncate": self.truncate, "silent": self.silent,
                "seed": self.seed}

    def _rng(self, *key: object) -> random.Random:
        digest = hashlib.sha256("\0".join(map(str, (self.seed, *key))).encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def corrupt_at_rest(self, path: str, job_id: str, attempt: int, lfn: str) -> bool:
        """Maybe flip one byte of ``path`` in place; True if it did."""
        rng = self._rng("rest", job_id, attempt, lfn)
        if rng.random() >= self.rest:
            return False
        st = os.stat(path)
        if st.st_size == 0:
            return False
        offset = rng.randrange(st.st_size)
        with open(path, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return True
