"""WildChat UserEval: evaluation prompts of held-out users, persona-guided inference, judge inputs.

* :func:`select_prompts` takes the *target* conversations of *eval-split* users only. An
  **initial** prompt is the first user message of a conversation; a **follow-up** prompt is a later
  user message, with the conversation before it as context. A prompt is used only when its
  conversation is not older than the user's persona cutoff, so the persona is written from history
  strictly before the prompt.
* :func:`model_chat` builds what an evaluated model sees. Persona-guided inference changes the
  system message and nothing else.
* :func:`judge_fields` builds the template fields of the judge prompt (persona, context, request).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rlhi_hpc.config import EvalConfig
from rlhi_hpc.eval.judge import JudgeItem, JudgeSettings, render_judge_chat
from rlhi_hpc.records import Conversation, Persona

TURN_TYPES = ("initial", "follow_up")
NO_PERSONA = "(no earlier conversations with this user)"
NO_CONTEXT = "(none: this is the first message of the conversation)"


@dataclass(frozen=True, kw_only=True)
class EvalPrompt:
    """One evaluation prompt of a held-out user."""

    key: str  # "<conversation_id>:<turn_index>"
    user: str
    conversation_id: str
    turn_index: int
    turn_type: str  # "initial" | "follow_up"
    context: tuple[dict[str, str], ...]  # earlier messages of the conversation (cut)
    request: str
    persona: str
    timestamp: float


@dataclass(frozen=True)
class System:
    """A model in one inference condition."""

    role: str  # "candidate" | "baseline"
    persona: bool

    @property
    def name(self) -> str:
        return f"{self.role}+persona" if self.persona else self.role


@dataclass(frozen=True)
class Comparison:
    """Candidate system vs baseline system."""

    candidate: System
    baseline: System

    @property
    def name(self) -> str:
        return f"{self.candidate.name} vs {self.baseline.name}"


def comparisons(cfg: EvalConfig) -> list[Comparison]:
    """One comparison per candidate condition (`eval.persona_guided`), baseline per `eval.baseline_persona`."""
    out: list[Comparison] = []
    for persona in cfg.persona_guided:
        base = {"same": persona, "never": False, "always": True}[cfg.baseline_persona]
        cmp = Comparison(System("candidate", persona), System("baseline", base))
        if cmp not in out:
            out.append(cmp)
    return out


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (head and tail kept)."""
    return text if len(text) <= limit else text[: limit // 2] + " […] " + text[-(limit // 2):]


def _user_prompts(convs: Sequence[Conversation], persona: Persona | None, cfg: EvalConfig,
                  counts: dict[str, int]) -> list[EvalPrompt]:
    caps = {"initial": cfg.max_initial_per_user, "follow_up": cfg.max_follow_up_per_user}
    taken = {"initial": 0, "follow_up": 0}
    persona_text = cut(persona.text.strip(), cfg.persona_max_chars) if persona and persona.text.strip() else ""
    out: list[EvalPrompt] = []
    for conv in sorted(convs, key=lambda c: (c.timestamp, c.conversation_id)):
        if persona is not None and conv.timestamp < persona.cutoff_time:
            counts["skipped_before_persona_cutoff"] = counts.get("skipped_before_persona_cutoff", 0) + 1
            continue
        for i, turn in enumerate(conv.turns):
            if turn.role != "user":
                continue
            kind = "initial" if i == 0 else "follow_up" if conv.turns[i - 1].role == "assistant" else ""
            if kind not in cfg.turn_types or (caps[kind] and taken[kind] >= caps[kind]):
                continue
            earlier = conv.turns[max(0, i - cfg.max_context_messages):i] if cfg.max_context_messages else ()
            context = tuple({"role": t.role, "content": cut(t.content, cfg.max_context_chars)} for t in earlier)
            out.append(EvalPrompt(key=f"{conv.conversation_id}:{i}", user=conv.user,
                                  conversation_id=conv.conversation_id, turn_index=i, turn_type=kind, context=context,
                                  request=cut(turn.content, cfg.max_context_chars), persona=persona_text,
                                  timestamp=conv.timestamp))
            taken[kind] += 1
    return out


def select_prompts(convs: Sequence[Conversation], personas: Mapping[str, Persona], cfg: EvalConfig,
                   counts: dict[str, int] | None = None) -> list[EvalPrompt]:
    """Evaluation prompts of the held-out users' target conversations, in a stable order."""
    counts = {} if counts is None else counts
    by_user: dict[str, list[Conversation]] = defaultdict(list)
    for conv in convs:
        if conv.split == "eval" and conv.role == "target":
            by_user[conv.user].append(conv)
    prompts: list[EvalPrompt] = []
    for user in sorted(by_user):
        persona = personas.get(user)
        if persona is None:
            counts["users_without_persona"] = counts.get("users_without_persona", 0) + 1
        prompts.extend(_user_prompts(by_user[user], persona, cfg, counts))
    if cfg.max_prompts_per_shard and len(prompts) > cfg.max_prompts_per_shard:
        counts["skipped_over_max_prompts"] = len(prompts) - cfg.max_prompts_per_shard
        prompts = prompts[:cfg.max_prompts_per_shard]
    return prompts


def system_prompt(cfg: EvalConfig, persona: str, persona_guided: bool) -> str:
    """The system prompt of an evaluated model: base prompt, plus the persona when guided."""
    if not persona_guided:
        return cfg.system_prompt
    return cfg.system_prompt + cfg.persona_template.format(persona=persona or NO_PERSONA)


def model_chat(prompt: EvalPrompt, cfg: EvalConfig, persona_guided: bool) -> list[dict[str, str]]:
    """System message (persona only when guided), the conversation so far, the request."""
    chat: list[dict[str, str]] = []
    system = system_prompt(cfg, prompt.persona, persona_guided)
    if system:
        chat.append({"role": "system", "content": system})
    chat.extend(dict(m) for m in prompt.context)
    chat.append({"role": "user", "content": prompt.request})
    return chat


def render_context(context: Sequence[Mapping[str, str]]) -> str:
    if not context:
        return NO_CONTEXT
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in context)


def judge_fields(prompt: EvalPrompt) -> dict[str, str]:
    """Template fields of the judge prompt for one evaluation prompt."""
    return {"persona": prompt.persona or NO_PERSONA, "context": render_context(prompt.context),
            "request": prompt.request}


# --------------------------------------------------------------------------------------------
# Fitting prompts into a model's context
# --------------------------------------------------------------------------------------------


def prompt_fits(engine: Any, chat: Sequence[Mapping[str, str]], max_new_tokens: int, max_model_len: int) -> bool:
    """Whether `chat` plus `max_new_tokens` fits (exact with engines that have ``fits``, else estimated)."""
    fits: Callable[..., bool] | None = getattr(engine, "fits", None)
    if fits is not None:
        return bool(fits(list(chat), max_new_tokens))
    used = sum(engine.count_tokens(m["content"]) + 8 for m in chat) + 16
    return used + max_new_tokens <= max_model_len


def fit_chat(engine: Any, chat: list[dict[str, str]], max_new_tokens: int, max_model_len: int,
             max_rounds: int = 24) -> list[dict[str, str]] | None:
    """Drop the oldest context messages, then shorten every message, until the chat fits; None if it cannot."""
    chat = [dict(m) for m in chat]
    for _ in range(max_rounds):
        if prompt_fits(engine, chat, max_new_tokens, max_model_len):
            return chat
        first = 1 if chat and chat[0]["role"] == "system" else 0
        if len(chat) - first > 1:
            del chat[first]
            continue
        for m in chat:
            m["content"] = cut(m["content"], max(16, int(len(m["content"]) * 0.7)))
    return chat if prompt_fits(engine, chat, max_new_tokens, max_model_len) else None


def fit_judge_item(engine: Any, item: JudgeItem, settings: JudgeSettings, max_new_tokens: int, max_model_len: int,
                   max_rounds: int = 24) -> JudgeItem | None:
    """Shorten the longest fields and answers of a judge item until its prompt fits; None if it cannot."""
    for _ in range(max_rounds):
        if prompt_fits(engine, render_judge_chat(item, "ab", settings), max_new_tokens, max_model_len):
            return item
        fields = {k: cut(v, max(32, int(len(v) * 0.7))) if len(v) > 64 else v for k, v in item.fields.items()}
        item = replace(item, fields=fields, candidate=cut(item.candidate, max(32, int(len(item.candidate) * 0.7))),
                       baseline=cut(item.baseline, max(32, int(len(item.baseline) * 0.7))))
    return item if prompt_fits(engine, render_judge_chat(item, "ab", settings), max_new_tokens, max_model_len) else None
