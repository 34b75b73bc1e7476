"""eval: WildChat UserEval on held-out users, plus win rate against reference answers and math accuracy.

Shards ``00000``… follow the user buckets of ingest/persona; optional shards ``alpaca`` (local
reference-answer file) and ``math`` (local math files) run the local-file evaluations. A user shard:

1. selects the held-out users' initial and follow-up prompts (:mod:`rlhi_hpc.eval.usereval`);
2. generates the answers of every system (candidate / baseline, with / without persona-guided
   inference), one model at a time, into resumable per-system caches under ``answers/``;
3. judges every (prompt, comparison) in both orders and writes one :class:`Verdict` per pair,
   chunk by chunk (a preempted shard resumes after the last committed chunk).

The done marker's extra fields hold the shard's win rates (per comparison, turn type and dimension),
accuracies or reference win rates; the report stage aggregates over all shards with intervals.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhi_hpc.config import ModelConfig, RunConfig, build, load_preset, output_view, preset_names, stable_hash
from rlhi_hpc.errors import StageError
from rlhi_hpc.eval.alpaca import judge_item as reference_judge_item
from rlhi_hpc.eval.alpaca import length_stats, load_reference_file
from rlhi_hpc.eval.judge import JudgeItem, JudgeSettings, judge_items
from rlhi_hpc.eval.math import MathProblem, format_choices, grade, load_math_file
from rlhi_hpc.eval.results import Answer, MathResult, Verdict, summarize_math, summarize_verdicts
from rlhi_hpc.eval.usereval import (Comparison, EvalPrompt, System, comparisons, cut, fit_chat, fit_judge_item,
                                    judge_fields, model_chat, select_prompts)
from rlhi_hpc.inference.engine import SamplingParams
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Conversation, Persona, read_jsonl, read_records
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalModels:
    """The resolved candidate, baseline and judge models."""

    candidate: ModelConfig
    baseline: ModelConfig
    judge: ModelConfig

    def of(self, role: str) -> ModelConfig:
        return self.candidate if role == "candidate" else self.baseline


def resolve_model(ref: str, default: ModelConfig, key: str) -> ModelConfig:
    """A preset of configs/model/, else a path or hub id on top of `default`'s settings; '' = `default`."""
    if not ref:
        return default
    if ref in preset_names("model"):
        return build(ModelConfig, load_preset("model", ref), key)
    return dataclasses.replace(default, name=ref, tokenizer="")


def resolve_models(ctx: StageContext) -> EvalModels:
    cfg = ctx.cfg
    if cfg.eval.candidate_model:
        candidate = resolve_model(cfg.eval.candidate_model, cfg.model, "eval.candidate_model")
    elif "dpo" in ctx.upstream:
        model_dir = ctx.upstream_paths("dpo").root / "model"
        if not (model_dir / "config.json").is_file():
            raise StageError(f"the dpo stage has no final model at {model_dir}; run "
                             "`python -m rlhi_hpc.launch stage=dpo` first, or set eval.candidate_model")
        has_tokenizer = any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tokenizer = "" if has_tokenizer else (cfg.model.tokenizer or cfg.model.name)
        candidate = dataclasses.replace(cfg.model, name=str(model_dir), tokenizer=tokenizer)
    else:
        candidate = cfg.model
    baseline = resolve_model(cfg.eval.baseline_model, cfg.model, "eval.baseline_model")
    judge = resolve_model(cfg.eval.judge_model, cfg.model, "eval.judge_model")
    return EvalModels(candidate=candidate, baseline=baseline, judge=judge)


def model_key(model: ModelConfig) -> str:
    return stable_hash(output_view(model), 10)


def judge_settings(ctx: StageContext, prompt: str, dimensions: dict[str, str]) -> JudgeSettings:
    cfg = ctx.cfg.eval
    return JudgeSettings(prompt=prompt, dimensions=dimensions, system_prompt=cfg.judge_system_prompt,
                         mode=cfg.judge_mode, max_new_tokens=cfg.judge_max_new_tokens,
                         temperature=cfg.judge_temperature, retry_temperature=cfg.judge_retry_temperature,
                         seed=cfg.seed, max_retries=cfg.max_retries, max_answer_chars=cfg.max_answer_chars)


class _Engines:
    """Keeps at most one model loaded per shard phase (a 70B judge and an 8B policy rarely share a GPU)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.current = ""

    def get(self, model: ModelConfig) -> Any:
        key = model_key(model) + model.engine
        if self.current and key != self.current:
            self.ctx.close()
        self.current = key
        return self.ctx.engine(model)


def generate_answers(ctx: StageContext, engines: _Engines, shard_id: str, task: str, model: ModelConfig,
                     label: str, chats: Sequence[tuple[str, list[dict[str, str]]]],
                     params: SamplingParams) -> dict[str, Answer]:
    """Answers of one model in one condition, cached and resumable under ``answers/<task>-<model>-<label>/``."""
    persona_guided = label.endswith("+persona")
    condition = "persona" if persona_guided else "plain"
    sub = StagePaths(ctx.paths.root / "answers" / f"{task}-{model_key(model)}-{condition}")
    if not sub.done(shard_id).exists():
        writer = ShardWriter(sub, shard_id, stage=f"{ctx.stage}.answers", stage_hash=ctx.stage_hash)
        engine = engines.get(model)
        for chunk in chunked(chats, ctx.cfg.eval.chunk_size, start=writer.consumed):
            fitted = [fit_chat(engine, chat, params.max_new_tokens, model.max_model_len) for _, chat in chunk]
            todo = [c for c in fitted if c is not None]
            gens = iter(engine.generate(todo, params) if todo else [])
            records = []
            for (key, chat), fit in zip(chunk, fitted, strict=True):
                gen = next(gens) if fit is not None else None
                system = chat[0]["content"] if chat and chat[0]["role"] == "system" else ""
                rest = chat[1:] if system else chat
                records.append(Answer(
                    key=key, system=label, model=model.name, persona_guided=persona_guided, system_prompt=system,
                    chat_sha=stable_hash(rest, 16), text=gen.texts[0].strip() if gen else "",
                    completion_tokens=gen.completion_tokens if gen else 0,
                    finish_reason=gen.finish_reasons[0] if gen else "", skipped="" if gen else "too_long"))
            writer.commit(records, consumed=len(chunk), counts={
                "generated_tokens": sum(r.completion_tokens for r in records),
                "skipped_too_long": sum(1 for r in records if r.skipped)})
        writer.finish({"model": model.name, "task": task, "label": label})
    return {a.key: a for a in read_records(sub.out(shard_id), Answer)}


def _verdict(ctx: StageContext, models: EvalModels, *, task: str, item_key: str, comparison: str, candidate: str,
             baseline: str, baseline_model: str, prompt: EvalPrompt | None, request: str, cand: str, base: str,
             outcome: Any) -> Verdict:
    """One Verdict record; `outcome` is a Judgement or a (reason, dimensions) tuple for unjudged items."""
    if isinstance(outcome, tuple):
        reason, dims = outcome
        outcomes = {d: ("tie" if reason == "identical" else "unparseable") for d in dims}
        verdicts: dict[str, Any] = {"ab": None, "ba": None}
        raw: dict[str, list[str]] = {"ab": [], "ba": [], "reason": [reason]}
        attempts = {"ab": 0, "ba": 0}
    else:
        outcomes, verdicts, raw, attempts = outcome.outcomes, outcome.verdicts, outcome.raw, outcome.attempts
    return Verdict(
        key=f"{item_key}|{comparison}", task=task, comparison=comparison, candidate=candidate, baseline=baseline,
        candidate_model=models.candidate.name, baseline_model=baseline_model, judge_model=models.judge.name,
        turn_type=prompt.turn_type if prompt else "", user=prompt.user if prompt else "",
        conversation_id=prompt.conversation_id if prompt else "", turn_index=prompt.turn_index if prompt else -1,
        persona=prompt.persona if prompt else "", request=request, candidate_answer=cand, baseline_answer=base,
        outcomes=outcomes, verdicts=verdicts, judge_raw=raw, attempts=attempts,
        identical=isinstance(outcome, tuple) and outcome[0] == "identical",
        provenance=ctx.provenance(models={"candidate": models.candidate.name, "baseline": baseline_model,
                                          "judge": models.judge.name},
                                  user=prompt.user if prompt else "",
                                  conversation_id=prompt.conversation_id if prompt else "",
                                  turn_index=prompt.turn_index if prompt else -1))


@dataclass(frozen=True)
class _Pending:
    """One comparison to judge: its judge item (or why it is not judged) and how to record it."""

    item: JudgeItem | None
    reason: str  # "" = judge it; "identical" | "too_long"
    make: Callable[[Any], Verdict]


def judge_pending(ctx: StageContext, engines: _Engines, models: EvalModels, pending: Sequence[_Pending],
                  settings: JudgeSettings) -> list[Verdict]:
    """Judge the items that need it (fitted to the judge's context) and build every record, in order."""
    dims = list(settings.dimensions)
    budget_new = settings.max_new_tokens if settings.mode == "generate" else 16
    todo: list[tuple[int, JudgeItem]] = []
    results: dict[int, Any] = {}
    engine = engines.get(models.judge) if any(not p.reason for p in pending) else None
    for i, p in enumerate(pending):
        if p.reason:
            results[i] = (p.reason, dims)
            continue
        fitted = fit_judge_item(engine, p.item, settings, budget_new, models.judge.max_model_len)
        if fitted is None:
            results[i] = ("judge_prompt_too_long", dims)
        else:
            todo.append((i, fitted))
    if todo:
        for (i, _), judgement in zip(todo, judge_items(engine, [t for _, t in todo], settings), strict=True):
            results[i] = judgement
    return [p.make(results[i]) for i, p in enumerate(pending)]


def _outcome_counts(records: Sequence[Verdict]) -> dict[str, float]:
    counts: Counter = Counter()
    for rec in records:
        for outcome in rec.outcomes.values():
            counts[f"outcome_{outcome}"] += 1
        counts["judge_calls"] += sum(rec.attempts.values())
        counts["identical_answers"] += int(rec.identical)
    return dict(counts)


def _count_generated(writer: ShardWriter, answer_sets: Any) -> None:
    """Add the evaluated models' generated tokens to the shard counts once (tokens/s in the done marker)."""
    if "generated_tokens" not in writer.counts:
        total = sum(a.completion_tokens for answers in answer_sets for a in answers.values())
        writer.commit((), consumed=0, counts={"generated_tokens": total})


class EvalStage:
    name = "eval"
    needs = ("ingest", "persona")
    optional_needs = ("dpo",)
    sections = ("model", "eval")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        shards = plan_shards(cfg.data.num_shards)
        if cfg.eval.alpaca_path:
            shards.append(ShardSpec(id="alpaca", index=len(shards), meta={"task": "alpaca"}))
        if cfg.eval.math_files:
            shards.append(ShardSpec(id="math", index=len(shards), meta={"task": "math"}))
        return shards

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        models = resolve_models(ctx)
        engines = _Engines(ctx)
        task = shard.meta.get("task", "usereval")
        if task == "alpaca":
            extra = self._alpaca(ctx, engines, models, shard, writer)
        elif task == "math":
            extra = self._math(ctx, engines, models, shard, writer)
        else:
            extra = self._usereval(ctx, engines, models, shard, writer)
        models_info = {"candidate": models.candidate.name, "baseline": models.baseline.name,
                       "judge": models.judge.name}
        return {"task": task, "models": models_info, **extra}

    # ----------------------------------------------------------------------------------------
    # UserEval
    # ----------------------------------------------------------------------------------------

    def _usereval(self, ctx: StageContext, engines: _Engines, models: EvalModels, shard: ShardSpec,
                  writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.eval
        personas = {p.user: p for p in ctx.read_upstream("persona", shard, Persona)}
        selection: dict[str, int] = {}
        prompts = select_prompts(list(ctx.read_upstream("ingest", shard, Conversation)), personas, cfg, selection)
        cmps = comparisons(cfg)
        answers = self._usereval_answers(ctx, engines, models, shard, prompts, cmps)
        settings = judge_settings(ctx, cfg.judge_prompt, dict(cfg.dimensions))
        items = [(p, c) for p in prompts for c in cmps]
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            pending = [self._pending(ctx, models, p, c, answers) for p, c in chunk]
            records = judge_pending(ctx, engines, models, pending, settings)
            writer.commit(records, consumed=len(chunk), counts=_outcome_counts(records))
        _count_generated(writer, answers.values())
        rows = list(read_jsonl(ctx.paths.partial(shard.id)))
        types = Counter(p.turn_type for p in prompts)
        log.info("event=usereval_shard shard=%s prompts=%d comparisons=%d verdicts=%d", shard.id, len(prompts),
                 len(cmps), len(rows))
        return {"prompts": dict(types), "users": len({p.user for p in prompts}), "selection": selection,
                "comparisons": [c.name for c in cmps],
                "win_rates": summarize_verdicts(rows, samples=cfg.bootstrap_samples, confidence=cfg.confidence,
                                                seed=ctx.cfg.seed)}

    def _usereval_answers(self, ctx: StageContext, engines: _Engines, models: EvalModels, shard: ShardSpec,
                          prompts: Sequence[EvalPrompt], cmps: Sequence[Comparison]) -> dict[str, dict[str, Answer]]:
        cfg = ctx.cfg.eval
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed)
        systems: list[System] = []
        for c in cmps:
            for s in (c.candidate, c.baseline):
                if s not in systems:
                    systems.append(s)
        systems.sort(key=lambda s: s.role != "candidate")  # one model after the other
        answers: dict[str, dict[str, Answer]] = {}
        for system in systems:
            chats = [(p.key, model_chat(p, cfg, system.persona)) for p in prompts]
            answers[system.name] = generate_answers(ctx, engines, shard.id, "usereval", models.of(system.role),
                                                    system.name, chats, params)
        return answers

    def _pending(self, ctx: StageContext, models: EvalModels, prompt: EvalPrompt, cmp: Comparison,
                 answers: dict[str, dict[str, Answer]]) -> _Pending:
        cand = answers[cmp.candidate.name][prompt.key]
        base = answers[cmp.baseline.name][prompt.key]
        reason = "too_long" if cand.skipped or base.skipped else "identical" if cand.text == base.text else ""

        def make(outcome: Any) -> Verdict:
            return _verdict(ctx, models, task="usereval", item_key=prompt.key, comparison=cmp.name,
                            candidate=cmp.candidate.name, baseline=cmp.baseline.name,
                            baseline_model=models.baseline.name, prompt=prompt, request=prompt.request,
                            cand=cand.text, base=base.text, outcome=outcome)

        item = JudgeItem(key=prompt.key, fields=judge_fields(prompt), candidate=cand.text, baseline=base.text)
        return _Pending(item=item, reason=reason, make=make)

    # ----------------------------------------------------------------------------------------
    # Reference answers (AlpacaEval / Arena-Hard style)
    # ----------------------------------------------------------------------------------------

    def _roles(self, models: EvalModels) -> list[str]:
        """candidate, plus baseline when it is a different model."""
        same = model_key(models.candidate) == model_key(models.baseline)
        return ["candidate"] if same else ["candidate", "baseline"]

    def _alpaca(self, ctx: StageContext, engines: _Engines, models: EvalModels, shard: ShardSpec,
                writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.eval
        refs, skipped = load_reference_file(cfg.alpaca_path)
        refs = refs[:cfg.alpaca_max_items] if cfg.alpaca_max_items else refs
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed)
        system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        answers = {role: generate_answers(ctx, engines, shard.id, "alpaca", models.of(role), role,
                                          [(r.id, system + [{"role": "user", "content": r.instruction}]) for r in refs],
                                          params) for role in self._roles(models)}
        settings = judge_settings(ctx, cfg.alpaca_prompt, dict(cfg.alpaca_dimensions))
        items = [(role, r) for role in self._roles(models) for r in refs]
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            pending = []
            for role, ref in chunk:
                ans = answers[role][ref.id]

                def make(outcome: Any, role: str = role, ref: Any = ref, ans: Answer = ans) -> Verdict:
                    return _verdict(ctx, models, task="alpaca", item_key=ref.id, comparison=f"{role} vs reference",
                                    candidate=role, baseline="reference", baseline_model="reference", prompt=None,
                                    request=ref.instruction, cand=ans.text, base=ref.reference, outcome=outcome)

                reason = "too_long" if ans.skipped else "identical" if ans.text == ref.reference else ""
                pending.append(_Pending(item=reference_judge_item(ref, ans.text, ref.id), reason=reason, make=make))
            records = judge_pending(ctx, engines, models, pending, settings)
            writer.commit(records, consumed=len(chunk), counts=_outcome_counts(records))
        _count_generated(writer, answers.values())
        rows = list(read_jsonl(ctx.paths.partial(shard.id)))
        summary = []
        for role in self._roles(models):
            texts = [answers[role][r.id].text for r in refs]
            tokens = [answers[role][r.id].completion_tokens for r in refs]
            rates = summarize_verdicts([r for r in rows if r["candidate"] == role], samples=cfg.bootstrap_samples,
                                       confidence=cfg.confidence, seed=ctx.cfg.seed)
            summary.append({"role": role, "model": models.of(role).name, "win_rates": rates,
                            "avg_tokens": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
                            **length_stats(texts, [r.reference for r in refs])})
        return {"alpaca": summary, "items": len(refs), "skipped_rows": skipped}

    # ----------------------------------------------------------------------------------------
    # Math
    # ----------------------------------------------------------------------------------------

    def _math(self, ctx: StageContext, engines: _Engines, models: EvalModels, shard: ShardSpec,
              writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.eval
        files: dict[str, list[MathProblem]] = {}
        skipped: dict[str, dict[str, int]] = {}
        for name, path in sorted(cfg.math_files.items()):
            problems, skipped[name] = load_math_file(Path(path))
            files[name] = problems[:cfg.math_max_items] if cfg.math_max_items else problems
        params = SamplingParams(temperature=0.0, max_new_tokens=cfg.math_max_new_tokens, seed=cfg.seed)
        system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []

        def chat(p: MathProblem) -> list[dict[str, str]]:
            text = (cfg.math_choice_prompt.format(question=p.question, choices=format_choices(p.choices))
                    if p.choices else cfg.math_prompt.format(problem=p.question))
            return system + [{"role": "user", "content": text}]

        answers = {(role, name): generate_answers(ctx, engines, shard.id, f"math-{name}", models.of(role), role,
                                                  [(p.id, chat(p)) for p in probs], params)
                   for role in self._roles(models) for name, probs in files.items()}
        items = [(role, name, p) for role in self._roles(models) for name, probs in files.items() for p in probs]
        for chunk in chunked(items, cfg.chunk_size, start=writer.consumed):
            records = []
            for role, name, p in chunk:
                ans = answers[(role, name)][p.id]
                extracted, correct = grade(p, ans.text)
                records.append(MathResult(key=f"{name}:{p.id}|{role}", benchmark=name, role=role,
                                          model=models.of(role).name, problem_id=p.id, gold=p.answer,
                                          extracted=extracted, correct=correct, completion=cut(ans.text, 4000),
                                          provenance=ctx.provenance(models={role: models.of(role).name})))
            writer.commit(records, consumed=len(chunk), counts={"correct": sum(r.correct for r in records)})
        _count_generated(writer, answers.values())
        rows = list(read_jsonl(ctx.paths.partial(shard.id)))
        return {"math": summarize_math(rows), "skipped_rows": skipped}
