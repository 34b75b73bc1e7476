"""Robust generation for the data stages: prompts that fit, bounded retries, reasons for every loss.

**Truncation rule** (:func:`fit_prompt`), applied to every prompt before it reaches a model:

1. the persona is cut to its own token budget (``*.persona_max_tokens``), keeping its start;
2. while the rendered prompt is longer than the budget (``max_model_len`` minus the tokens that must
   stay free for the reply), the *oldest* turns of the conversation are dropped, a whole exchange
   at a time (the next kept turn is always a user turn), so the last user request always stays;
3. if the prompt still does not fit with only the last request left, it is **skipped** with the
   reason ``prompt_too_long`` (the stage quarantines it; nothing else in the shard is affected).

**Retries** (:func:`generate_valid`): every completion is checked (:func:`check_output`: empty or
whitespace-only → ``empty_output``, one word repeated → ``degenerate_output``, plus any
stage-specific check). Prompts short of valid completions are generated again, at most
``max_retries`` times, each retry with a different seed (``seed + attempt * RETRY_SEED_STRIDE``);
a retry of greedy decoding samples at ``retry_temperature`` since greedy would repeat itself.
A prompt that still has too few valid completions gets the most frequent failure as its reason.

An engine that rejects a batch because of one bad prompt (``PromptTooLongError`` with indices, or a
``ValueError`` from tokenisation) costs only that prompt: the rest of the batch is generated. Any
other engine error (out of memory, a dead worker) propagates and fails the task, which the
relaunch retries from the last committed chunk.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlhi_hpc.errors import PromptTooLongError
from rlhi_hpc.inference.engine import Chat, Engine, Generation, Message, SamplingParams

log = logging.getLogger(__name__)

RETRY_SEED_STRIDE = 1_000_003
#: Tokens assumed per message for chat-template markup when an engine cannot render chats itself.
TEMPLATE_TOKENS_PER_MESSAGE = 8

OutputCheck = Callable[[str], str | None]


# --------------------------------------------------------------------------------------------
# Token budgets and truncation
# --------------------------------------------------------------------------------------------


def chat_tokens(engine: Any, chat: Chat) -> int:
    """Tokens of the rendered prompt: exact when the engine renders chats, else an estimate."""
    prompt_ids = getattr(engine, "prompt_ids", None)
    if callable(prompt_ids):
        return len(prompt_ids(chat))
    return sum(engine.count_tokens(m["content"]) + TEMPLATE_TOKENS_PER_MESSAGE for m in chat) + \
        TEMPLATE_TOKENS_PER_MESSAGE


def context_length(engine: Any, default: int) -> int:
    """The engine's context length (``max_model_len``) or `default` when it does not say."""
    value = getattr(engine, "max_model_len", None)
    return int(value) if isinstance(value, int) and value > 0 else default


@dataclass(frozen=True, kw_only=True)
class Fitted:
    """A prompt after the truncation rule: `value` is None when it was skipped (see `reason`)."""

    value: Any
    persona: str
    turns: tuple[Message, ...]
    dropped_turns: int = 0
    persona_truncated: bool = False
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def drop_oldest_exchange(turns: Sequence[Message]) -> tuple[Message, ...]:
    """`turns` without its oldest turn and whatever follows it up to the next user turn."""
    rest = list(turns[1:])
    while rest and rest[0]["role"] != "user":
        rest.pop(0)
    return tuple(rest)


def fit_prompt(build: Callable[[str, Sequence[Message]], Any], measure: Callable[[Any], int], *, persona: str,
               turns: Sequence[Message], budget: int, persona_tokens: int,
               count_tokens: Callable[[str], int], truncate: Callable[[str, int], str]) -> Fitted:
    """Apply the truncation rule of the module docstring.

    `build(persona, turns)` makes the model input (a chat, or anything `measure` accepts) and
    `measure` counts its tokens; `turns` is the conversation, ending with the request.
    """
    cut = persona
    if persona and count_tokens(persona) > persona_tokens:
        cut = truncate(persona, persona_tokens)
    kept = tuple(turns)
    dropped = 0
    while True:
        value = build(cut, kept)
        if measure(value) <= budget:
            return Fitted(value=value, persona=cut, turns=kept, dropped_turns=dropped, persona_truncated=cut != persona)
        shorter = drop_oldest_exchange(kept)
        if not shorter:
            return Fitted(value=None, persona=cut, turns=kept, dropped_turns=dropped,
                          persona_truncated=cut != persona, reason="prompt_too_long")
        dropped += len(kept) - len(shorter)
        kept = shorter


def fit_chat(engine: Any, build: Callable[[str, Sequence[Message]], list[Message]], *, persona: str,
             turns: Sequence[Message], max_new_tokens: int, persona_tokens: int, default_context: int) -> Fitted:
    """:func:`fit_prompt` for a chat sent to `engine` that must leave room for `max_new_tokens`."""
    budget = context_length(engine, default_context) - max_new_tokens
    return fit_prompt(build, lambda chat: chat_tokens(engine, chat), persona=persona, turns=turns, budget=budget,
                      persona_tokens=persona_tokens, count_tokens=engine.count_tokens,
                      truncate=lambda text, n: engine.truncate(text, n, keep="start"))


def transcript(turns: Sequence[Message]) -> str:
    """A conversation as plain text for prompts that quote it (``User: …`` / ``Assistant: …``)."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content'].strip()}" for m in turns)


# --------------------------------------------------------------------------------------------
# Output checks and retries
# --------------------------------------------------------------------------------------------


def check_output(text: str) -> str | None:
    """Reason why a completion is unusable, or None when it is fine."""
    stripped = text.strip()
    if not stripped:
        return "empty_output"
    words = stripped.split()
    if len(words) >= 8 and len(set(words)) == 1:
        return "degenerate_output"
    return None


def mentions(text: str, quoted: str, min_chars: int = 20) -> bool:
    """True when `text` contains `quoted` verbatim (case/space-insensitive); short quotes never count."""
    needle = " ".join(quoted.lower().split())
    return len(needle) >= min_chars and needle in " ".join(text.lower().split())


@dataclass(kw_only=True)
class Outcome:
    """Valid completions of one prompt after retries; `reason` is set when there are too few."""

    texts: list[str] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    attempts: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass(kw_only=True)
class GenStats:
    """Token and retry counters of one :func:`generate_valid` call (go into ``writer.commit`` counts)."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    retried_prompts: int = 0
    invalid_outputs: int = 0

    def counts(self, prefix: str = "") -> dict[str, int]:
        return {"generated_tokens": self.generated_tokens, "prompt_tokens": self.prompt_tokens,
                f"{prefix}retried_prompts": self.retried_prompts, f"{prefix}invalid_outputs": self.invalid_outputs}


def safe_generate(engine: Engine, chats: Sequence[Chat], params: SamplingParams) -> list[Generation | str]:
    """`engine.generate`, except that a prompt the engine rejects becomes a reason string."""
    if not chats:
        return []
    try:
        return list(engine.generate(chats, params))
    except PromptTooLongError as exc:
        bad = set(exc.indices)
        if not bad and len(chats) == 1:
            return ["prompt_too_long"]
        if not bad:
            return [r for chat in chats for r in safe_generate(engine, [chat], params)]
        good = [i for i in range(len(chats)) if i not in bad]
        results: list[Generation | str] = ["prompt_too_long"] * len(chats)
        for i, gen in zip(good, safe_generate(engine, [chats[i] for i in good], params), strict=True):
            results[i] = gen
        return results
    except ValueError as exc:
        if len(chats) == 1:
            log.warning("event=engine_rejected_prompt error=%r", exc)
            return [f"engine_error:{type(exc).__name__}"]
        return [r for chat in chats for r in safe_generate(engine, [chat], params)]


def _retry_params(params: SamplingParams, attempt: int, n: int, retry_temperature: float) -> SamplingParams:
    temperature = params.temperature if params.temperature > 0 or attempt == 0 else retry_temperature
    return dataclasses.replace(params, n=n, seed=params.seed + attempt * RETRY_SEED_STRIDE, temperature=temperature)


def generate_valid(engine: Engine, chats: Sequence[Chat], params: SamplingParams, *, max_retries: int,
                   min_valid: int | None = None, retry_temperature: float = 0.7,
                   check: OutputCheck | Sequence[OutputCheck | None] = check_output) -> tuple[list[Outcome], GenStats]:
    """Up to ``params.n`` valid completions per chat, retrying short prompts (see the module docstring).

    `check` is one function for every chat, or one per chat (None = :func:`check_output`). A chat
    ends with fewer than `min_valid` (default ``params.n``) valid completions only after
    ``max_retries`` retries; its outcome then carries the reason. Chats short of ``params.n`` valid
    completions are retried either way (retries ask only for the missing ones).
    """
    checks = [check] * len(chats) if callable(check) else [c or check_output for c in check]
    need = params.n if min_valid is None else min_valid
    outcomes = [Outcome() for _ in chats]
    stats = GenStats()
    for attempt in range(max_retries + 1):
        pending = [i for i, o in enumerate(outcomes) if not o.reason and len(o.texts) < params.n]
        if attempt > 0:
            stats.retried_prompts += len(pending)
        if not pending:
            break
        by_missing: dict[int, list[int]] = {}
        for i in pending:
            by_missing.setdefault(params.n - len(outcomes[i].texts), []).append(i)
        for missing, idx in sorted(by_missing.items()):
            run = _retry_params(params, attempt, missing, retry_temperature)
            for i, result in zip(idx, safe_generate(engine, [chats[i] for i in idx], run), strict=True):
                _absorb(outcomes[i], result, checks[i], stats)
    for o in outcomes:
        if not o.reason and len(o.texts) < need:
            o.reason = o.failures.most_common(1)[0][0] if o.failures else "no_output"
    return outcomes, stats


def _absorb(outcome: Outcome, result: Generation | str, check: OutputCheck, stats: GenStats) -> None:
    outcome.attempts += 1
    if isinstance(result, str):  # the engine rejected this prompt: retrying cannot help
        outcome.reason = result
        return
    stats.generated_tokens += result.completion_tokens
    stats.prompt_tokens += result.prompt_tokens
    for text in result.texts:
        problem = check(text)
        if problem:
            outcome.failures[problem] += 1
            stats.invalid_outputs += 1
        else:
            outcome.texts.append(text.strip())
