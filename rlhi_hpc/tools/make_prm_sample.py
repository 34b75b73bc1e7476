"""Write the bundled PRM800K-format sample: deterministic, template-generated arithmetic and algebra.

    python -m rlhi_hpc.tools.make_prm_sample [out=rlhi_hpc/data/sample/prm800k_sample.jsonl] [seed=7]

Every row is a problem of one of six kinds (a linear equation, a sum 1..n, the sum of two unit
fractions, a percentage, a rectangle's perimeter, the order of operations), a model-style solution
split into steps and a human rating per step. Most solutions contain a typical mistake (a sign
error, the wrong formula, ...) at a step rated -1 after which labelling stopped (``found_error``,
phase-2 style with ``pre_generated_steps``; some phase-1 style without them and with an alternative
completion at the wrong step); some are correct (``solution``); two are ``give_up`` / ``bad_problem``;
six rows are damaged on purpose. :func:`build_rows` also returns what a test needs to know: the
index of the first wrong step (or -1) of every valid row and the expected quarantine reasons.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "sample" / "prm800k_sample.jsonl"
DEFAULT_SEED = 7
N_PROBLEMS = 40


@dataclass(frozen=True)
class Problem:
    problem: str
    answer: str
    good: tuple[str, ...]  # correct solution steps; the last ends with "# Answer\n\n<answer>"
    bad: tuple[str, ...]  # a solution with one mistake, same length
    wrong_at: int  # index of the mistake in `bad`


def _ans(value: Any) -> str:
    return f"# Answer\n\n{value}"


def linear(rng: random.Random) -> Problem:
    a, x, b = rng.randint(2, 9), rng.randint(-6, 12), rng.randint(1, 20)
    c = a * x + b
    wrong = Fraction(c + b, a)
    return Problem(
        f"Solve for $x$: ${a}x + {b} = {c}$.", str(x),
        (f"I need to isolate $x$, so first I subtract {b} from both sides.", f"That gives ${a}x = {c - b}$.",
         f"Dividing both sides by {a}, I get $x = {x}$.", _ans(x)),
        (f"I need to isolate $x$, so first I subtract {b} from both sides.", f"That gives ${a}x = {c + b}$.",
         f"Dividing both sides by {a}, I get $x = {wrong}$.", _ans(wrong)), 1)


def series(rng: random.Random) -> Problem:
    n = rng.randint(8, 60)
    s, w = n * (n + 1) // 2, n * (n - 1) // 2
    return Problem(
        f"What is the sum of the integers from 1 to {n}?", str(s),
        ("I can use the formula for the sum of the first $n$ positive integers.",
         "The formula is $\\frac{n(n+1)}{2}$.", f"With $n = {n}$ this is $\\frac{{{n} \\cdot {n + 1}}}{{2}} = {s}$.",
         _ans(s)),
        ("I can use the formula for the sum of the first $n$ positive integers.",
         "The formula is $\\frac{n(n-1)}{2}$.", f"With $n = {n}$ this is $\\frac{{{n} \\cdot {n - 1}}}{{2}} = {w}$.",
         _ans(w)), 1)


def fractions(rng: random.Random) -> Problem:
    a, b = rng.sample([2, 3, 4, 5, 6, 7, 8, 9], 2)
    s = Fraction(1, a) + Fraction(1, b)
    tex = f"\\frac{{{s.numerator}}}{{{s.denominator}}}"
    return Problem(
        f"Compute $\\frac{{1}}{{{a}}} + \\frac{{1}}{{{b}}}$ as a fraction in lowest terms.", tex,
        (f"The common denominator of {a} and {b} is {a * b // _gcd(a, b)}.",
         f"Adding the fractions gives ${tex}$ after reducing.", _ans(f"${tex}$")),
        ("To add fractions I add the numerators and add the denominators.",
         f"That gives $\\frac{{2}}{{{a + b}}}$.", _ans(f"$\\frac{{2}}{{{a + b}}}$")), 0)


def percent(rng: random.Random) -> Problem:
    p, n = rng.choice([10, 20, 25, 30, 40, 50, 75]), rng.choice([40, 60, 80, 120, 200, 360])
    v, w = Fraction(p * n, 100), Fraction(p * n, 10)
    return Problem(
        f"What is {p}% of {n}?", str(v),
        (f"{p}% means $\\frac{{{p}}}{{100}}$.", f"So I multiply: $\\frac{{{p}}}{{100}} \\cdot {n} = {v}$.", _ans(v)),
        (f"{p}% means $\\frac{{{p}}}{{10}}$.", f"So I multiply: $\\frac{{{p}}}{{10}} \\cdot {n} = {w}$.", _ans(w)), 0)


def perimeter(rng: random.Random) -> Problem:
    length, width = rng.randint(3, 30), rng.randint(2, 20)
    return Problem(
        f"A rectangle has length {length} cm and width {width} cm. What is its perimeter in centimeters?",
        str(2 * (length + width)),
        ("The perimeter is the total length of the four sides.",
         f"Two sides are {length} cm and two are {width} cm, so the perimeter is $2({length} + {width})$.",
         f"That is ${2 * (length + width)}$.", _ans(2 * (length + width))),
        ("The perimeter is the total length of the four sides.",
         f"So the perimeter is ${length} + {width}$.", f"That is ${length + width}$.", _ans(length + width)), 1)


def operations(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 12), rng.randint(2, 9), rng.randint(2, 9)
    return Problem(
        f"Compute ${a} + {b} \\times {c}$.", str(a + b * c),
        ("Multiplication comes before addition.", f"First ${b} \\times {c} = {b * c}$.",
         f"Then ${a} + {b * c} = {a + b * c}$.", _ans(a + b * c)),
        ("I work from left to right.", f"First ${a} + {b} = {a + b}$.",
         f"Then ${a + b} \\times {c} = {(a + b) * c}$.", _ans((a + b) * c)), 0)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


KINDS: tuple[Callable[[random.Random], Problem], ...] = (linear, series, fractions, percent, perimeter, operations)


def _completion(text: str, rating: int | None) -> dict[str, Any]:
    return {"text": text, "rating": rating, "flagged": None}


def _row(p: Problem, i: int, kind: str, rng: random.Random) -> dict[str, Any]:
    """A labelled solution: correct (`solution`), flawed phase 2 or phase 1 (`found_error`), or given up."""
    steps: list[dict[str, Any]] = []
    pre: list[str] | None = None
    if kind == "solution":
        steps = [{"completions": [_completion(t, 1 if j else 0)], "human_completion": None, "chosen_completion": 0}
                 for j, t in enumerate(p.good)]
        pre, finish = list(p.good), "solution"
    elif kind in ("phase2", "phase1"):
        steps = [{"completions": [_completion(t, rng.choice([0, 1]))], "human_completion": None,
                  "chosen_completion": 0} for t in p.bad[:p.wrong_at]]
        comps = [_completion(p.bad[p.wrong_at], -1)]
        if kind == "phase1":  # an alternative step, also wrong, rated after the error
            comps.append(_completion("I am not sure how to continue here.", 0))
        steps.append({"completions": comps, "human_completion": None, "chosen_completion": None})
        pre = list(p.bad) if kind == "phase2" else None
        finish = "found_error"
    else:
        steps = [{"completions": [_completion(p.good[0], 0)], "human_completion": None, "chosen_completion": 0}]
        finish = kind
    question: dict[str, Any] = {"problem": p.problem, "ground_truth_answer": p.answer,
                                "ground_truth_solution": " ".join(p.good[:-1]) + f" The answer is $\\boxed{{{p.answer}}}$."}
    if pre is not None:
        question.update(pre_generated_steps=pre, pre_generated_answer=pre[-1].split("\n\n")[-1])
    return {"labeler": f"labeler-{i % 5}", "timestamp": f"2023-01-{1 + i % 28:02d}T10:{i % 60:02d}:00",
            "generation": None if kind == "phase1" else 1 + i % 9, "is_quality_control_question": False,
            "is_initial_screening_question": False, "question": question,
            "label": {"steps": steps, "total_time": 60000 + 1000 * i, "finish_reason": finish}}


@dataclass
class PrmSample:
    lines: list[str] = field(default_factory=list)
    first_wrong: dict[int, int] = field(default_factory=dict)  # line index -> first wrong step (-1 = none)
    dropped: dict[int, str] = field(default_factory=dict)  # line index -> finish reason left out
    damaged: dict[int, str] = field(default_factory=dict)  # line index -> expected quarantine reason


def _damaged(good: dict[str, Any]) -> list[tuple[str, str]]:
    """(line, expected reason) for each damaged row, derived from a valid row."""
    def edit(fn: Callable[[dict[str, Any]], None]) -> str:
        row = json.loads(json.dumps(good))
        fn(row)
        return json.dumps(row, sort_keys=True)

    return [
        (json.dumps(good, sort_keys=True)[:120], "invalid_json"),
        (edit(lambda r: r["question"].pop("ground_truth_answer")), "missing_field"),
        (edit(lambda r: r["label"]["steps"][0]["completions"][0].update(rating=2)), "bad_rating"),
        (edit(lambda r: r["label"]["steps"][0].update(chosen_completion=5)), "bad_chosen_completion"),
        (edit(lambda r: r["label"].update(steps=[])), "no_steps"),
        (edit(lambda r: r["question"].update(problem="   ")), "empty_content"),
    ]


def build_rows(seed: int = DEFAULT_SEED) -> PrmSample:
    """The sample's lines and what a test needs to know about them."""
    rng = random.Random(seed)
    sample = PrmSample()
    kinds = ["phase2"] * 24 + ["phase1"] * 4 + ["solution"] * 10 + ["give_up", "bad_problem"]
    rng.shuffle(kinds)
    for i, kind in enumerate(kinds[:N_PROBLEMS]):
        p = KINDS[i % len(KINDS)](rng)
        row = _row(p, i, kind, rng)
        if kind in ("give_up", "bad_problem"):
            sample.dropped[len(sample.lines)] = kind
        else:
            sample.first_wrong[len(sample.lines)] = -1 if kind == "solution" else p.wrong_at
        sample.lines.append(json.dumps(row, sort_keys=True))
    template = json.loads(sample.lines[0])
    for line, reason in _damaged(template):
        pos = rng.randint(0, len(sample.lines))
        sample.first_wrong = {k + (k >= pos): v for k, v in sample.first_wrong.items()}
        sample.dropped = {k + (k >= pos): v for k, v in sample.dropped.items()}
        sample.damaged = {k + (k >= pos): v for k, v in sample.damaged.items()}
        sample.lines.insert(pos, line)
        sample.damaged[pos] = reason
    return sample


def write_sample(out: Path = DEFAULT_OUT, seed: int = DEFAULT_SEED) -> PrmSample:
    sample = build_rows(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sample.lines) + "\n", encoding="utf-8")
    return sample


def main(argv: Sequence[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    out = Path(args.get("out", DEFAULT_OUT))
    sample = write_sample(out, int(args.get("seed", DEFAULT_SEED)))
    wrong = sum(1 for v in sample.first_wrong.values() if v >= 0)
    print(f"wrote {out}: lines={len(sample.lines)} with_wrong_step={wrong} correct={len(sample.first_wrong) - wrong} "
          f"dropped={len(sample.dropped)} damaged={len(sample.damaged)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
