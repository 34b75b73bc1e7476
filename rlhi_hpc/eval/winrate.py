"""Win rates (wins + ½ ties) with seeded percentile-bootstrap confidence intervals.

An *outcome* is the candidate's result in one comparison: ``win``, ``tie``, ``loss`` or
``unparseable`` (the judge never gave a usable verdict). Unparseable comparisons are counted and
reported next to the rate but are not part of its denominator: the win rate is
``(wins + ties / 2) / (wins + ties + losses)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

OUTCOMES = ("win", "tie", "loss", "unparseable")
SCORES = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass(frozen=True, kw_only=True)
class WinRate:
    """A win rate with its bootstrap interval; rates are fractions in [0, 1] (None when n == 0)."""

    n: int  # comparisons with a verdict (wins + ties + losses)
    wins: int
    ties: int
    losses: int
    unparseable: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float

    @property
    def total(self) -> int:
        return self.n + self.unparseable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_scores(outcomes: Iterable[str]) -> list[float]:
    """1 / 0.5 / 0 per parsed outcome (unparseable ones are left out)."""
    return [SCORES[o] for o in outcomes if o in SCORES]


def bootstrap_ci(scores: Sequence[float], *, samples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `scores` (resampling items with replacement)."""
    import numpy as np

    if not scores:
        raise ValueError("bootstrap_ci needs at least one score")
    data = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    block = max(1, 2_000_000 // max(1, len(data)))  # bound memory: block x n indices at a time
    for start in range(0, samples, block):
        stop = min(samples, start + block)
        idx = rng.integers(0, len(data), size=(stop - start, len(data)))
        means[start:stop] = data[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def win_rate(outcomes: Iterable[str], *, samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> WinRate:
    """Count outcomes and compute the win rate with its bootstrap interval."""
    items = list(outcomes)
    unknown = sorted({o for o in items if o not in OUTCOMES})
    if unknown:
        raise ValueError(f"unknown outcomes {unknown}; allowed: {', '.join(OUTCOMES)}")
    counts = {o: items.count(o) for o in OUTCOMES}
    scores = outcome_scores(items)
    rate = sum(scores) / len(scores) if scores else None
    low = high = None
    if scores and samples > 0:
        low, high = bootstrap_ci(scores, samples=samples, confidence=confidence, seed=seed)
    return WinRate(n=len(scores), wins=counts["win"], ties=counts["tie"], losses=counts["loss"],
                   unparseable=counts["unparseable"], win_rate=rate, ci_low=low, ci_high=high,
                   confidence=confidence)


def format_rate(rate: WinRate) -> str:
    """``61.2% [55.0, 67.1]`` (or ``n/a`` when there is no parsed comparison)."""
    if rate.win_rate is None:
        return "n/a"
    if rate.ci_low is None or rate.ci_high is None:
        return f"{100 * rate.win_rate:.1f}%"
    return f"{100 * rate.win_rate:.1f}% [{100 * rate.ci_low:.1f}, {100 * rate.ci_high:.1f}]"
