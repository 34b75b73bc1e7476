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
import re
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
    kv_cache_memory_gb: float = f(0.0, "vLLM: KV cache size in GiB; 0 = whatever gpu_memory_utilization leaves "
                                  "after the weights (on CPU: vLLM's default).", affects_output=False)
    enforce_eager: bool = f(False, "vLLM: no CUDA graphs / torch.compile (faster start, slower decoding).",
                            affects_output=False)
    structured_outputs_backend: str = f("xgrammar", "vLLM: backend of structured (choice / JSON) outputs; "
                                        "xgrammar and guidance emit compact JSON (no optional whitespace).",
                                        choices=("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer"),
                                        affects_output=False)
    seed: int = f(0, "vLLM: engine seed. Requests carry their own seeds (from the sampling seed, the prompt and "
                  "the sample index), so this only affects unseeded sampling.", affects_output=False)
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
        check_range(f"{prefix}.kv_cache_memory_gb", self.kv_cache_memory_gb, 0, None)
        check_range(f"{prefix}.max_num_seqs", self.max_num_seqs, 1, None)
        check_range(f"{prefix}.batch_size", self.batch_size, 1, None)


# Slurm names (partition, account, QOS, job name): letters, digits and . _ + - only, so that no
# config string can reach a shell or an #SBATCH line as anything but one plain word.
SLURM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
# Node features with Slurm's operators (a100&ib, [rack1|rack2], h100*2), no spaces or quotes.
SLURM_CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.+\-&|,*\[\]():]{1,256}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _no_control_chars(key: str, value: str) -> None:
    if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
        raise _fail(key, value, "a single line without control characters")


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where tasks run (preset files in configs/cluster/).

    Slurm values that end up in job scripts are validated here (names against a strict pattern)
    or shell-quoted when rendered; ``setup`` lines are the exception: they are shell code, run as
    written, and must come from the owner of the config (like a site's module loads).
    """

    name: str = f("local", "Preset name, for display.", affects_output=False)
    executor: str = f("local", "inprocess: run shards in this process (debugging); local: a job array of "
                      "local worker processes; slurm: job arrays through submitit.",
                      choices=("inprocess", "local", "slurm"), affects_output=False)
    parallelism: int = f(2, "local executor: worker processes running at once.", affects_output=False)
    partition: str = f("", "Slurm partition (letters, digits, . _ + -); empty = the cluster's default.",
                       affects_output=False)
    account: str = f("", "Slurm account (same characters as partition); empty = your default account.",
                     affects_output=False)
    qos: str = f("", "Slurm QOS (same characters as partition); empty = the default QOS.", affects_output=False)
    constraint: str = f("", "Slurm node constraint (e.g. h100, a100&ib, [rack1|rack2]); empty = any node.",
                        affects_output=False)
    time_min: int = f(240, "Wall-time limit per task, minutes.", affects_output=False)
    gpus_per_node: int = f(0, "GPUs per node (0 on CPU clusters).", affects_output=False)
    gpu_type: str = f("", "GPU model of the nodes: its row of configs/throughput.yaml is used for GPU-hour "
                      "estimates (a100, h100); empty = CPU nodes, no GPU-hour estimate.", affects_output=False)
    cpus_per_gpu: int = f(8, "CPU cores per GPU (or per task when the task has no GPU).", affects_output=False)
    mem_per_gpu_gb: int = f(64, "Host memory per GPU in GB (or per task when the task has no GPU); 0 = the "
                            "cluster's default memory.", affects_output=False)
    exclusive: bool = f(False, "Ask for whole nodes.", affects_output=False)
    setup: list[str] = f([], "Shell lines run before each task (module loads, venv activation). Trusted input: "
                         "they run as written, so only the owner of the config may set them.",
                         affects_output=False)
    env: dict[str, str] = f({}, "Environment variables exported before each task (e.g. NCCL_IB_HCA, "
                            "NCCL_SOCKET_IFNAME, TORCH_NCCL_ASYNC_ERROR_HANDLING); values are shell-quoted.",
                            affects_output=False)
    job_name: str = f("rlhi", "Slurm job name prefix: jobs are named <job_name>-<stage>.", affects_output=False)
    max_parallel: int = f(0, "Array throttle: tasks running at once (%N); 0 = unlimited.", affects_output=False)
    shards_per_task: int = f(1, "Shards handled by one array task.", affects_output=False)
    max_requeues: int = f(3, "Requeues after a time limit before a task counts as failed (through submitit "
                          "preemptions do not count; the rendered submit.slurm counts every requeue).",
                          affects_output=False)
    signal_delay_s: int = f(90, "SIGUSR2 is sent this many seconds before the time limit, so that a task can "
                            "flush and requeue (Slurm may send it up to 60 s earlier).", affects_output=False)
    tasks_per_node: int = f(0, "Multi-node stages (DPO): ranks per node; 0 = gpus_per_node, or 1 without GPUs.",
                            affects_output=False)
    wait: bool = f(True, "Slurm: after submitting, show progress until the jobs end and exit 0 only if every "
                   "stage completed (Ctrl-C stops watching, not the jobs); false = submit and return.",
                   affects_output=False)
    poll_s: float = f(5.0, "Slurm: seconds between two looks at squeue and the done markers while waiting.",
                      affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.parallelism", self.parallelism, 1, 1024)
        check_range(f"{prefix}.time_min", self.time_min, 1, 60 * 24 * 14)
        check_range(f"{prefix}.gpus_per_node", self.gpus_per_node, 0, 16)
        check_range(f"{prefix}.cpus_per_gpu", self.cpus_per_gpu, 1, 1024)
        check_range(f"{prefix}.mem_per_gpu_gb", self.mem_per_gpu_gb, 0, 4096)
        check_range(f"{prefix}.shards_per_task", self.shards_per_task, 1, None)
        check_range(f"{prefix}.max_parallel", self.max_parallel, 0, None)
        check_range(f"{prefix}.max_requeues", self.max_requeues, 0, 100)
        check_range(f"{prefix}.signal_delay_s", self.signal_delay_s, 1, 3600)
        check_range(f"{prefix}.tasks_per_node", self.tasks_per_node, 0, 256)
        check_range(f"{prefix}.poll_s", self.poll_s, 0.1, 600)
        for key in ("partition", "account", "qos", "job_name", "gpu_type"):
            value = getattr(self, key)
            if value and not SLURM_NAME_RE.match(value):
                raise _fail(f"{prefix}.{key}", value, "a Slurm name: letters, digits and . _ + - (no spaces or "
                            "shell characters)")
        if not self.job_name:
            raise _fail(f"{prefix}.job_name", self.job_name, "a non-empty Slurm name")
        if self.constraint and not SLURM_CONSTRAINT_RE.match(self.constraint):
            raise _fail(f"{prefix}.constraint", self.constraint, "node features with Slurm's operators "
                        "& | , * [ ] ( ) : (no spaces or quotes)")
        for name, value in self.env.items():
            if not ENV_NAME_RE.match(name):
                raise _fail(f"{prefix}.env", name, "environment variable names ([A-Za-z_][A-Za-z0-9_]*)")
            _no_control_chars(f"{prefix}.env.{name}", value)
        for i, line in enumerate(self.setup):
            if "\0" in line:
                raise _fail(f"{prefix}.setup[{i}]", line, "shell lines without NUL bytes")


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


@dataclass(frozen=True, kw_only=True)
class RefLogpConfig:
    """Reference log-probs of every DPO pair, cached on disk (stage preset: configs/stage/reflogp.yaml).

    How pairs are rendered and truncated (system prompt, persona, max_length) comes from the ``dpo``
    section, so that the cached values always match what training sees.
    """

    model: str = f("", "Reference model (hub id or local path); empty = the policy model (model.name), "
                   "i.e. the usual DPO reference: the policy before training.")
    dtype: str = f("auto", "Weights dtype of the reference forward pass; auto = bfloat16 on CUDA, float32 on "
                   "CPU.", choices=("auto", "float32", "bfloat16"))
    max_tokens_per_microbatch: int = f(16384, "Tokens packed into one forward pass (no gradients, so this can "
                                       "be larger than dpo.max_tokens_per_microbatch).", affects_output=False)
    logp_chunk_tokens: int = f(2048, "Tokens whose logits are computed at once from the final hidden states "
                               "(never the full tokens x vocab logits).", affects_output=False)
    attn_implementation: str = f("auto", "auto = flash_attention_2 when flash_attn is installed and on CUDA, "
                                 "else per-sequence sdpa.", choices=("auto", "flash_attention_2", "sdpa"),
                                 affects_output=False)
    cache_dir: str = f("", "Folder of the content-addressed cache shared by every run and sweep point "
                       "(empty = <out>/reflogp_cache).", affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.max_tokens_per_microbatch", self.max_tokens_per_microbatch, 64, None)
        check_range(f"{prefix}.logp_chunk_tokens", self.logp_chunk_tokens, 16, None)


@dataclass(frozen=True, kw_only=True)
class DPOConfig:
    """Persona-conditioned DPO training (stage preset: configs/stage/dpo.yaml)."""

    loss: str = f("sigmoid", "sigmoid: DPO; ipo: IPO (log-ratios averaged per token, as in TRL); hinge: "
                  "SLiC-style hinge.", choices=("sigmoid", "ipo", "hinge"))
    beta: float = f(0.1, "DPO temperature beta (IPO: the regulariser tau).")
    label_smoothing: float = f(0.0, "Conservative DPO: assumed probability that a preference label is flipped "
                               "(sigmoid loss only).")
    nll_weight: float = f(0.0, "Weight of an NLL term on the chosen responses (mean over the batch's chosen "
                          "tokens; TRL: loss_type=[sigmoid, sft] with loss_weights=[1, w]); 0 = off.")
    length_normalize: bool = f(False, "Divide each log-ratio by its response length before the sigmoid/hinge "
                               "loss (TRL's sigmoid_norm).")
    persona: bool = f(True, "Put the user's persona in the system prompt (false = the user-agnostic ablation: "
                      "base system prompt only).")
    system_prompt: str = f("You are a helpful assistant.", "Base system prompt of every training sequence; "
                           "empty and persona=false = no system message.")
    persona_template: str = f("\n\nWhat you know about this user: {persona}", "Appended to the system prompt "
                              "when persona=true; field: {persona}.")
    max_length: int = f(2048, "Tokens per sequence (prompt + response). Longer pairs lose prompt tokens from "
                        "the left first (the system prompt is kept), then response tokens from the end.")
    mix: dict[str, float] = f({"rewrites": 1.0, "rewards": 1.0}, "Data-mix weight per pair source: each epoch "
                              "holds every pair floor(w) times plus a random fraction w - floor(w) of the "
                              "source once more; 0 drops a source.")
    epochs: int = f(1, "Passes over the (mixed) pairs.")
    max_steps: int = f(0, "Optimizer steps to run; 0 = as many as `epochs` needs.")
    global_batch_size: int = f(64, "Pairs per optimizer step, over all ranks (independent of the number of "
                               "GPUs, so results do not depend on the allocation).")
    max_tokens_per_microbatch: int = f(16384, "Token budget of one packed micro-batch per rank (chosen and "
                                       "rejected of a pair always share one); must be >= 2 * max_length.",
                                       affects_output=False)
    packing: bool = f(True, "Pack sequences without padding (attention never crosses sequences); false = "
                      "right-padded batches.", affects_output=False)
    lr: float = f(1e-6, "Peak learning rate (AdamW).")
    lr_schedule: str = f("cosine", "Decay after warmup.", choices=("cosine", "linear", "constant"))
    warmup_ratio: float = f(0.1, "Fraction of the steps with linear warmup from 0.")
    min_lr_ratio: float = f(0.0, "Final learning rate as a fraction of lr (cosine and linear).")
    weight_decay: float = f(0.0, "AdamW weight decay (not applied to biases and norms).")
    adam_beta1: float = f(0.9, "AdamW beta1.")
    adam_beta2: float = f(0.999, "AdamW beta2.")
    adam_eps: float = f(1e-8, "AdamW epsilon.")
    grad_clip: float = f(1.0, "Clip the global gradient norm to this value; 0 = no clipping.")
    zero_stage: int = f(2, "DeepSpeed ZeRO stage: 0 = DDP, 1 = optimizer states, 2 = + gradients, 3 = + "
                        "parameters sharded.", choices=(0, 1, 2, 3), affects_output=False)
    offload_optimizer: bool = f(False, "ZeRO: keep optimizer states in host memory (CUDA only).",
                                affects_output=False)
    offload_params: bool = f(False, "ZeRO-3: keep parameters in host memory (CUDA only).", affects_output=False)
    precision: str = f("auto", "auto = bf16 on CUDA, fp32 on CPU.", choices=("auto", "bf16", "fp32"))
    attn_implementation: str = f("auto", "auto = flash_attention_2 (varlen, padding-free) when flash_attn is "
                                 "installed and on CUDA, else per-sequence sdpa.",
                                 choices=("auto", "flash_attention_2", "sdpa"), affects_output=False)
    gradient_checkpointing: bool = f(False, "Recompute activations in the backward pass (less memory, ~30% "
                                     "more compute).", affects_output=False)
    logp_chunk_tokens: int = f(1024, "Tokens whose logits are computed at once from the final hidden states "
                               "(never the full tokens x vocab logits).", affects_output=False)
    checkpoint_every: int = f(100, "Save a resumable checkpoint every this many steps (and on SIGUSR2/SIGTERM); "
                              "0 = only on signals.", affects_output=False)
    keep_checkpoints: int = f(2, "Complete checkpoints kept (older ones are deleted).", affects_output=False)
    time_limit_min: float = f(0.0, "Checkpoint and exit for requeue before this much wall time has passed "
                              "(keeps one step's time as margin); 0 = no deadline.", affects_output=False)
    comm_timeout_min: float = f(30.0, "Timeout of collective operations; a rank that is late longer fails the "
                                "job instead of hanging it.", affects_output=False)
    nodes: int = f(1, "Nodes of the training job (ranks = nodes * cluster.gpus_per_node).", affects_output=False)
    log_every: int = f(1, "Write metrics every this many steps.", affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.beta", self.beta, 1e-6, None)
        check_range(f"{prefix}.label_smoothing", self.label_smoothing, 0.0, 0.49)
        check_range(f"{prefix}.nll_weight", self.nll_weight, 0.0, None)
        _check_template(f"{prefix}.persona_template", self.persona_template, ("persona",))
        check_range(f"{prefix}.max_length", self.max_length, 16, None)
        if not self.mix or any(w < 0 for w in self.mix.values()) or not any(w > 0 for w in self.mix.values()):
            raise _fail(f"{prefix}.mix", self.mix, "a mapping source -> weight >= 0 with one weight > 0")
        check_range(f"{prefix}.epochs", self.epochs, 1, None)
        check_range(f"{prefix}.max_steps", self.max_steps, 0, None)
        check_range(f"{prefix}.global_batch_size", self.global_batch_size, 1, None)
        if self.max_tokens_per_microbatch < 2 * self.max_length:
            raise _fail(f"{prefix}.max_tokens_per_microbatch", self.max_tokens_per_microbatch,
                        f"an integer >= 2 * {prefix}.max_length ({2 * self.max_length})")
        check_range(f"{prefix}.lr", self.lr, 0.0, 1.0)
        check_range(f"{prefix}.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        check_range(f"{prefix}.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range(f"{prefix}.weight_decay", self.weight_decay, 0.0, None)
        check_range(f"{prefix}.adam_beta1", self.adam_beta1, 0.0, 0.999999)
        check_range(f"{prefix}.adam_beta2", self.adam_beta2, 0.0, 0.999999)
        check_range(f"{prefix}.adam_eps", self.adam_eps, 0.0, 1.0)
        check_range(f"{prefix}.grad_clip", self.grad_clip, 0.0, None)
        if self.offload_params and self.zero_stage != 3:
            raise _fail(f"{prefix}.offload_params", True, f"false unless {prefix}.zero_stage=3")
        check_range(f"{prefix}.logp_chunk_tokens", self.logp_chunk_tokens, 16, None)
        check_range(f"{prefix}.checkpoint_every", self.checkpoint_every, 0, None)
        check_range(f"{prefix}.keep_checkpoints", self.keep_checkpoints, 1, None)
        check_range(f"{prefix}.time_limit_min", self.time_limit_min, 0.0, None)
        check_range(f"{prefix}.comm_timeout_min", self.comm_timeout_min, 0.1, None)
        check_range(f"{prefix}.nodes", self.nodes, 1, 4096)
        check_range(f"{prefix}.log_every", self.log_every, 1, None)


@dataclass(frozen=True, kw_only=True)
class RewriteConfig:
    """User-guided rewrites of replies that got actionable feedback (stage preset: configs/stage/rewrite.yaml).

    For every train-split assistant reply whose next user message is labelled actionable, the policy
    regenerates the reply for the same persona-free context (rejected) and the rewriter writes the reply
    that would have satisfied the user (chosen).
    """

    model: str = f("", "Rewriter model: a preset name in configs/model/ (e.g. llama-3.3-70b-instruct); empty = "
                   "the policy model (`model` section).")
    use_feedback: bool = f(True, "Show the user's feedback to the rewriter (`prompt`); false = the 'rewrites from "
                           "scratch' ablation (`prompt_from_scratch`, no feedback).")
    system_prompt: str = f("", "System prompt of the rewriter.")
    prompt: str = f("", "Rewriter prompt with feedback; fields: {persona}, {conversation}, {response}, {feedback} "
                    "({feedback} is required).")
    prompt_from_scratch: str = f("", "Rewriter prompt of the ablation; fields: {persona}, {conversation}, {response}.")
    persona_max_tokens: int = f(300, "The persona in the rewriter prompt is cut to this many tokens (start kept).")
    max_new_tokens: int = f(512, "Length limit of the regenerated and the rewritten reply.")
    temperature: float = f(0.6, "Sampling temperature of both generations (0 = greedy).")
    top_p: float = f(0.9, "Nucleus sampling threshold.")
    seed: int = f(0, "Sampling seed.")
    max_retries: int = f(2, "Retries (each with a new seed) of an empty or malformed output before the record is "
                         "quarantined with its reason.")
    retry_temperature: float = f(0.7, "Temperature of retries when `temperature` is 0 (greedy would repeat itself).")
    chunk_size: int = f(16, "Records computed between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        if self.model and self.model not in preset_names("model"):
            raise _fail(f"{prefix}.model", self.model, "empty (the policy) or a preset in configs/model/: "
                        + ", ".join(preset_names("model")))
        _check_template(f"{prefix}.prompt", self.prompt, ("persona", "conversation", "response", "feedback"))
        if "{feedback}" not in self.prompt:
            raise _fail(f"{prefix}.prompt", self.prompt[:60], "a template that uses {feedback}")
        _check_template(f"{prefix}.prompt_from_scratch", self.prompt_from_scratch,
                        ("persona", "conversation", "response"))
        _check_generation(prefix, self)


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """N persona-conditioned candidates per request without feedback (stage preset: configs/stage/sample.yaml)."""

    labels: list[str] = f(["new_request", "continuation"], "Follow-up labels (classify.taxonomy) that count as "
                          "requests without feedback.")
    first_turns: bool = f(True, "Also sample for the first user turn of every train-split target conversation.")
    use_persona: bool = f(True, "Put the persona in the system prompt; false = the 'user-agnostic' ablation.")
    system_prompt: str = f("You are a helpful assistant.", "Base system prompt of the policy; empty and "
                           "use_persona=false = no system message.")
    persona_template: str = f("\n\nWhat you know about this user: {persona}", "Appended to the system prompt when "
                              "use_persona=true; field: {persona}.")
    persona_max_tokens: int = f(300, "The persona is cut to this many tokens (start kept).")
    n: int = f(8, "Candidates per prompt.")
    min_candidates: int = f(2, "A prompt with fewer valid candidates after retries is quarantined.")
    max_new_tokens: int = f(512, "Length limit of a candidate.")
    temperature: float = f(0.6, "Sampling temperature.")
    top_p: float = f(0.9, "Nucleus sampling threshold.")
    seed: int = f(0, "Sampling seed.")
    max_retries: int = f(2, "Retries (each with a new seed) for prompts with empty or malformed candidates.")
    retry_temperature: float = f(0.7, "Temperature of retries when `temperature` is 0 (greedy would repeat itself).")
    chunk_size: int = f(16, "Prompts computed between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        _check_template(f"{prefix}.persona_template", self.persona_template, ("persona",))
        check_range(f"{prefix}.n", self.n, 1, 1024)
        if not 1 <= self.min_candidates <= self.n:
            raise _fail(f"{prefix}.min_candidates", self.min_candidates, f"an integer in [1, {prefix}.n={self.n}]")
        _check_generation(prefix, self)


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """Scores of the sampled candidates by a reward model that sees the persona (configs/stage/reward.yaml)."""

    mode: str = f("classifier", "classifier: a sequence-classification reward model through transformers; judge: "
                  "an LLM judge through the engine (expected 1..10 rating from the rating tokens' log-probs).",
                  choices=("classifier", "judge"))
    model: str = f("athene-rm-8b", "Reward model or judge: a preset name in configs/model/; empty = the policy "
                   "model (judge mode only).")
    persona_visible: bool = f(True, "Show the persona to the reward model; false = the ablation that hides it.")
    cls_token: str = f("<|reserved_special_token_1|>", "classifier: token appended after the chat and scored "
                       "(Athene-RM convention); empty = score at the chat's last token.")
    head_key_mapping: dict[str, str] = f({"^v_head": "score"}, "classifier: regex -> replacement applied to "
                                         "checkpoint weight names on load (Athene-RM stores its head as v_head).")
    persona_template: str = f("What you know about this user: {persona}", "classifier: system message holding the "
                              "persona when persona_visible; field: {persona}.")
    judge_system_prompt: str = f("", "judge: system prompt.")
    judge_prompt: str = f("", "judge: prompt; fields: {persona}, {conversation}, {response}.")
    judge_prompt_no_persona: str = f("", "judge: prompt when the persona is hidden; fields: {conversation}, "
                                     "{response}.")
    judge_scale: int = f(10, "judge: ratings are the tokens 1..judge_scale.")
    persona_max_tokens: int = f(300, "The persona shown to the reward model is cut to this many tokens.")
    chunk_size: int = f(16, "Candidate sets scored between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        if self.model and self.model not in preset_names("model"):
            raise _fail(f"{prefix}.model", self.model, "a preset in configs/model/: " + ", ".join(preset_names("model")))
        if not self.model and self.mode == "classifier":
            raise _fail(f"{prefix}.model", "", "a reward-model preset (e.g. athene-rm-8b) when mode=classifier")
        _check_template(f"{prefix}.persona_template", self.persona_template, ("persona",))
        _check_template(f"{prefix}.judge_prompt", self.judge_prompt, ("persona", "conversation", "response"))
        _check_template(f"{prefix}.judge_prompt_no_persona", self.judge_prompt_no_persona, ("conversation", "response"))
        check_range(f"{prefix}.judge_scale", self.judge_scale, 2, 100)
        check_range(f"{prefix}.persona_max_tokens", self.persona_max_tokens, 0, None)
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)


@dataclass(frozen=True, kw_only=True)
class PairsConfig:
    """DPO pairs from rewrites and scored candidates, with quality filters (configs/stage/pairs.yaml)."""

    mix: str = f("both", "Pair sources to keep (each pair is tagged `rewrites` or `rewards`).",
                 choices=("both", "rewrites", "rewards"))
    min_margin: float = f(0.0, "rewards: drop a best-vs-worst pair whose score margin is below this (reward-model "
                          "units).")
    min_best_score: float | None = f(None, "rewards: drop a pair whose best score is below this; null = off.")
    tie_epsilon: float = f(1e-6, "rewards: best and worst scores closer than this are a tie (dropped).")
    dedup: bool = f(True, "Drop pairs whose key or (prompt, chosen, rejected) was already kept in the shard.")
    margin_bins: list[float] = f([0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0], "Lower edges of the margin histogram "
                                 "in the done marker (the last bin is open).", affects_output=False)
    chunk_size: int = f(256, "Pairs written between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.min_margin", self.min_margin, 0.0, None)
        check_range(f"{prefix}.tie_epsilon", self.tie_epsilon, 0.0, None)
        if not self.margin_bins or sorted(self.margin_bins) != list(self.margin_bins):
            raise _fail(f"{prefix}.margin_bins", self.margin_bins, "a non-empty increasing list of numbers")
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)


def _check_generation(prefix: str, cfg: Any) -> None:
    """Shared checks of the decoding fields of the generation stages."""
    check_range(f"{prefix}.persona_max_tokens", cfg.persona_max_tokens, 0, None)
    check_range(f"{prefix}.max_new_tokens", cfg.max_new_tokens, 1, None)
    check_range(f"{prefix}.temperature", cfg.temperature, 0.0, 5.0)
    check_range(f"{prefix}.top_p", cfg.top_p, 0.0, 1.0)
    check_range(f"{prefix}.max_retries", cfg.max_retries, 0, 20)
    check_range(f"{prefix}.retry_temperature", cfg.retry_temperature, 0.0, 5.0)
    check_range(f"{prefix}.chunk_size", cfg.chunk_size, 1, None)


def model_preset(name: str, key: str, default: ModelConfig) -> ModelConfig:
    """The ModelConfig of preset `name` (configs/model/<name>.yaml), or `default` when `name` is empty."""
    if not name:
        return default
    return build(ModelConfig, load_preset("model", name), key)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """WildChat UserEval and local-file evaluations (stage preset: configs/stage/eval.yaml).

    Prompts come from held-out users only (split ``eval``, target conversations): *initial* turns
    (the first request of a conversation) and *follow-up* turns (with the conversation so far).
    Candidate and baseline answer each prompt with or without persona-guided inference (the user's
    persona in the system prompt); a judge compares them in both orders on every dimension.
    """

    candidate_model: str = f("", "Model under evaluation: a preset of configs/model/, a local path or a hub id; "
                             "empty = the final model of the job's dpo stage (<dpo stage dir>/model), or the "
                             "policy (model section) when the job has no dpo stage.")
    baseline_model: str = f("", "Model the candidate is compared with (preset, path or hub id); empty = the "
                            "policy before training (model section).")
    judge_model: str = f("llama-3.3-70b-instruct", "Pairwise judge (preset, path or hub id).")
    persona_guided: list[bool] = f([False, True], "Conditions the candidate is evaluated in: false = plain system "
                                   "prompt, true = persona-guided inference (persona in the system prompt).")
    baseline_persona: str = f("same", "Persona-guided inference for the baseline: same = the candidate's "
                              "condition (isolates the training effect), never, or always.",
                              choices=("same", "never", "always"))
    turn_types: list[str] = f(["initial", "follow_up"], "Prompt types: initial = first request of a "
                              "conversation; follow_up = later requests, with the conversation so far.")
    max_initial_per_user: int = f(0, "At most this many initial-turn prompts per user, oldest first (0 = all).")
    max_follow_up_per_user: int = f(0, "At most this many follow-up prompts per user, oldest first (0 = all).")
    max_prompts_per_shard: int = f(0, "At most this many prompts per shard, in user order (0 = all; for quick "
                                   "runs).")
    max_context_messages: int = f(8, "Follow-up prompts keep at most this many earlier messages of the "
                                  "conversation (the most recent ones).")
    max_context_chars: int = f(2000, "Every earlier message and the request are cut to this many characters.")
    persona_max_chars: int = f(2000, "The persona is cut to this many characters (system prompt and judge).")
    system_prompt: str = f("You are a helpful assistant.", "System prompt of the evaluated models (keep equal "
                           "to dpo.system_prompt so inference matches training).")
    persona_template: str = f("\n\nWhat you know about this user: {persona}", "Appended to the system prompt "
                              "under persona-guided inference (keep equal to dpo.persona_template); field: "
                              "{persona}.")
    max_new_tokens: int = f(512, "Answer length limit of the evaluated models.")
    temperature: float = f(0.6, "Sampling temperature of the evaluated models (the paper: 0.6).")
    top_p: float = f(0.9, "Nucleus sampling of the evaluated models (the paper: 0.9).")
    seed: int = f(0, "Sampling seed of the evaluated models and the judge.")
    judge_mode: str = f("generate", "generate: the judge writes a reply ending in '<dimension>: A|B|tie' lines, "
                        "parsed and retried; choose: the engine scores the three verdicts per dimension and "
                        "takes the most likely (always parseable).", choices=("generate", "choose"))
    judge_system_prompt: str = f("", "System prompt of the judge.")
    judge_prompt: str = f("", "User prompt of the judge; fields: {persona}, {context}, {request}, {answer_a}, "
                          "{answer_b}, {dimensions}, {answer_format}.")
    dimensions: dict[str, str] = f({}, "Judged dimensions: name -> description shown to the judge.")
    judge_max_new_tokens: int = f(512, "Length limit of a judge reply (generate mode).")
    judge_temperature: float = f(0.0, "Judge sampling temperature of the first attempt (0 = greedy).")
    judge_retry_temperature: float = f(0.7, "Judge temperature (at least) of the retries of an unparseable reply.")
    max_retries: int = f(2, "Retries (each with a new seed) of a judge reply that cannot be parsed; after them "
                         "the comparison counts as unparseable.")
    max_answer_chars: int = f(6000, "Answers are cut to this many characters in the judge prompt.")
    alpaca_path: str = f("", "Local JSONL/JSON file of {instruction, output} rows (AlpacaEval / Arena-Hard "
                         "style): win rate of each model against these reference answers; empty = off.")
    alpaca_prompt: str = f("", "Judge prompt for reference comparisons; fields: {instruction}, {answer_a}, "
                           "{answer_b}, {dimensions}, {answer_format}.")
    alpaca_dimensions: dict[str, str] = f({}, "Dimensions of reference comparisons (name -> description).")
    alpaca_max_items: int = f(0, "Use at most this many rows of alpaca_path (0 = all).")
    math_files: dict[str, str] = f({}, "Local math benchmark files: name -> JSONL/JSON path (Minerva/MATH, "
                                   "OlympiadBench or multiple-choice GPQA/MMLU-Pro style rows); empty = off.")
    math_prompt: str = f("", "Prompt of a math problem; field: {problem}.")
    math_choice_prompt: str = f("", "Prompt of a multiple-choice problem; fields: {question}, {choices}.")
    math_max_new_tokens: int = f(1024, "Answer length limit on math problems.")
    math_max_items: int = f(0, "Use at most this many problems per math file (0 = all).")
    bootstrap_samples: int = f(1000, "Bootstrap resamples of the win-rate confidence intervals (0 = none).",
                               affects_output=False)
    confidence: float = f(0.95, "Confidence level of the win-rate intervals.", affects_output=False)
    chunk_size: int = f(16, "Prompts (or comparisons) computed between two flushes of the output.",
                        affects_output=False)

    def validate(self, prefix: str) -> None:
        if not self.persona_guided or len(set(self.persona_guided)) != len(self.persona_guided):
            raise _fail(f"{prefix}.persona_guided", self.persona_guided, "a non-empty list of distinct booleans")
        if not self.turn_types or not set(self.turn_types) <= {"initial", "follow_up"}:
            raise _fail(f"{prefix}.turn_types", self.turn_types, "a non-empty subset of [initial, follow_up]")
        if not self.dimensions:
            raise _fail(f"{prefix}.dimensions", self.dimensions, "a non-empty mapping name -> description")
        for key, value in (("max_initial_per_user", self.max_initial_per_user),
                           ("max_follow_up_per_user", self.max_follow_up_per_user),
                           ("max_prompts_per_shard", self.max_prompts_per_shard),
                           ("max_context_messages", self.max_context_messages),
                           ("alpaca_max_items", self.alpaca_max_items), ("math_max_items", self.math_max_items),
                           ("bootstrap_samples", self.bootstrap_samples)):
            check_range(f"{prefix}.{key}", value, 0, None)
        for key, value in (("max_context_chars", self.max_context_chars), ("persona_max_chars", self.persona_max_chars),
                           ("max_answer_chars", self.max_answer_chars), ("max_new_tokens", self.max_new_tokens),
                           ("judge_max_new_tokens", self.judge_max_new_tokens),
                           ("math_max_new_tokens", self.math_max_new_tokens), ("chunk_size", self.chunk_size)):
            check_range(f"{prefix}.{key}", value, 1, None)
        for key in ("temperature", "judge_temperature", "judge_retry_temperature"):
            check_range(f"{prefix}.{key}", getattr(self, key), 0.0, 5.0)
        check_range(f"{prefix}.top_p", self.top_p, 0.0, 1.0)
        check_range(f"{prefix}.max_retries", self.max_retries, 0, 20)
        check_range(f"{prefix}.confidence", self.confidence, 0.5, 0.999)
        _check_template(f"{prefix}.persona_template", self.persona_template, ("persona",))
        judged = ("answer_a", "answer_b", "dimensions", "answer_format")
        _check_template(f"{prefix}.judge_prompt", self.judge_prompt, ("persona", "context", "request") + judged)
        _check_template(f"{prefix}.alpaca_prompt", self.alpaca_prompt, ("instruction",) + judged)
        _check_template(f"{prefix}.math_prompt", self.math_prompt, ("problem",))
        _check_template(f"{prefix}.math_choice_prompt", self.math_choice_prompt, ("question", "choices"))
        if self.alpaca_path and not self.alpaca_dimensions:
            raise _fail(f"{prefix}.alpaca_dimensions", self.alpaca_dimensions, "a non-empty mapping when "
                        f"{prefix}.alpaca_path is set")
        for name in list(self.dimensions) + list(self.alpaca_dimensions) + list(self.math_files):
            if not (name[:1].isalpha() and name.replace("_", "").replace("-", "").isalnum()):
                raise _fail(f"{prefix}.dimensions/math_files", name, "names of letters, digits, _ and -")


@dataclass(frozen=True, kw_only=True)
class MathConfig:
    """The reasoning track: PRM800K-format input, simulated-user feedback, the final-answer check.

    ``prm_ingest`` reads step-labelled solutions; ``math_feedback`` writes, for every solution with a
    step rated -1, the follow-up a non-expert user would send about the first wrong step (through the
    policy engine, or `feedback_template` when the output is unusable); ``math_check`` keeps only the
    rewrites whose final answer matches the ground truth.
    """

    path: str = f("sample", "PRM800K-format JSONL file or folder; 'sample' = the bundled sample "
                  "(rlhi_hpc/data/sample/prm800k_sample.jsonl).")
    feedback_system_prompt: str = f("", "System prompt of the simulated user.")
    feedback_prompt: str = f(
        "You are a student who asked a math question and got the solution below. You are not an expert, but "
        "you noticed that step {step_number} looks wrong. Write one or two short sentences to the assistant "
        "saying which step looks wrong and why it confuses you. Do not solve the problem and do not give the "
        "answer.\n\nProblem: {problem}\n\nSolution:\n{solution}\n\nStep {step_number}: {step}\n\nYour message:",
        "Simulated-user prompt; fields: {problem}, {solution} (numbered steps), {step} (the first wrong step), "
        "{step_number} (1-based).")
    feedback_template: str = f(
        "Hmm, I don't think step {step_number} is right: \"{step}\". Could you check that step again and fix the "
        "solution?", "Fallback follow-up when the generated one is empty or unusable; fields: {step}, {step_number}.")
    step_max_chars: int = f(300, "The wrong step quoted in the fallback follow-up is cut to this many characters.")
    min_feedback_chars: int = f(12, "A generated follow-up shorter than this (after stripping) is unusable.")
    label: str = f("reattempt_with_feedback", "Label given to the feedback turn (must be actionable for rewrite).")
    max_new_tokens: int = f(96, "Length limit of the generated follow-up.")
    temperature: float = f(0.7, "Sampling temperature of the simulated user.")
    top_p: float = f(0.9, "Nucleus sampling threshold.")
    seed: int = f(0, "Sampling seed.")
    max_retries: int = f(1, "Retries (each with a new seed) of an unusable follow-up before the template is used.")
    chunk_size: int = f(16, "Records computed between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        _check_template(f"{prefix}.feedback_prompt", self.feedback_prompt,
                        ("problem", "solution", "step", "step_number"))
        _check_template(f"{prefix}.feedback_template", self.feedback_template, ("step", "step_number"))
        check_range(f"{prefix}.step_max_chars", self.step_max_chars, 10, None)
        check_range(f"{prefix}.min_feedback_chars", self.min_feedback_chars, 0, None)
        check_range(f"{prefix}.max_new_tokens", self.max_new_tokens, 1, None)
        check_range(f"{prefix}.temperature", self.temperature, 0.0, 5.0)
        check_range(f"{prefix}.top_p", self.top_p, 0.0, 1.0)
        check_range(f"{prefix}.max_retries", self.max_retries, 0, 20)
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)
        if not self.label:
            raise _fail(f"{prefix}.label", self.label, "a non-empty label")


@dataclass(frozen=True, kw_only=True)
class MathCheckConfig:
    """The final-answer check of the reasoning track's rewrites (math_check stage)."""

    strict_answer: bool = f(True, "Only a \\boxed{} answer, a '# Answer' section or an 'answer is' phrase "
                            "counts as the rewrite's final answer (false = also the last number of the text).")
    rejected: str = f("original", "The rejected side of a kept pair: original = the flawed solution the "
                      "user pointed at; regenerated = the policy's regenerated reply from the rewrite stage.",
                      choices=("original", "regenerated"))
    chunk_size: int = f(64, "Pairs checked between two flushes of the shard output.", affects_output=False)

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}.chunk_size", self.chunk_size, 1, None)


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """The results report: report.md, CSV tables and PNG plots (stage preset: configs/stage/report.yaml)."""

    sweep: str = f("", "Sweep (jobs/<name>.yaml) whose grid points the report covers, one row per point; set by "
                   "`launch sweep=<name>`. Empty = the report of this pipeline's own stages.")
    title: str = f("RLHI results", "Title of report.md.")
    bootstrap_samples: int = f(1000, "Bootstrap resamples of the win-rate confidence intervals (0 = none).")
    confidence: float = f(0.95, "Confidence level of the win-rate intervals.")
    plots: bool = f(True, "Draw PNG plots (matplotlib, Agg backend).")
    dpi: int = f(120, "Resolution of the PNG plots.", affects_output=False)

    def validate(self, prefix: str) -> None:
        if self.sweep and not self.sweep.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise _fail(f"{prefix}.sweep", self.sweep, "the name of a sweep spec in jobs/")
        check_range(f"{prefix}.bootstrap_samples", self.bootstrap_samples, 0, None)
        check_range(f"{prefix}.confidence", self.confidence, 0.5, 0.999)
        check_range(f"{prefix}.dpi", self.dpi, 30, 600)


STAGE_SECTIONS = ("classify", "persona", "rewrite", "sample", "reward", "pairs", "reflogp", "dpo", "eval", "report")


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
    rewrite: RewriteConfig = field(default_factory=RewriteConfig, metadata={"doc": "rewrite stage."})
    sample: SampleConfig = field(default_factory=SampleConfig, metadata={"doc": "sample stage."})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"doc": "reward stage."})
    pairs: PairsConfig = field(default_factory=PairsConfig, metadata={"doc": "pairs stage."})
    reflogp: RefLogpConfig = field(default_factory=RefLogpConfig, metadata={"doc": "reflogp stage."})
    dpo: DPOConfig = field(default_factory=DPOConfig, metadata={"doc": "dpo stage."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"doc": "eval stage."})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"doc": "report stage."})
    math: MathConfig = field(default_factory=MathConfig, metadata={"doc": "Reasoning track input and simulated "
                                                                  "user (prm_ingest, math_feedback stages)."})
    math_check: MathCheckConfig = field(default_factory=MathCheckConfig,
                                        metadata={"doc": "math_check stage (final-answer filter of rewrites)."})
    rounds: int = f(1, "Iterative RLHI: run the job's round stages (`round_stages`) this many times, each round "
                    "sampling from and training on top of the previous round's DPO model; earlier stages run once.")
    round_stages: list[str] = f(["sample", "reward", "pairs", "reflogp", "dpo", "eval", "report"], "Stages that "
                                "run again in every round (with the previous round's model as `model`).")
    round_reference: str = f("base", "Reference model of rounds >= 2: base = the job's own policy model (fixed); "
                             "previous = the previous round's model.", choices=("base", "previous"))
    inputs: dict[str, str] = f({}, "Upstream substitutions: stage name -> the stage of this job whose outputs every "
                               "other stage reads in its place (e.g. ingest: math_feedback in the reasoning track). "
                               "The substitute must come earlier in the job's stages and write the same records.")

    def validate(self) -> None:
        check_range("rounds", self.rounds, 1, 100)
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
