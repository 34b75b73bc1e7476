"""Loss and gradient parity with TRL's DPOTrainer (the reference implementation), in fp32.

The reference model is a perturbed copy of the policy, so rewards, margins and gradients are not
trivial. TRL computes the reference log-probs in its step; ours come from the reference pass of
:mod:`rlhi_hpc.train.reference`, as in training.
"""

from __future__ import annotations

import copy

import pytest
import torch
from dpo_helpers import make_pairs

from rlhi_hpc.train.data import RenderSpec, prompt_messages, tokenize_pairs
from rlhi_hpc.train.logps import SequenceLogps
from rlhi_hpc.train.loss import LossSpec, microbatch_loss, pair_losses
from rlhi_hpc.train.packing import build_microbatch
from rlhi_hpc.train.reference import compute_reference_logps

SPEC = RenderSpec(system_prompt="You are a helpful assistant.", persona_template="\n\nUser: {persona}",
                  persona=True, max_length=4096)
N_PAIRS = 6
CHECKED = ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
           "model.norm.weight", "lm_head.weight")

# (TRL loss_type, TRL loss_weights, our LossSpec)
CASES = {
    "sigmoid": (["sigmoid"], None, LossSpec(kind="sigmoid", beta=0.1)),
    "sigmoid+nll": (["sigmoid", "sft"], [1.0, 0.5], LossSpec(kind="sigmoid", beta=0.1, nll_weight=0.5)),
    "ipo": (["ipo"], None, LossSpec(kind="ipo", beta=0.3)),
    "ipo+nll": (["ipo", "sft"], [1.0, 0.25], LossSpec(kind="ipo", beta=0.3, nll_weight=0.25)),
    "hinge": (["hinge"], None, LossSpec(kind="hinge", beta=0.1)),
    "length_normalized": (["sigmoid_norm"], None, LossSpec(kind="sigmoid", beta=2.0, length_normalize=True)),
}


@pytest.fixture(scope="module")
def setup(tiny_model_dir):  # noqa: ANN001, ANN201
    from transformers import AutoModelForCausalLM

    from rlhi_hpc.train.model import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    reference = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.03)
    pairs = make_pairs(N_PAIRS, seed=7)
    return tok, policy, reference, pairs


def _trl(setup, loss_type, weights, beta, tmp_path):  # noqa: ANN001, ANN202
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, policy, reference, pairs = setup
    rows = [{"prompt": prompt_messages(p, SPEC), "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs]
    model = copy.deepcopy(policy)
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=N_PAIRS, bf16=False, use_cpu=True,
                     gradient_checkpointing=False, report_to="none", max_length=None, beta=beta,
                     loss_type=loss_type, loss_weights=weights)
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(reference), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = dict(model.named_parameters())
    return loss.item(), {k: grads[k].grad.clone() for k in CHECKED}, ds


def _ours(setup, spec: LossSpec, packed: bool):  # noqa: ANN001, ANN202
    from rlhi_hpc.train.attention import register_segment_attention

    tok, policy, reference, pairs = setup
    tokenized = tokenize_pairs(pairs, tok, SPEC, show_progress=False)
    name = register_segment_attention()
    model, ref_model = copy.deepcopy(policy), copy.deepcopy(reference)
    model.config._attn_implementation = ref_model.config._attn_implementation = name
    ref = compute_reference_logps(ref_model, tokenized, max_tokens=100_000, chunk_tokens=64,
                                  pad_id=tok.pad_token_id, device="cpu", show_progress=False)
    mb = build_microbatch(tokenized, packed=packed, pad_id=tok.pad_token_id)
    ref_t = torch.tensor([v for k in mb.keys for v in ref[k]])
    logps = SequenceLogps(model, chunk_tokens=32)(**mb.model_kwargs("cpu"))
    loss, _ = microbatch_loss(logps, ref_t, mb.response_lens, spec, n_pairs_total=len(tokenized),
                              n_chosen_tokens_total=sum(len(t.chosen_ids) for t in tokenized))
    loss.backward()
    grads = dict(model.named_parameters())
    return loss.item(), {k: grads[k].grad.clone() for k in CHECKED}, tokenized


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradients_match_trl(setup, case: str, tmp_path) -> None:  # noqa: ANN001
    loss_type, weights, spec = CASES[case]
    trl_loss, trl_grads, trl_ds = _trl(setup, loss_type, weights, spec.beta, tmp_path)
    for packed in (True, False):
        loss, grads, tokenized = _ours(setup, spec, packed)
        assert [list(t.prompt_ids) for t in tokenized] == trl_ds["prompt_ids"]
        assert [list(t.chosen_ids) for t in tokenized] == trl_ds["chosen_ids"]
        assert [list(t.rejected_ids) for t in tokenized] == trl_ds["rejected_ids"]
        assert abs(loss - trl_loss) <= 1e-5, (case, packed, loss, trl_loss)
        assert trl_loss > 0.05 if case != "hinge" else True
        for name in CHECKED:
            diff = (grads[name] - trl_grads[name]).abs().max().item()
            assert diff <= 1e-5, (case, packed, name, diff)
            assert trl_grads[name].abs().max().item() > 1e-4  # a real gradient, not zeros


def test_label_smoothing_is_conservative_dpo() -> None:
    pc, pr = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -15.0])
    rc, rr = torch.tensor([-11.0, -19.0]), torch.tensor([-11.0, -16.0])
    lens = torch.tensor([5, 5])
    eps, beta = 0.2, 0.5
    got = pair_losses(pc, pr, rc, rr, lens, lens, LossSpec(kind="sigmoid", beta=beta, label_smoothing=eps))
    d = (pc - rc) - (pr - rr)
    expected = -(1 - eps) * torch.nn.functional.logsigmoid(beta * d) - eps * torch.nn.functional.logsigmoid(-beta * d)
    torch.testing.assert_close(got, expected)
    plain = pair_losses(pc, pr, rc, rr, lens, lens, LossSpec(kind="sigmoid", beta=beta))
    torch.testing.assert_close(plain, -torch.nn.functional.logsigmoid(beta * d))


def test_metrics_are_rewards_margins_and_accuracy() -> None:
    logps = torch.tensor([-10.0, -12.0, -20.0, -15.0])
    ref = torch.tensor([-11.0, -11.0, -19.0, -16.0])
    _, m = microbatch_loss(logps, ref, torch.tensor([3, 3, 3, 3]), LossSpec(beta=0.5), n_pairs_total=2,
                           n_chosen_tokens_total=6)
    assert m["reward_chosen_sum"] == pytest.approx(0.5 * (1 - 1))
    assert m["reward_rejected_sum"] == pytest.approx(0.5 * (-1 + 1))
    assert m["margin_sum"] == pytest.approx(0.5 * 2 + 0.5 * -2)
    assert m["accuracy_sum"] == 1.0 and m["pairs"] == 2.0
