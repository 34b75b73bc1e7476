"""Plan a job's chain of stages: hashes, stage directories, shards, the pipeline id."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
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


def plan_pipeline(cfg: RunConfig, job: JobSpec) -> Plan:
    """Hash every stage of the job in order; upstream hashes feed downstream ones."""
    layout = RunLayout(Path(cfg.out))
    hashes: dict[str, str] = {}
    planned: list[PlannedStage] = []
    for name in job.stages:
        stage = get_stage(name)
        missing_up = [n for n in stage.needs if n not in hashes]
        if missing_up:
            raise ConfigError(f"job {job.name!r}: stage {name!r} needs {missing_up} earlier in 'stages'")
        # optional_needs: upstream stages read only when the job has them (e.g. eval reads dpo's model).
        needs = tuple(stage.needs) + tuple(n for n in getattr(stage, "optional_needs", ()) if n in hashes)
        h = stage_hash(stage, cfg, {n: hashes[n] for n in needs})
        hashes[name] = h
        planned.append(PlannedStage(
            name=name, stage=stage, hash=h, paths=layout.stage(name, h),
            shards=tuple(stage.plan(cfg)),
            upstream={n: layout.stage(n, hashes[n]) for n in needs},
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
