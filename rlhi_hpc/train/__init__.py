"""Persona-conditioned DPO: data, packing, log-probs, losses, reference cache, DeepSpeed loop.

Modules (one job each): ``data`` (render, tokenise, truncate, sampler), ``packing`` (micro-batch
plans and packed rows), ``logps`` (chunked response log-probs), ``loss`` (DPO/IPO/hinge + NLL),
``reference`` (reference log-probs and their disk cache), ``ds_config`` (DeepSpeed JSON),
``checkpoint`` (atomic, resumable checkpoints), ``trainer`` (the loop), ``run`` (entry point).
Heavy imports (torch, transformers, deepspeed) stay inside the modules that need them.
"""

from rlhi_hpc.errors import RlhiError


class TrainError(RlhiError):
    """Training cannot start or continue (bad inputs, missing reference cache, mismatched resume)."""
