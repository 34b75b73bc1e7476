"""Plan a job's chain of stages: hashes, stage directories, shards, the pipeline id."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhi_hpc.config import JOBS_DIR, ConfigError, RunConfig, load_yaml, stable_hash
from rlhi_hpc.paths import RunLayout, StagePaths
from rlhi_hpc.registry import get_stage, stage_names
from rlhi_hpc.shards import ShardSpec, atomic_write_json, done_ids, failed_ids
from rlhi_hpc.stage import Stage, stage_hash


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A pipeline spec from jobs/<name>.yaml: which stages, with which overrides."""

    name: str
    description: str
    stages: tuple[str, ...]
    overrides: dict[str, Any]
    sweep: dict[str, Any] | None = None  # a sweep spec: {base_job, axes, stages} (see rlhi_hpc/sweep.py)


def load_job(name: str, jobs_dir: Path = JOBS_DIR) -> JobSpec:
    path = jobs_dir / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in jobs_dir.glob("*.yaml")))
        raise ConfigError(f"config key 'job': got {name!r}; allowed: {names}")
    data = load_yaml(path)
    unknown = set(data) - {"description", "stages", "overrides", "sweep"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: description, stages, overrides, sweep")
    stages = tuple(data.get("stages") or ())
    for st in stages:
        if st not in stage_names():
            raise ConfigError(f"{path}: stage {st!r} unknown; allowed: {', '.join(stage_names())}")
    return JobSpec(name=name, description=str(data.get("description", "")), stages=stages,
                   overrides=dict(data.get("overrides") or {}), sweep=data.get("sweep"))


@dataclass(frozen=True, kw_only=True)
class PlannedStage:
    name: str
    stage: Stage
    hash: str
    paths: StagePaths
    shards: tuple[ShardSpec, ...]
    upstream: dict[str, StagePaths]
    sources: dict[str, str] = field(default_factory=dict)  # need -> substitute stage (cfg.inputs)
    cfg: RunConfig | None = None  # the stage's own config when it differs from the launch's (rounds)

    def missing(self) -> list[ShardSpec]:
        done = done_ids(self.paths)
        return [s for s in self.shards if s.id not in done]

    def failed(self) -> set[str]:
        return failed_ids(self.paths) - done_ids(self.paths)


@dataclass(frozen=True, kw_only=True)
class Plan:
    pipeline_id: str
    layout: RunLayout
    stages: tuple[PlannedStage, ...]

    def get(self, name: str) -> PlannedStage:
        for ps in self.stages:
            if ps.name == name:
                return ps
        raise ConfigError(f"config key 'stage': got {name!r}; allowed for this job: "
                          f"{', '.join(p.name for p in self.stages)}, all")


def check_inputs(cfg: RunConfig, job: JobSpec) -> None:
    """Every `inputs` entry maps a stage name to a stage of this job."""
    for need, src in cfg.inputs.items():
        if need not in stage_names():
            raise ConfigError(f"config key 'inputs.{need}': not a stage; allowed: {', '.join(stage_names())}")
        if src not in job.stages:
            raise ConfigError(f"config key 'inputs.{need}': got {src!r}; allowed: a stage of job {job.name!r} "
                              f"({', '.join(job.stages)})")


def plan_pipeline(cfg: RunConfig, job: JobSpec, stage_cfg: Callable[[str], RunConfig] | None = None) -> Plan:
    """Hash every stage of the job in order; upstream hashes feed downstream ones.

    `stage_cfg` gives a stage its own config (iterative rounds: see rlhi_hpc/rounds.py); default `cfg`.
    """
    layout = RunLayout(Path(cfg.out))
    check_inputs(cfg, job)
    hashes: dict[str, str] = {}
    planned: list[PlannedStage] = []
    for name in job.stages:
        stage = get_stage(name)
        scfg = stage_cfg(name) if stage_cfg is not None else cfg
        # cfg.inputs: a need is read from its substitute, except by the substitute itself.
        src = {n: n if scfg.inputs.get(n, n) == name else scfg.inputs.get(n, n)
               for n in (*stage.needs, *getattr(stage, "optional_needs", ()))}
        missing_up = [n for n in stage.needs if src[n] not in hashes]
        if missing_up:
            raise ConfigError(f"job {job.name!r}: stage {name!r} needs {missing_up} earlier in 'stages'")
        # optional_needs: upstream stages read only when the job has them (e.g. eval reads dpo's model).
        needs = tuple(stage.needs) + tuple(n for n in getattr(stage, "optional_needs", ()) if src[n] in hashes)
        h = stage_hash(stage, scfg, {n: hashes[src[n]] for n in needs})
        hashes[name] = h
        planned.append(PlannedStage(
            name=name, stage=stage, hash=h, paths=layout.stage(name, h),
            shards=tuple(stage.plan(scfg)),
            upstream={n: layout.stage(src[n], hashes[src[n]]) for n in needs},
            sources={n: src[n] for n in needs if src[n] != n},
            cfg=scfg if stage_cfg is not None else None,
        ))
    pid = f"{job.name}-{stable_hash(hashes, 10)}"
    return Plan(pipeline_id=pid, layout=layout, stages=tuple(planned))


def write_pipeline(plan: Plan, job: JobSpec, args: Sequence[str]) -> Path:
    """`<out>/<pipeline_id>/pipeline.json` plus one link per stage to its stage directory."""
    root = plan.layout.pipeline(plan.pipeline_id)
    root.mkdir(parents=True, exist_ok=True)
    for ps in plan.stages:
        link = root / ps.name
        target = os.path.relpath(ps.paths.root, root)
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    info = {"pipeline_id": plan.pipeline_id, "job": job.name, "args": list(args),
            "order": [ps.name for ps in plan.stages],
            "stages": {ps.name: str(ps.paths.root.relative_to(plan.layout.root)) for ps in plan.stages}}
    path = plan.layout.pipeline_file(plan.pipeline_id)
    if not path.exists():
        atomic_write_json(path, info)
    return root
