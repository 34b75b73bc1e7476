"""Typed, frozen configuration: one dataclass per component, a YAML tree, `key=value` overrides.

Resolution order (later wins):

1. ``configs/defaults.yaml`` and every ``configs/stage/<section>.yaml`` (stage presets),
2. preset groups named in the tree or on the command line: ``model=tiny`` loads
   ``configs/model/tiny.yaml`` into the ``model`` section, ``cluster=h100`` loads
   ``configs/cluster/h100.yaml`` into ``cluster``,
3. the job spec's ``overrides`` (``jobs/<job>.yaml``),
4. command-line overrides (``classify.batch_size=64``, ``data.languages=[English,French]``).

Every field carries a ``doc`` in its metadata (the README's configuration reference is generated
from it), and fields that cannot change a stage's output (batch sizes, cluster settings) are marked
``affects_output=False`` so they do not change config hashes. Any unknown key or bad value raises
:class:`ConfigError` naming the dotted key, the value given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rlhi_hpc.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"

PRESET_GROUPS = ("model", "cluster")


def f(default: Any, doc: str, *, affects_output: bool = True, choices: Sequence[Any] | None = None) -> Any:
    """A documented dataclass field."""
    meta = {"doc": doc, "affects_output": affects_output, "choices": tuple(choices) if choices else None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _fail(key: str, given: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}': got {given!r}; allowed: {allowed}")


def check_range(key: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    """Raise ConfigError unless lo <= value <= hi."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise _fail(key, value, f"a number in [{lo_s}, {hi_s}]")


# --------------------------------------------------------------------------------------------
# Component configs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A model and how to run it (preset files in configs/model/)."""

    name: str = f("tiny", "Hub id (e.g. meta-llama/Llama-3.1-8B-Instruct) or local path. "
                  "'tiny' means the offline tiny model built by `make tiny-model`.")
    tokenizer: str = f("", "Tokenizer id or path; empty = same as name.")
    engine: str = f("hf", "Inference backend.", choices=("hf", "vllm"), affects_output=False)
    dtype: str = f("float32", "Weights dtype for inference.", choices=("float32", "bfloat16", "float16", "auto"))
    max_model_len: int = f(2048, "Context length used for prompts + generation.")
    tensor_parallel_size: int = f(1, "GPUs per engine (vLLM tensor parallelism); also the GPUs "
                                  "an inference array task asks for.", affects_output=False)
    gpu_memory_utilization: float = f(0.90, "vLLM: fraction of GPU memory for weights + KV cache.",
                                      affects_output=False)
    max_num_seqs: int = f(256, "vLLM: max sequences decoded together.", affects_output=False)
    enable_prefix_caching: bool = f(True, "vLLM: reuse KV cache across shared prompt prefixes.",
                                    affects_output=False)
    batch_size: int = f(8, "transformers engine: prompts per forward batch.", affects_output=False)
    params_b: float = f(0.0, "Parameter count in billions (GPU-hour estimates and MFU).", affects_output=False)
    trust_remote_code: bool = f(False, "Allow model code from the hub (off by default).")

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise _fail(f"{prefix}.name", self.name, "a hub id, a local path or 'tiny'")
        if self.max_model_len < 64:
            raise _fail(f"{prefix}.max_model_len", self.max_model_len, "an integer >= 64")
        check_range(f"{prefix}.tensor_parallel_size", self.tensor_parallel_size, 1, 64)
        check_range(f"{prefix}.gpu_memory_utilization", self.gpu_memory_utilization, 0.05, 0.99)
        check_range(f"{prefix}.batch_size", self.batch_size, 1, None)


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where tasks run (preset files in configs/cluster/)."""

    name: str = f("local", "Preset name, for display.", affects_output=False)
    executor: str = f("local", "inprocess: run shards in this process (debugging); local: a job array of "
                      "local worker processes; slurm: job arrays through submitit.",
                      choices=("inprocess", "local", "slurm"), affects_output=False)
    parallelism: int = f(2, "local executor: worker processes running at once.", affects_output=False)
    partition: str = f("", "Slurm partition.", affects_output=False)
    account: str = f("", "Slurm account.", affects_output=False)
    qos: str = f("", "Slurm QOS.", affects_output=False)
    constraint: str = f("", "Slurm node constraint (e.g. h100).", affects_output=False)
    time_min: int = f(240, "Wall-time limit per task, minutes.", affects_output=False)
    gpus_per_node: int = f(0, "GPUs per node (0 on CPU clusters).", affects_output=False)
    cpus_per_gpu: int = f(8, "CPU cores per GPU (or per task when gpus_per_node=0).", affects_output=False)
    mem_per_gpu_gb: int = f(64, "Host memory per GPU in GB (or per task when no GPU).", affects_output=False)
    exclusive: bool = f(False, "Ask for whole nodes.", affects_output=False)
    setup: list[str] = f([], "Shell lines run before each task (module loads, venv activation, NCCL env).",
                         affects_output=False)
    max_parallel: int = f(0, "Array throttle: tasks running at once (%N); 0 = unlimited.", affects_output=False)
    shards_per_task: int = f(1, "Shards handled by one array task.", affects_output=False)
    max_requeues: int = f(3, "Requeues after timeout/preemption before a task counts as failed.",
                          affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.parallelism", self.parallelism, 1, 1024)
        check_range(f"{prefix}.time_min", self.time_min, 1, 60 * 24 * 14)
        check_range(f"{prefix}.gpus_per_node", self.gpus_per_node, 0, 16)
        check_range(f"{prefix}.shards_per_task", self.shards_per_task, 1, None)
        check_range(f"{prefix}.max_parallel", self.max_parallel, 0, None)
        check_range(f"{prefix}.max_requeues", self.max_requeues, 0, 100)


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Input conversations (WildChat format) and the user split."""

    path: str = f("sample", "Local parquet/JSONL file or folder, 'sample' for the bundled sample, "
                  "or a hub dataset id (e.g. allenai/WildChat-1M) read through `datasets`.")
    hub_split: str = f("train", "Split when `path` is a hub dataset id.")
    languages: list[str] = f([], "Keep only conversations in these languages (empty = all).")
    drop_toxic: bool = f(True, "Drop conversations flagged toxic.")
    drop_redacted: bool = f(False, "Drop conversations flagged redacted.")
    min_turns: int = f(1, "Minimum user turns per conversation.")
    max_turns: int = f(64, "Maximum user turns per conversation.")
    min_conversations_per_user: int = f(2, "Drop users with fewer conversations (persona needs history).")
    max_users: int = f(0, "Keep at most this many users, chosen by stable hash (0 = all).")
    user_key: str = f("hashed_ip", "Field that identifies a user.")
    eval_fraction: float = f(0.2, "Fraction of users held out for evaluation, chosen by stable hash.")
    target_fraction: float = f(0.5, "Share of each user's conversations, the most recent ones, used as targets "
                               "(classified, rewritten, evaluated); the older ones are the persona history.")
    max_turn_chars: int = f(20000, "A turn longer than this is an absurd row: quarantined.")
    num_shards: int = f(4, "Shards (user buckets) every data stage is split into.")

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.eval_fraction", self.eval_fraction, 0.0, 0.9)
        check_range(f"{prefix}.num_shards", self.num_shards, 1, 1_000_000)
        check_range(f"{prefix}.target_fraction", self.target_fraction, 0.05, 0.95)
        check_range(f"{prefix}.min_turns", self.min_turns, 1, None)
        if self.max_turns < self.min_turns:
            raise _fail(f"{prefix}.max_turns", self.max_turns, f"an integer >= data.min_turns ({self.min_turns})")
        check_range(f"{prefix}.min_conversations_per_user", self.min_conversations_per_user, 1, None)
        check_range(f"{prefix}.max_turn_chars", self.max_turn_chars, 1, None)


@dataclass(frozen=True, kw_only=True)
class ClassifyConfig:
    """Follow-up message classification (stage preset: configs/stage/classify.yaml)."""

    taxonomy: list[str] = f([], "Allowed labels, in order.")
    actionable: list[str] = f([], "Labels whose message is actionable feedback for a rewrite.")
    descriptions: dict[str, str] = f({}, "One-line description per label, shown to the model.")
    system_prompt: str = f("", "System prompt of the classifier.")
    prompt: str = f("", "User prompt template; fields: {previous_user}, {assistant}, {message}, {labels}.")
    max_context_chars: int = f(2000, "Previous turns are cut to this many characters each in the prompt.")
    chunk_size: int = f(64, "Records computed between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        if not self.taxonomy:
            raise _fail(f"{prefix}.taxonomy", self.taxonomy, "a non-empty list of labels")
        if len(set(self.taxonomy)) != len(self.taxonomy):
            raise _fail(f"{prefix}.taxonomy", self.taxonomy, "labels without duplicates")
        for lab in self.actionable:
            if lab not in self.taxonomy:
                raise _fail(f"{prefix}.actionable", lab, f"labels of {prefix}.taxonomy: {self.taxonomy}")
        _check_template(f"{prefix}.prompt", self.prompt, ("previous_user", "assistant", "message", "labels"))
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)


@dataclass(frozen=True, kw_only=True)
class PersonaConfig:
    """Persona inference from each user's earlier history (stage preset: configs/stage/persona.yaml)."""

    max_history_tokens: int = f(1500, "History given to the model is truncated to this many tokens "
                                "(most recent conversations kept).")
    max_conversations: int = f(50, "At most this many earlier conversations are considered.")
    system_prompt: str = f("", "System prompt of the persona writer.")
    prompt: str = f("", "User prompt template; field: {history}.")
    max_new_tokens: int = f(128, "Length limit of the persona text.")
    temperature: float = f(0.0, "Sampling temperature (0 = greedy).")
    top_p: float = f(1.0, "Nucleus sampling threshold.")
    seed: int = f(0, "Sampling seed.")
    chunk_size: int = f(16, "Personas computed between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.max_history_tokens", self.max_history_tokens, 16, None)
        check_range(f"{prefix}.max_new_tokens", self.max_new_tokens, 1, None)
        check_range(f"{prefix}.temperature", self.temperature, 0.0, 5.0)
        check_range(f"{prefix}.top_p", self.top_p, 0.0, 1.0)
        _check_template(f"{prefix}.prompt", self.prompt, ("history",))
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)


STAGE_SECTIONS = ("classify", "persona")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The whole resolved configuration of one launch."""

    job: str = f("demo", "Job spec: jobs/<job>.yaml (stages and overrides).", affects_output=False)
    stage: str = f("all", "Stage to run, or 'all' for every stage of the job spec.", affects_output=False)
    out: str = f("runs", "Root folder of run directories.", affects_output=False)
    dry_run: bool = f(False, "Print the resolved config, shard plan and submissions; write nothing.",
                      affects_output=False)
    seed: int = f(0, "Global seed (user split hashing, sampling).")
    log_level: str = f("INFO", "Logging level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       affects_output=False)
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "Policy model."})
    cluster: ClusterConfig = field(default_factory=ClusterConfig, metadata={"doc": "Executor and resources."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "Input data."})
    classify: ClassifyConfig = field(default_factory=ClassifyConfig, metadata={"doc": "classify stage."})
    persona: PersonaConfig = field(default_factory=PersonaConfig, metadata={"doc": "persona stage."})

    def validate(self) -> None:
        for fld in dataclasses.fields(self):
            value = getattr(self, fld.name)
            if dataclasses.is_dataclass(value) and hasattr(value, "validate"):
                value.validate(fld.name)


def _check_template(key: str, template: str, allowed: Sequence[str]) -> None:
    """A prompt template may only use the documented {fields}."""
    import string

    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise _fail(key, template[:60], f"a str.format template ({exc})") from exc
    bad = sorted(n for n in names if n not in allowed)
    if bad:
        raise _fail(key, "{" + bad[0] + "}", "template fields " + ", ".join("{%s}" % a for a in allowed))


# --------------------------------------------------------------------------------------------
# Building dataclasses from nested dicts, with errors that name the key
# --------------------------------------------------------------------------------------------


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from nested `data`, checking every key and value type."""
    if not isinstance(data, Mapping):
        raise _fail(prefix or "<root>", data, f"a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = {fl.name: fl for fl in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise unknown_key(dotted, [f"{prefix}.{k}" if prefix else k for k in fields])
        kwargs[key] = _convert(hints[key], value, dotted, fields[key])
    return cls(**kwargs)


def unknown_key(dotted: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(sorted(valid)[:40])
    return ConfigError(f"unknown config key '{dotted}'.{hint} Valid keys here: {shown}")


def _convert(tp: Any, value: Any, key: str, fld: dataclasses.Field | None = None) -> Any:
    choices = fld.metadata.get("choices") if fld is not None else None
    out = _convert_type(tp, value, key)
    if choices and out not in choices:
        raise _fail(key, value, "one of " + ", ".join(map(str, choices)))
    return out


def _convert_type(tp: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per type kind
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert_type(args[0], value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise _fail(key, value, "one of " + ", ".join(map(str, allowed)))
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise _fail(key, value, "true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _fail(key, value, "an integer")
        try:
            return int(value)
        except ValueError:
            raise _fail(key, value, "an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise _fail(key, value, "a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _fail(key, value, "a number") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise _fail(key, value, "a string")
        return str(value)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(key, value, "a list, e.g. [a,b]")
        return [_convert_type(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise _fail(key, value, "a mapping")
        return {str(k): _convert_type(v_tp, v, f"{key}.{k}") for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# YAML tree + overrides
# --------------------------------------------------------------------------------------------


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML (numbers, booleans, lists)."""
    if "=" not in item:
        raise ConfigError(f"argument {item!r} is not key=value (e.g. stage=persona, dpo.beta=0.1)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"argument {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (int, float)) and not isinstance(value, bool) and raw.strip().startswith("0") \
            and raw.strip() not in ("0",) and "." not in raw:
        value = raw  # keep ids like 007 as strings
    return key, raw if value is None else value


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at top level")
    return data


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `extra` into a copy of `base`; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def preset_names(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def load_preset(group: str, name: str, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Load configs/<group>/<name>.yaml, or fail naming the allowed presets."""
    path = config_dir / group / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        raise _fail(group, name, "one of the presets in configs/%s/: %s" % (group, ", ".join(preset_names(group, config_dir))))
    return load_yaml(path)


def base_tree(config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """defaults.yaml merged with every stage preset (configs/stage/<section>.yaml)."""
    tree = load_yaml(config_dir / "defaults.yaml")
    for path in sorted((config_dir / "stage").glob("*.yaml")):
        tree = deep_merge(tree, {path.stem: load_yaml(path)})
    return tree


def resolve_tree(overrides: Sequence[tuple[str, Any]], job_overrides: Mapping[str, Any] | None = None,
                 config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Merge defaults, presets, job overrides and command-line overrides into one tree."""
    tree = base_tree(config_dir)
    flat: list[tuple[str, Any]] = list(_flatten(job_overrides or {})) + list(overrides)
    # Preset groups first: `model=tiny` selects a file, `model.name=x` then edits it.
    for group in PRESET_GROUPS:
        chosen = tree.get(group)
        for key, value in flat:
            if key == group:
                chosen = value
        if isinstance(chosen, str):
            tree[group] = deep_merge({"name": chosen} if group == "cluster" else {}, load_preset(group, chosen, config_dir))
    for key, value in flat:
        if key in PRESET_GROUPS:
            continue
        set_dotted(tree, key, value)
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and key not in ("descriptions",):
            items.extend(_flatten(value, dotted))
        else:
            items.append((dotted, value))
    return items


def load_config(args: Sequence[str] = (), *, job_overrides: Mapping[str, Any] | None = None,
                config_dir: Path = CONFIG_DIR) -> RunConfig:
    """Resolve and validate the config for command-line `args` (``key=value`` strings)."""
    overrides = [parse_override(a) for a in args]
    tree = resolve_tree(overrides, job_overrides, config_dir)
    cfg = build(RunConfig, tree)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------------------------
# Hashing and dumping
# --------------------------------------------------------------------------------------------


def output_view(obj: Any) -> Any:
    """The part of a config that can change outputs (fields with affects_output=False removed)."""
    if dataclasses.is_dataclass(obj):
        return {
            fl.name: output_view(getattr(obj, fl.name))
            for fl in dataclasses.fields(obj)
            if fl.metadata.get("affects_output", True)
        }
    if isinstance(obj, (list, tuple)):
        return [output_view(v) for v in obj]
    if isinstance(obj, dict):
        return {k: output_view(v) for k, v in obj.items()}
    return obj


def stable_hash(data: Any, length: int = 12) -> str:
    """Hex digest of canonical JSON of `data`."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def to_tree(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_tree(cfg), sort_keys=False, allow_unicode=True, width=100)


def iter_field_docs(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, doc) for every leaf field: the configuration reference."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for fl in dataclasses.fields(cls):
        dotted = f"{prefix}.{fl.name}" if prefix else fl.name
        tp = hints[fl.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(iter_field_docs(tp, dotted))
            continue
        default = fl.default if fl.default is not dataclasses.MISSING else fl.default_factory()  # type: ignore[misc]
        tname = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        if typing.get_origin(tp) is not None:
            tname = str(tp).replace("typing.", "")
        doc = fl.metadata.get("doc", "")
        if fl.metadata.get("choices"):
            doc += " One of: " + ", ".join(map(str, fl.metadata["choices"])) + "."
        rows.append((dotted, tname, default, doc))
    return rows
