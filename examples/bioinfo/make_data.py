"""Make the synthetic inputs of this example (already committed; run to re-create them).

Deterministic: the same files, byte for byte, on every run. A random
reference genome goes to archive/genome.fa (the Wffile declares it as a
replica with its sha256) and 250 reads per sample to data/reads/. Most reads
come from the genome, on either strand, with a few sequencing errors; the
rest are "contamination". Some reads have a low-quality 3' tail and some
are poor throughout, so trimming has work to do.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = {"ctrl1": 0.92, "ctrl2": 0.90, "heat1": 0.75, "heat2": 0.70}  # share from genome
GENOME_LEN = 6000
READS = 250
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def quality(rng: random.Random, n: int) -> str:
    """Phred+33 qualities: mostly good, sometimes a bad tail or a bad read."""
    roll = rng.random()
    if roll < 0.05:
        return "".join(chr(33 + rng.randint(2, 18)) for _ in range(n))
    scores = [rng.randint(28, 40) for _ in range(n)]
    if roll < 0.35:
        tail = rng.randint(5, 25)
        scores[n - tail :] = [rng.randint(2, 15) for _ in range(tail)]
    return "".join(chr(33 + s) for s in scores)


def read(rng: random.Random, genome: str, from_genome: float) -> str:
    n = rng.randint(50, 76)
    if rng.random() < from_genome:
        start = rng.randint(0, len(genome) - n)
        bases = list(genome[start : start + n])
        for i in range(n):
            if rng.random() < 0.01:
                bases[i] = rng.choice("ACGT")
        seq = "".join(bases)
        if rng.random() < 0.5:
            seq = seq.translate(COMPLEMENT)[::-1]
    else:
        seq = "".join(rng.choice("ACGT") for _ in range(n))
    return seq


def main() -> None:
    rng = random.Random(20240611)
    genome = "".join(rng.choice("ACGT") for _ in range(GENOME_LEN))
    lines = [">chrSyn synthetic reference, 6000 bp"]
    lines += [genome[i : i + 60] for i in range(0, GENOME_LEN, 60)]
    (HERE / "archive").mkdir(exist_ok=True)
    (HERE / "archive" / "genome.fa").write_text("\n".join(lines) + "\n")
    (HERE / "data" / "reads").mkdir(parents=True, exist_ok=True)
    for sample, share in SAMPLES.items():
        out = []
        for i in range(1, READS + 1):
            seq = read(rng, genome, share)
            out += [f"@{sample}.{i}", seq, "+", quality(rng, len(seq))]
        (HERE / "data" / "reads" / f"{sample}.fastq").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
