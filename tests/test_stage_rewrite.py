"""rewrite stage: pairs end to end, the feedback ablation, malformed inputs and over-long prompts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlhi_hpc.config import load_config
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Conversation, RewritePair, TurnLabel, from_dict, read_jsonl
from rlhi_hpc.shards import atomic_write_json, load_manifest
from rlhi_hpc.stages.rewrite import rewrite_check, rewriter_chat
from stage_chain import RecordingEngine, markers, recording, rerun_shard, rows

FEEDBACK = "No, I asked for Python, not Java. And keep it under ten lines."


@pytest.fixture(scope="module")
def rewritten(stage_chain) -> dict[str, StagePaths]:  # noqa: ANN001
    return stage_chain.run("ingest", "classify", "persona", "rewrite")


def test_rewrite_pairs_end_to_end_with_provenance(rewritten: dict[str, StagePaths]) -> None:
    pairs = [from_dict(RewritePair, r) for r in rows(rewritten["rewrite"])]
    convs = {r["conversation_id"]: from_dict(Conversation, r) for r in rows(rewritten["ingest"])}
    labels = [from_dict(TurnLabel, r) for r in rows(rewritten["classify"])]
    train = [lab for lab in labels if lab.actionable and lab.split == "train"]
    assert pairs and len(pairs) + len(rows(rewritten["rewrite"], "quarantine")) == len(train)
    stage_hash = load_manifest(rewritten["rewrite"])["stage_hash"]
    for p in pairs:
        conv = convs[p.provenance.conversation_id]
        u = p.provenance.turn_index
        assert conv.split == "train" and conv.turns[u].role == "user" and conv.turns[u - 1].role == "assistant"
        assert p.feedback == conv.turns[u].content  # the user's real follow-up
        assert list(p.prompt) == [{"role": t.role, "content": t.content} for t in conv.turns[:u - 1]]
        assert p.chosen.strip() and p.rejected.strip() and p.with_feedback
        assert p.provenance.user == conv.user and p.provenance.config_hash == stage_hash
        assert p.provenance.models["policy"] == p.provenance.models["rewriter"] == "tiny"
        assert {"persona", "classifier"} <= set(p.provenance.models)
    for m in markers(rewritten["rewrite"]):
        assert m["counts"]["generated_tokens"] > 0 and m.get("tokens_per_s", 0) > 0


def test_rewriter_prompt_contains_feedback_only_when_enabled() -> None:
    cfg = load_config([]).rewrite
    turns = [{"role": "user", "content": "Write a function that reverses a list."}]
    on = rewriter_chat("A data engineer.", turns, response="public class A {}", feedback=FEEDBACK, cfg=cfg)
    off = rewriter_chat("A data engineer.", turns, response="public class A {}", feedback=FEEDBACK,
                        cfg=dataclasses.replace(cfg, use_feedback=False))
    assert FEEDBACK in on[-1]["content"] and "A data engineer." in on[-1]["content"]
    assert FEEDBACK not in off[-1]["content"] and "A data engineer." in off[-1]["content"]
    with pytest.raises(ConfigError, match="rewrite.prompt"):
        load_config(["rewrite.prompt=Rewrite {response} for {persona}"])
    with pytest.raises(ConfigError, match="rewrite.prompt_from_scratch"):
        load_config(["rewrite.prompt_from_scratch=Use {feedback}"])
    with pytest.raises(ConfigError, match="rewrite.model"):
        load_config(["rewrite.model=gpt-17"])


@pytest.mark.parametrize("use_feedback", [True, False])
def test_engine_sees_feedback_only_when_enabled(rewritten: dict[str, StagePaths], tmp_path: Path,
                                                use_feedback: bool) -> None:
    recorders: list[RecordingEngine] = []
    ctx = rerun_shard(rewritten["rewrite"], tmp_path / "rewrite", wrap=recording(recorders),
                      rewrite={"use_feedback": use_feedback, "max_new_tokens": 4})
    pairs = [from_dict(RewritePair, r) for r in rows(ctx.paths)]
    (engine,) = recorders  # policy and rewriter are the same model: one engine, two calls per chunk
    assert pairs and len(engine.chats) == 2 * len(pairs)
    rewriter_chats = [c for c in engine.chats if c[0]["role"] == "system"]
    policy_chats = [c for c in engine.chats if c[0]["role"] != "system"]
    assert len(rewriter_chats) == len(policy_chats) == len(pairs)
    for pair, chat in zip(pairs, rewriter_chats, strict=True):
        assert (pair.feedback.strip() in chat[-1]["content"]) is use_feedback
        assert pair.with_feedback is use_feedback
    for pair, chat in zip(pairs, policy_chats, strict=True):  # the regenerated original: no persona, no feedback
        assert chat == list(pair.prompt)


def test_malformed_labels_are_quarantined_not_fatal(rewritten: dict[str, StagePaths], tmp_path: Path) -> None:
    shard = load_manifest(rewritten["rewrite"])["shards"][0]["id"]
    labels = list(read_jsonl(rewritten["classify"].out(shard)))
    good = [r for r in labels if r["split"] == "train" and r["actionable"]][:2]
    assert good, "shard 0 of the slice has actionable train labels"
    lines = [{**good[0], "conversation_id": "no-such-conversation"}, *good, {**good[0], "turn_index": 1},
             {**good[0], "turn_index": 999}]
    fake = StagePaths(tmp_path / "classify")
    fake.make_dirs()
    fake.out(shard).write_text("".join(json.dumps(r) + "\n" for r in lines))
    atomic_write_json(fake.done(shard), {"shard": shard})
    ctx = rerun_shard(rewritten["rewrite"], tmp_path / "rewrite", upstream={"classify": fake},
                      rewrite={"max_new_tokens": 4})
    reasons = sorted(q["reason"] for q in rows(ctx.paths, "quarantine"))
    assert reasons == ["bad_turn_index", "bad_turn_index", "missing_conversation"]
    (marker,) = markers(ctx.paths)
    assert marker["counts"]["records_in"] == len(lines) and marker["counts"]["records_out"] == len(good)


def test_over_long_prompts_are_quarantined(rewritten: dict[str, StagePaths], tmp_path: Path) -> None:
    ctx = rerun_shard(rewritten["rewrite"], tmp_path / "rewrite", model={"max_model_len": 96},
                      rewrite={"max_new_tokens": 8})
    quarantined = rows(ctx.paths, "quarantine")
    (marker,) = markers(ctx.paths)
    assert quarantined and {q["reason"] for q in quarantined} == {"prompt_too_long"}
    assert marker["counts"]["records_out"] + len(quarantined) == marker["counts"]["records_in"]


def test_a_rewrite_quoting_the_feedback_is_malformed() -> None:
    check = rewrite_check(FEEDBACK)
    assert check("Here is the Python version:\ndef rev(xs):\n    return xs[::-1]") is None
    assert check("As you said: no, I asked for Python, NOT Java.  And keep it under ten lines. Sure!") == \
        "mentions_feedback"
    assert check("   ") == "empty_output"
    assert rewrite_check("Shorter.")("Shorter. Here it is.") is None  # a short feedback is never a quote
