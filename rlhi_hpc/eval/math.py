"""Final-answer extraction, normalisation and exact-match scoring for local math / multiple-choice files.

Extraction (:func:`extract_answer`): the content of the *last* ``\\boxed{...}`` (or ``\\fbox``)
in a completion; else what follows the last "final answer is" / "answer:"; else the last number;
else ``None``. Multiple-choice completions go through :func:`extract_choice` (a letter).

Normalisation (:func:`normalize_answer`) removes math delimiters, spacing commands, ``\\left`` /
``\\right``, ``\\text{}`` wrappers (and units after a number), degree and percent signs, a leading
``x =``, thousands separators and a trailing period, rewrites ``\\dfrac`` / ``\\frac12`` to
``\\frac{1}{2}``, and turns every plain number (integers, decimals, ``a/b``, ``\\frac{a}{b}``) into a
canonical fraction, so that ``\\boxed{\\frac{1}{2}}`` matches ``0.5``. :func:`answers_match`
compares two answers after normalisation, numerically when both are numbers.

Files (:func:`load_math_file`): JSONL (or a JSON list) with a question under ``problem`` /
``question`` / ``prompt`` and the gold answer under ``answer`` / ``final_answer`` (a list is joined,
OlympiadBench-style) or inside the ``\\boxed{}`` of a ``solution`` (Minerva/MATH-style). Rows with
``choices`` / ``options`` are multiple choice (GPQA / MMLU-Pro style); their answer is a letter, an
index (``answer_index``) or the text of the right option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from rlhi_hpc.errors import StageError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_ANSWER_IS_RE = re.compile(r"(?:final answer is|final answer:|answer is|answer:)\s*", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _balanced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at `start` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    return None


def boxed_contents(text: str) -> list[str]:
    """Every ``\\boxed{...}`` / ``\\fbox{...}`` content (and ``\\boxed 5``), in order."""
    found: list[str] = []
    for match in re.finditer(r"\\(?:boxed|fbox)", text):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            group = _balanced(text, i)
            if group is not None:
                found.append(group[0].strip())
        elif i > match.end():  # "\boxed 5": up to the next space or $
            word = re.match(r"[^\s$]+", text[i:])
            if word:
                found.append(word.group(0))
    return found


def last_number(text: str) -> str | None:
    """The last number written in `text` (integers, decimals, ``a/b``), or None."""
    matches = _NUMBER_RE.findall(text)
    return matches[-1] if matches else None


def _after_answer_phrase(text: str) -> str | None:
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():].strip().split("\n", 1)[0].strip()
    if rest.startswith("$"):
        inner = re.match(r"\$+([^$]+)\$+", rest)
        if inner:
            return inner.group(1).strip()
    rest = rest.rstrip(".").strip()
    return rest or None


def extract_answer(text: str) -> str | None:
    """The final answer of a completion (see the module docstring), or None when it has none."""
    boxed = boxed_contents(text)
    if boxed:
        return boxed[-1]
    phrase = _after_answer_phrase(text)
    if phrase:
        return phrase
    section = re.search(r"^#+\s*Answer\s*\n+\s*(.+?)\s*$", text, re.MULTILINE)
    if section:  # PRM800K / MATH style: a "# Answer" heading followed by the answer line
        return _strip_delimiters(section.group(1))
    return last_number(text)


def extract_choice(text: str, n_choices: int) -> str | None:
    """The option letter a multiple-choice completion picks (A.. for `n_choices` options), or None."""
    letters = LETTERS[:max(1, n_choices)]
    single = re.compile(rf"^\(?([{letters}])\)?[.:)]?$")
    for candidate in reversed(boxed_contents(text)):
        inner = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", candidate).strip()
        hit = single.match(inner)
        if hit:
            return hit.group(1)
    phrases = list(re.finditer(rf"(?i:answer is|answer:|option|choice)\s*[:\-]?\s*\**\(?([{letters}])\)?\b", text))
    if phrases:
        return phrases[-1].group(1)
    lines = [ln.strip().strip("*") for ln in text.strip().splitlines() if ln.strip()]
    if lines and single.match(lines[-1]):
        return single.match(lines[-1]).group(1)  # type: ignore[union-attr]
    standalone = re.findall(rf"\(([{letters}])\)|\b([{letters}])\b(?=[.):]?\s*$)", text, re.MULTILINE)
    if standalone:
        last = standalone[-1]
        return last[0] or last[1]
    return None


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left):len(s) - len(right)].strip()
    return s


def _canonical_fracs(s: str) -> str:
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)


def _drop_text(s: str) -> str:
    """``5 \\text{ cm}`` → ``5``; other ``\\text{x}`` wrappers → ``x``."""
    wrappers = r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\{([^{}]*)\}"
    without = re.sub(wrappers, "", s).strip()
    if without and without != s and to_fraction(without.replace(" ", "")) is not None:
        return without
    return re.sub(wrappers, r"\1", s)


def normalize_answer(answer: str) -> str:
    """A canonical string for comparing final answers (numbers become reduced fractions)."""
    s = _strip_delimiters(str(answer))
    s = re.sub(r"\\(?:left|right|displaystyle)", "", s)
    s = re.sub(r"\\[!,;:> ]", " ", s).replace("~", " ")
    s = _canonical_fracs(_drop_text(s))
    s = re.sub(r"\^\s*\{?\\circ\}?|°|\\%|%|\\\$|\$", "", s)
    if s.count("=") == 1 and re.match(r"^\s*[a-zA-Z]\w*\s*=", s):
        s = s.split("=", 1)[1]
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    value = to_fraction(s)
    if value is not None:
        return str(value)
    return s


def to_fraction(s: str) -> Fraction | None:
    """``3``, ``-0.25``, ``.5``, ``7/2``, ``\\frac{7}{2}``, ``-\\frac{1}{2}`` as a Fraction; else None."""
    s = s.strip().replace(" ", "")
    match = re.fullmatch(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", s)
    try:
        if match:
            sign, num, den = match.groups()
            value = Fraction(num) / Fraction(den)
            return -value if sign else value
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/-?\d+)?", s):
            if "/" in s:
                num, den = s.split("/")
                return Fraction(num) / Fraction(den)
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def answers_match(predicted: str | None, gold: str, *, rel_tol: float = 1e-6) -> bool:
    """Whether a predicted final answer equals the gold one after normalisation."""
    if predicted is None:
        return False
    p, g = normalize_answer(predicted), normalize_answer(gold)
    if p == g:
        return True
    fp, fg = to_fraction(p), to_fraction(g)
    if fp is not None and fg is not None:
        return abs(float(fp) - float(fg)) <= rel_tol * max(1.0, abs(float(fg)))
    return False


# --------------------------------------------------------------------------------------------
# Local benchmark files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MathProblem:
    """One problem of a local benchmark file; `choices` non-empty = multiple choice (answer = a letter)."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()


def _first(row: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if row.get(key) not in (None, "", []):
            return row[key]
    return None


def _gold_letter(row: dict[str, Any], choices: Sequence[str]) -> str | None:
    index = row.get("answer_index", row.get("answer_idx"))
    if isinstance(index, int) and 0 <= index < len(choices):
        return LETTERS[index]
    answer = _first(row, ("answer", "Answer", "correct"))
    if isinstance(answer, int) and 0 <= answer < len(choices):
        return LETTERS[answer]
    if isinstance(answer, str):
        text = answer.strip().strip("()").strip()
        if len(text) == 1 and text.upper() in LETTERS[:len(choices)]:
            return text.upper()
        if answer.strip() in choices:
            return LETTERS[list(choices).index(answer.strip())]
    return None


def parse_math_row(row: Any, index: int) -> MathProblem | str:
    """A problem from one file row, or the reason the row is unusable."""
    if not isinstance(row, dict):
        return "not_an_object"
    question = _first(row, ("problem", "question", "Question", "prompt"))
    if not isinstance(question, str):
        return "no_question"
    pid = str(_first(row, ("id", "unique_id", "question_id", "idx")) or index)
    choices = _first(row, ("choices", "options"))
    if isinstance(choices, list) and choices:
        labels = tuple(str(c) for c in choices)
        letter = _gold_letter(row, labels)
        if letter is None:
            return "no_choice_answer"
        return MathProblem(id=pid, question=question, answer=letter, choices=labels)
    answer = _first(row, ("answer", "final_answer", "Answer"))
    if isinstance(answer, list):
        answer = ", ".join(str(a) for a in answer)
    if answer is None and isinstance(row.get("solution"), str):
        answer = extract_answer(row["solution"])
    if answer is None or isinstance(answer, (dict, list)):
        return "no_answer"
    return MathProblem(id=pid, question=question, answer=str(answer))


def load_math_file(path: str | Path) -> tuple[list[MathProblem], dict[str, int]]:
    """Problems of a JSONL / JSON-list file, and the count of skipped rows per reason."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"math benchmark file {path} does not exist; fix eval.math_files")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows: list[Any] = json.loads(text)
    else:
        rows = []
        for line in text.splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(None)
    problems: list[MathProblem] = []
    skipped: dict[str, int] = {}
    for i, row in enumerate(rows):
        parsed = parse_math_row(row, i)
        if isinstance(parsed, str):
            skipped[parsed] = skipped.get(parsed, 0) + 1
        else:
            problems.append(parsed)
    return problems, skipped


def format_choices(choices: Sequence[str]) -> str:
    """``A. first`` / ``B. second`` lines."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def grade(problem: MathProblem, completion: str) -> tuple[str | None, bool]:
    """The extracted answer of a completion and whether it is correct."""
    if problem.choices:
        letter = extract_choice(completion, len(problem.choices))
        return letter, letter == problem.answer
    predicted = extract_answer(completion)
    return predicted, answers_match(predicted, problem.answer)
