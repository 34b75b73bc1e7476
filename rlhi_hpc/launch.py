"""Launch RLHI stages.

Run the demo pipeline (ingest → classify → persona → … on the bundled sample, tiny model)::

    python -m rlhi_hpc.launch job=demo out=runs

One stage, with overrides, or a dry run that prints the plan and writes nothing::

    python -m rlhi_hpc.launch stage=persona persona.max_history_tokens=800
    python -m rlhi_hpc.launch stage=all cluster=h100 model=llama-3.1-8b-instruct dry_run=true

Status of every pipeline under a runs root, and a retry of the failed shards of one stage of the
latest pipeline there::

    python -m rlhi_hpc.launch status out=runs
    python -m rlhi_hpc.launch retry out=runs stage=persona

On Slurm (``cluster=slurm``, ``cluster=a100``, ``cluster=h100``) every stage is one job array,
chained with ``afterok``; the launcher prints the job ids and, with ``cluster.wait=true`` (the
default), shows progress until the jobs end (Ctrl-C stops watching, not the jobs)::

    python -m rlhi_hpc.launch job=demo cluster=slurm out=runs

Arguments are ``key=value`` config overrides (dotted keys, YAML values: ``a=[1,2]``); a bad key or
value exits with status 2 before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from rlhi_hpc.cluster.base import JobHandle, StageSubmission
from rlhi_hpc.config import RunConfig, dump_yaml, load_config, parse_override
from rlhi_hpc.errors import ConfigError, RlhiError, StageError
from rlhi_hpc.pipeline import JobSpec, Plan, PlannedStage, load_job, plan_pipeline, write_pipeline
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import (atomic_write_json, atomic_write_text, done_ids, group_tasks, read_json,
                             write_manifest)
from rlhi_hpc.status import print_status, stage_rows, render_table
from rlhi_hpc.worker import run_task, setup_logging

log = logging.getLogger("rlhi_hpc.launch")

COMMANDS = ("run", "status", "retry")


def split_args(argv: Sequence[str]) -> tuple[str, list[str]]:
    """Leading bare word = command (run/status/retry); the rest are key=value overrides."""
    command = "run"
    rest = list(argv)
    if rest and "=" not in rest[0]:
        command = rest.pop(0)
        if command not in COMMANDS:
            raise ConfigError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)} (or key=value overrides)")
    return command, rest


def resolve(args: Sequence[str]) -> tuple[RunConfig, JobSpec]:
    """Load the job spec named by `job=` (default demo) and the config with all overrides."""
    job_name = "demo"
    for item in args:
        key, value = parse_override(item)
        if key == "job":
            job_name = str(value)
    job = load_job(job_name)
    cfg = load_config(args, job_overrides=job.overrides)
    return cfg, job


def selected(plan: Plan, cfg: RunConfig) -> list[PlannedStage]:
    if cfg.stage == "all":
        return list(plan.stages)
    return [plan.get(cfg.stage)]


def make_executor(cfg: RunConfig, *, reason: str = "run"):  # noqa: ANN201 - one of the executor classes
    from rlhi_hpc.cluster.local import make_local_executor

    if cfg.cluster.executor == "slurm":
        try:
            from rlhi_hpc.cluster.slurm import SlurmExecutor
        except ImportError as exc:
            raise ConfigError("config key 'cluster.executor': got 'slurm'; the Slurm executor is not "
                              f"available ({exc}); allowed: inprocess, local") from exc
        return SlurmExecutor(cfg, run_task, reason=reason)
    return make_local_executor(cfg.cluster.executor, cfg.cluster.parallelism, run_task)


def check_cluster(cfg: RunConfig, stages: Sequence[PlannedStage]) -> None:
    """Reject, before anything is written, a Slurm config that could not run these stages."""
    if cfg.cluster.executor != "slurm":
        return
    from rlhi_hpc.cluster.resources import validate_slurm
    from rlhi_hpc.cluster.sbatch import one_line

    one_line("out", str(cfg.out))
    validate_slurm(cfg, [(ps.name, ps.stage.kind, tuple(ps.stage.sections)) for ps in stages])


def submission(ps: PlannedStage, cfg: RunConfig, shard_ids: Sequence[str] | None = None) -> StageSubmission:
    """The stage's array over its missing shards (or over `shard_ids`)."""
    # always_run stages (report) are views of their inputs: rebuilt on every launch.
    shards = list(ps.shards) if getattr(ps.stage, "always_run", False) else ps.missing()
    if shard_ids is not None:
        shards = [s for s in ps.shards if s.id in set(shard_ids)]
    tasks = group_tasks(shards, cfg.cluster.shards_per_task)
    return StageSubmission(stage=ps.name, stage_dir=ps.paths.root, tasks=tuple(tasks), kind=ps.stage.kind,
                           sections=tuple(ps.stage.sections))


def prepare_stage(ps: PlannedStage, cfg: RunConfig, sub: StageSubmission) -> None:
    """Manifest (once), resolved config and the task list, written before anything runs."""
    write_manifest(ps.paths, stage=ps.name, stage_hash=ps.hash, shards=ps.shards,
                   upstream={n: f"../{p.root.name}" for n, p in ps.upstream.items()})
    atomic_write_text(ps.paths.config, dump_yaml(cfg))
    atomic_write_json(ps.paths.root / "tasks.json", {"tasks": [list(t) for t in sub.tasks]})
    if getattr(ps.stage, "always_run", False):
        for sid in (s for task in sub.tasks for s in task):
            ps.paths.done(sid).unlink(missing_ok=True)


def dry_run(plan: Plan, cfg: RunConfig, executor) -> int:  # noqa: ANN001
    print("# resolved config\n" + dump_yaml(cfg))
    print(f"# pipeline {plan.pipeline_id} under {plan.layout.root}")
    for ps in selected(plan, cfg):
        sub = submission(ps, cfg)
        missing = sum(len(t) for t in sub.tasks)
        if executor.name == "slurm":
            from rlhi_hpc.slurm_launch import print_slurm_plan

            print_slurm_plan(plan, ps, cfg, sub, executor)
            continue
        print(f"stage={ps.name} dir={ps.paths.root} shards={len(ps.shards)} missing={missing} "
              f"tasks={len(sub.tasks)} submit={executor.describe(sub) if sub.tasks else 'nothing (complete)'}")
    print("dry_run=true: nothing written, nothing submitted")
    return 0


def upstream_handles(ps: PlannedStage, handles: dict[str, JobHandle], executor) -> list[JobHandle]:  # noqa: ANN001
    """Handles the stage waits for: upstream stages submitted now, or still queued from an earlier launch.

    On Slurm an upstream stage that is neither complete nor queued is an error before submission
    (its dependents could only fail).
    """
    deps = []
    for need, paths in ps.upstream.items():
        name = ps.sources.get(need, need)  # the stage that really writes this input (cfg.inputs)
        if name in handles:
            deps.append(handles[name])
        elif hasattr(executor, "existing"):
            handle = executor.existing(name, paths)
            if handle is not None:
                deps.append(handle)
            elif not _complete(paths):
                raise StageError(f"stage {ps.name} needs stage {name}, which is incomplete ({paths.root}) and has "
                                 f"no queued job; run stage={name} (or stage=all) first")
    return deps


def _complete(paths: StagePaths) -> bool:
    if not paths.manifest.exists():
        return False
    ids = {s["id"] for s in read_json(paths.manifest)["shards"]}
    return ids <= done_ids(paths)


def run(plan: Plan, cfg: RunConfig, job: JobSpec, args: Sequence[str]) -> int:
    executor = make_executor(cfg)
    check_cluster(cfg, selected(plan, cfg))
    if cfg.dry_run:
        return dry_run(plan, cfg, executor)
    root = write_pipeline(plan, job, args)
    handles: dict[str, JobHandle] = {}
    subs: dict[str, StageSubmission] = {}
    for ps in selected(plan, cfg):
        sub = submission(ps, cfg)
        if not sub.tasks:
            print(f"stage {ps.name}: complete ({len(ps.shards)}/{len(ps.shards)} shards done), nothing to do")
            continue
        prepare_stage(ps, ps.cfg or cfg, sub)
        log.info("event=submit stage=%s executor=%s tasks=%d shards=%d dir=%s", ps.name, executor.name,
                 len(sub.tasks), sum(map(len, sub.tasks)), ps.paths.root)
        handle = executor.submit(sub, after=upstream_handles(ps, handles, executor))
        handles[ps.name], subs[ps.name] = handle, sub
        if executor.name == "slurm":
            continue  # queued: followed below
        if handle.finished and not handle.ok:
            print(f"stage {ps.name}: {len(handle.failed_tasks)} task(s) failed; logs in {ps.paths.logs_dir}, "
                  f"errors in {ps.paths.failed_dir}. Relaunch the same command to retry the missing shards.",
                  file=sys.stderr)
            print(render_table(stage_rows(plan.layout.root, root)))
            return 1
    if executor.name == "slurm":
        from rlhi_hpc.slurm_launch import follow

        return follow(plan, cfg, root, handles, subs, selected(plan, cfg))
    print(f"\npipeline {plan.pipeline_id}: {root}")
    print(render_table(stage_rows(plan.layout.root, root)))
    for ps in selected(plan, cfg):
        summary = getattr(ps.stage, "summary", None)  # optional: stages with statistics worth printing
        if summary is not None and ps.paths.manifest.exists():
            print(summary(ps.paths))
        if (ps.paths.root / "report.md").exists():
            print(f"report: {root / ps.name / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, args = split_args(argv)
        if command == "run" and any(a.startswith("sweep=") for a in args):
            from rlhi_hpc.sweep import run_sweep

            return run_sweep(args, launcher=sys.modules[__name__])
        cfg, job = resolve(args)
        setup_logging(cfg.log_level)
        if command == "status":
            return print_status(cfg.out)
        if command == "retry":
            from rlhi_hpc.slurm_launch import retry

            return retry(cfg, args, make_executor)
        if cfg.rounds > 1:
            from rlhi_hpc.rounds import run_rounds

            return run_rounds(cfg, job, args, run)
        plan = plan_pipeline(cfg, job)
        return run(plan, cfg, job, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RlhiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
