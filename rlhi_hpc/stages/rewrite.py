"""rewrite: user-guided rewrites (chosen) against the policy's regenerated reply (rejected).

For every train-split user turn labelled actionable (``classify.actionable``) at index ``u``, the
assistant reply it reacts to is turn ``u - 1`` and the request is everything before it:

* **rejected** — the policy regenerates turn ``u - 1`` from the persona-free conversation
  ``turns[:u - 1]`` (no system prompt);
* **chosen** — the rewriter (``rewrite.model``, default the policy) reads the persona, the
  conversation, the original reply and the user's feedback (turn ``u``) and writes the reply that
  would have satisfied the user, without mentioning the feedback. A rewrite that quotes the
  feedback verbatim counts as malformed and is retried. ``rewrite.use_feedback=false`` is the
  "from scratch" ablation: ``prompt_from_scratch``, which never contains the feedback.

Both prompts go through the truncation rule of :mod:`rlhi_hpc.inference.robust`; a label whose
conversation, turn or persona cannot be found, a prompt that cannot fit, and an output still empty
or malformed after ``rewrite.max_retries`` retries are quarantined with their reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.config import RewriteConfig, RunConfig, model_preset
from rlhi_hpc.inference.engine import Message, SamplingParams
from rlhi_hpc.inference.robust import (Fitted, OutputCheck, check_output, fit_chat, generate_valid, mentions,
                                       transcript)
from rlhi_hpc.records import Conversation, Persona, Quarantined, RewritePair, TurnLabel
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked
from rlhi_hpc.stages.sample import messages, personas_by_user, quarantine, request_key


@dataclass(frozen=True)
class RewriteJob:
    """One actionable follow-up, resolved against its conversation and persona."""

    label: TurnLabel
    conv: Conversation
    persona: Persona

    @property
    def key(self) -> str:
        return request_key(self.conv, self.label.turn_index)

    @property
    def context(self) -> tuple[Message, ...]:
        """The conversation up to (and including) the request the original reply answered."""
        return messages(self.conv, self.label.turn_index - 1)

    @property
    def response(self) -> str:
        return self.conv.turns[self.label.turn_index - 1].content

    @property
    def feedback(self) -> str:
        return self.label.feedback or self.conv.turns[self.label.turn_index].content


def resolve(label: TurnLabel, convs: dict[str, Conversation], personas: dict[str, Persona]) -> RewriteJob | Quarantined:
    """The job for `label`, or the reason it cannot be one."""
    ids = {"user": label.user, "conversation_id": label.conversation_id, "turn_index": label.turn_index}
    key = f"{label.user[:12]}:{label.conversation_id}:{label.turn_index}"
    conv = convs.get(label.conversation_id)
    if conv is None or conv.user != label.user:
        return quarantine(key, "missing_conversation", "the labelled conversation is not in the ingest shard", **ids)
    u = label.turn_index
    if not (2 <= u < len(conv.turns)) or conv.turns[u].role != "user" or conv.turns[u - 1].role != "assistant":
        return quarantine(key, "bad_turn_index", f"turn {u} is not a user turn after an assistant turn", **ids)
    persona = personas.get(label.user)
    if persona is None:
        return quarantine(key, "missing_persona", "no persona record for this user", **ids)
    return RewriteJob(label=label, conv=conv, persona=persona)


def rewriter_chat(persona: str, turns: Sequence[Message], *, response: str, feedback: str,
                  cfg: RewriteConfig) -> list[Message]:
    """The rewriter's chat; the feedback appears in it only when ``cfg.use_feedback``."""
    fields = {"persona": persona.strip() or "(nothing known)", "conversation": transcript(turns),
              "response": response.strip()}
    text = cfg.prompt.format(**fields, feedback=feedback.strip()) if cfg.use_feedback else \
        cfg.prompt_from_scratch.format(**fields)
    chat = [{"role": "user", "content": text}]
    return ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + chat


def rewrite_check(feedback: str) -> OutputCheck:
    """Output check of a rewrite: the generic checks, and no verbatim quote of the feedback."""
    def check(text: str) -> str | None:
        return check_output(text) or ("mentions_feedback" if mentions(text, feedback) else None)
    return check


class RewriteStage:
    name = "rewrite"
    needs = ("ingest", "classify", "persona")
    sections = ("model", "rewrite")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.rewrite
        labels = [lab for lab in ctx.read_upstream("classify", shard, TurnLabel)
                  if lab.actionable and lab.split == "train"]
        convs = {c.conversation_id: c for c in ctx.read_upstream("ingest", shard, Conversation)}
        personas = personas_by_user(ctx.read_upstream("persona", shard, Persona))
        policy = ctx.engine()
        rewriter_cfg = model_preset(cfg.model, "rewrite.model", ctx.cfg.model)
        rewriter = ctx.engine(rewriter_cfg)
        for chunk in chunked(labels, cfg.chunk_size, start=writer.consumed):
            jobs = [resolve(lab, convs, personas) for lab in chunk]
            records, quarantined, counts = self._chunk(ctx, (policy, rewriter), jobs, rewriter_cfg.max_model_len)
            writer.commit(records, quarantined, consumed=len(chunk), counts=counts)
        return {"actionable": len(labels), "engine": policy.stats() if hasattr(policy, "stats") else {},
                "rewriter_engine": rewriter.stats() if rewriter is not policy and hasattr(rewriter, "stats") else {}}

    def _fit(self, ctx: StageContext, policy: Any, rewriter: Any, job: RewriteJob, rewriter_len: int
             ) -> tuple[Fitted, Fitted]:
        cfg = ctx.cfg.rewrite
        common = {"max_new_tokens": cfg.max_new_tokens, "persona_tokens": cfg.persona_max_tokens}
        rejected = fit_chat(policy, lambda _p, t: list(t), persona="", turns=job.context,
                            default_context=ctx.cfg.model.max_model_len, **common)
        chosen = fit_chat(rewriter, lambda p, t: rewriter_chat(p, t, response=job.response, feedback=job.feedback,
                                                                cfg=cfg),
                          persona=job.persona.text, turns=job.context, default_context=rewriter_len, **common)
        return rejected, chosen

    def _chunk(self, ctx: StageContext, engines: tuple[Any, Any], jobs: Sequence[RewriteJob | Quarantined],
               rewriter_len: int) -> tuple[list[RewritePair], list[Quarantined], dict[str, int]]:
        cfg = ctx.cfg.rewrite
        policy, rewriter = engines
        counts: Counter = Counter()
        quarantined = [j for j in jobs if isinstance(j, Quarantined)]
        ready: list[tuple[RewriteJob, Fitted, Fitted]] = []
        for job in (j for j in jobs if isinstance(j, RewriteJob)):
            rejected, chosen = self._fit(ctx, policy, rewriter, job, rewriter_len)
            if not (rejected.ok and chosen.ok):
                side = "policy" if not rejected.ok else "rewriter"
                quarantined.append(_job_quarantine(job, "prompt_too_long", f"the {side} prompt exceeds the context "
                                                   "even with only the last request left"))
                continue
            counts["truncated_prompts"] += (rejected.dropped_turns + chosen.dropped_turns) > 0
            ready.append((job, rejected, chosen))
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed)
        retry = {"max_retries": cfg.max_retries, "retry_temperature": cfg.retry_temperature}
        rej_out, rej_stats = generate_valid(policy, [r.value for _, r, _ in ready], params, **retry)
        cho_out, cho_stats = generate_valid(rewriter, [c.value for _, _, c in ready], params,
                                            check=[rewrite_check(j.feedback) for j, _, _ in ready], **retry)
        counts.update(rej_stats.counts("rejected_"))
        for key, value in cho_stats.counts("chosen_").items():
            counts[key] += value
        records: list[RewritePair] = []
        for (job, rejected, _), r_out, c_out in zip(ready, rej_out, cho_out, strict=True):
            if not (r_out.ok and c_out.ok):
                side, out = ("rejected", r_out) if not r_out.ok else ("chosen", c_out)
                quarantined.append(_job_quarantine(job, f"{side}_{out.reason}", f"after {out.attempts} attempts: "
                                                   f"{dict(out.failures)}"))
                continue
            records.append(self._record(ctx, job, rejected, r_out.texts[0], c_out.texts[0], policy, rewriter))
        counts.update(f"quarantine_{q.reason}" for q in quarantined)
        return records, quarantined, dict(counts)

    def _record(self, ctx: StageContext, job: RewriteJob, rejected: Fitted, rejected_text: str, chosen_text: str,
                policy: Any, rewriter: Any) -> RewritePair:
        models = {"policy": policy.model_name, "rewriter": rewriter.model_name,
                  **{k: v for k, v in (("persona", job.persona.provenance.models.get("persona", "")),
                                       ("classifier", job.label.provenance.models.get("classifier", ""))) if v}}
        return RewritePair(
            key=job.key, prompt=rejected.turns, persona=job.persona.text, chosen=chosen_text, rejected=rejected_text,
            feedback=job.feedback, with_feedback=ctx.cfg.rewrite.use_feedback,
            provenance=ctx.provenance(models=models, user=job.conv.user, conversation_id=job.conv.conversation_id,
                                      turn_index=job.label.turn_index))


def _job_quarantine(job: RewriteJob, reason: str, detail: str) -> Quarantined:
    return quarantine(job.key, reason, detail, user=job.conv.user, conversation_id=job.conv.conversation_id,
                      turn_index=job.label.turn_index)
