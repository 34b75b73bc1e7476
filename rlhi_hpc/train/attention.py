"""Attention for packed rows: sequences never attend to each other.

On CUDA with ``flash_attn`` installed, transformers' ``flash_attention_2`` runs the padding-free
varlen kernel from ``cu_seq_lens_q/k`` and ``max_length_q/k``. Elsewhere the ``rlhi_segments``
implementation registered here runs ``scaled_dot_product_attention`` with ``is_causal=True`` on each
sequence of the row: the exact result of a block-diagonal causal mask, without its quadratic cost
over the whole row. Without those keyword arguments (right-padded batches) it is plain causal sdpa,
which is exact for right padding because real tokens never see the padding after them.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)

SEGMENT_ATTENTION = "rlhi_segments"


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str, device_type: str) -> str:
    """The implementation to load the model with: flash_attention_2 on CUDA when possible, else segments."""
    if requested == "auto":
        requested = "flash_attention_2" if device_type == "cuda" and flash_attn_available() else "sdpa"
    if requested == "flash_attention_2":
        if device_type != "cuda" or not flash_attn_available():
            log.warning("event=attn_fallback requested=flash_attention_2 reason=%s using=%s",
                        "no_cuda" if device_type != "cuda" else "flash_attn_not_installed", SEGMENT_ATTENTION)
            return register_segment_attention()
        return requested
    return register_segment_attention()


def register_segment_attention() -> str:
    """Register the per-sequence sdpa implementation with transformers (idempotent); return its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_sdpa_attention)
    return SEGMENT_ATTENTION


def segment_sdpa_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                           dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention function: q/k/v are [batch, heads, tokens, head_dim]."""
    import torch.nn.functional as F

    gqa = getattr(module, "num_key_value_groups", 1) > 1
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        causal = attention_mask is None and query.shape[2] > 1
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                             is_causal=causal, scale=scaling, enable_gqa=gqa)
        return out.transpose(1, 2).contiguous(), None
    lens = (cu[1:] - cu[:-1]).tolist()
    if sum(lens) != query.shape[2]:
        raise ValueError(f"cu_seq_lens_q covers {sum(lens)} tokens but the row holds {query.shape[2]}")
    # split (not slicing): its backward is one concatenation instead of a zero-filled tensor per segment
    parts = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for q, k, v in zip(query.split(lens, dim=2), key.split(lens, dim=2), value.split(lens, dim=2))
    ]
    import torch

    out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    return out.transpose(1, 2).contiguous(), None
