"""Pairwise LLM judging with position swap, verdict parsing and retries.

Every comparison (candidate answer vs baseline answer) is judged twice: in order ``ab``
(Response A = candidate, Response B = baseline) and in order ``ba`` (A = baseline, B = candidate).
For each dimension (default: personalization, instruction_following, overall) a verdict letter is
mapped to the candidate's outcome in that order, and the two orders are combined: the mean score
(win 1, tie ½, loss 0) above ½ is a win, below ½ a loss, exactly ½ a tie — so a judge that always
prefers "Response A" produces ties, not wins. If either order has no usable verdict after the
retries, the comparison's outcome is ``unparseable``: it is kept and counted, never dropped.

Two judging modes:

* ``generate``: the judge writes free text that must end with one ``<dimension>: A|B|tie`` line
  per dimension (the last such line wins). A reply missing any dimension is regenerated with a new
  seed (and at least ``retry_temperature``) up to ``max_retries`` times.
* ``choose``: for each dimension the engine scores the three replies ``<dimension>: A``,
  ``<dimension>: B``, ``<dimension>: tie`` and takes the most likely one (always parseable; used
  with small models and for cheap, deterministic judging).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlhi_hpc.inference.engine import SamplingParams

if TYPE_CHECKING:
    from rlhi_hpc.inference.engine import Engine

ORDERS = ("ab", "ba")
VERDICTS = ("A", "B", "tie")
_TIE_WORDS = r"tie|tied|equal|draw|same|neither|both"


@dataclass(frozen=True, kw_only=True)
class JudgeSettings:
    """How to prompt the judge and read its answer (built from the ``eval`` config section)."""

    prompt: str  # str.format template: the item's fields + {answer_a} {answer_b} {dimensions} {answer_format}
    dimensions: Mapping[str, str]  # name -> description, in order
    system_prompt: str = ""
    mode: str = "generate"  # "generate" | "choose"
    max_new_tokens: int = 256
    temperature: float = 0.0
    retry_temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    max_retries: int = 2
    max_answer_chars: int = 6000
    max_raw_chars: int = 2000  # judge replies are stored cut to this length


@dataclass(frozen=True, kw_only=True)
class JudgeItem:
    """One comparison: template fields (persona, context, request, ...) and the two answers."""

    key: str
    fields: Mapping[str, str]
    candidate: str
    baseline: str


@dataclass(kw_only=True)
class Judgement:
    """Everything the judge said about one item, and the combined outcome per dimension."""

    verdicts: dict[str, dict[str, str] | None] = field(default_factory=lambda: {o: None for o in ORDERS})
    raw: dict[str, list[str]] = field(default_factory=lambda: {o: [] for o in ORDERS})
    attempts: dict[str, int] = field(default_factory=lambda: {o: 0 for o in ORDERS})
    outcomes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"verdicts": self.verdicts, "raw": self.raw, "attempts": self.attempts, "outcomes": self.outcomes}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " […] " + text[-limit // 2:]


def answer_format(dimensions: Sequence[str]) -> str:
    """The lines a judge must end its reply with."""
    return "\n".join(f"{name}: A, B or tie" for name in dimensions)


def describe_dimensions(dimensions: Mapping[str, str], names: Sequence[str] | None = None) -> str:
    return "\n".join(f"- {name}: {dimensions[name]}" for name in (names or list(dimensions)))


def answers_in_order(item: JudgeItem, order: str) -> tuple[str, str]:
    """(Response A, Response B) for `order`: ``ab`` puts the candidate first, ``ba`` the baseline."""
    if order == "ab":
        return item.candidate, item.baseline
    if order == "ba":
        return item.baseline, item.candidate
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def render_judge_chat(item: JudgeItem, order: str, settings: JudgeSettings,
                      dimensions: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The judge chat for `item` in `order`, asking about `dimensions` (default: all)."""
    names = list(dimensions or settings.dimensions)
    a, b = answers_in_order(item, order)
    content = settings.prompt.format(
        **item.fields, answer_a=_cut(a, settings.max_answer_chars), answer_b=_cut(b, settings.max_answer_chars),
        dimensions=describe_dimensions(settings.dimensions, names), answer_format=answer_format(names))
    chat = [{"role": "user", "content": content}]
    if settings.system_prompt:
        chat.insert(0, {"role": "system", "content": settings.system_prompt})
    return chat


def _dimension_pattern(name: str) -> re.Pattern[str]:
    name_re = r"[ _\-]".join(re.escape(part) for part in re.split(r"[ _\-]+", name))
    return re.compile(
        rf"(?m)^[\s*#>\-]*(?i:{name_re})[\s*]*[:=\-]\s*[*\[(\"']*\s*(?:(?i:response|answer|assistant|output)\s+)?"
        rf"(A|B|(?i:{_TIE_WORDS}))(?![A-Za-z])")


def parse_verdict(text: str, dimensions: Sequence[str]) -> dict[str, str] | None:
    """``{dimension: "A" | "B" | "tie"}`` from a judge reply (last line per dimension), or None if any is missing."""
    out: dict[str, str] = {}
    for name in dimensions:
        hits = _dimension_pattern(name).findall(text)
        if not hits:
            return None
        last = hits[-1]
        out[name] = last if last in ("A", "B") else "tie"
    return out


def to_outcome(letter: str, order: str) -> str:
    """The candidate's outcome when the judge picked `letter` in `order`."""
    if letter == "tie":
        return "tie"
    candidate_letter = "A" if order == "ab" else "B"
    return "win" if letter == candidate_letter else "loss"


def combine_orders(outcome_ab: str | None, outcome_ba: str | None) -> str:
    """One outcome from both orders (mean score above/below/at ½); ``unparseable`` if either is missing."""
    if outcome_ab is None or outcome_ba is None:
        return "unparseable"
    score = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    mean = (score[outcome_ab] + score[outcome_ba]) / 2
    return "win" if mean > 0.5 else "loss" if mean < 0.5 else "tie"


def finalize(judgement: Judgement, dimensions: Sequence[str]) -> Judgement:
    """Fill `judgement.outcomes` from its per-order verdicts."""
    for name in dimensions:
        per_order = {}
        for order in ORDERS:
            verdict = judgement.verdicts[order]
            per_order[order] = to_outcome(verdict[name], order) if verdict else None
        judgement.outcomes[name] = combine_orders(per_order["ab"], per_order["ba"])
    return judgement


def judge_items(engine: Engine, items: Sequence[JudgeItem], settings: JudgeSettings) -> list[Judgement]:
    """Judge every item in both orders; one :class:`Judgement` per item, in input order."""
    judgements = [Judgement() for _ in items]
    if settings.mode == "choose":
        _judge_by_choice(engine, items, settings, judgements)
    elif settings.mode == "generate":
        _judge_by_generation(engine, items, settings, judgements)
    else:
        raise ValueError(f"judge mode must be 'generate' or 'choose', got {settings.mode!r}")
    return [finalize(j, list(settings.dimensions)) for j in judgements]


def _judge_by_generation(engine: Engine, items: Sequence[JudgeItem], settings: JudgeSettings,
                         judgements: list[Judgement]) -> None:
    dims = list(settings.dimensions)
    pending = [(i, order) for i in range(len(items)) for order in ORDERS]
    for attempt in range(settings.max_retries + 1):
        if not pending:
            return
        temperature = settings.temperature if attempt == 0 else max(settings.temperature, settings.retry_temperature)
        params = SamplingParams(temperature=temperature, top_p=settings.top_p, max_new_tokens=settings.max_new_tokens,
                                seed=settings.seed + attempt)
        gens = engine.generate([render_judge_chat(items[i], order, settings) for i, order in pending], params)
        still: list[tuple[int, str]] = []
        for (i, order), gen in zip(pending, gens, strict=True):
            text = gen.texts[0]
            judgements[i].raw[order].append(_cut(text, settings.max_raw_chars))
            judgements[i].attempts[order] += 1
            verdict = parse_verdict(text, dims)
            if verdict is None:
                still.append((i, order))
            else:
                judgements[i].verdicts[order] = verdict
        pending = still


def _judge_by_choice(engine: Engine, items: Sequence[JudgeItem], settings: JudgeSettings,
                     judgements: list[Judgement]) -> None:
    dims = list(settings.dimensions)
    keys = [(i, order, name) for i in range(len(items)) for order in ORDERS for name in dims]
    for name in dims:  # one choose call per dimension: the options differ per dimension
        sel = [(i, order) for i, order, n in keys if n == name]
        options = [f"{name}: {v}" for v in VERDICTS]
        choices = engine.choose([render_judge_chat(items[i], order, settings, [name]) for i, order in sel], options)
        for (i, order), choice in zip(sel, choices, strict=True):
            verdict = judgements[i].verdicts[order] or {}
            verdict[name] = VERDICTS[choice.index]
            judgements[i].verdicts[order] = verdict
            judgements[i].raw[order].append(options[choice.index])
            judgements[i].attempts[order] = 1
