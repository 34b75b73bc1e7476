"""The vLLM engine's settings, checked without vLLM: engine arguments from the presets, stop tokens,
context length, and the error when vllm is not installed. (The engine itself runs for real in
tests/test_vllm_engine.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlhi_hpc.config import CONFIG_DIR, ModelConfig, load_config, preset_names
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.factory import load_engine
from rlhi_hpc.inference.vllm_engine import CPU_MAX_BATCHED_TOKENS, context_length, engine_kwargs, find_stop_ids


def _vllm_presets() -> list[str]:
    return [name for name in preset_names("model") if load_config([f"model={name}"]).model.engine == "vllm"]


def test_vllm_presets_exist_and_fit_80gb_gpus() -> None:
    presets = _vllm_presets()
    assert {"llama-3.1-8b-instruct", "llama-3.3-70b-instruct"} <= set(presets)
    for name in presets:
        model = load_config([f"model={name}"]).model
        weights_gb_per_gpu = model.params_b * 2 / model.tensor_parallel_size  # bf16
        assert model.dtype == "bfloat16"
        assert weights_gb_per_gpu < 0.6 * model.gpu_memory_utilization * 80, name  # room left for KV cache
        assert (CONFIG_DIR / "model" / f"{name}.yaml").read_text().startswith("#")  # the memory arithmetic


def test_engine_kwargs_from_preset() -> None:
    model = load_config(["model=llama-3.3-70b-instruct"]).model
    kwargs = engine_kwargs(model, model.name, model.name, model.max_model_len)
    assert kwargs["tensor_parallel_size"] == 4
    assert kwargs["dtype"] == "bfloat16"
    assert kwargs["max_model_len"] == 8192
    assert kwargs["gpu_memory_utilization"] == pytest.approx(0.92)
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["max_num_seqs"] == 256
    assert kwargs["logprobs_mode"] == "raw_logprobs"  # the model's own distribution, as the HF engine
    assert kwargs["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert "kv_cache_memory_bytes" not in kwargs
    assert "enable_chunked_prefill" not in kwargs  # GPUs keep chunked prefill


def test_engine_kwargs_on_cpu_and_options() -> None:
    cfg = ModelConfig(name="m", engine="vllm", kv_cache_memory_gb=0.5, enforce_eager=True,
                      structured_outputs_backend="outlines", seed=3)
    kwargs = engine_kwargs(cfg, "/models/m", "/models/t", 512, on_cpu=True)
    assert kwargs["model"] == "/models/m" and kwargs["tokenizer"] == "/models/t"
    assert kwargs["kv_cache_memory_bytes"] == 1 << 29
    assert kwargs["enforce_eager"] is True and kwargs["seed"] == 3
    assert kwargs["structured_outputs_config"] == {"backend": "outlines"}  # vLLM refuses compact JSON there
    assert kwargs["enable_chunked_prefill"] is False
    assert kwargs["max_num_batched_tokens"] == CPU_MAX_BATCHED_TOKENS


def test_stop_ids_and_context_match_the_transformers_engine(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    hf = load_engine(ModelConfig(name=str(tiny_model_dir)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert find_stop_ids(tokenizer, str(tiny_model_dir)) == hf.stop_ids
    assert context_length(str(tiny_model_dir), 1 << 20) == 4096  # capped at max_position_embeddings
    assert context_length(str(tiny_model_dir), 512) == 512
    hf.close()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_factory_without_vllm_says_how_to_install(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.engine.*make vllm-venv"):
        load_engine(ModelConfig(name=str(tiny_model_dir), engine="vllm"))


def test_bad_vllm_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="model.kv_cache_memory_gb"):
        load_config(["model.kv_cache_memory_gb=-1"])
    with pytest.raises(ConfigError, match="model.structured_outputs_backend"):
        load_config(["model.structured_outputs_backend=regex-magic"])
