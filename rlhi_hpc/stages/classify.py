"""classify: label every user turn that follows an assistant turn in the target conversations.

The engine *chooses* among the configured labels (each label scored as the complete assistant
reply), so every label is valid with any model; the per-label log-probs are kept in `scores`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.config import ClassifyConfig, RunConfig
from rlhi_hpc.records import Conversation, TurnLabel
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked


@dataclass(frozen=True)
class FollowUp:
    """A user turn (index `turn_index`) right after an assistant turn."""

    conv: Conversation
    turn_index: int


def follow_ups(convs: Sequence[Conversation]) -> list[FollowUp]:
    """Every labelable user turn of the target conversations, in a stable order."""
    items: list[FollowUp] = []
    for conv in convs:
        if conv.role != "target":
            continue
        for i in range(2, len(conv.turns)):
            if conv.turns[i].role == "user" and conv.turns[i - 1].role == "assistant":
                items.append(FollowUp(conv, i))
    return items


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " […] " + text[-limit // 2:]


def render_prompt(item: FollowUp, cfg: ClassifyConfig) -> list[dict[str, str]]:
    """The classifier chat for one follow-up turn."""
    turns = item.conv.turns
    prev_user = next((t.content for t in reversed(turns[: item.turn_index - 1]) if t.role == "user"), "")
    labels = "\n".join(f"- {lab}: {cfg.descriptions.get(lab, '')}".rstrip(": ") for lab in cfg.taxonomy)
    user = cfg.prompt.format(previous_user=_cut(prev_user, cfg.max_context_chars),
                             assistant=_cut(turns[item.turn_index - 1].content, cfg.max_context_chars),
                             message=_cut(turns[item.turn_index].content, cfg.max_context_chars), labels=labels)
    chat = [{"role": "user", "content": user}]
    if cfg.system_prompt:
        chat.insert(0, {"role": "system", "content": cfg.system_prompt})
    return chat


class ClassifyStage:
    name = "classify"
    needs = ("ingest",)
    sections = ("model", "classify")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.classify
        items = follow_ups(list(ctx.read_upstream("ingest", shard, Conversation)))
        engine = ctx.engine()
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            choices = engine.choose([render_prompt(it, cfg) for it in chunk], cfg.taxonomy)
            records = []
            for it, choice in zip(chunk, choices, strict=True):
                label = cfg.taxonomy[choice.index]
                actionable = label in cfg.actionable
                records.append(TurnLabel(
                    user=it.conv.user, conversation_id=it.conv.conversation_id, turn_index=it.turn_index,
                    label=label, actionable=actionable,
                    feedback=it.conv.turns[it.turn_index].content if actionable else "",
                    scores=dict(zip(cfg.taxonomy, choice.logprobs, strict=True)), split=it.conv.split,
                    provenance=ctx.provenance(models={"classifier": engine.model_name}, user=it.conv.user,
                                              conversation_id=it.conv.conversation_id, turn_index=it.turn_index)))
            counts = Counter(f"label_{r.label}" for r in records)
            writer.commit(records, consumed=len(chunk), counts=dict(counts))
        return {"engine": engine.stats()}
