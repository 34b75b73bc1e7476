"""GPU-hour estimates per stage, printed by ``dry_run=true`` on Slurm presets.

The estimate multiplies the size of the input by per-stage work factors and divides by per-GPU
throughput, all from ``configs/throughput.yaml`` (whose comments give the sources and assumptions):

* input size: measured from ingest's outputs when ingest has run (conversations = its records,
  tokens = bytes / chars_per_token), else from the bytes of the local input files, else (a hub
  dataset id) ``input.conversations_if_unknown``; capped by ``data.max_users``;
* inference stages: prompt tokens at the prefill rate plus generated tokens
  (``<section>.max_new_tokens`` x ``<section>.n``) at the decode rate of the stage's largest model;
* training stages (reflogp, dpo): ``6 x params`` FLOPs per trained token (forward only: ``2 x``)
  at ``train_mfu`` of the GPU's bf16 peak.

Only the shards still missing are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhi_hpc.config import CONFIG_DIR, ModelConfig, RunConfig, load_yaml
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import done_ids, read_json

THROUGHPUT_FILE = CONFIG_DIR / "throughput.yaml"
TRAINING_STAGES = ("reflogp", "dpo")


@dataclass(frozen=True, kw_only=True)
class InputSize:
    conversations: float
    tokens_per_conversation: float
    source: str


@dataclass(frozen=True, kw_only=True)
class Estimate:
    stage: str
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    trained_tokens: float = 0.0
    gpu_hours: float | None = None
    note: str = ""

    def line(self) -> str:
        parts = []
        if self.prompt_tokens or self.generated_tokens:
            parts.append(f"prompt tokens {self.prompt_tokens:,.0f}, generated tokens {self.generated_tokens:,.0f}")
        if self.trained_tokens:
            parts.append(f"trained tokens {self.trained_tokens:,.0f}")
        hours = "n/a" if self.gpu_hours is None else (
            f"{self.gpu_hours:,.1f}" if self.gpu_hours >= 10 else f"{self.gpu_hours:.3g}")
        return f"GPU-hours {hours}" + (f" ({'; '.join(parts)})" if parts else "") + (
            f" [{self.note}]" if self.note else "")


def _need(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{THROUGHPUT_FILE}: key '{where}.{key}' is missing")
    return table[key]


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{THROUGHPUT_FILE}: key '{where}': got {value!r}; allowed: a number > 0")
    return float(value)


def load_throughput(path: Path = THROUGHPUT_FILE) -> dict[str, Any]:
    """The throughput table, validated: every rate a positive number, every key where it belongs."""
    table = load_yaml(path)
    for gpu, row in _need(table, "gpus", "").items():
        where = f"gpus.{gpu}"
        _positive(_need(row, "peak_tflops_bf16", where), f"{where}.peak_tflops_bf16")
        mfu = _positive(_need(row, "train_mfu", where), f"{where}.train_mfu")
        if mfu > 1:
            raise ConfigError(f"{path}: key '{where}.train_mfu': got {mfu}; allowed: a fraction in (0, 1]")
        for size, rates in _need(row, "inference", where).items():
            _positive(size, f"{where}.inference.{size} (model size in billions)")
            for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
                _positive(_need(rates, key, f"{where}.inference.{size}"), f"{where}.inference.{size}.{key}")
    for key in ("chars_per_token", "tokens_per_conversation", "conversations_if_unknown", "conversations_per_user"):
        _positive(_need(_need(table, "input", ""), key, "input"), f"input.{key}")
    for stage, row in _need(table, "stages", "").items():
        for key, value in (row or {}).items():
            if key not in ("prompt_fraction", "generations", "pairs"):
                raise ConfigError(f"{path}: unknown key 'stages.{stage}.{key}'; allowed: prompt_fraction, "
                                  "generations, pairs")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{path}: key 'stages.{stage}.{key}': got {value!r}; allowed: a number >= 0")
    return table


def _local_input_bytes(cfg: RunConfig) -> int | None:
    """Bytes of the local input files, or None for a hub dataset id."""
    from rlhi_hpc.data.wildchat import SAMPLE_NAME, input_files, sample_path

    path = sample_path() if cfg.data.path == SAMPLE_NAME else Path(cfg.data.path)
    if not path.exists():
        return None
    return sum(f.stat().st_size for f in input_files(path))


def input_size(cfg: RunConfig, ingest: StagePaths | None, table: dict[str, Any]) -> InputSize:
    """How many conversations (and tokens each) the pipeline will process (see the module docstring)."""
    inp = table["input"]
    cpt = float(inp["chars_per_token"])
    done = sorted(done_ids(ingest)) if ingest is not None else []
    if done:
        total = len(read_json(ingest.manifest)["shards"])
        convs = sum(read_json(ingest.done(s))["counts"].get("records_out", 0) for s in done)
        size = sum(ingest.out(s).stat().st_size for s in done if ingest.out(s).exists())
        per_conv = size / cpt / max(convs, 1)
        return InputSize(conversations=convs * total / len(done), tokens_per_conversation=per_conv or 1.0,
                         source=f"ingest output ({len(done)}/{total} shards measured)")
    per_conv = float(inp["tokens_per_conversation"])
    size = _local_input_bytes(cfg)
    if size is None:
        convs, source = float(inp["conversations_if_unknown"]), "input.conversations_if_unknown (hub dataset)"
    else:
        convs, source = size / cpt / per_conv, f"{size:,} bytes of input files"
    if cfg.data.max_users:
        convs = min(convs, cfg.data.max_users * float(inp["conversations_per_user"]))
        source += f", data.max_users={cfg.data.max_users}"
    return InputSize(conversations=convs, tokens_per_conversation=per_conv, source=source)


def _gpu_row(cfg: RunConfig, table: dict[str, Any]) -> dict[str, Any] | None:
    gpu = cfg.cluster.gpu_type
    if not gpu:
        return None
    if gpu not in table["gpus"]:
        raise ConfigError(f"config key 'cluster.gpu_type': got {gpu!r}; allowed: {', '.join(table['gpus'])} "
                          f"(rows of {THROUGHPUT_FILE}), or empty for CPU nodes")
    return table["gpus"][gpu]


def _rates(row: dict[str, Any], model: ModelConfig) -> dict[str, float]:
    sizes = sorted(float(s) for s in row["inference"])
    size = next((s for s in sizes if s >= model.params_b), sizes[-1])
    rates = {float(k): v for k, v in row["inference"].items()}[size]
    return {k: float(v) for k, v in rates.items()}


def _generated_per_generation(cfg: RunConfig, stage: str) -> float:
    section = getattr(cfg, stage, None)
    new = float(getattr(section, "max_new_tokens", 0) or 0)
    return new * float(getattr(section, "n", 1) or 1)


def estimate_stage(cfg: RunConfig, stage: str, kind: str, models: list[ModelConfig], size: InputSize,
                   fraction: float, table: dict[str, Any]) -> Estimate:
    """Estimate of `stage` over `fraction` of its shards (the missing ones)."""
    work = table["stages"].get(stage)
    if kind == "cpu" or work is None:
        return Estimate(stage=stage, gpu_hours=0.0, note="CPU stage")
    convs = size.conversations * fraction
    model = max(models, key=lambda m: m.params_b) if models else cfg.model
    row = _gpu_row(cfg, table)
    if stage in TRAINING_STAGES:
        length = min(size.tokens_per_conversation, float(getattr(getattr(cfg, "dpo", None), "max_length", 2048)))
        epochs = float(getattr(getattr(cfg, "dpo", None), "epochs", 1)) if stage == "dpo" else 1.0
        tokens = convs * float(work.get("pairs", 0)) * 2 * length * epochs
        if row is None:
            return Estimate(stage=stage, trained_tokens=tokens, note="cluster.gpu_type is empty: no GPU rate")
        flops_per_token = (6 if stage == "dpo" else 2) * model.params_b * 1e9
        per_gpu = row["peak_tflops_bf16"] * 1e12 * row["train_mfu"] / max(flops_per_token, 1.0)
        return Estimate(stage=stage, trained_tokens=tokens, gpu_hours=tokens / per_gpu / 3600,
                        note=f"{cfg.cluster.gpu_type}, {model.params_b:g}B at {row['train_mfu']:.0%} MFU")
    prompt = convs * float(work.get("prompt_fraction", 0)) * size.tokens_per_conversation
    generated = convs * float(work.get("generations", 0)) * _generated_per_generation(cfg, stage)
    if row is None:
        return Estimate(stage=stage, prompt_tokens=prompt, generated_tokens=generated,
                        note="cluster.gpu_type is empty: no GPU rate")
    rates = _rates(row, model)
    seconds = prompt / rates["prefill_tokens_per_s"] + generated / rates["decode_tokens_per_s"]
    return Estimate(stage=stage, prompt_tokens=prompt, generated_tokens=generated, gpu_hours=seconds / 3600,
                    note=f"{cfg.cluster.gpu_type}, {model.name} ({model.params_b:g}B)")
