"""reward stage: the classifier reward model (Athene convention), the LLM judge, the persona ablation."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from rlhi_hpc.config import ModelConfig, load_config
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.reward_model import ClassifierRewardModel, expected_rating
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Candidates, ScoredCandidates, from_dict
from rlhi_hpc.shards import atomic_write_json, load_manifest
from rlhi_hpc.stages.reward import classifier_chat, judge_chat
from stage_chain import RecordingEngine, markers, recording, rerun_shard, rows

PERSONA = "A nurse on night shifts who wants bullet points."
CHAT = [{"role": "user", "content": "How do I sleep better during the day?"}]
REPLIES = ["Dark curtains, earplugs and a fixed schedule.", "Sleep is important.",
           "- Blackout curtains\n- Earplugs\n- Same bedtime every day\n- No caffeine after 2 am"]


@pytest.fixture(scope="module")
def rm(tiny_rm_dir: Path) -> ClassifierRewardModel:
    model = ClassifierRewardModel.from_config(ModelConfig(name=str(tiny_rm_dir), batch_size=2))
    yield model
    model.close()


@pytest.fixture(scope="module")
def rewarded(stage_chain) -> dict[str, StagePaths]:  # noqa: ANN001
    return stage_chain.run("ingest", "classify", "persona", "sample", "reward")


def test_tiny_reward_model_is_a_one_label_classifier_with_the_tiny_tokenizer(
        tiny_rm_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rlhi_hpc.inference.models import resolve_model_path

    config = json.loads((tiny_rm_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert (tiny_rm_dir / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    monkeypatch.setenv("RLHI_TINY_RM", str(tiny_rm_dir))
    assert resolve_model_path("tiny-rm") == str(tiny_rm_dir)  # what the preset configs/model/tiny-rm.yaml names
    monkeypatch.setenv("RLHI_TINY_RM", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="kind=reward"):
        resolve_model_path("tiny-rm")


def test_classifier_scores_match_transformers_and_ignore_batching(rm: ClassifierRewardModel,
                                                                  tiny_rm_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    scores = rm.score([CHAT] * 3, REPLIES)
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    with torch.no_grad():
        for text, score in zip(REPLIES, scores, strict=True):
            ids = torch.tensor([rm.encode(rm.render(CHAT, text))])
            assert abs(reference(input_ids=ids).logits[0, 0].item() - score) < 1e-4
    one_by_one = [rm.score([CHAT], [r])[0] for r in REPLIES]
    assert max(abs(a - b) for a, b in zip(scores, one_by_one)) < 1e-4  # right padding never leaks
    assert len(set(round(s, 5) for s in scores)) == 3 and rm.stats()["scored_tokens"] > 0


def test_cls_token_is_appended_and_scored(tiny_rm_dir: Path, rm: ClassifierRewardModel) -> None:
    cls = ClassifierRewardModel.from_config(ModelConfig(name=str(tiny_rm_dir)), cls_token="<|endoftext|>")
    text = cls.render(CHAT, REPLIES[0])
    assert text.endswith("<|endoftext|>")
    assert cls.encode(text)[-1] == cls.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert text == rm.render(CHAT, REPLIES[0]) + "<|endoftext|>"
    assert abs(cls.score([CHAT], [REPLIES[0]])[0] - rm.score([CHAT], [REPLIES[0]])[0]) > 1e-6
    with pytest.raises(ConfigError, match="reward.cls_token"):
        ClassifierRewardModel.from_config(ModelConfig(name=str(tiny_rm_dir)), cls_token="<|reserved_special_token_1|>")


def test_athene_layout_head_loads_through_key_mapping(tiny_rm_dir: Path, rm: ClassifierRewardModel,
                                                      tmp_path: Path) -> None:
    """A checkpoint storing its head as `v_head` (as Athene-RM does) scores like the original once mapped."""
    from safetensors.torch import load_file, save_file

    athene = tmp_path / "athene-layout"
    shutil.copytree(tiny_rm_dir, athene)
    weights = load_file(athene / "model.safetensors")
    weights["v_head.weight"] = weights.pop("score.weight")
    save_file(weights, athene / "model.safetensors", metadata={"format": "pt"})
    mapped = ClassifierRewardModel.from_config(ModelConfig(name=str(athene)), key_mapping={"^v_head": "score"})
    unmapped = ClassifierRewardModel.from_config(ModelConfig(name=str(athene)))
    expected = rm.score([CHAT] * 3, REPLIES)
    assert max(abs(a - b) for a, b in zip(mapped.score([CHAT] * 3, REPLIES), expected)) < 1e-5
    assert max(abs(a - b) for a, b in zip(unmapped.score([CHAT] * 3, REPLIES), expected)) > 1e-4  # random head


def test_scored_candidates_end_to_end(rewarded: dict[str, StagePaths]) -> None:
    scored = [from_dict(ScoredCandidates, r) for r in rows(rewarded["reward"])]
    cands = {r["key"]: from_dict(Candidates, r) for r in rows(rewarded["sample"])}
    personas = {r["user"]: r["text"] for r in rows(rewarded["persona"])}
    assert scored and len(scored) + len(rows(rewarded["reward"], "quarantine")) == len(cands)
    stage_hash = load_manifest(rewarded["reward"])["stage_hash"]
    for s in scored:
        assert len(s.scores) == len(s.texts) >= 2 and all(math.isfinite(x) for x in s.scores)
        assert set(s.texts) <= set(cands[s.key].texts) and s.prompt == cands[s.key].prompt
        assert s.persona == personas[s.provenance.user] and s.persona_visible
        assert s.provenance.models["reward"] == "tiny-rm" and s.provenance.models["policy"] == "tiny"
        assert s.provenance.config_hash == stage_hash and s.provenance.turn_index >= 0
    for m in markers(rewarded["reward"]):
        assert m["mode"] == "classifier" and m["scored_tokens_per_s"] > 0 and m["counts"]["scored"] > 0


def test_reward_model_input_has_persona_only_when_visible(rm: ClassifierRewardModel) -> None:
    cfg = load_config([]).reward
    hidden = dataclasses.replace(cfg, persona_visible=False)
    assert PERSONA in rm.render(classifier_chat(PERSONA, CHAT, cfg), REPLIES[0])
    assert PERSONA not in rm.render(classifier_chat(PERSONA, CHAT, hidden), REPLIES[0])
    assert PERSONA in judge_chat(PERSONA, CHAT, REPLIES[0], cfg)[-1]["content"]
    assert PERSONA not in judge_chat(PERSONA, CHAT, REPLIES[0], hidden)[-1]["content"]
    assert REPLIES[0] in judge_chat(PERSONA, CHAT, REPLIES[0], hidden)[-1]["content"]


def test_persona_hidden_changes_scores_but_keeps_the_persona(rewarded: dict[str, StagePaths], tmp_path: Path) -> None:
    visible = {r["key"]: r for r in rows(rewarded["reward"]) if r["key"] in
               {x["key"] for x in read_shard(rewarded["reward"], 0)}}
    ctx = rerun_shard(rewarded["reward"], tmp_path / "reward", reward={"persona_visible": False})
    hidden = {r["key"]: r for r in rows(ctx.paths)}
    assert hidden.keys() == visible.keys() and hidden
    for key, row in hidden.items():
        assert row["persona_visible"] is False and row["persona"] == visible[key]["persona"]
        assert row["texts"] == visible[key]["texts"] and row["scores"] != visible[key]["scores"]


def read_shard(paths: StagePaths, index: int) -> list[dict]:
    shard = load_manifest(paths)["shards"][index]["id"]
    return [json.loads(line) for line in paths.out(shard).read_text().splitlines()]


@pytest.mark.parametrize("persona_visible", [True, False])
def test_llm_judge_scores_are_expected_ratings(rewarded: dict[str, StagePaths], tmp_path: Path,
                                               persona_visible: bool) -> None:
    judges: list[RecordingEngine] = []
    ctx = rerun_shard(rewarded["reward"], tmp_path / "judge", wrap=recording(judges),
                      reward={"mode": "judge", "model": "", "persona_visible": persona_visible})
    scored = [from_dict(ScoredCandidates, r) for r in rows(ctx.paths)]
    assert scored and all(1.0 <= x <= 10.0 for s in scored for x in s.scores)
    assert all(s.provenance.models["reward"] == "tiny" for s in scored)
    (judge,) = judges
    personas = {s.persona.strip()[:30] for s in scored}
    seen = [any(p in chat[-1]["content"] for p in personas) for chat in judge.chats]
    assert judge.chats and all(x is persona_visible for x in seen)


def test_expected_rating() -> None:
    assert expected_rating([0.0, 0.0], [1, 2]) == pytest.approx(1.5)
    assert expected_rating([-1000.0, 0.0, -1000.0], [1, 2, 3]) == pytest.approx(2.0)
    assert expected_rating([math.log(0.25), math.log(0.75)], [4, 8]) == pytest.approx(7.0)


def test_unscorable_inputs_are_quarantined(rewarded: dict[str, StagePaths], tmp_path: Path) -> None:
    shard = load_manifest(rewarded["sample"])["shards"][0]["id"]
    cands = read_shard(rewarded["sample"], 0)
    lonely = {**cands[0], "key": "lonely", "texts": cands[0]["texts"][:1]}  # one candidate: no pair possible
    huge = {**cands[0], "key": "huge", "texts": ["word " * 3000, "token " * 3000]}  # over the RM's context
    fake = StagePaths(tmp_path / "sample")
    fake.make_dirs()
    fake.out(shard).write_text("".join(json.dumps(r) + "\n" for r in [lonely, *cands, huge]))
    atomic_write_json(fake.done(shard), {"shard": shard})
    ctx = rerun_shard(rewarded["reward"], tmp_path / "reward", upstream={"sample": fake})
    reasons = {q["source"]: q["reason"] for q in rows(ctx.paths, "quarantine")}
    assert reasons == {"lonely": "too_few_scorable", "huge": "prompt_too_long"}
    (marker,) = markers(ctx.paths)
    assert marker["counts"]["candidates_too_long"] == 2
    assert marker["counts"]["records_out"] == len(cands)


def test_reward_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="reward.model"):
        load_config(["reward.model=", "reward.mode=classifier"])
    with pytest.raises(ConfigError, match="reward.mode"):
        load_config(["reward.mode=vibes"])
    with pytest.raises(ConfigError, match="reward.judge_prompt_no_persona"):
        load_config(["reward.judge_prompt_no_persona=Judge {persona}"])
