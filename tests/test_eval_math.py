"""Final-answer extraction, normalisation and grading on hand-made cases (including tricky ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhi_hpc.eval.math import (MathProblem, answers_match, boxed_contents, extract_answer, extract_choice, grade,
                                load_math_file, normalize_answer)


@pytest.mark.parametrize("completion,expected", [
    (r"So the answer is \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
    (r"First \boxed{3}, then corrected: \boxed{4}", "4"),  # several boxed answers: the last one
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),  # nested braces
    (r"\fbox{7}", "7"),
    (r"Hence $\boxed 5$", "5"),
    ("The final answer is $\\frac{3}{4}$. I hope it is correct.", r"\frac{3}{4}"),
    ("We get 12 apples, then 3 more: 15 in total", "15"),  # no box, no phrase: the last number
    ("-2.5 degrees", "-2.5"),
    ("I cannot solve this.", None),  # nothing at all
])
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


@pytest.mark.parametrize("predicted,gold", [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac12", "1/2"),
    (r"-\frac{1}{2}", "-0.50"),
    ("1,000", "1000"),
    (r"10\text{ cm}", "10"),
    (r"90^\circ", "90"),
    (r"50\%", "50"),
    ("x = 5", "5"),
    (r"\left(1, 2\right)", "(1,2)"),
    (r"$\sqrt2$", r"\sqrt{2}"),
    ("0.3333333", r"\frac{1}{3}"),  # within the numeric tolerance
    ("4.", "4"),
])
def test_answers_match(predicted: str, gold: str) -> None:
    assert answers_match(predicted, gold)


@pytest.mark.parametrize("predicted,gold", [
    (r"\frac{1}{3}", "0.3"), ("2", "-2"), (r"\sqrt{2}", r"\sqrt{3}"), (None, "1"), ("x", "y"),
])
def test_answers_that_differ(predicted: str | None, gold: str) -> None:
    assert not answers_match(predicted, gold)


def test_boxed_then_normalised_equals_decimal() -> None:
    assert normalize_answer(extract_answer(r"\boxed{\frac{1}{2}}") or "") == normalize_answer("0.5") == "1/2"
    assert boxed_contents(r"\boxed{a} and \boxed{b}") == ["a", "b"]


@pytest.mark.parametrize("completion,letter", [
    ("The answer is (C).", "C"), (r"so \boxed{B}", "B"), (r"\boxed{\text{(D)}}", "D"), ("Answer: A", "A"),
    ("Let me think.\n\nB", "B"), ("the answer is a prime number", None), ("no idea", None),
])
def test_extract_choice(completion: str, letter: str | None) -> None:
    assert extract_choice(completion, 4) == letter


def test_load_math_file_formats(tmp_path: Path) -> None:
    rows = [
        {"problem": "1+1?", "solution": r"It is \boxed{2}."},  # Minerva/MATH style: answer in the solution
        {"question": "Solve x^2=4, x>0", "final_answer": ["2"]},  # OlympiadBench style: a list
        {"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo", "Bern"], "answer": "B"},
        {"question": "2*3?", "options": ["5", "6"], "answer_index": 1},  # MMLU-Pro style index
        {"question": "GPQA-like", "choices": ["x", "y", "z"], "answer": "z"},  # answer = option text
        {"question": "no answer here"},
        "not an object",
    ]
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    problems, skipped = load_math_file(path)
    assert [p.answer for p in problems] == ["2", "2", "B", "B", "C"]
    assert skipped == {"no_answer": 1, "not_an_object": 2}
    assert problems[2].choices == ("Rome", "Paris", "Oslo", "Bern")


def test_grade() -> None:
    open_problem = MathProblem(id="1", question="?", answer="0.5")
    assert grade(open_problem, r"... \boxed{\frac{1}{2}}") == (r"\frac{1}{2}", True)
    assert grade(open_problem, "I give up") == (None, False)
    choice = MathProblem(id="2", question="?", answer="C", choices=("a", "b", "c"))
    assert grade(choice, "The answer is (C)") == ("C", True)
    assert grade(choice, "The answer is (A)") == ("A", False)


def test_answer_section_heading_is_read_whole() -> None:
    from rlhi_hpc.eval.math import answers_match, extract_answer

    text = "Step 1: add.\n\n# Answer\n\n$\\frac{2}{9}$"
    assert answers_match(extract_answer(text), "2/9")
