"""Micro-batch plans, packed rows and the log-probs computed on them (packed == unpacked)."""

from __future__ import annotations

import random

import pytest
import torch
from dpo_helpers import make_pairs

from rlhi_hpc.train.data import RenderSpec, TokenizedPair, tokenize_pairs
from rlhi_hpc.train.logps import SequenceLogps, chunked_token_logps
from rlhi_hpc.train.loss import LossSpec, microbatch_loss
from rlhi_hpc.train.packing import build_microbatch, dummy_pair, plan_step

SPEC = RenderSpec(system_prompt="You are helpful.", persona_template=" About the user: {persona}", persona=True,
                  max_length=512)


@pytest.fixture(scope="module")
def model_and_pairs(tiny_model_dir):  # noqa: ANN001, ANN201
    from rlhi_hpc.train.model import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir), precision="fp32", attn_implementation="sdpa", device_type="cpu")
    return model, tokenize_pairs(make_pairs(6, seed=1), tok, SPEC, show_progress=False), tok.pad_token_id


@pytest.mark.parametrize("world", [1, 2, 3])
def test_plan_assigns_every_pair_once_with_equal_microbatch_counts(world: int) -> None:
    rng = random.Random(world)
    counts = [int(rng.lognormvariate(4, 1)) + 4 for _ in range(37)]
    budget = max(counts) + 50
    plan = plan_step(counts, world, budget)
    assert len(plan) == world and len({len(r) for r in plan}) == 1
    flat = sorted(i for rank in plan for mb in rank for i in mb)
    assert flat == list(range(37))
    assert all(sum(counts[i] for i in mb) <= budget for rank in plan for mb in rank)
    assert plan == plan_step(counts, world, budget)  # every rank computes the same plan


def test_plan_splits_or_pads_to_keep_ranks_in_step() -> None:
    plan = plan_step([100, 10, 10, 10], 2, 100)
    assert len(plan[0]) == len(plan[1])
    few = plan_step([50, 50, 50], 4, 1000)  # fewer pairs than ranks: the last rank runs a dummy
    assert [len(r) for r in few] == [1, 1, 1, 1] and sorted(len(r[0]) for r in few) == [0, 1, 1, 1]


def test_microbatch_layout() -> None:
    p = TokenizedPair(key="a", source="s", prompt_ids=(5, 6, 7), chosen_ids=(8, 9), rejected_ids=(10,))
    q = TokenizedPair(key="b", source="s", prompt_ids=(11,), chosen_ids=(12,), rejected_ids=(13, 14))
    mb = build_microbatch([p, q], packed=True, pad_id=0)
    assert mb.input_ids.tolist() == [[5, 6, 7, 8, 9, 5, 6, 7, 10, 11, 12, 11, 13, 14]]
    assert mb.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 0, 1, 2]]
    assert mb.cu_seqlens.tolist() == [0, 5, 9, 11, 14]
    assert mb.targets.tolist() == [8, 9, 10, 12, 13, 14]
    assert mb.pred_pos.tolist() == [2, 3, 7, 9, 11, 12]
    assert mb.seq_index.tolist() == [0, 0, 1, 2, 3, 3]
    assert mb.response_lens.tolist() == [2, 1, 1, 2] and mb.real_tokens == mb.slots == 14
    padded = build_microbatch([p, q], packed=False, pad_id=0)
    assert padded.input_ids.shape == (4, 5) and padded.slots == 20 and padded.real_tokens == 14
    assert padded.targets.tolist() == mb.targets.tolist() and padded.cu_seqlens is None
    assert dummy_pair(0).n_tokens == 4


def _token_logps_alone(model, pair: TokenizedPair) -> list[torch.Tensor]:  # noqa: ANN001
    out = []
    for resp in (pair.chosen_ids, pair.rejected_ids):
        ids = torch.tensor([pair.prompt_ids + resp])
        logits = model(input_ids=ids).logits[0].float()
        n = len(pair.prompt_ids)
        out.append(logits[n - 1:-1].log_softmax(-1).gather(-1, ids[0, n:, None]).squeeze(-1))
    return out


def test_packed_equals_unpacked_equals_one_sequence_at_a_time(model_and_pairs) -> None:  # noqa: ANN001
    model, pairs, pad = model_and_pairs
    wrapper = SequenceLogps(model, chunk_tokens=7)  # several chunks per micro-batch
    packed = build_microbatch(pairs, packed=True, pad_id=pad)
    padded = build_microbatch(pairs, packed=False, pad_id=pad)
    with torch.no_grad():
        lp_packed = wrapper(**packed.model_kwargs("cpu"))
        lp_padded = wrapper(**padded.model_kwargs("cpu"))
        alone = [t for p in pairs for t in _token_logps_alone(model, p)]
    expected = torch.stack([t.sum() for t in alone])
    # per-token log-probs are ~-7 each: compare sums relative to their size, tokens absolutely below
    torch.testing.assert_close(lp_packed, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(lp_padded, expected, rtol=1e-6, atol=1e-5)
    hidden = model.base_model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                              cu_seq_lens_q=packed.cu_seqlens, cu_seq_lens_k=packed.cu_seqlens,
                              max_length_q=packed.max_seqlen, max_length_k=packed.max_seqlen).last_hidden_state
    tok = chunked_token_logps(model.lm_head, hidden[0, packed.pred_pos], packed.targets, 5)
    torch.testing.assert_close(tok, torch.cat(alone), rtol=0, atol=1e-5)


def _near_policy(wrapper: SequenceLogps, pairs: list[TokenizedPair], pad: int) -> torch.Tensor:
    """Reference log-probs a little away from the policy's (realistic, non-vanishing gradients)."""
    with torch.no_grad():
        logps = wrapper(**build_microbatch(pairs, packed=True, pad_id=pad).model_kwargs("cpu"))
    return logps + torch.randn(logps.shape, generator=torch.Generator().manual_seed(0)) * 5


def test_packed_and_unpacked_give_the_same_loss_and_gradients(model_and_pairs) -> None:  # noqa: ANN001
    model, pairs, pad = model_and_pairs
    wrapper = SequenceLogps(model, chunk_tokens=16)
    ref = _near_policy(wrapper, pairs, pad)
    spec = LossSpec(kind="sigmoid", beta=0.1, nll_weight=0.3)
    n_chosen = sum(len(p.chosen_ids) for p in pairs)
    results = []
    for packed in (True, False):
        model.zero_grad()
        mb = build_microbatch(pairs, packed=packed, pad_id=pad)
        loss, _ = microbatch_loss(wrapper(**mb.model_kwargs("cpu")), ref, mb.response_lens, spec,
                                  n_pairs_total=len(pairs), n_chosen_tokens_total=n_chosen)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l1, g1), (l2, g2) = results
    assert abs(l1.item() - l2.item()) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(g1, g2)) < 1e-5


def test_sequences_in_a_row_never_attend_to_each_other(model_and_pairs) -> None:  # noqa: ANN001
    model, pairs, pad = model_and_pairs
    wrapper = SequenceLogps(model)
    a, b = pairs[0], pairs[1]
    b2 = TokenizedPair(key=b.key, source=b.source, prompt_ids=tuple(reversed(b.prompt_ids)), chosen_ids=b.chosen_ids,
                       rejected_ids=b.rejected_ids)
    with torch.no_grad():
        first = wrapper(**build_microbatch([a, b], packed=True, pad_id=pad).model_kwargs("cpu"))
        second = wrapper(**build_microbatch([a, b2], packed=True, pad_id=pad).model_kwargs("cpu"))
    assert torch.equal(first[:2], second[:2]) and not torch.allclose(first[2:], second[2:])


def test_microbatch_split_does_not_change_the_batch_gradient(model_and_pairs) -> None:  # noqa: ANN001
    model, pairs, pad = model_and_pairs
    wrapper = SequenceLogps(model)
    ref = _near_policy(wrapper, pairs, pad)
    ref_of = {p.key: ref[2 * i:2 * i + 2] for i, p in enumerate(pairs)}
    spec = LossSpec(kind="ipo", beta=0.5, nll_weight=0.2)
    n_chosen = sum(len(p.chosen_ids) for p in pairs)
    grads, losses = [], []
    for split in ([pairs], [pairs[:2], pairs[2:5], pairs[5:]]):
        model.zero_grad()
        total = 0.0
        for part in split:
            mb = build_microbatch(part, packed=True, pad_id=pad)
            r = torch.cat([ref_of[k] for k in mb.keys])
            loss, _ = microbatch_loss(wrapper(**mb.model_kwargs("cpu")), r, mb.response_lens, spec,
                                      n_pairs_total=len(pairs), n_chosen_tokens_total=n_chosen)
            loss.backward()
            total += loss.item()
        losses.append(total)
        grads.append([p.grad.clone() for p in model.parameters()])
    assert abs(losses[0] - losses[1]) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(*grads)) < 1e-5
