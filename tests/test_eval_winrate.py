"""Win-rate arithmetic and the bootstrap interval on hand-made verdicts."""

from __future__ import annotations

import math

import pytest

from rlhi_hpc.eval.results import summarize_math, summarize_verdicts
from rlhi_hpc.eval.winrate import bootstrap_ci, format_rate, win_rate


def test_wins_plus_half_ties_over_judged_comparisons() -> None:
    rate = win_rate(["win"] * 3 + ["tie"] * 2 + ["loss"] + ["unparseable"], samples=0)
    assert (rate.wins, rate.ties, rate.losses, rate.unparseable) == (3, 2, 1, 1)
    assert rate.n == 6 and rate.total == 7  # the unparseable one is counted, outside the denominator
    assert rate.win_rate == pytest.approx((3 + 0.5 * 2) / 6)
    assert rate.ci_low is None and format_rate(rate) == "66.7%"


def test_no_judged_comparison_gives_no_rate() -> None:
    rate = win_rate(["unparseable", "unparseable"])
    assert rate.win_rate is None and rate.unparseable == 2 and format_rate(rate) == "n/a"


def test_unknown_outcome_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown outcomes"):
        win_rate(["win", "draw"])


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    outcomes = ["win"] * 30 + ["tie"] * 10 + ["loss"] * 20
    a = win_rate(outcomes, samples=2000, seed=7)
    b = win_rate(outcomes, samples=2000, seed=7)
    c = win_rate(outcomes, samples=2000, seed=8)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)  # same seed, same interval
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.win_rate < a.ci_high


def test_bootstrap_matches_the_normal_approximation() -> None:
    # 400 Bernoulli(0.6) outcomes: the 95% interval half-width is about 1.96 * sqrt(0.24 / 400) = 0.048.
    scores = [1.0] * 240 + [0.0] * 160
    low, high = bootstrap_ci(scores, samples=4000, confidence=0.95, seed=0)
    assert (high - low) / 2 == pytest.approx(1.96 * math.sqrt(0.24 / 400), rel=0.1)
    assert low < 0.6 < high
    narrow_low, narrow_high = bootstrap_ci(scores * 4, samples=2000, seed=0)
    assert narrow_high - narrow_low < high - low  # more data, narrower interval


def test_degenerate_scores_give_a_point_interval() -> None:
    assert bootstrap_ci([0.5] * 50, samples=200) == (0.5, 0.5)
    with pytest.raises(ValueError):
        bootstrap_ci([], samples=10)


def test_summarize_verdicts_groups_by_turn_type_and_adds_all() -> None:
    rows = [
        {"task": "usereval", "comparison": "c vs b", "turn_type": "initial", "outcomes": {"overall": "win"}},
        {"task": "usereval", "comparison": "c vs b", "turn_type": "initial", "outcomes": {"overall": "tie"}},
        {"task": "usereval", "comparison": "c vs b", "turn_type": "follow_up", "outcomes": {"overall": "loss"}},
        {"task": "usereval", "comparison": "c vs b", "turn_type": "follow_up", "outcomes": {"overall": "unparseable"}},
    ]
    table = {r["turn_type"]: r for r in summarize_verdicts(rows, samples=100)}
    assert table["initial"]["win_rate"] == pytest.approx(0.75)
    assert table["follow_up"]["win_rate"] == 0.0 and table["follow_up"]["unparseable"] == 1
    assert table["all"]["n"] == 3 and table["all"]["unparseable"] == 1
    assert table["all"]["win_rate"] == pytest.approx(1.5 / 3)


def test_summarize_math_averages_benchmarks() -> None:
    rows = [{"role": "candidate", "model": "m", "benchmark": "a", "correct": c} for c in (True, False)] + \
           [{"role": "candidate", "model": "m", "benchmark": "b", "correct": True}]
    table = {r["benchmark"]: r for r in summarize_math(rows)}
    assert table["a"]["accuracy"] == 0.5 and table["b"]["accuracy"] == 1.0
    assert table["average"]["accuracy"] == 0.75  # mean over benchmarks, not over problems
