"""The PRM800K-format reader, its bundled sample and the prm_ingest stage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rlhi_hpc.data.prm800k import (QUARANTINE_REASONS, MathConversation, first_wrong_step, iter_prm_rows,
                                   parse_prm_row, sample_path)
from rlhi_hpc.data.wildchat import decode_line
from rlhi_hpc.records import Conversation, Quarantined, from_dict, to_dict
from rlhi_hpc.tools.make_math_bench import FILES, write_benchmarks
from rlhi_hpc.tools.make_prm_sample import build_rows


def _row(**over: object) -> dict:
    row = {
        "labeler": "l1", "timestamp": "2023-02-01T10:00:00", "generation": 3,
        "question": {"problem": "What is $2 + 3 \\times 4$?", "ground_truth_answer": "14",
                     "pre_generated_steps": ["I add first: $2 + 3 = 5$.", "Then $5 \\times 4 = 20$.",
                                             "# Answer\n\n20"],
                     "pre_generated_answer": "20"},
        "label": {"steps": [
            {"completions": [{"text": "I add first: $2 + 3 = 5$.", "rating": -1, "flagged": None}],
             "human_completion": None, "chosen_completion": None}],
            "finish_reason": "found_error"},
    }
    row.update(over)
    return row


def _parse(row: object) -> MathConversation | Quarantined:
    return parse_prm_row(decode_line(json.dumps(row), "t.jsonl:0"))


def test_phase2_row_shows_the_whole_solution_and_finds_the_first_wrong_step() -> None:
    sol = _parse(_row())
    assert isinstance(sol, MathConversation)
    assert sol.ground_truth == "14" and sol.first_wrong_step == 0 and sol.ratings == (-1,)
    assert sol.steps[-1].endswith("20") and len(sol.steps) == 3  # pre_generated_steps: the labelled prefix matches
    assert [t.role for t in sol.turns] == ["user", "assistant"] and "5 \\times 4" in sol.turns[1].content
    assert sol.user == sol.conversation_id and sol.conversation_id.startswith("prm-")
    # It reads back as a plain Conversation and as itself.
    assert from_dict(Conversation, to_dict(sol)).turns == sol.turns
    assert from_dict(MathConversation, json.loads(json.dumps(to_dict(sol)))) == sol


def test_trajectory_rules_chosen_human_and_alternatives() -> None:
    steps = [
        {"completions": [{"text": "bad", "rating": -1}, {"text": "good one", "rating": 1}],
         "human_completion": None, "chosen_completion": 1},
        {"completions": [{"text": "all wrong", "rating": -1}], "human_completion": {"text": "human step", "rating": None},
         "chosen_completion": None},
        {"completions": [{"text": "neutral", "rating": 0}, {"text": "oops", "rating": -1},
                         {"text": "unrated", "rating": None}], "human_completion": None, "chosen_completion": None},
        {"completions": [{"text": "never reached", "rating": 1}], "chosen_completion": 0},
    ]
    row = _row(label={"steps": steps, "finish_reason": "found_error"})
    row["question"].pop("pre_generated_steps")
    sol = _parse(row)
    assert isinstance(sol, MathConversation)
    # chosen alternative, the human completion, then the labeler stopped at the first -1 completion.
    assert sol.steps == ("good one", "human step", "oops") and sol.ratings == (1, 1, -1)
    assert sol.first_wrong_step == 2


def test_labelled_steps_that_are_not_a_prefix_fall_back_to_the_trajectory() -> None:
    row = _row()
    row["question"]["pre_generated_steps"] = ["something else", "# Answer\n\n1"]
    sol = _parse(row)
    assert isinstance(sol, MathConversation) and sol.steps == ("I add first: $2 + 3 = 5$.",)


def test_first_wrong_step() -> None:
    assert first_wrong_step([1, 0, -1, -1]) == 2
    assert first_wrong_step([1, 1, 0]) == -1
    assert first_wrong_step([]) == -1


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda r: r.pop("question"), "missing_field"),
    (lambda r: r["question"].update(ground_truth_answer=None), "missing_field"),
    (lambda r: r.update(label="found_error"), "wrong_type"),
    (lambda r: r["label"].update(steps={"0": 1}), "wrong_type"),
    (lambda r: r["label"].update(steps=[]), "no_steps"),
    (lambda r: r["label"]["steps"][0].update(completions=[]), "no_steps"),
    (lambda r: r["label"]["steps"][0]["completions"][0].update(rating=True), "bad_rating"),
    (lambda r: r["label"]["steps"][0]["completions"][0].update(rating="-1"), "bad_rating"),
    (lambda r: r["label"]["steps"][0].update(chosen_completion=1), "bad_chosen_completion"),
    (lambda r: r["label"]["steps"][0]["completions"][0].update(text=7), "wrong_type"),
    (lambda r: r["question"].update(problem=""), "empty_content"),
    (lambda r: r.update(timestamp="yesterday"), "wrong_type"),
])
def test_damaged_rows_are_quarantined_with_their_reason(edit, reason: str) -> None:  # noqa: ANN001
    row = _row()
    edit(row)
    out = _parse(row)
    assert isinstance(out, Quarantined), out
    assert out.reason == reason and out.reason in QUARANTINE_REASONS
    assert out.source == "t.jsonl:0" and out.raw  # the row is kept as read


def test_undecodable_lines_are_quarantined() -> None:
    for line in (b'{"question": {"problem": "x"', b"\xff\xfe", b"[1, 2]"):
        out = parse_prm_row(decode_line(line, "f:3"))
        assert isinstance(out, Quarantined) and out.reason == "invalid_json"


def test_bundled_sample_matches_its_generator_and_its_ground_truth() -> None:
    truth = build_rows()
    assert sample_path().read_text(encoding="utf-8") == "\n".join(truth.lines) + "\n", \
        "run `python -m rlhi_hpc.tools.make_prm_sample` to rebuild the sample"
    assert build_rows().lines == truth.lines  # deterministic
    reasons: Counter = Counter()
    for i, raw in enumerate(iter_prm_rows("sample")):
        out = parse_prm_row(raw)
        if i in truth.damaged:
            assert isinstance(out, Quarantined) and out.reason == truth.damaged[i], (i, out)
            reasons[out.reason] += 1
        else:
            assert isinstance(out, MathConversation), (i, out)
            if i in truth.first_wrong:
                assert out.first_wrong_step == truth.first_wrong[i]
            else:
                assert out.finish_reason == truth.dropped[i]
    assert len(reasons) == 6 and sum(1 for v in truth.first_wrong.values() if v >= 0) >= 20


def test_bundled_benchmarks_match_their_generator(tmp_path: Path) -> None:
    from rlhi_hpc.eval.math import grade, load_math_file

    fresh = write_benchmarks(tmp_path)
    bundled = sample_path().parent
    for name, path in fresh.items():
        assert (bundled / FILES[name]).read_bytes() == path.read_bytes(), \
            "run `python -m rlhi_hpc.tools.make_math_bench` to rebuild the benchmark samples"
        problems, skipped = load_math_file(path)
        assert len(problems) == 8 and not skipped
        for p in problems:  # a completion stating the gold answer is graded correct
            assert grade(p, f"so the answer is \\boxed{{{p.answer}}}")[1], (name, p)
