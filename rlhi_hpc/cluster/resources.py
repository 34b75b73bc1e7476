"""What one array task of a stage asks Slurm for, derived from the cluster preset and the models.

* ``cpu`` stages (ingest, pairs, report): one task, ``cluster.cpus_per_gpu`` cores, no GPU.
* ``gpu`` stages (inference): ``model.tensor_parallel_size`` GPUs per task (the largest over the
  models the stage runs, e.g. a 70B judge with TP 4), with ``cpus_per_gpu`` cores and
  ``mem_per_gpu_gb`` GB per GPU. On a cluster without GPUs the task runs on CPU (small models only).
* ``multinode`` stages (DPO): ``dpo.nodes`` nodes x ``cluster.tasks_per_node`` ranks (default: one
  rank per GPU), every GPU of each node.

:func:`validate_slurm` rejects, before anything is written or submitted, the combinations that
could never run (a vLLM model on a preset without GPUs, tensor parallelism wider than a node, a
signal delay longer than the time limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.config import ModelConfig, RunConfig, build, load_preset, preset_names
from rlhi_hpc.errors import ConfigError

KINDS = ("cpu", "gpu", "multinode")


@dataclass(frozen=True, kw_only=True)
class TaskResources:
    """Resources of one array task (per node for memory and GPUs)."""

    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: int = 0  # per node; 0 = the cluster's default
    time_min: int = 60

    @property
    def gpus(self) -> int:
        """GPUs of the whole task (all nodes)."""
        return self.nodes * self.gpus_per_node

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node


def stage_models(cfg: RunConfig, sections: Iterable[str]) -> list[tuple[str, ModelConfig]]:
    """(config key, model) of every model a stage with these sections runs.

    The policy (``model``) when the stage reads that section, plus every ``<section>.model`` or
    ``<section>.*_model`` field that names a preset of configs/model/ (rewriter, reward model,
    judge). A field holding a hub id or path runs with the policy's settings.
    """
    found: list[tuple[str, ModelConfig]] = []
    uses_policy = "model" in sections
    presets = set(preset_names("model"))
    for sec in sections:
        section = getattr(cfg, sec, None)
        if sec == "model" or not dataclasses.is_dataclass(section):
            continue
        for fld in dataclasses.fields(section):
            if not (fld.name == "model" or fld.name.endswith("_model")):
                continue
            ref = getattr(section, fld.name)
            if isinstance(ref, str) and ref in presets:
                key = f"{sec}.{fld.name}"
                found.append((key, build(ModelConfig, load_preset("model", ref), key)))
            elif isinstance(ref, str):
                uses_policy = True  # empty = the policy; a path or hub id takes the policy's settings
    if uses_policy:
        found.insert(0, ("model", cfg.model))
    return found


def needs_gpu(model: ModelConfig) -> bool:
    """vLLM engines and tensor-parallel models cannot run on a CPU node."""
    return model.engine == "vllm" or model.tensor_parallel_size > 1


def _dpo_nodes(cfg: RunConfig) -> int:
    dpo: Any = getattr(cfg, "dpo", None)
    return int(getattr(dpo, "nodes", 1) or 1)


def stage_resources(cfg: RunConfig, kind: str, sections: Sequence[str]) -> TaskResources:
    """The resources of one task of a stage of `kind` (see the module docstring)."""
    c = cfg.cluster
    if kind == "multinode":
        per_node = c.tasks_per_node or max(c.gpus_per_node, 1)
        cpus = max(1, c.cpus_per_gpu * max(c.gpus_per_node, 1) // per_node) if c.gpus_per_node else c.cpus_per_gpu
        mem = c.mem_per_gpu_gb * (c.gpus_per_node or per_node)
        return TaskResources(nodes=_dpo_nodes(cfg), tasks_per_node=per_node, gpus_per_node=c.gpus_per_node,
                             cpus_per_task=cpus, mem_gb=mem, time_min=c.time_min)
    gpus = 0
    if kind == "gpu" and c.gpus_per_node > 0:
        gpus = max([m.tensor_parallel_size for _, m in stage_models(cfg, sections)] or [1])
    units = max(gpus, 1)
    return TaskResources(nodes=1, tasks_per_node=1, gpus_per_node=gpus, cpus_per_task=c.cpus_per_gpu * units,
                         mem_gb=c.mem_per_gpu_gb * units, time_min=c.time_min)


def _fail(key: str, given: object, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}': got {given!r}; allowed: {allowed}")


def validate_stage(cfg: RunConfig, stage: str, kind: str, sections: Sequence[str]) -> None:
    """Raise ConfigError when a task of this stage could not run on the configured cluster."""
    c = cfg.cluster
    if kind not in KINDS:
        raise ConfigError(f"stage {stage!r} has kind {kind!r}; the Slurm executor knows {', '.join(KINDS)}")
    if kind == "gpu":
        for key, model in stage_models(cfg, sections):
            if c.gpus_per_node == 0 and needs_gpu(model):
                raise _fail("cluster.gpus_per_node", 0, f"at least {model.tensor_parallel_size}: stage {stage} runs "
                            f"{key}={model.name} (engine {model.engine}, tensor_parallel_size "
                            f"{model.tensor_parallel_size}), which needs GPUs; use a GPU preset (cluster=a100, "
                            "cluster=h100) or a CPU-sized model with engine=hf")
            if c.gpus_per_node and model.tensor_parallel_size > c.gpus_per_node:
                tp_key = f"{key}.tensor_parallel_size" if key == "model" else f"{key} (tensor_parallel_size)"
                raise _fail(tp_key, model.tensor_parallel_size, f"at most cluster.gpus_per_node "
                            f"({c.gpus_per_node}): one engine must fit on one node (stage {stage})")
    if kind == "multinode":
        per_node = c.tasks_per_node or max(c.gpus_per_node, 1)
        if c.gpus_per_node and per_node > c.gpus_per_node:
            raise _fail("cluster.tasks_per_node", c.tasks_per_node, f"at most cluster.gpus_per_node "
                        f"({c.gpus_per_node}): one rank per GPU (stage {stage})")
        if _dpo_nodes(cfg) < 1:
            raise _fail("dpo.nodes", _dpo_nodes(cfg), "an integer >= 1")


def validate_slurm(cfg: RunConfig, stages: Iterable[tuple[str, str, Sequence[str]]]) -> None:
    """Check the cluster config and every (name, kind, sections) stage before anything is submitted."""
    c = cfg.cluster
    if c.signal_delay_s >= c.time_min * 60:
        raise _fail("cluster.signal_delay_s", c.signal_delay_s, f"fewer seconds than cluster.time_min "
                    f"({c.time_min} min = {c.time_min * 60} s), or the task is signalled as soon as it starts")
    for name, kind, sections in stages:
        validate_stage(cfg, name, kind, sections)
