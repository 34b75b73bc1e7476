"""Records the eval stage writes, and their aggregation into win-rate and accuracy tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.eval.winrate import win_rate
from rlhi_hpc.records import Provenance

ALL = "all"


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One evaluated model's answer to one prompt (cached per model and condition)."""

    key: str
    system: str  # "candidate", "baseline+persona", ...
    model: str
    persona_guided: bool
    system_prompt: str
    chat_sha: str  # hash of the messages after the system message (equal across conditions)
    text: str
    completion_tokens: int
    finish_reason: str
    skipped: str = ""  # why no answer was generated ("too_long"), else ""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The position-swapped judgement of one comparison (UserEval prompt or reference item)."""

    key: str
    task: str  # "usereval" | "alpaca"
    comparison: str
    candidate: str
    baseline: str
    candidate_model: str
    baseline_model: str
    judge_model: str
    turn_type: str  # "initial" | "follow_up" | "" (alpaca)
    user: str
    conversation_id: str
    turn_index: int
    persona: str
    request: str
    candidate_answer: str
    baseline_answer: str
    outcomes: dict[str, str]  # dimension -> win | tie | loss | unparseable (the candidate's)
    verdicts: dict[str, Any]  # order ("ab"/"ba") -> {dimension: "A"|"B"|"tie"} or None
    judge_raw: dict[str, list[str]]  # order -> judge replies, one per attempt
    attempts: dict[str, int]
    identical: bool  # both answers were the same text: a tie without asking the judge
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class MathResult:
    """One graded answer to a local math / multiple-choice problem."""

    key: str
    benchmark: str
    role: str  # "candidate" | "baseline"
    model: str
    problem_id: str
    gold: str
    extracted: str | None
    correct: bool
    completion: str
    provenance: Provenance


def summarize_verdicts(rows: Iterable[Mapping[str, Any]], *, samples: int = 1000, confidence: float = 0.95,
                       seed: int = 0, by: tuple[str, ...] = ("task", "comparison", "turn_type"),
                       ) -> list[dict[str, Any]]:
    """Win rates per (`by` fields, dimension), plus turn_type ``all`` rows for UserEval."""
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for row in rows:
        keys = tuple(row.get(k, "") for k in by)
        for dim, outcome in row["outcomes"].items():
            groups[keys + (dim,)].append(outcome)
            if "turn_type" in by and row.get("turn_type"):
                alls = tuple(ALL if k == "turn_type" else row.get(k, "") for k in by)
                groups[alls + (dim,)].append(outcome)
    table: list[dict[str, Any]] = []
    for keys in sorted(groups):
        rate = win_rate(groups[keys], samples=samples, confidence=confidence, seed=seed)
        table.append({**dict(zip(by + ("dimension",), keys, strict=True)), **rate.to_dict()})
    return table


def summarize_math(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per (role, model, benchmark), plus the unweighted average over benchmarks per role."""
    groups: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for row in rows:
        groups[(row["role"], row["model"], row["benchmark"])].append(bool(row["correct"]))
    table = [{"role": r, "model": m, "benchmark": b, "n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)}
             for (r, m, b), v in sorted(groups.items()) if v]
    for role, model in sorted({(t["role"], t["model"]) for t in table}):
        mine = [t for t in table if t["role"] == role and t["model"] == model]
        table.append({"role": role, "model": model, "benchmark": "average", "n": sum(t["n"] for t in mine),
                      "correct": None, "accuracy": sum(t["accuracy"] for t in mine) / len(mine)})
    return table
