"""Grid sweeps over config keys: one pipeline per grid point, shared upstream stages, resumable.

A sweep spec is a file in ``jobs/``::

    description: DPO beta x persona on the demo pipeline
    sweep:
      base_job: demo                 # the pipeline every point runs (its stages and overrides)
      axes:                          # grid axes: dotted config key -> values
        dpo.beta: [0.05, 0.2]
        dpo.persona: [true, false]
      stages: [dpo, eval]            # the stages that differ per point (checked, see below)
    overrides: {}                    # extra overrides for every point (optional)

Run it (any executor; ``dry_run=true`` prints the points and stage directories)::

    python -m rlhi_hpc.launch sweep=sweep_demo out=runs
    python -m rlhi_hpc.launch sweep=sweep_beta_mix out=runs cluster=h100

How it works:

* The grid is the product of the axes. A point's id is derived from its overrides
  (``p-<hash>``); values are compared after YAML normalisation (``0.10`` = ``0.1``), so duplicate
  values collapse, and so do points whose configs give identical stage hashes.
* Overrides apply in this order: the base job's, the sweep spec's, the command line's, then the
  point's axis values.
* Every point is planned as a full pipeline. Stage directories are content-addressed, so stages
  whose config does not depend on the axes (ingest … pairs, reflogp) have one directory shared by
  every point. Each distinct stage directory is submitted once, after the submissions of its own
  upstream directories (``afterok`` on Slurm); finished directories are not submitted at all, so a
  relaunch skips finished points and resumes unfinished ones.
* A stage outside ``stages`` that still differs between points (say ``pairs`` under a
  ``pairs.mix`` axis) is reported, and simply runs once per distinct directory.
* ``<out>/sweeps/<name>/sweep.json`` lists the points (overrides, pipeline ids, stage
  directories); the ``report`` stage with ``report.sweep=<name>`` renders one row per point, and
  runs after every point.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from rlhi_hpc.cluster.base import JobHandle, StageSubmission
from rlhi_hpc.config import JOBS_DIR, RunConfig, load_config, parse_override, stable_hash
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.pipeline import JobSpec, Plan, PlannedStage, load_job, plan_pipeline, write_pipeline
from rlhi_hpc.shards import atomic_write_json
from rlhi_hpc.worker import setup_logging

log = logging.getLogger(__name__)


class Launcher(Protocol):
    """What the sweep needs from the launcher (rlhi_hpc.launch provides exactly these functions)."""

    def make_executor(self, cfg: RunConfig) -> Any: ...

    def submission(self, ps: PlannedStage, cfg: RunConfig) -> StageSubmission: ...

    def prepare_stage(self, ps: PlannedStage, cfg: RunConfig, sub: StageSubmission) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A parsed sweep spec."""

    name: str
    description: str
    base_job: str
    axes: dict[str, list[Any]]
    stages: tuple[str, ...]
    overrides: dict[str, Any]


@dataclass(kw_only=True)
class Point:
    """One grid point: its overrides, resolved config and pipeline plan."""

    id: str
    overrides: dict[str, Any]
    cfg: RunConfig
    job: JobSpec
    plan: Plan
    aliases: list[str] = field(default_factory=list)  # ids of points that collapsed into this one

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.overrides.items())

    def finished(self) -> bool:
        return all(not ps.missing() for ps in self.plan.stages)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _canonical(value: Any) -> Any:
    """A value as YAML would parse its written form (0.10 -> 0.1, 'true' -> True)."""
    if isinstance(value, str):
        return parse_override(f"x={value}")[1]
    return yaml.safe_load(yaml.safe_dump(value))


def load_sweep(name: str, jobs_dir: Path = JOBS_DIR) -> SweepSpec:
    """Read and check ``jobs/<name>.yaml`` as a sweep spec."""
    job = load_job(name, jobs_dir)
    spec = job.sweep
    if not isinstance(spec, dict):
        raise ConfigError(f"config key 'sweep': jobs/{name}.yaml has no 'sweep:' section; it is a pipeline job, "
                          f"run it with job={name}")
    unknown = set(spec) - {"base_job", "axes", "stages"}
    if unknown:
        raise ConfigError(f"jobs/{name}.yaml: unknown sweep keys {sorted(unknown)}; allowed: base_job, axes, stages")
    axes = spec.get("axes")
    if not isinstance(axes, dict) or not axes or not all(isinstance(v, list) and v for v in axes.values()):
        raise ConfigError(f"jobs/{name}.yaml: sweep.axes must map config keys to non-empty lists of values")
    return SweepSpec(name=name, description=job.description, base_job=str(spec.get("base_job") or "demo"),
                     axes={str(k): list(v) for k, v in axes.items()}, stages=tuple(spec.get("stages") or ()),
                     overrides=dict(job.overrides))


def expand_grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of axis values (first axis slowest), duplicates removed, order kept."""
    keys = list(axes)
    seen: set[str] = set()
    grid: list[dict[str, Any]] = []
    for values in itertools.product(*(axes[k] for k in keys)):
        point = {k: _canonical(v) for k, v in zip(keys, values, strict=True)}
        ident = point_id(point)
        if ident not in seen:
            seen.add(ident)
            grid.append(point)
    return grid


def point_id(overrides: dict[str, Any]) -> str:
    """``p-<hash of the canonical overrides>``: stable across relaunches and machines."""
    return "p-" + stable_hash({k: _canonical(v) for k, v in sorted(overrides.items())}, 10)


def _override_arg(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value) if isinstance(value, (dict, list, bool)) or value is None else value}"


def plan_points(spec: SweepSpec, args: Sequence[str], jobs_dir: Path = JOBS_DIR) -> list[Point]:
    """Resolve and plan every grid point; points with identical stage hashes collapse."""
    base = load_job(spec.base_job, jobs_dir)
    if not base.stages:
        raise ConfigError(f"sweep {spec.name}: base_job {spec.base_job!r} has no stages")
    stages = tuple(s for s in base.stages if s != "report")
    missing = [s for s in spec.stages if s not in stages]
    if missing:
        raise ConfigError(f"sweep {spec.name}: stages {missing} are not in base job {spec.base_job!r} "
                          f"({', '.join(stages)})")
    job_overrides = {**base.overrides, **spec.overrides}
    points: list[Point] = []
    by_hashes: dict[str, Point] = {}
    for overrides in expand_grid(spec.axes):
        pid = point_id(overrides)
        cfg = load_config([*args, *(_override_arg(k, v) for k, v in overrides.items())], job_overrides=job_overrides)
        job = JobSpec(name=f"{spec.name}.{pid}", description=spec.description, stages=stages, overrides=job_overrides)
        plan = plan_pipeline(cfg, job)
        key = stable_hash([ps.hash for ps in plan.stages])
        if key in by_hashes:
            by_hashes[key].aliases.append(pid)
            log.info("event=sweep_point_collapsed point=%s into=%s", pid, by_hashes[key].id)
            continue
        point = Point(id=pid, overrides=overrides, cfg=cfg, job=job, plan=plan)
        by_hashes[key] = point
        points.append(point)
    return points


def shared_report(points: Sequence[Point], per_point: Sequence[str]) -> dict[str, int]:
    """Distinct directories per stage across points; warn about stages outside `per_point` that vary."""
    dirs: dict[str, set[Path]] = {}
    for point in points:
        for ps in point.plan.stages:
            dirs.setdefault(ps.name, set()).add(ps.paths.root)
    counts = {name: len(d) for name, d in dirs.items()}
    for name, n in counts.items():
        if n > 1 and name not in per_point:
            log.warning("event=sweep_stage_varies stage=%s directories=%d (not in sweep.stages: it runs once per "
                        "distinct config)", name, n)
    return counts


def sweep_file(out: Path, name: str) -> Path:
    return out / "sweeps" / name / "sweep.json"


def write_sweep_file(out: Path, spec: SweepSpec, points: Sequence[Point], status: dict[str, str]) -> Path:
    path = sweep_file(out, spec.name)
    atomic_write_json(path, {
        "name": spec.name, "base_job": spec.base_job, "axes": spec.axes, "stages": list(spec.stages),
        "points": [{"id": p.id, "label": p.label, "overrides": p.overrides, "aliases": p.aliases,
                    "pipeline_id": p.plan.pipeline_id, "status": status.get(p.id, ""),
                    "stages": {ps.name: str(ps.paths.root.relative_to(p.plan.layout.root)) for ps in p.plan.stages}}
                   for p in points]})
    return path


@dataclass(kw_only=True)
class _Submitter:
    """Submits each distinct stage directory once, chained after its upstream submissions."""

    launcher: Launcher
    executor: Any
    handles: dict[Path, JobHandle] = field(default_factory=dict)
    seen: set[Path] = field(default_factory=set)

    def submit_plan(self, plan: Plan, cfg: RunConfig, after: Sequence[JobHandle] = ()) -> bool:
        """Submit the plan's unfinished stages; False when a (local) submission failed."""
        ok = True
        for ps in plan.stages:
            if ps.paths.root in self.seen:
                handle = self.handles.get(ps.paths.root)
                ok = ok and (handle is None or handle.ok)
                continue
            self.seen.add(ps.paths.root)
            sub = self.launcher.submission(ps, cfg)
            if not sub.tasks:
                continue
            self.launcher.prepare_stage(ps, cfg, sub)
            deps = [self.handles[p.root] for p in ps.upstream.values() if p.root in self.handles] + list(after)
            log.info("event=sweep_submit stage=%s tasks=%d dir=%s", ps.name, len(sub.tasks), ps.paths.root)
            handle = self.executor.submit(sub, after=deps)
            self.handles[ps.paths.root] = handle
            ok = ok and handle.ok
        return ok


def run_sweep(args: Sequence[str], *, launcher: Launcher, jobs_dir: Path = JOBS_DIR) -> int:
    """``launch sweep=<name> ...``: plan every point, submit what is missing, then the sweep report."""
    name = ""
    rest: list[str] = []
    for item in args:
        key, value = parse_override(item)
        if key == "sweep":
            name = str(value)
        elif key != "job":
            rest.append(item)
    spec = load_sweep(name, jobs_dir)
    base_cfg = load_config(rest, job_overrides={**load_job(spec.base_job, jobs_dir).overrides, **spec.overrides})
    setup_logging(base_cfg.log_level)
    points = plan_points(spec, rest, jobs_dir)
    counts = shared_report(points, spec.stages)
    print(f"sweep {spec.name}: {len(points)} point(s); stage directories: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if base_cfg.dry_run:
        for p in points:
            print(f"  {p.id} [{'finished' if p.finished() else 'to run'}] {p.label} -> {p.plan.pipeline_id}")
        print("dry_run=true: nothing written, nothing submitted")
        return 0
    out = Path(base_cfg.out)
    submitter = _Submitter(launcher=launcher, executor=launcher.make_executor(base_cfg))
    status: dict[str, str] = {}
    for p in points:
        if p.finished():
            status[p.id] = "finished"
            print(f"  {p.id} {p.label}: finished, skipped")
            write_pipeline(p.plan, p.job, [*rest, *(_override_arg(k, v) for k, v in p.overrides.items())])
            continue
        write_pipeline(p.plan, p.job, [*rest, *(_override_arg(k, v) for k, v in p.overrides.items())])
        ok = submitter.submit_plan(p.plan, p.cfg)
        status[p.id] = "failed" if not ok else "finished" if p.finished() else "submitted"
        print(f"  {p.id} {p.label}: {status[p.id]}")
    write_sweep_file(out, spec, points, status)
    report_path = _submit_report(spec, rest, submitter, jobs_dir)
    failed = [pid for pid, s in status.items() if s == "failed"]
    if failed:
        print(f"sweep {spec.name}: points {failed} failed; relaunch the same command to retry them", file=sys.stderr)
        return 1
    if report_path.exists():
        print(f"report: {report_path}")
    return 0


def _submit_report(spec: SweepSpec, args: Sequence[str], submitter: _Submitter, jobs_dir: Path) -> Path:
    """The sweep's report stage, after every point's submissions that have not failed."""
    base = load_job(spec.base_job, jobs_dir)
    cfg = load_config([*args, f"report.sweep={spec.name}"], job_overrides={**base.overrides, **spec.overrides})
    job = JobSpec(name=f"{spec.name}.report", description=spec.description, stages=("report",),
                  overrides={**base.overrides, **spec.overrides})
    plan = plan_pipeline(cfg, job)
    root = write_pipeline(plan, job, [*args, f"report.sweep={spec.name}"])
    submitter.submit_plan(plan, cfg, after=[h for h in submitter.handles.values() if h.ok])
    return root / "report" / "report.md"
