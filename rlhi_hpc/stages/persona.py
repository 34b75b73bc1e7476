"""persona: an LLM-written profile of each user from their history strictly before the cutoff.

The cutoff of a user is the time of their first *target* conversation (ingest assigns roles);
only conversations with a timestamp strictly earlier are read, newest first until
`persona.max_history_tokens` is reached, then presented oldest first.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.config import PersonaConfig, RunConfig
from rlhi_hpc.inference.engine import SamplingParams
from rlhi_hpc.records import Conversation, Persona
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked


@dataclass(frozen=True)
class History:
    """The part of a user's history a persona is written from."""

    user: str
    split: str
    cutoff_time: float
    text: str
    conversation_ids: tuple[str, ...]
    tokens: int


def cutoff_time(convs: Sequence[Conversation]) -> float:
    """Timestamp of the user's first target conversation (inf when they have none)."""
    return min((c.timestamp for c in convs if c.role == "target"), default=float("inf"))


def _line(conv: Conversation) -> str:
    day = dt.datetime.fromtimestamp(conv.timestamp, tz=dt.timezone.utc).strftime("%Y-%m-%d")
    requests = [t.content.strip().replace("\n", " ") for t in conv.turns if t.role == "user"]
    return f"- [{day}, {conv.language or 'unknown'}] " + " / ".join(requests)


def build_history(convs: Sequence[Conversation], cfg: PersonaConfig, count_tokens: Callable[[str], int],
                  truncate: Callable[[str, int], str]) -> History:
    """Pick history lines newest-first within the token budget; only conversations before the cutoff."""
    cutoff = cutoff_time(convs)
    earlier = sorted((c for c in convs if c.timestamp < cutoff), key=lambda c: (c.timestamp, c.conversation_id))
    earlier = earlier[-cfg.max_conversations:]
    lines: list[str] = []
    used: list[str] = []
    budget = cfg.max_history_tokens
    for conv in reversed(earlier):
        line = _line(conv)
        n = count_tokens(line) + 1
        if n > budget:
            if not lines:  # always give the model something: cut the newest line to fit
                lines.append(truncate(line, budget))
                used.append(conv.conversation_id)
                budget = 0
            break
        lines.append(line)
        used.append(conv.conversation_id)
        budget -= n
    text = "\n".join(reversed(lines))
    first = convs[0]
    return History(user=first.user, split=first.split, cutoff_time=cutoff, text=text,
                   conversation_ids=tuple(reversed(used)), tokens=cfg.max_history_tokens - budget)


def group_users(convs: Sequence[Conversation]) -> list[list[Conversation]]:
    by_user: dict[str, list[Conversation]] = defaultdict(list)
    for c in convs:
        by_user[c.user].append(c)
    return [by_user[u] for u in sorted(by_user)]


class PersonaStage:
    name = "persona"
    needs = ("ingest",)
    sections = ("model", "persona")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.persona
        users = group_users(list(ctx.read_upstream("ingest", shard, Conversation)))
        engine = ctx.engine()
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed)
        for chunk in chunked(users, cfg.chunk_size, start=writer.consumed):
            histories = [build_history(convs, cfg, engine.count_tokens,
                                       lambda t, n: engine.truncate(t, n, keep="end")) for convs in chunk]
            chats = [self._chat(h, cfg) for h in histories]
            gens = engine.generate(chats, params)
            records = [Persona(
                user=h.user, text=g.texts[0].strip(), n_conversations=len(h.conversation_ids),
                conversation_ids=h.conversation_ids, cutoff_time=h.cutoff_time, history_tokens=h.tokens,
                split=h.split, provenance=ctx.provenance(models={"persona": engine.model_name}, user=h.user))
                for h, g in zip(histories, gens, strict=True)]
            writer.commit(records, consumed=len(chunk), counts={
                "generated_tokens": sum(g.completion_tokens for g in gens),
                "prompt_tokens": sum(g.prompt_tokens for g in gens),
                "users_without_history": sum(1 for h in histories if not h.conversation_ids)})
        return {}

    @staticmethod
    def _chat(history: History, cfg: PersonaConfig) -> list[dict[str, str]]:
        chat = [{"role": "user", "content": cfg.prompt.format(history=history.text or "(no earlier requests)")}]
        if cfg.system_prompt:
            chat.insert(0, {"role": "system", "content": cfg.system_prompt})
        return chat
