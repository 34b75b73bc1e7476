"""sample stage: candidates end to end, the persona ablation, truncation, retries and quarantine."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rlhi_hpc.config import SampleConfig, load_config
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.engine import SamplingParams
from rlhi_hpc.inference.robust import RETRY_SEED_STRIDE, chat_tokens, fit_chat, generate_valid
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Candidates, Conversation, from_dict
from rlhi_hpc.shards import load_manifest
from rlhi_hpc.stages.sample import build_chat, system_prompt
from stage_chain import RecordingEngine, context_for, markers, recording, rerun_shard, run_one, rows

PERSONA = "A retired chemistry teacher from Lyon who wants short answers in French."


class BlankFirstAttempt(RecordingEngine):
    """Fault injection over a real engine: every completion of the first attempt comes back empty."""

    def __init__(self, inner: Any, first_seed: int) -> None:
        super().__init__(inner)
        self.first_seed = first_seed

    def generate(self, chats: Sequence[Any], params: SamplingParams) -> list[Any]:
        gens = super().generate(chats, params)
        if params.seed != self.first_seed:
            return gens
        return [dataclasses.replace(g, texts=tuple("" for _ in g.texts)) for g in gens]


def eos_model(src: Path, dst: Path) -> Path:
    """A copy of the tiny model whose every next token is its end-of-turn token: it only says ''."""
    import torch
    from transformers import AutoModelForCausalLM

    if (dst / "config.json").exists():
        return dst
    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(dst)
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 10.0  # a large positive feature in every position...
        model.lm_head.weight.zero_()
        model.lm_head.weight[eos, 0] = 50.0  # ...that only the end-of-turn token reads
    model.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def sampled(stage_chain) -> dict[str, StagePaths]:  # noqa: ANN001
    return stage_chain.run("ingest", "classify", "persona", "sample")


def test_candidates_end_to_end_with_provenance(sampled: dict[str, StagePaths]) -> None:
    cands = [from_dict(Candidates, r) for r in rows(sampled["sample"])]
    convs = {r["conversation_id"]: from_dict(Conversation, r) for r in rows(sampled["ingest"])}
    assert cands, "the sample slice has requests"
    manifest_hash = load_manifest(sampled["sample"])["stage_hash"]
    for c in cands:
        conv = convs[c.provenance.conversation_id]
        assert conv.split == "train" and conv.role == "target"  # eval users are never sampled
        assert c.provenance.user == conv.user and c.provenance.config_hash == manifest_hash
        assert c.provenance.models["policy"] == "tiny" and c.provenance.stage == "sample"
        assert 2 <= len(c.texts) <= 3 and all(t.strip() for t in c.texts)
        assert c.prompt[-1] == {"role": "user", "content": conv.turns[c.provenance.turn_index].content}
        assert [m["role"] for m in c.prompt][::2] == ["user"] * ((len(c.prompt) + 1) // 2)
        assert c.with_persona and c.persona
    assert len({c.key for c in cands}) == len(cands)
    for marker in markers(sampled["sample"]):
        assert marker["counts"]["generated_tokens"] > 0 and marker["counts"]["prompt_tokens"] > 0
        assert marker["tokens_per_s"] > 0 and marker["records_per_s"] > 0


def test_system_prompt_has_persona_only_when_enabled() -> None:
    on = load_config([]).sample
    off = dataclasses.replace(on, use_persona=False)
    turns = [{"role": "user", "content": "Write a haiku."}]
    assert PERSONA in system_prompt(PERSONA, on) and PERSONA in build_chat(PERSONA, turns, on)[0]["content"]
    assert PERSONA not in system_prompt(PERSONA, off) and build_chat(PERSONA, turns, off)[0]["content"] == \
        off.system_prompt
    assert build_chat(PERSONA, turns, dataclasses.replace(off, system_prompt="")) == turns


@pytest.mark.parametrize("use_persona", [True, False])
def test_engine_sees_persona_only_when_enabled(sampled: dict[str, StagePaths], tmp_path: Path,
                                               use_persona: bool) -> None:
    recorders: list[RecordingEngine] = []
    ctx = rerun_shard(sampled["sample"], tmp_path / "sample", wrap=recording(recorders),
                      sample={"use_persona": use_persona, "n": 2, "max_new_tokens": 4})
    personas = {r["user"]: r["text"] for r in rows(sampled["persona"])}
    (recorder,) = recorders
    assert recorder.chats
    out = [from_dict(Candidates, r) for r in rows(ctx.paths)]
    for chat, cand in zip(recorder.chats, out, strict=True):
        persona = personas[cand.provenance.user].strip()[:40]
        assert chat[0]["role"] == "system"
        assert (persona in chat[0]["content"]) is use_persona
        assert cand.with_persona is use_persona and cand.persona  # the persona text always travels on


def test_prompt_over_the_context_is_quarantined(sampled: dict[str, StagePaths], tmp_path: Path) -> None:
    ctx = rerun_shard(sampled["sample"], tmp_path / "sample", model={"max_model_len": 64},
                      sample={"max_new_tokens": 8, "n": 2})
    quarantined = rows(ctx.paths, "quarantine")
    kept = [from_dict(Candidates, r) for r in rows(ctx.paths)]
    (marker,) = markers(ctx.paths)
    assert quarantined and {q["reason"] for q in quarantined} == {"prompt_too_long"}
    assert len(quarantined) + len(kept) == marker["counts"]["records_in"] > 0
    assert marker["counts"]["quarantined"] == marker["counts"]["quarantine_prompt_too_long"]


def test_truncation_rule_drops_oldest_exchanges_then_cuts_the_persona(tiny_model_dir: Path) -> None:
    from rlhi_hpc.inference.factory import load_engine

    engine = load_engine(load_config([f"model.name={tiny_model_dir}", "model.max_model_len=160"]).model)
    cfg = SampleConfig()
    long = "word " * 60
    turns = [{"role": "user", "content": "first " + long}, {"role": "assistant", "content": "reply " + long},
             {"role": "user", "content": "second question?"}, {"role": "assistant", "content": "short reply"},
             {"role": "user", "content": "Last request: a poem."}]
    fitted = fit_chat(engine, lambda p, t: build_chat(p, t, cfg), persona="likes cats " * 50, turns=turns,
                      max_new_tokens=32, persona_tokens=20, default_context=2048)
    assert fitted.ok and fitted.dropped_turns == 2 and fitted.persona_truncated
    assert list(fitted.turns) == turns[2:] and engine.count_tokens(fitted.persona) <= 20
    assert chat_tokens(engine, fitted.value) + 32 <= 160
    alone = fit_chat(engine, lambda p, t: build_chat(p, t, cfg), persona="", turns=[turns[0]], max_new_tokens=150,
                     persona_tokens=20, default_context=2048)
    assert not alone.ok and alone.reason == "prompt_too_long"
    engine.close()


def test_empty_outputs_are_retried_with_new_seeds(tiny_model_dir: Path) -> None:
    from rlhi_hpc.inference.factory import load_engine

    engine = BlankFirstAttempt(load_engine(load_config([f"model.name={tiny_model_dir}"]).model), first_seed=5)
    chats = [[{"role": "user", "content": f"Tell me about item {i}."}] for i in range(3)]
    params = SamplingParams(temperature=0.0, max_new_tokens=6, n=2, seed=5)
    outcomes, stats = generate_valid(engine, chats, params, max_retries=2, retry_temperature=0.7)
    assert all(o.ok and len(o.texts) == 2 and o.attempts == 2 for o in outcomes)
    assert stats.retried_prompts == 3 and stats.invalid_outputs == 6 and stats.generated_tokens > 0
    assert [p.seed for p in engine.params] == [5, 5 + RETRY_SEED_STRIDE]
    assert [p.temperature for p in engine.params] == [0.0, 0.7]  # greedy retries would repeat themselves
    engine.close()


def test_model_that_only_says_nothing_quarantines_every_prompt(sampled: dict[str, StagePaths], tmp_path: Path,
                                                               tiny_model_dir: Path) -> None:
    mute = eos_model(tiny_model_dir, tmp_path / "eos-model")
    ctx = rerun_shard(sampled["sample"], tmp_path / "sample", model={"name": str(mute)},
                      sample={"max_retries": 1, "n": 2})
    quarantined = rows(ctx.paths, "quarantine")
    assert not rows(ctx.paths) and quarantined
    assert {q["reason"] for q in quarantined} == {"empty_output"}
    assert all("after 2 attempts" in q["detail"] for q in quarantined)
    (marker,) = markers(ctx.paths)  # the shard finished although every record failed
    assert marker["counts"]["records_out"] == 0
    assert marker["counts"]["retried_prompts"] == marker["counts"]["records_in"] == len(quarantined)


def test_labels_outside_the_taxonomy_are_rejected_before_running(stage_chain) -> None:  # noqa: ANN001
    from rlhi_hpc.launch import main as launch

    assert launch([*stage_chain.args(["sample.labels=[nope]"]), "stage=sample", "dry_run=true"]) == 2
    with pytest.raises(ConfigError, match="sample.min_candidates"):
        load_config(["sample.n=2", "sample.min_candidates=3"])


class CrashOnCall(RecordingEngine):
    """A real engine that dies (like a CUDA out-of-memory error) on its `crash_at`-th generate call."""

    def __init__(self, inner: Any, crash_at: int) -> None:
        super().__init__(inner)
        self.crash_at = crash_at

    def generate(self, chats: Sequence[Any], params: SamplingParams) -> list[Any]:
        if len(self.params) + 1 == self.crash_at:
            raise RuntimeError("CUDA out of memory (injected)")
        return super().generate(chats, params)


def test_engine_crash_fails_the_shard_and_resume_redoes_nothing(sampled: dict[str, StagePaths],
                                                                tmp_path: Path) -> None:
    small = {"chunk_size": 2, "n": 2, "max_new_tokens": 4}
    whole = rerun_shard(sampled["sample"], tmp_path / "whole", sample=small)
    expected = rows(whole.paths)
    assert len(expected) > 4, "needs several chunks"
    crashing: list[CrashOnCall] = []
    ctx = context_for(sampled["sample"], tmp_path / "crashed", sample=small,
                      wrap=recording(crashing, CrashOnCall, crash_at=3))
    with pytest.raises(RuntimeError, match="out of memory"):  # not swallowed: the task fails, relaunch retries
        run_one(ctx, sampled["sample"])
    assert not ctx.paths.done_dir.exists() or not any(ctx.paths.done_dir.iterdir())
    recorders: list[RecordingEngine] = []
    resumed = context_for(sampled["sample"], tmp_path / "crashed", sample=small, wrap=recording(recorders))
    run_one(resumed, sampled["sample"])
    resumed.close()
    assert rows(resumed.paths) == expected  # no duplicate, no lost record, same texts
    assert len(recorders[0].chats) == len(expected) - 4  # the two committed chunks were not generated again
