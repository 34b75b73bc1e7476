"""PRM800K-format input: step-labelled math solutions, validated into conversations.

The layout is the one of OpenAI's PRM800K release (one JSON object per line)::

    {"labeler": "...", "timestamp": "2023-01-22T04:34:27", "generation": 9,
     "is_quality_control_question": false, "is_initial_screening_question": false,
     "question": {"problem": "...", "ground_truth_answer": "...", "ground_truth_solution": "...",
                  "pre_generated_steps": ["...", ...], "pre_generated_answer": "..."},
     "label": {"steps": [{"completions": [{"text": "...", "rating": -1|0|1|null, "flagged": null}],
                          "human_completion": null, "chosen_completion": 0 | null}, ...],
               "total_time": 278270, "finish_reason": "solution|found_error|give_up|bad_problem"}}

The labelled trajectory is, step by step, the chosen completion, else the human completion, else —
at the step where labelling stopped — the first completion rated -1 (the error the labeler found),
else the first completion. The *solution shown to the user* is ``pre_generated_steps`` (phase 2:
the whole model solution, final answer included) when the labelled steps are a prefix of it, else
the labelled trajectory. The first wrong step is the first trajectory step rated -1.

Malformed rows are quarantined with one of :data:`QUARANTINE_REASONS` (same record and rules as the
WildChat reader); rows the labeler marked ``bad_problem`` or ``give_up`` are counted, not kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlhi_hpc.data.wildchat import RawRow, _quarantine, _Reject, iter_raw_rows, parse_timestamp
from rlhi_hpc.errors import StageError
from rlhi_hpc.records import Conversation, Provenance, Quarantined, Turn

QUARANTINE_REASONS: Mapping[str, str] = MappingProxyType({
    "invalid_json": "the line is not valid UTF-8 JSON, is truncated, or is not a JSON object",
    "wrong_type": "a field has the wrong type (`question` or `label` not an object, `steps` or `completions` "
                  "not a list, a step text that is not a string, ...)",
    "missing_field": "a required field is absent or null (`question.problem`, `question.ground_truth_answer`, "
                     "`label`, `label.steps`)",
    "empty_content": "the problem, the ground-truth answer or a step text is empty",
    "no_steps": "`label.steps` is an empty list, or a step has no completion and no human completion",
    "bad_rating": "a rating is not -1, 0, +1 or null",
    "bad_chosen_completion": "`chosen_completion` is not an index into `completions`",
})

#: Labeler verdicts whose rows are counted and left out (``dropped_<reason>``).
DROPPED_FINISH_REASONS = ("bad_problem", "give_up")
RATINGS = (-1, 0, 1)
SAMPLE_FILE = "prm800k_sample.jsonl"


@dataclass(frozen=True, kw_only=True)
class MathConversation(Conversation):
    """A step-labelled solution as a two-turn conversation (problem, solution) plus its labels.

    Reads back as a plain :class:`Conversation` too (extra fields are ignored).
    """

    problem: str = ""
    ground_truth: str = ""
    steps: tuple[str, ...] = ()  # the solution shown to the user, one entry per step
    ratings: tuple[int, ...] = ()  # human rating of the labelled steps (a prefix of `steps`); unrated = 0
    first_wrong_step: int = -1  # index into `steps` of the first step rated -1; -1 = none
    finish_reason: str = ""


@dataclass(frozen=True, kw_only=True)
class MathFeedback(MathConversation):
    """A flawed solution with a simulated user's follow-up pointing at its first wrong step.

    One record that reads back both as a :class:`~rlhi_hpc.records.Conversation` (three turns:
    problem, flawed solution, feedback) and as a :class:`~rlhi_hpc.records.TurnLabel` (the
    feedback turn, labelled actionable), so the ``rewrite`` stage can take it as both inputs.
    """

    turn_index: int = 2
    label: str = "reattempt_with_feedback"
    actionable: bool = True
    feedback: str = ""
    feedback_source: str = ""  # "llm" | "template"
    scores: dict[str, float]
    provenance: Provenance


def sample_path() -> Path:
    """The bundled PRM800K-format sample (``python -m rlhi_hpc.tools.make_prm_sample`` writes it)."""
    return Path(__file__).resolve().parent / "sample" / SAMPLE_FILE


def resolve_path(path: str) -> Path:
    """`sample` = the bundled sample; else a local file or folder that must exist."""
    resolved = sample_path() if path == "sample" else Path(path)
    if not resolved.exists():
        raise StageError(f"PRM800K input {resolved} does not exist; set math.path to a local JSONL file or "
                         "folder, or 'sample' (run `python -m rlhi_hpc.tools.make_prm_sample` to rebuild it)")
    return resolved


def iter_prm_rows(path: str) -> Iterator[RawRow]:
    """Raw rows of a PRM800K-format JSONL file or folder (``sample`` = the bundled sample)."""
    yield from iter_raw_rows(resolve_path(path))


def _obj(data: Any, key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is None:
        raise _Reject("missing_field", f"'{where}{key}' is missing")
    if not isinstance(value, kind):
        raise _Reject("wrong_type", f"'{where}{key}' is a {type(value).__name__}, not a {kind.__name__}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Reject("wrong_type" if value is not None else "missing_field", f"{where} is not a string")
    if not value.strip():
        raise _Reject("empty_content", f"{where} is empty")
    return value


def _rating(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value not in RATINGS:
        raise _Reject("bad_rating", f"{where} rating is {value!r}, not -1, 0, +1 or null")
    return value


def _step(step: Any, i: int) -> tuple[str, int]:
    """The trajectory's text and rating at step `i` (see the module docstring)."""
    where = f"label.steps[{i}]"
    if not isinstance(step, dict):
        raise _Reject("wrong_type", f"{where} is not an object")
    comps = step.get("completions") or []
    if not isinstance(comps, list) or not all(isinstance(c, dict) for c in comps):
        raise _Reject("wrong_type", f"{where}.completions is not a list of objects")
    ratings = [_rating(c.get("rating"), f"{where}.completions[{j}]") for j, c in enumerate(comps)]
    chosen = step.get("chosen_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(comps):
            raise _Reject("bad_chosen_completion", f"{where}.chosen_completion={chosen!r} with {len(comps)} completions")
        return _text(comps[chosen].get("text"), f"{where}.completions[{chosen}].text"), ratings[chosen]
    human = step.get("human_completion")
    if human is not None:
        text = human.get("text") if isinstance(human, dict) else human
        return _text(text, f"{where}.human_completion"), 1
    if not comps:
        raise _Reject("no_steps", f"{where} has no completion and no human completion")
    j = ratings.index(-1) if -1 in ratings else 0
    return _text(comps[j].get("text"), f"{where}.completions[{j}].text"), ratings[j]


def trajectory(steps: list[Any]) -> tuple[list[str], list[int]]:
    """Texts and ratings of the labelled trajectory; stops at a step without a chosen completion."""
    texts: list[str] = []
    ratings: list[int] = []
    for i, step in enumerate(steps):
        text, rating = _step(step, i)
        texts.append(text)
        ratings.append(rating)
        if isinstance(step, dict) and step.get("chosen_completion") is None and step.get("human_completion") is None:
            break
    return texts, ratings


def first_wrong_step(ratings: tuple[int, ...] | list[int]) -> int:
    """Index of the first step rated -1, or -1 when no step is."""
    return next((i for i, r in enumerate(ratings) if r == -1), -1)


def shown_steps(question: dict[str, Any], texts: list[str]) -> list[str]:
    """The model's whole solution when the labelled steps are a prefix of it, else the labelled steps."""
    pre = question.get("pre_generated_steps")
    if isinstance(pre, list) and pre and all(isinstance(s, str) for s in pre) and len(pre) >= len(texts) \
            and [s.strip() for s in pre[:len(texts)]] == [t.strip() for t in texts]:
        return list(pre)
    return texts


def row_id(data: dict[str, Any], source: str) -> str:
    """A stable id of one labelled solution (content hash, so a re-ordered file keeps its ids)."""
    key = json.dumps([data.get("labeler"), data.get("timestamp"), data.get("question"), data.get("label")],
                     sort_keys=True, default=str)
    return "prm-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _timestamp(value: Any) -> float:
    if value is None:
        return 0.0
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _Reject("wrong_type", f"'timestamp' {value!r} is not a date") from exc


def _solution(data: Any, source: str) -> MathConversation:
    if not isinstance(data, dict):
        raise _Reject("wrong_type", "the row is not an object")
    question = _obj(data, "question", dict, "")
    problem = _text(question.get("problem"), "'question.problem'")
    answer = question.get("ground_truth_answer")
    if answer is None:
        raise _Reject("missing_field", "'question.ground_truth_answer' is missing")
    answer = _text(str(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else answer,
                   "'question.ground_truth_answer'")
    label = _obj(data, "label", dict, "")
    steps = _obj(label, "steps", list, "label.")
    if not steps:
        raise _Reject("no_steps", "'label.steps' is empty")
    texts, ratings = trajectory(steps)
    shown = shown_steps(question, texts)
    cid = row_id(data, source)
    timestamp = _timestamp(data.get("timestamp"))
    return MathConversation(
        conversation_id=cid, user=cid, timestamp=timestamp, model="prm800k", language="English",
        turns=(Turn(role="user", content=problem), Turn(role="assistant", content="\n\n".join(shown))),
        source=source, problem=problem, ground_truth=answer.strip(), steps=tuple(shown), ratings=tuple(ratings),
        first_wrong_step=first_wrong_step(ratings), finish_reason=str(label.get("finish_reason") or ""))


def parse_prm_row(row: RawRow) -> MathConversation | Quarantined:
    """Validate one raw row (never raises on bad data; reasons in :data:`QUARANTINE_REASONS`)."""
    if row.data is None:
        return _quarantine(row, "invalid_json", row.error or "the row could not be decoded")
    try:
        return _solution(row.data, row.source)
    except _Reject as exc:
        return _quarantine(row, exc.reason, exc.detail)


def drop_reason(sol: MathConversation) -> str | None:
    """Why a valid row is left out (the labeler's verdict), or None."""
    return sol.finish_reason if sol.finish_reason in DROPPED_FINISH_REASONS else None
