"""sample: N persona-conditioned candidate replies for every request without feedback.

The requests of a shard are the train-split target conversations' first user turns
(``sample.first_turns``) and the follow-up user turns whose classify label is in ``sample.labels``,
in conversation order. Eval users are never sampled. The policy sees the conversation up to the
request with the persona in the system prompt (``system_prompt + persona_template``, the same
layout DPO trains with); ``sample.use_persona=false`` is the user-agnostic ablation. Prompts are
fitted to the context by the rule in :mod:`rlhi_hpc.inference.robust`; empty or malformed
candidates are retried, and a prompt left with fewer than ``sample.min_candidates`` is quarantined.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.config import RunConfig, SampleConfig
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.engine import Message, SamplingParams
from rlhi_hpc.inference.robust import Fitted, fit_chat, generate_valid
from rlhi_hpc.records import Candidates, Conversation, Persona, Quarantined, TurnLabel
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked


@dataclass(frozen=True)
class Request:
    """The user turn `turn_index` of `conv`, answered without earlier feedback."""

    conv: Conversation
    turn_index: int

    @property
    def key(self) -> str:
        return request_key(self.conv, self.turn_index)


def request_key(conv: Conversation, turn_index: int) -> str:
    return f"{conv.user[:12]}:{conv.conversation_id}:{turn_index}"


def messages(conv: Conversation, end: int) -> tuple[Message, ...]:
    """Turns ``[0, end)`` of `conv` as chat messages."""
    return tuple({"role": t.role, "content": t.content} for t in conv.turns[:end])


def personas_by_user(records: Iterable[Persona]) -> dict[str, Persona]:
    return {p.user: p for p in records}


def find_requests(convs: Sequence[Conversation], labels: Iterable[TurnLabel], cfg: SampleConfig) -> list[Request]:
    """Every request to sample for, in a stable order (conversation order, then turn)."""
    wanted = {(lab.conversation_id, lab.turn_index) for lab in labels if lab.label in cfg.labels}
    items: list[Request] = []
    for conv in convs:
        if conv.role != "target" or conv.split != "train" or not conv.turns:
            continue
        if cfg.first_turns and conv.turns[0].role == "user":
            items.append(Request(conv, 0))
        for i in range(2, len(conv.turns)):
            if conv.turns[i].role == "user" and (conv.conversation_id, i) in wanted:
                items.append(Request(conv, i))
    return items


def system_prompt(persona: str, cfg: SampleConfig) -> str:
    """The policy's system prompt: base prompt, plus the persona when `use_persona` and non-empty."""
    if cfg.use_persona and persona.strip():
        return cfg.system_prompt + cfg.persona_template.format(persona=persona.strip())
    return cfg.system_prompt


def build_chat(persona: str, turns: Sequence[Message], cfg: SampleConfig) -> list[Message]:
    """The sampling chat: the system prompt (when non-empty), then the conversation up to the request."""
    system = system_prompt(persona, cfg)
    return ([{"role": "system", "content": system}] if system else []) + list(turns)


def quarantine(key: str, reason: str, detail: str = "", **raw: Any) -> Quarantined:
    """A record the stage could not produce, with its reason and the ids to trace it."""
    return Quarantined(source=key, reason=reason, detail=detail[:500],
                       raw=json.dumps(raw, ensure_ascii=False, sort_keys=True)[:2000])


class SampleStage:
    name = "sample"
    needs = ("ingest", "classify", "persona")
    sections = ("model", "sample")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        unknown = [lab for lab in cfg.sample.labels if lab not in cfg.classify.taxonomy]
        if unknown:
            raise ConfigError(f"config key 'sample.labels': got {unknown}; allowed: labels of classify.taxonomy "
                              f"{cfg.classify.taxonomy}")
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.sample
        convs = list(ctx.read_upstream("ingest", shard, Conversation))
        items = find_requests(convs, ctx.read_upstream("classify", shard, TurnLabel), cfg)
        personas = personas_by_user(ctx.read_upstream("persona", shard, Persona))
        engine = ctx.engine()
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                n=cfg.n, seed=cfg.seed)
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            records, quarantined, counts = self._chunk(ctx, engine, chunk, personas, params)
            writer.commit(records, quarantined, consumed=len(chunk), counts=counts)
        return {"requests": len(items), "engine": engine.stats() if hasattr(engine, "stats") else {}}

    def _chunk(self, ctx: StageContext, engine: Any, chunk: Sequence[Request], personas: dict[str, Persona],
               params: SamplingParams) -> tuple[list[Candidates], list[Quarantined], dict[str, int]]:
        cfg = ctx.cfg.sample
        counts: Counter = Counter()
        quarantined: list[Quarantined] = []
        ready: list[tuple[Request, Persona | None, Fitted]] = []
        for req in chunk:
            persona = personas.get(req.conv.user)
            ids = {"user": req.conv.user, "conversation_id": req.conv.conversation_id, "turn_index": req.turn_index}
            if persona is None and cfg.use_persona:
                quarantined.append(quarantine(req.key, "missing_persona", "no persona record for this user", **ids))
                continue
            fitted = fit_chat(engine, lambda p, t: build_chat(p, t, cfg), persona=persona.text if persona else "",
                              turns=messages(req.conv, req.turn_index + 1), max_new_tokens=cfg.max_new_tokens,
                              persona_tokens=cfg.persona_max_tokens, default_context=ctx.cfg.model.max_model_len)
            if not fitted.ok:
                quarantined.append(quarantine(req.key, fitted.reason, "request alone exceeds the context", **ids))
                continue
            counts["truncated_prompts"] += fitted.dropped_turns > 0
            counts["persona_truncated"] += fitted.persona_truncated
            ready.append((req, persona, fitted))
        outcomes, stats = generate_valid(engine, [f.value for _, _, f in ready], params, max_retries=cfg.max_retries,
                                         min_valid=cfg.min_candidates, retry_temperature=cfg.retry_temperature)
        counts.update(stats.counts())
        records: list[Candidates] = []
        for (req, persona, fitted), out in zip(ready, outcomes, strict=True):
            if not out.ok:
                quarantined.append(quarantine(req.key, out.reason, f"{len(out.texts)} valid of {cfg.n} after "
                                              f"{out.attempts} attempts: {dict(out.failures)}",
                                              user=req.conv.user, conversation_id=req.conv.conversation_id,
                                              turn_index=req.turn_index))
                continue
            records.append(Candidates(
                key=req.key, prompt=fitted.turns, persona=persona.text if persona else "", texts=tuple(out.texts),
                with_persona=cfg.use_persona and bool(fitted.persona.strip()),
                provenance=ctx.provenance(models={"policy": engine.model_name, **_persona_model(persona)},
                                          user=req.conv.user, conversation_id=req.conv.conversation_id,
                                          turn_index=req.turn_index)))
        counts["candidates"] += sum(len(r.texts) for r in records)
        counts.update(f"quarantine_{q.reason}" for q in quarantined)
        return records, quarantined, dict(counts)


def _persona_model(persona: Persona | None) -> dict[str, str]:
    model = persona.provenance.models.get("persona", "") if persona else ""
    return {"persona": model} if model else {}
