"""Bootstrap intervals for accuracies, and for the paired difference of two models on the same prompts.

A seeded percentile bootstrap: resampling the examples (the same indices for both models, so
the difference keeps their pairing) 10,000 times. numpy is imported inside, as `--help` must not.
"""

from __future__ import annotations

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 24


def _percentiles(values, level: float) -> tuple[float, float]:
    import numpy as np

    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def accuracy_interval(correct: list[bool], resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> dict:
    """{"value", "low", "high"} for the share of True in `correct`; None bounds when there is nothing."""
    import numpy as np

    if not correct:
        return {"value": None, "low": None, "high": None}
    values = np.asarray(correct, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    low, high = _percentiles(values[picks].mean(axis=1), level)
    return {"value": round(float(values.mean()), 4), "low": low, "high": high}


def paired_difference(ours: list[bool], theirs: list[bool], resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> dict:
    """{"value", "low", "high"} for mean(ours) - mean(theirs), both judged on the same examples."""
    import numpy as np

    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} verdicts against {len(theirs)}: a paired difference needs the same examples")
    if not ours:
        return {"value": None, "low": None, "high": None}
    difference = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(difference), size=(resamples, len(difference)))
    low, high = _percentiles(difference[picks].mean(axis=1), level)
    return {"value": round(float(difference.mean()), 4), "low": low, "high": high}
