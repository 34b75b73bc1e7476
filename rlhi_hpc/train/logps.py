"""Summed log-probs of the response tokens of every sequence of a micro-batch.

The decoder's final hidden states are gathered at the positions that predict a response token
(prompt and padding positions never reach the LM head), then projected through the LM head
``chunk_tokens`` tokens at a time: each chunk's logits live only while that chunk is processed,
in the forward pass and again (recomputed) in the backward pass, so the full ``[tokens x vocab]``
logits never exist. On CUDA, when ``liger_kernel`` (>= 0.8.5, whose fused linear cross entropy
supports per-token outputs) is installed and the LM head is not ZeRO-3 partitioned, Liger's fused
kernel does the same without a PyTorch loop.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

import torch
from torch import nn


def liger_available() -> bool:
    """True when a liger_kernel with per-token fused linear cross entropy is importable."""
    if importlib.util.find_spec("liger_kernel") is None:
        return False
    try:
        version = tuple(int(x) for x in importlib.metadata.version("liger_kernel").split(".")[:3])
    except (ValueError, importlib.metadata.PackageNotFoundError):
        return False
    return version >= (0, 8, 5)


def _chunk_logps(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = lm_head(hidden).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def chunked_token_logps(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                        chunk_tokens: int) -> torch.Tensor:
    """log p(target) for each row of `hidden` [N, H], never materialising more than chunk x vocab logits."""
    from torch.utils.checkpoint import checkpoint

    outs = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, y = hidden[start:start + chunk_tokens], targets[start:start + chunk_tokens]
        if torch.is_grad_enabled():
            outs.append(checkpoint(_chunk_logps, lm_head, h, y, use_reentrant=False))
        else:
            outs.append(_chunk_logps(lm_head, h, y))
    if not outs:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def liger_token_logps(lm_head: nn.Linear, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs through Liger's fused linear cross entropy (CUDA)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    loss = liger_fused_linear_cross_entropy(hidden, lm_head.weight, targets, bias=lm_head.bias, reduction="none")
    return -loss.float()


class SequenceLogps(nn.Module):
    """Wraps a causal LM; forward returns the summed response log-prob of every sequence.

    Being the root module handed to DeepSpeed, it lets ZeRO-3 gather each submodule's parameters
    through its own hooks (the LM head is called as a module, chunk by chunk).
    """

    def __init__(self, model: nn.Module, chunk_tokens: int = 1024, use_liger: bool = False) -> None:
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.use_liger = use_liger

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, pred_pos: torch.Tensor,
                targets: torch.Tensor, seq_index: torch.Tensor, n_seqs: int, cu_seqlens: torch.Tensor | None = None,
                max_seqlen: int | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if cu_seqlens is not None:
            kwargs = {"cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens,
                      "max_length_q": max_seqlen, "max_length_k": max_seqlen}
        out = self.model.base_model(input_ids=input_ids, position_ids=position_ids, use_cache=False, **kwargs)
        hidden = out.last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, pred_pos)
        lm_head = self.model.get_output_embeddings()
        if self.use_liger:
            token_logps = liger_token_logps(lm_head, hidden, targets)
        else:
            token_logps = chunked_token_logps(lm_head, hidden, targets, self.chunk_tokens)
        return token_logps.new_zeros(n_seqs).index_add(0, seq_index, token_logps)
