"""Small statistics shared by the evaluation scripts."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List


def welch(a: List[float], b: List[float], level: float = 0.95) -> Dict[str, Any]:
    """mean(a) - mean(b) with a Welch t-interval (95% unless ``level``); ``exceeds_spread`` when it excludes 0.

    Needs two or more values on each side (each side's seed spread is estimated from them). For a
    family of m comparisons, ``level=1 - 0.05 / m`` gives Bonferroni-corrected intervals.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    se = (va + vb) ** 0.5
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"diff": diff, "lo": diff - half, "hi": diff + half, "n": [len(a), len(b)],
            "exceeds_spread": bool(se > 0 and abs(diff) > half)}


def format_diff(w: Dict[str, Any], digits: int) -> str:
    """A :func:`welch` result as ``"+diff [+lo, +hi]"`` with ``digits`` decimals (signs always shown)."""
    return f"{w['diff']:+.{digits}f} [{w['lo']:+.{digits}f}, {w['hi']:+.{digits}f}]"
