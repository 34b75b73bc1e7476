"""Pairwise win rate against reference answers from a local file (AlpacaEval / Arena-Hard style).

The file is JSONL (or a JSON list) of ``{"instruction": ..., "output": ...}`` rows (``prompt`` /
``question`` and ``reference`` / ``answer`` are accepted too). Each model answer is judged against
the row's reference with the same position-swapped judge as the user evaluation (one ``overall``
dimension by default). The average answer length is reported beside the win rate, because
length is how these benchmarks get gamed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from rlhi_hpc.errors import StageError
from rlhi_hpc.eval.judge import JudgeItem


@dataclass(frozen=True, kw_only=True)
class ReferenceItem:
    """One instruction with its reference answer."""

    id: str
    instruction: str
    reference: str


def _first(row: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key]
    return None


def load_reference_file(path: str | Path) -> tuple[list[ReferenceItem], dict[str, int]]:
    """Items of the file, and the count of skipped rows per reason."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"reference-answer file {path} does not exist; fix eval.alpaca_path")
    text = path.read_text(encoding="utf-8")
    rows: list[Any]
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append(None)
    items: list[ReferenceItem] = []
    skipped: dict[str, int] = {}
    for i, row in enumerate(rows):
        reason = ""
        if not isinstance(row, dict):
            reason = "not_an_object"
        else:
            instruction = _first(row, ("instruction", "prompt", "question"))
            reference = _first(row, ("output", "reference", "answer"))
            if instruction is None:
                reason = "no_instruction"
            elif reference is None:
                reason = "no_reference"
            else:
                items.append(ReferenceItem(id=str(row.get("id", i)), instruction=instruction, reference=reference))
                continue
        skipped[reason] = skipped.get(reason, 0) + 1
    return items, skipped


def judge_item(item: ReferenceItem, answer: str, key: str) -> JudgeItem:
    """A comparison of a model answer (candidate) against the reference (baseline)."""
    return JudgeItem(key=key, fields={"instruction": item.instruction}, candidate=answer, baseline=item.reference)


def length_stats(answers: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Average length (characters and words) of the model answers and of the references."""
    def words(text: str) -> int:
        return len(text.split())

    return {
        "avg_chars": round(mean(len(a) for a in answers), 1) if answers else 0.0,
        "avg_words": round(mean(words(a) for a in answers), 1) if answers else 0.0,
        "reference_avg_chars": round(mean(len(r) for r in references), 1) if references else 0.0,
        "reference_avg_words": round(mean(words(r) for r in references), 1) if references else 0.0,
    }
