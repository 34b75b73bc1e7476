"""Pick the inference backend named by ``model.engine``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rlhi_hpc.errors import ConfigError

if TYPE_CHECKING:
    from rlhi_hpc.config import ModelConfig
    from rlhi_hpc.inference.engine import Engine


def load_engine(cfg: ModelConfig) -> Engine:
    """Build the engine for `cfg`: ``hf`` → TransformersEngine, ``vllm`` → VLLMEngine."""
    if cfg.engine == "hf":
        from rlhi_hpc.inference.hf_engine import TransformersEngine

        return TransformersEngine.from_config(cfg)
    if cfg.engine == "vllm":
        try:
            module = importlib.import_module("rlhi_hpc.inference.vllm_engine")
        except ModuleNotFoundError as exc:
            missing = exc.name or "vllm"
            raise ConfigError(
                f"config key 'model.engine': 'vllm' needs the module {missing!r}, which is not importable here; "
                "install the GPU extra (pip install -e '.[gpu]') or use model.engine=hf") from exc
        return module.VLLMEngine.from_config(cfg)
    raise ConfigError(f"config key 'model.engine': got {cfg.engine!r}; allowed: hf, vllm")
