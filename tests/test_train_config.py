"""DPO/reflogp config sections, the generated DeepSpeed config, schedules and MFU accounting."""

from __future__ import annotations

import pytest

from rlhi_hpc.config import CONFIG_DIR, DPOConfig, RefLogpConfig, build, load_yaml
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.train.ds_config import deepspeed_config, resolve_precision
from rlhi_hpc.train.metrics import peak_flops, step_flops


def test_shipped_presets_are_the_defaults_and_valid() -> None:
    for name, cls in (("dpo", DPOConfig), ("reflogp", RefLogpConfig)):
        cfg = build(cls, load_yaml(CONFIG_DIR / "stage" / f"{name}.yaml"), name)
        cfg.validate(name)
        assert cfg == cls()


@pytest.mark.parametrize(("override", "key"), [
    ({"beta": 0.0}, "dpo.beta"),
    ({"label_smoothing": 0.5}, "dpo.label_smoothing"),
    ({"max_tokens_per_microbatch": 1000, "max_length": 2048}, "dpo.max_tokens_per_microbatch"),
    ({"mix": {"rewrites": 0.0}}, "dpo.mix"),
    ({"persona_template": "{user}"}, "dpo.persona_template"),
    ({"offload_params": True, "zero_stage": 2}, "dpo.offload_params"),
    ({"loss": "kto"}, "dpo.loss"),
    ({"zero_stage": 4}, "dpo.zero_stage"),
])
def test_bad_values_name_the_key(override: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(DPOConfig, override, "dpo").validate("dpo")


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config_from_dpo_config(stage: int) -> None:
    dpo = DPOConfig(zero_stage=stage, grad_clip=0.5, offload_optimizer=stage > 0, offload_params=stage == 3)
    cpu = deepspeed_config(dpo, world_size=2, device_type="cpu")
    gpu = deepspeed_config(dpo, world_size=8, device_type="cuda")
    assert cpu["zero_optimization"]["stage"] == stage and cpu["gradient_clipping"] == 0.5
    assert cpu["bf16"] == {"enabled": False} and gpu["bf16"] == {"enabled": True}
    assert gpu["train_batch_size"] == 8 == gpu["train_micro_batch_size_per_gpu"] * 8
    assert cpu["managed_gradient_accumulation"] is False
    assert ("offload_optimizer" in gpu["zero_optimization"]) == (stage > 0)
    assert ("offload_param" in gpu["zero_optimization"]) == (stage == 3)
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("auto", "cpu") == "fp32"


def test_warmup_cosine_schedule() -> None:
    from rlhi_hpc.train.trainer import WarmupDecay

    f = WarmupDecay(total=10, warmup=2, schedule="cosine", min_ratio=0.1)
    values = [f(s) for s in range(10)]
    assert values[0] == 0.5 and values[1] == 1.0 and values[2] == 1.0
    assert all(a >= b for a, b in zip(values[2:], values[3:])) and values[-1] > 0.1
    assert WarmupDecay(total=4, warmup=0, schedule="constant", min_ratio=0)(3) == 1.0
    assert WarmupDecay(total=4, warmup=0, schedule="linear", min_ratio=0)(4) == 0.0


def test_peak_flops_table_and_step_flops() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("some cpu") is None
    assert step_flops(1000, 2, 64, [10, 20]) == 6 * 1000 * 30 + 6 * 2 * 64 * (100 + 400)
