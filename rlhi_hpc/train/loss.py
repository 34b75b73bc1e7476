"""DPO losses on summed response log-probs, with the metrics every step logs.

For pair i with policy log-probs ``pc, pr`` and reference log-probs ``rc, rr`` (summed over the
response tokens, lengths ``lc, lr``)::

    chosen log-ratio   u = pc - rc          rejected log-ratio   v = pr - rr
    sigmoid  -(1 - eps) * log σ(β d) - eps * log σ(-β d)          d = u - v   (conservative DPO)
    hinge    max(0, 1 - β d)
    ipo      (u / lc - v / lr - 1 / (2β))²                        (TRL's per-token IPO)

With ``length_normalize`` the sigmoid and hinge losses use ``d = u / lc - v / lr`` (TRL's
``sigmoid_norm``). The optional NLL term is ``-w * (sum of chosen token log-probs) / (chosen
tokens)`` over the whole optimizer batch (TRL: ``loss_type=["sigmoid", "sft"]``). Rewards are
``β u`` and ``β v``; accuracy counts ``β u > β v``.

The batch loss is a mean over the optimizer step's pairs: each micro-batch contributes its sum
scaled by ``1 / n_pairs`` (and its chosen-token sum by ``1 / n_chosen_tokens``), so splitting a
batch into micro-batches or ranks does not change the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhi_hpc.config import DPOConfig


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    kind: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    nll_weight: float = 0.0
    length_normalize: bool = False

    @classmethod
    def from_config(cls, dpo: DPOConfig) -> LossSpec:
        return cls(kind=dpo.loss, beta=dpo.beta, label_smoothing=dpo.label_smoothing,
                   nll_weight=dpo.nll_weight, length_normalize=dpo.length_normalize)


METRIC_KEYS = ("loss_dpo_sum", "nll_sum", "reward_chosen_sum", "reward_rejected_sum", "margin_sum",
               "accuracy_sum", "logp_chosen_sum", "logp_rejected_sum", "pairs")


def pair_losses(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, lc: torch.Tensor,
                lr: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """The per-pair preference loss (no NLL term)."""
    u, v = pc - rc, pr - rr
    lc, lr = lc.to(u.dtype).clamp(min=1), lr.to(u.dtype).clamp(min=1)
    if spec.kind == "ipo":
        return (u / lc - v / lr - 1 / (2 * spec.beta)) ** 2
    d = u / lc - v / lr if spec.length_normalize else u - v
    if spec.kind == "sigmoid":
        eps = spec.label_smoothing
        loss = -F.logsigmoid(spec.beta * d)
        return loss if eps == 0 else (1 - eps) * loss - eps * F.logsigmoid(-spec.beta * d)
    if spec.kind == "hinge":
        return torch.relu(1 - spec.beta * d)
    raise ValueError(f"unknown loss {spec.kind!r}; use sigmoid, ipo or hinge")


def microbatch_loss(seq_logps: torch.Tensor, ref_logps: torch.Tensor, response_lens: torch.Tensor, spec: LossSpec,
                    *, n_pairs_total: int, n_chosen_tokens_total: int,
                    weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """This micro-batch's share of the batch loss, and its metric sums.

    `seq_logps` and `ref_logps` are [2n] in (chosen, rejected) order per pair; `weight` = 0 turns a
    dummy micro-batch into a zero contribution that still runs forward and backward.
    """
    pc, pr = seq_logps[0::2], seq_logps[1::2]
    rc, rr = ref_logps[0::2].to(pc.dtype), ref_logps[1::2].to(pc.dtype)
    lc, lr = response_lens[0::2].to(pc.device), response_lens[1::2].to(pc.device)
    losses = pair_losses(pc, pr, rc, rr, lc, lr, spec)
    loss = losses.sum() / n_pairs_total
    nll = -pc.sum()
    if spec.nll_weight > 0:
        loss = loss + spec.nll_weight * nll / max(n_chosen_tokens_total, 1)
    loss = loss * weight
    with torch.no_grad():
        rw_c, rw_r = spec.beta * (pc - rc), spec.beta * (pr - rr)
        metrics = {
            "loss_dpo_sum": losses.sum().item(), "nll_sum": nll.item(),
            "reward_chosen_sum": rw_c.sum().item(), "reward_rejected_sum": rw_r.sum().item(),
            "margin_sum": (rw_c - rw_r).sum().item(), "accuracy_sum": (rw_c > rw_r).float().sum().item(),
            "logp_chosen_sum": pc.sum().item(), "logp_rejected_sum": pr.sum().item(), "pairs": float(len(pc)),
        }
    if weight == 0:
        metrics = {k: 0.0 for k in metrics}
    return loss, metrics


def finalize_metrics(sums: dict[str, float], spec: LossSpec, n_chosen_tokens: int) -> dict[str, float]:
    """Turn summed metrics (over micro-batches and ranks) into per-pair means and the batch loss."""
    n = max(sums.get("pairs", 0.0), 1.0)
    loss_dpo = sums["loss_dpo_sum"] / n
    nll = sums["nll_sum"] / max(n_chosen_tokens, 1)
    loss = loss_dpo + (spec.nll_weight * nll if spec.nll_weight > 0 else 0.0)
    return {
        "loss": loss, "loss_dpo": loss_dpo, "nll": nll,
        "reward_chosen": sums["reward_chosen_sum"] / n, "reward_rejected": sums["reward_rejected_sum"] / n,
        "margin": sums["margin_sum"] / n, "accuracy": sums["accuracy_sum"] / n,
        "logp_chosen": sums["logp_chosen_sum"] / n, "logp_rejected": sums["logp_rejected_sum"] / n,
    }
