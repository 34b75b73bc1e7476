"""Rendering, tokenisation, truncation and the resumable sampler of DPO pairs."""

from __future__ import annotations

import dataclasses

import pytest
from dpo_helpers import make_pairs

from rlhi_hpc.train import TrainError
from rlhi_hpc.train.data import PairSampler, RenderSpec, prompt_messages, tokenize_pair, truncate

SPEC = RenderSpec(system_prompt="You are helpful.", persona_template="\n\nUser: {persona}", persona=True,
                  max_length=4096)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):  # noqa: ANN001, ANN201
    from rlhi_hpc.train.model import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_persona_goes_into_the_system_prompt_and_the_ablation_drops_it() -> None:
    pair = make_pairs(2)[1]
    assert pair.persona
    with_persona = prompt_messages(pair, SPEC)
    assert with_persona[0] == {"role": "system", "content": "You are helpful.\n\nUser: " + pair.persona}
    without = prompt_messages(pair, dataclasses.replace(SPEC, persona=False))
    assert without[0] == {"role": "system", "content": "You are helpful."}
    assert with_persona[1:] == without[1:] == [dict(m) for m in pair.prompt]
    bare = prompt_messages(pair, dataclasses.replace(SPEC, persona=False, system_prompt=""))
    assert bare[0]["role"] == "user"


def test_tokenized_sequences_are_the_chat_template_rendering(tokenizer) -> None:  # noqa: ANN001
    pair = make_pairs(4)[3]
    tp = tokenize_pair(pair, tokenizer, SPEC)
    msgs = prompt_messages(pair, SPEC)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": pair.chosen}], tokenize=False)
    assert tokenizer.decode(tp.prompt_ids + tp.chosen_ids) == full
    assert tokenizer.decode(tp.chosen_ids).endswith("<|im_end|>\n")
    assert tokenizer.decode(tp.prompt_ids).endswith("<|im_start|>assistant\n")
    assert not tp.truncated and tp.n_tokens == 2 * len(tp.prompt_ids) + len(tp.chosen_ids) + len(tp.rejected_ids)


def test_truncation_cuts_the_conversation_from_the_left_keeping_the_system_prompt() -> None:
    system, conv = list(range(100, 110)), list(range(200, 240))
    chosen, rejected = list(range(300, 320)), list(range(400, 410))
    p, c, r, cut = truncate(len(system), system + conv, chosen, rejected, max_length=60)
    assert cut and len(p) + max(len(c), len(r)) == 60
    assert p[:10] == system and p[10:] == conv[-30:]  # oldest conversation tokens went first
    assert c == chosen and r == rejected
    # prompt floor (max_length // 2) reached: then the responses are cut from the end
    p, c, r, _ = truncate(len(system), system + conv, list(range(300, 360)), rejected, max_length=60)
    assert len(p) == 30 and p[:10] == system and c == list(range(300, 330)) and r == rejected
    # untouched when everything fits
    assert truncate(2, [1, 2, 3], [4], [5], 10) == ([1, 2, 3], [4], [5], False)


def test_tokenize_pair_respects_max_length(tokenizer) -> None:  # noqa: ANN001
    pair = make_pairs(1, cap=400)[0]
    pair = dataclasses.replace(pair, chosen=" ".join(["word"] * 300))
    tp = tokenize_pair(pair, tokenizer, dataclasses.replace(SPEC, max_length=64))
    assert tp.truncated
    assert len(tp.prompt_ids) + max(len(tp.chosen_ids), len(tp.rejected_ids)) <= 64
    assert tokenizer.decode(tp.prompt_ids).startswith("<|im_start|>system\nYou are helpful.")


def _stream(sampler: PairSampler, batch: int) -> list[list[int]]:
    out = []
    while not sampler.exhausted():
        out.append(sampler.next_batch(batch))
    return out


def test_sampler_covers_every_item_once_per_epoch_across_batch_boundaries() -> None:
    sources = ["rewrites", "rewards"] * 5 + ["rewrites"]  # 11 items, batch 4: not a multiple
    s = PairSampler(sources, {"rewrites": 1.0, "rewards": 1.0}, seed=3, epochs=3)
    batches = _stream(s, 4)
    flat = [i for b in batches for i in b]
    assert len(flat) == 33 and [len(b) for b in batches] == [4] * 8 + [1]
    for e in range(3):
        assert sorted(flat[11 * e:11 * (e + 1)]) == list(range(11))
    assert flat[:11] != flat[11:22]  # reshuffled per epoch
    again = PairSampler(sources, {"rewrites": 1.0, "rewards": 1.0}, seed=3, epochs=3)
    assert _stream(again, 4) == batches  # deterministic


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 8])
def test_sampler_resume_equals_uninterrupted(stop_after: int) -> None:
    """Includes a stop exactly at an epoch boundary (12 items, batch 4: after 3 and 6 batches)."""
    sources = ["a"] * 7 + ["b"] * 5
    mix = {"a": 1.0, "b": 1.0}
    full = _stream(PairSampler(sources, mix, seed=0, epochs=3), 4)
    first = PairSampler(sources, mix, seed=0, epochs=3)
    head = [first.next_batch(4) for _ in range(stop_after)]
    state = dict(first.state_dict())
    resumed = PairSampler(sources, mix, seed=0, epochs=3)
    resumed.load_state_dict(state)
    assert head + _stream(resumed, 4) == full


def test_sampler_state_at_epoch_boundary_points_at_next_epoch() -> None:
    s = PairSampler(["a"] * 8, {"a": 1.0}, seed=0, epochs=2)
    s.next_batch(4)
    s.next_batch(4)
    assert s.state_dict()["epoch"] == 1 and s.state_dict()["position"] == 0


def test_sampler_mix_weights() -> None:
    sources = ["rewrites"] * 10 + ["rewards"] * 20
    s = PairSampler(sources, {"rewrites": 2.0, "rewards": 0.5}, seed=1, epochs=1)
    items = s.epoch_items(0)
    assert len(items) == s.epoch_length == 30
    counts = {i: items.count(i) for i in set(items)}
    assert all(counts[i] == 2 for i in range(10))
    assert sum(1 for i in range(10, 30) if i in counts) == 10 and all(counts[i] == 1 for i in counts if i >= 10)
    assert s.epoch_items(0) == items and PairSampler(sources, {"rewrites": 2.0, "rewards": 0.5}, seed=1,
                                                     epochs=1).epoch_items(1) != items
    dropped = PairSampler(sources, {"rewrites": 1.0, "rewards": 0.0}, seed=1, epochs=1)
    assert sorted(dropped.epoch_items(0)) == list(range(10))


def test_sampler_rejects_unweighted_sources_and_changed_data() -> None:
    with pytest.raises(TrainError, match="dpo.mix"):
        PairSampler(["rewrites", "other"], {"rewrites": 1.0}, seed=0, epochs=1)
    s = PairSampler(["a"] * 4, {"a": 1.0}, seed=0, epochs=1, fingerprint="x")
    state = s.state_dict()
    with pytest.raises(TrainError, match="fingerprint"):
        PairSampler(["a"] * 4, {"a": 1.0}, seed=0, epochs=1, fingerprint="y").load_state_dict(state)
