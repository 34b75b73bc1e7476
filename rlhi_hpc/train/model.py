"""Loading the policy / reference model and its tokenizer for training."""

from __future__ import annotations

import logging
from typing import Any

from rlhi_hpc.train import TrainError
from rlhi_hpc.train.attention import resolve_attn_implementation

log = logging.getLogger(__name__)


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
            "float32": torch.float32}[precision]


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise TrainError(f"tokenizer {path} has no chat template; DPO renders pairs with the model's template")
    return tok


def disable_dropout(model: Any) -> None:
    """DPO log-probs must be deterministic: every dropout probability is set to 0."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for attr in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, attr) and isinstance(getattr(model.config, attr), float):
            setattr(model.config, attr, 0.0)


def load_causal_lm(path: str, *, precision: str, attn_implementation: str, device_type: str,
                   gradient_checkpointing: bool = False, trust_remote_code: bool = False) -> Any:
    """A causal LM ready for packed DPO: chosen attention implementation, no dropout, no KV cache."""
    from transformers import AutoModelForCausalLM

    impl = resolve_attn_implementation(attn_implementation, device_type)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(precision), attn_implementation=impl,
                                                 trust_remote_code=trust_remote_code)
    model.config.use_cache = False
    disable_dropout(model)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    log.info("event=model_loaded path=%s precision=%s attn=%s params=%d grad_ckpt=%s", path, precision, impl,
             sum(p.numel() for p in model.parameters()), gradient_checkpointing)
    return model
