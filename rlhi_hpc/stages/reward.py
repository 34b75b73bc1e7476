"""reward: score every sampled candidate with a reward model that sees the persona.

``reward.mode=classifier`` scores with a sequence-classification reward model
(:class:`~rlhi_hpc.inference.reward_model.ClassifierRewardModel`; Athene-RM-8B by default): the
persona is a system message (``reward.persona_template``) before the conversation, the candidate is
the assistant turn. ``reward.mode=judge`` asks an LLM judge (through the engine) for a 1..N rating
and takes its expectation under the rating tokens' probabilities. ``reward.persona_visible=false``
is the ablation that hides the persona from either scorer. The persona attached to the output is
always the persona stage's full text, so DPO can condition on it whatever the ablation.

Inputs are fitted by the truncation rule of :mod:`rlhi_hpc.inference.robust` (persona cut to
``reward.persona_max_tokens``, oldest turns dropped); a candidate that still does not fit, or whose
score is not finite, is dropped (counted), and a prompt left with fewer than two scored candidates
is quarantined with its reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rlhi_hpc.config import RewardConfig, RunConfig, model_preset
from rlhi_hpc.errors import PromptTooLongError
from rlhi_hpc.inference.engine import Message
from rlhi_hpc.inference.reward_model import ClassifierRewardModel, judge_scores
from rlhi_hpc.inference.robust import Fitted, chat_tokens, context_length, fit_prompt, transcript
from rlhi_hpc.records import Candidates, Persona, Quarantined, ScoredCandidates
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked
from rlhi_hpc.stages.sample import personas_by_user, quarantine

log = logging.getLogger(__name__)

#: Tokens kept free after a judge prompt for the rating and the end-of-turn token.
JUDGE_REPLY_TOKENS = 4


def classifier_chat(persona: str, turns: Sequence[Message], cfg: RewardConfig) -> list[Message]:
    """What the classifier reads before the candidate: the persona (when visible), then the conversation."""
    if cfg.persona_visible and persona.strip():
        return [{"role": "system", "content": cfg.persona_template.format(persona=persona.strip())}, *turns]
    return list(turns)


def judge_chat(persona: str, turns: Sequence[Message], response: str, cfg: RewardConfig) -> list[Message]:
    """The judge's chat for one candidate; the persona appears only when visible."""
    if cfg.persona_visible:
        text = cfg.judge_prompt.format(persona=persona.strip() or "(nothing known)", conversation=transcript(turns),
                                       response=response.strip())
    else:
        text = cfg.judge_prompt_no_persona.format(conversation=transcript(turns), response=response.strip())
    system = [{"role": "system", "content": cfg.judge_system_prompt}] if cfg.judge_system_prompt else []
    return [*system, {"role": "user", "content": text}]


class Scorer:
    """Fits and scores (persona, turns, response) inputs with the configured reward model."""

    def __init__(self, ctx: StageContext) -> None:
        self.cfg = ctx.cfg.reward
        model_cfg = model_preset(self.cfg.model, "reward.model", ctx.cfg.model)
        self.default_context = model_cfg.max_model_len
        if self.cfg.mode == "classifier":
            mapping = sorted(self.cfg.head_key_mapping.items())
            key = f"reward-classifier:{model_cfg.name}:{model_cfg.dtype}:{self.cfg.cls_token}:{mapping}"
            self.model: Any = ctx.resource(key, lambda: ClassifierRewardModel.from_config(
                model_cfg, cls_token=self.cfg.cls_token, key_mapping=self.cfg.head_key_mapping))
        else:
            self.model = ctx.engine(model_cfg)
        self.model_name = self.model.model_name

    def fit(self, persona: str, turns: Sequence[Message], response: str) -> Fitted:
        cfg = self.cfg
        if cfg.mode == "classifier":
            build: Callable[[str, Sequence[Message]], Any] = lambda p, t: classifier_chat(p, t, cfg)
            measure: Callable[[Any], int] = lambda chat: self.model.input_tokens(chat, response)
            budget = self.model.max_model_len
        else:
            build = lambda p, t: judge_chat(p, t, response, cfg)
            measure = lambda chat: chat_tokens(self.model, chat)
            budget = context_length(self.model, self.default_context) - JUDGE_REPLY_TOKENS
        return fit_prompt(build, measure, persona=persona if cfg.persona_visible else "", turns=turns,
                          budget=budget, persona_tokens=cfg.persona_max_tokens, count_tokens=self.model.count_tokens,
                          truncate=lambda text, n: self.model.truncate(text, n, keep="start"))

    def inputs(self, persona: str, turns: Sequence[Message], responses: Sequence[str]
               ) -> tuple[list[int], list[tuple[Any, str]], Counter]:
        """Fitted model inputs for the responses that fit: (their indices, (input, response) pairs, counts).

        The prompt is fitted once, for the response with the most tokens, and shared by all of them,
        so the candidates that are compared were scored in the same context; only when that response
        cannot fit at all is each response fitted on its own. An input that still ends up a token
        over the limit is rejected by the model and dropped as a non-finite score.
        """
        counts: Counter = Counter()
        if not responses:
            return [], [], counts
        longest = max(responses, key=self.model.count_tokens)
        fitted = self.fit(persona, turns, longest)
        if fitted.ok:
            counts["truncated_inputs"] += len(responses) if fitted.dropped_turns else 0
            return list(range(len(responses))), [self.rebuild(fitted, r) for r in responses], counts
        keep: list[int] = []
        inputs: list[tuple[Any, str]] = []
        for i, response in enumerate(responses):
            one = self.fit(persona, turns, response)
            if one.ok:
                keep.append(i)
                inputs.append((one.value, response))
                counts["truncated_inputs"] += one.dropped_turns > 0
            else:
                counts["candidates_too_long"] += 1
        return keep, inputs, counts

    def rebuild(self, fitted: Fitted, response: str) -> tuple[Any, str]:
        """The model input for `response` with the persona and turns that `fitted` kept."""
        if self.cfg.mode == "classifier":
            return fitted.value, response
        return judge_chat(fitted.persona, fitted.turns, response, self.cfg), response

    def score(self, inputs: Sequence[tuple[Any, str]]) -> list[float]:
        """Scores of fitted (model input, response) pairs; NaN for an input the model rejects."""
        if not inputs:
            return []
        try:
            if self.cfg.mode == "classifier":
                return self.model.score([chat for chat, _ in inputs], [resp for _, resp in inputs])
            return judge_scores(self.model, [chat for chat, _ in inputs], self.cfg.judge_scale)
        except (PromptTooLongError, ValueError) as exc:
            if len(inputs) == 1:
                log.warning("event=reward_input_rejected error=%r", exc)
                return [math.nan]
            return [s for item in inputs for s in self.score([item])]


class RewardStage:
    name = "reward"
    needs = ("sample", "persona")
    sections = ("model", "reward")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.reward
        items = list(ctx.read_upstream("sample", shard, Candidates))
        personas = personas_by_user(ctx.read_upstream("persona", shard, Persona))
        scorer = Scorer(ctx)
        start, tokens_before = time.perf_counter(), _scored_tokens(scorer.model)
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            records, quarantined, counts = self._chunk(ctx, scorer, chunk, personas)
            writer.commit(records, quarantined, consumed=len(chunk), counts=counts)
        seconds = max(time.perf_counter() - start, 1e-9)
        scored = _scored_tokens(scorer.model) - tokens_before
        return {"mode": cfg.mode, "reward_model": scorer.model_name, "scored_tokens": scored,
                "scored_tokens_per_s": round(scored / seconds, 2),
                "engine": scorer.model.stats() if hasattr(scorer.model, "stats") else {}}

    def _chunk(self, ctx: StageContext, scorer: Scorer, chunk: Sequence[Candidates], personas: dict[str, Persona]
               ) -> tuple[list[ScoredCandidates], list[Quarantined], dict[str, int]]:
        cfg = ctx.cfg.reward
        counts: Counter = Counter()
        quarantined: list[Quarantined] = []
        jobs: list[tuple[Candidates, str, list[int]]] = []  # record, persona, indices of scorable candidates
        inputs: list[tuple[Any, str]] = []
        for cand in chunk:
            ids = {"user": cand.provenance.user, "conversation_id": cand.provenance.conversation_id,
                   "turn_index": cand.provenance.turn_index}
            persona = personas.get(cand.provenance.user)
            if persona is None and cfg.persona_visible:
                quarantined.append(quarantine(cand.key, "missing_persona", "no persona record for this user", **ids))
                continue
            text = persona.text if persona else cand.persona
            keep, fitted, fit_counts = scorer.inputs(text, cand.prompt, cand.texts)
            inputs.extend(fitted)
            counts.update(fit_counts)
            jobs.append((cand, text, keep))
        scores = iter(scorer.score(inputs))
        records: list[ScoredCandidates] = []
        for cand, persona_text, keep in jobs:
            pairs = [(cand.texts[i], s) for i, s in zip(keep, (next(scores) for _ in keep), strict=True)]
            finite = [(t, s) for t, s in pairs if math.isfinite(s)]
            counts["nonfinite_scores"] += len(pairs) - len(finite)
            if len(finite) < 2:
                reason = "too_few_scorable" if pairs else "prompt_too_long"
                quarantined.append(quarantine(cand.key, reason, f"{len(finite)} of {len(cand.texts)} candidates "
                                              "scorable", user=cand.provenance.user,
                                              conversation_id=cand.provenance.conversation_id,
                                              turn_index=cand.provenance.turn_index))
                continue
            records.append(ScoredCandidates(
                key=cand.key, prompt=cand.prompt, persona=persona_text, texts=tuple(t for t, _ in finite),
                scores=tuple(float(s) for _, s in finite), persona_visible=cfg.persona_visible,
                provenance=ctx.provenance(models={**cand.provenance.models, "reward": scorer.model_name},
                                          user=cand.provenance.user, conversation_id=cand.provenance.conversation_id,
                                          turn_index=cand.provenance.turn_index)))
        counts["scored"] += sum(len(r.texts) for r in records)
        counts.update(f"quarantine_{q.reason}" for q in quarantined)
        return records, quarantined, dict(counts)


def _scored_tokens(model: Any) -> int:
    stats = model.stats() if hasattr(model, "stats") else {}
    return int(stats.get("scored_tokens", 0))
