"""Near-duplicate and paraphrased prompts: pairs whose wording is almost the same.

Two prompts are near duplicates when their normalized words, sorted (so word order does not
matter), score at least `threshold` on rapidfuzz's `fuzz.ratio` (an Indel similarity, 0-100):
"list all the files in /tmp" and "in /tmp, list all files" are one prompt. Comparing every pair
of 12,607 NL2Bash prompts that way takes minutes, so candidates come from datasketch's MinHash
LSH over the prompt's words, and only candidates are scored (bench/bench_shell.py
measures both: speed, and how many exhaustive pairs the candidates keep).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..normalize import normalize_prompt

THRESHOLD = 90           # fuzz.ratio of the sorted words, 0-100
LSH_THRESHOLD = 0.5      # MinHash Jaccard at which a pair becomes a candidate; lower finds more, slower
NUM_PERM = 64


@dataclass(frozen=True)
class NearPair:
    first: int     # index into the first list
    second: int    # index into the second list (the same list for pairs within one)
    score: float   # 0-100


def key(prompt: str) -> str:
    """The text that is compared: normalized words in sorted order."""
    return " ".join(sorted(normalize_prompt(prompt).replace(",", " ").split()))


def _shingles(text: str) -> list[bytes]:
    # words, not word pairs: a reordered prompt must share every shingle, and short prompts have few pairs
    return [word.encode("utf-8") for word in set(normalize_prompt(text).replace(",", " ").split())] or [b""]


def near_pairs(prompts: list[str], others: list[str] | None = None, threshold: float = THRESHOLD) -> list[NearPair]:
    """Near pairs within `prompts` (first < second), or between `prompts` and `others` when given.

    Identical keys count too (a pair that is also an exact duplicate is still near); callers that
    report exact duplicates separately drop them by comparing normalize_prompt."""
    from datasketch import MinHash, MinHashLSH
    from rapidfuzz import fuzz

    within = others is None
    pool = prompts if within else others
    keys_a = [key(p) for p in prompts]
    keys_b = keys_a if within else [key(p) for p in pool]
    hashes_b = MinHash.bulk([_shingles(p) for p in pool], num_perm=NUM_PERM)
    hashes_a = hashes_b if within else MinHash.bulk([_shingles(p) for p in prompts], num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for index, minhash in enumerate(hashes_b):
            session.insert(index, minhash, check_duplication=False)
    found = []
    for index, minhash in enumerate(hashes_a):
        for other in lsh.query(minhash):
            if within and other <= index:
                continue
            score = fuzz.ratio(keys_a[index], keys_b[other], score_cutoff=threshold)
            if score:
                found.append(NearPair(index, other, round(score, 1)))
    return sorted(found, key=lambda p: (p.first, p.second))
