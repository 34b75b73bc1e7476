"""The launcher's Slurm side: the dry-run plan, following submitted jobs, and ``retry``.

Dry run on a Slurm preset (prints the submitit/sbatch parameters, a GPU-hour estimate and the
rendered submit.slurm of every stage; writes and submits nothing)::

    python -m rlhi_hpc.launch stage=all cluster=h100 model=llama-3.1-8b-instruct dry_run=true

Resubmit only the failed shards of one stage of the latest pipeline under ``out``::

    python -m rlhi_hpc.launch retry out=runs stage=persona [cluster.time_min=480]
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhi_hpc.cluster.base import JobHandle, StageSubmission
from rlhi_hpc.config import RunConfig, build, dump_yaml, load_preset, load_yaml, parse_override, set_dotted
from rlhi_hpc.errors import ConfigError, RlhiError
from rlhi_hpc.paths import RunLayout, StagePaths
from rlhi_hpc.pipeline import Plan, PlannedStage
from rlhi_hpc.registry import get_stage
from rlhi_hpc.shards import atomic_write_text, done_ids, group_tasks, manifest_shards, load_manifest, read_json
from rlhi_hpc.status import SlurmSnapshot, failure_lines, render_table, stage_summary

RETRY_KEYS = ("out", "stage", "job", "log_level", "dry_run")


# --------------------------------------------------------------------------------------------
# Dry run
# --------------------------------------------------------------------------------------------


def print_slurm_plan(plan: Plan, ps: PlannedStage, cfg: RunConfig, sub: StageSubmission, executor: Any) -> None:
    """Parameters, GPU-hour estimate and rendered submit.slurm of one stage."""
    from rlhi_hpc.cluster.resources import stage_models
    from rlhi_hpc.estimate import estimate_stage, input_size, load_throughput

    missing = sum(len(t) for t in sub.tasks)
    print(f"\nstage={ps.name} kind={ps.stage.kind} dir={ps.paths.root} shards={len(ps.shards)} missing={missing} "
          f"tasks={len(sub.tasks)}")
    if not sub.tasks:
        print("  nothing to submit (complete)")
        return
    for key, value in executor.describe(sub).items():
        print(f"  {key}: {value}")
    table = load_throughput()
    ingest = next((p.paths for p in plan.stages if p.name == "ingest"), None)
    size = input_size(cfg, ingest, table)
    models = [m for _, m in stage_models(cfg, ps.stage.sections)]
    est = estimate_stage(cfg, ps.name, ps.stage.kind, models, size, missing / max(len(ps.shards), 1), table)
    print(f"  estimate: {est.line()}; input ~{size.conversations:,.0f} conversations x "
          f"{size.tokens_per_conversation:,.0f} tokens (from {size.source}; rates: configs/throughput.yaml)")
    print("  submit.slurm:")
    print(textwrap.indent(executor.render(sub), "    | ", lambda _: True))


# --------------------------------------------------------------------------------------------
# Following submitted jobs
# --------------------------------------------------------------------------------------------


def _print_submissions(handles: Mapping[str, JobHandle]) -> None:
    for name, h in handles.items():
        if h.finished and not h.ok:
            print(f"stage {name}: not submitted ({h.info.get('reason', 'upstream failed')})", file=sys.stderr)
        elif h.info.get("reason") == "already queued":
            print(f"stage {name}: already queued or running as job(s) {', '.join(h.job_ids)}; not submitted again")
        else:
            after = h.info.get("after") or "-"
            print(f"stage {name}: job {h.job_ids[0]} ({h.info.get('tasks', '?')} task(s), "
                  f"{h.info.get('shards', '?')} shard(s)), after {after}"
                  + (f"; also running: {', '.join(h.job_ids[1:])}" if len(h.job_ids) > 1 else ""))


def _final_report(stages: Sequence[tuple[str, StagePaths]], job_ids: Sequence[str]) -> bool:
    """Table and failures of `stages`; True when every one of them is complete."""
    from rlhi_hpc.cluster.jobs import read_submissions, wait_for_accounting

    wanted = set(job_ids)
    tasks = [s.task_id(i) for _, p in stages for s in read_submissions(p) if s.job_id in wanted
             for i in range(len(s.tasks))]
    wait_for_accounting(tasks, timeout=15.0)  # sacct lags squeue; states in the table are then final
    snapshot = SlurmSnapshot.of([p for _, p in stages])
    rows = [{**stage_summary(p, snapshot), "stage": name} for name, p in stages]
    print(render_table(rows))
    for row in rows:
        for line in failure_lines(row):
            print(line)
    return all(r["shards"] > 0 and r["missing"] == 0 for r in rows)


def follow(plan: Plan, cfg: RunConfig, root: Path, handles: Mapping[str, JobHandle],
           subs: Mapping[str, StageSubmission], stages: Sequence[PlannedStage]) -> int:
    """Print the job ids; with cluster.wait, watch them and exit 0 only if every stage completed."""
    from rlhi_hpc.cluster.slurm import WatchTarget, watch

    _print_submissions(handles)
    print(f"pipeline {plan.pipeline_id}: {root}\nstatus: {sys.executable} -m rlhi_hpc.launch status out={cfg.out}")
    rc = _wait_and_report(cfg, handles, subs, [(ps.name, ps.paths) for ps in stages], WatchTarget, watch)
    for ps in stages:
        if rc == 0 and (ps.paths.root / "report.md").exists():
            print(f"report: {root / ps.name / 'report.md'}")
    return rc


def _wait_and_report(cfg: RunConfig, handles: Mapping[str, JobHandle], subs: Mapping[str, StageSubmission],
                     stages: Sequence[tuple[str, StagePaths]], target_cls: Any, watch: Callable[..., None]) -> int:
    refused = any(h.finished and not h.ok for h in handles.values())
    if not cfg.cluster.wait:
        return 1 if refused else 0
    targets = [target_cls(stage=name, paths=StagePaths(Path(subs[name].stage_dir)),
                          shards=frozenset(s for t in subs[name].tasks for s in t), job_ids=h.job_ids)
               for name, h in handles.items() if h.job_ids]
    try:
        watch(targets, cfg.cluster.poll_s)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the jobs go on. Follow them with: {sys.executable} -m rlhi_hpc.launch "
              f"status out={cfg.out}", file=sys.stderr)
        return 130
    complete = _final_report(stages, sorted({j for h in handles.values() for j in h.job_ids}))
    if not complete:
        print(f"some stages are incomplete; resubmit failed shards with: {sys.executable} -m rlhi_hpc.launch "
              f"retry out={cfg.out} stage=<stage> (or relaunch the same command)", file=sys.stderr)
    return 0 if complete and not refused else 1


# --------------------------------------------------------------------------------------------
# retry
# --------------------------------------------------------------------------------------------


def retry_config(paths: StagePaths, args: Sequence[str]) -> RunConfig:
    """The stage's resolved config with cluster overrides from `args` (nothing that changes outputs)."""
    tree = load_yaml(paths.config)
    for item in args:
        key, value = parse_override(item)
        if key in RETRY_KEYS and key not in ("log_level", "dry_run"):
            continue
        if key == "cluster":
            tree["cluster"] = {"name": value, **load_preset("cluster", value)}
        elif key.startswith("cluster.") or key in RETRY_KEYS:
            set_dotted(tree, key, value)
        else:
            raise ConfigError(f"config key '{key}': retry accepts only cluster settings (cluster=<preset>, "
                              "cluster.<key>=...), log_level and dry_run; anything else would change outputs: "
                              "relaunch the pipeline with it instead")
    cfg = build(RunConfig, tree)
    cfg.validate()
    return cfg


def latest_stage(out: Path, stage: str) -> StagePaths:
    """The stage's directory in the newest pipeline under `out`."""
    layout = RunLayout(out)
    pipelines = layout.pipelines()
    if not pipelines:
        raise ConfigError(f"config key 'out': got {str(out)!r}; allowed: a runs root with a pipeline (none found)")
    info = read_json(pipelines[-1] / "pipeline.json")
    if stage not in info["stages"]:
        raise ConfigError(f"config key 'stage': got {stage!r}; allowed: one stage of pipeline "
                          f"{pipelines[-1].name}: {', '.join(info['order'])}")
    return StagePaths(layout.root / info["stages"][stage])


def _upstream_handles(paths: StagePaths, executor: Any) -> list[JobHandle]:
    """Upstream stages must be complete, or still queued (then the retry waits for them)."""
    handles = []
    for name, rel in load_manifest(paths)["upstream"].items():
        up = StagePaths((paths.root / rel).resolve())
        ids = [s["id"] for s in read_json(up.manifest)["shards"]]
        if set(ids) <= done_ids(up):
            continue
        handle = executor.existing(name, up) if hasattr(executor, "existing") else None
        if handle is None:
            raise RlhiError(f"upstream stage {name} is incomplete ({len(set(ids) & done_ids(up))}/{len(ids)} shards "
                            f"done) and has no queued job: retry it first (stage={name}) or relaunch the pipeline")
        handles.append(handle)
    return handles


def retry(cfg: RunConfig, args: Sequence[str], make_executor: Callable[..., Any]) -> int:
    """`launch retry out=<dir> stage=<name>`: resubmit only the failed shards of that stage."""
    if cfg.stage == "all":
        raise ConfigError("config key 'stage': got 'all'; allowed: the name of one stage (retry stage=<name>)")
    paths = latest_stage(Path(cfg.out), cfg.stage)
    rcfg = retry_config(paths, args)
    summary = stage_summary(paths, SlurmSnapshot.of([paths]))
    failed = summary["failed_ids"]
    print(f"stage {cfg.stage} ({paths.root}): {summary['done']}/{summary['shards']} done, {summary['running']} "
          f"running, {summary['pending']} pending, {len(failed)} failed")
    if not failed:
        print("nothing to retry")
        return 0
    stage = get_stage(cfg.stage)
    shards = [s for s in manifest_shards(load_manifest(paths)) if s.id in set(failed)]
    tasks = tuple(group_tasks(shards, rcfg.cluster.shards_per_task))
    sub = StageSubmission(stage=cfg.stage, stage_dir=paths.root, tasks=tasks, kind=stage.kind,
                          sections=tuple(stage.sections))
    executor = make_executor(rcfg, reason="retry")
    if rcfg.dry_run:
        print(f"would resubmit shards {', '.join(failed)}: {executor.describe(sub)}")
        return 0
    atomic_write_text(paths.config, dump_yaml(rcfg))  # cluster settings only differ: outputs unchanged
    handle = executor.submit(sub, after=_upstream_handles(paths, executor))
    if executor.name != "slurm":
        ok = handle.ok and not stage_summary(paths)["missing"]
        print(render_table([{**stage_summary(paths), "stage": cfg.stage}]))
        return 0 if ok else 1
    _print_submissions({cfg.stage: handle})
    from rlhi_hpc.cluster.slurm import WatchTarget, watch

    return _wait_and_report(rcfg, {cfg.stage: handle}, {cfg.stage: sub}, [(cfg.stage, paths)], WatchTarget, watch)
