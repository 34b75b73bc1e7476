"""The DeepSpeed JSON config, generated from :class:`~rlhi_hpc.config.DPOConfig` (never hand-edited).

Gradient accumulation is ours, not DeepSpeed's: a step packs a variable number of micro-batches
(the same on every rank), so the engine runs with ``managed_gradient_accumulation: false``
(``backward`` only accumulates; ``step`` reduces and updates) and a nominal batch of one
micro-batch per rank. The loss is already averaged over the step's pairs by
:mod:`rlhi_hpc.train.loss`.
"""

from __future__ import annotations

from typing import Any

from rlhi_hpc.config import DPOConfig


def resolve_precision(precision: str, device_type: str) -> str:
    """'bf16' or 'fp32' (auto = bf16 on CUDA, fp32 elsewhere)."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return precision


def deepspeed_supports_unmanaged_accumulation() -> bool:
    try:
        from deepspeed.runtime import constants
    except ImportError:
        return False
    return hasattr(constants, "MANAGED_GRADIENT_ACCUMULATION")


def deepspeed_config(dpo: DPOConfig, *, world_size: int, device_type: str) -> dict[str, Any]:
    """The config dict passed to ``deepspeed.initialize``."""
    bf16 = resolve_precision(dpo.precision, device_type) == "bf16"
    cuda = device_type == "cuda"
    zero: dict[str, Any] = {
        "stage": dpo.zero_stage,
        "overlap_comm": cuda,
        "contiguous_gradients": True,
        "reduce_bucket_size": 200_000_000,
        "allgather_bucket_size": 200_000_000,
    }
    if dpo.zero_stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": 50_000_000,
                     "stage3_param_persistence_threshold": 100_000})
    if dpo.offload_optimizer and dpo.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
    if dpo.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cuda}
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": float(dpo.grad_clip),
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
        "dump_state": False,
    }
    if deepspeed_supports_unmanaged_accumulation():
        cfg["managed_gradient_accumulation"] = False
    return cfg
