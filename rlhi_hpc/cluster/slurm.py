"""The Slurm executor: one submitit job array per stage, chained with ``afterok``.

* Every submission covers the stage's missing shards, ``cluster.shards_per_task`` per array task,
  throttled to ``cluster.max_parallel`` running tasks (``%N``). Shards already covered by a task
  of an earlier submission that is still queued or running (``jobs.json`` + ``squeue``) are not
  submitted again.
* A task is a submitit ``Checkpointable``: on SIGUSR2 (``cluster.signal_delay_s`` before the time
  limit, or at preemption) submitit checkpoints it and requeues it; the worker then skips done
  shards and resumes the one in progress from its last committed chunk. Time-outs count against
  ``cluster.max_requeues``.
* Dependencies are ``afterok`` on the upstream stages' job ids, with ``--kill-on-invalid-dep=yes``
  so that the dependents of a failed task are cancelled instead of pending forever.
* Each submission also renders ``submit.slurm`` (slurm/array.sbatch or slurm/multinode.sbatch)
  and ``tasks.json`` into the stage directory: ``sbatch submit.slurm`` does the same work by hand.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from rlhi_hpc.cluster.base import JobHandle, StageSubmission
from rlhi_hpc.cluster.jobs import (BAD_STATES, Submission, live_tasks, record_submission, sacct_states,
                                   squeue_states)
from rlhi_hpc.cluster.resources import TaskResources, stage_resources
from rlhi_hpc.cluster.sbatch import array_spec, env_lines, render_stage_script
from rlhi_hpc.config import RunConfig, build, load_yaml
from rlhi_hpc.errors import RlhiError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import atomic_write_json, atomic_write_text, done_ids

log = logging.getLogger(__name__)

RunTask = Callable[..., Any]


class SlurmError(RlhiError):
    """Slurm refused a submission or cannot be queried."""


TORCH_DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class ShardTask(submitit.helpers.Checkpointable):
    """One array task: the worker's `run_task` over its shard ids.

    On SIGUSR2 submitit calls :meth:`checkpoint` (inherited: resubmit the same call), requeues the
    task and exits; the shard writer has committed every finished chunk, so the requeued task
    resumes where this one stopped. In a multi-node stage every rank runs the same call, with the
    torch.distributed environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK) set.
    """

    def __init__(self, run_task: RunTask, stage_dir: str, kind: str) -> None:
        self.run_task = run_task
        self.stage_dir = stage_dir
        self.kind = kind

    def __call__(self, shard_ids: Sequence[str]) -> dict[str, Any]:
        logging.basicConfig(level=os.environ.get("RLHI_LOG_LEVEL", "INFO"), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        env = submitit.JobEnvironment()
        if self.kind == "multinode":
            # Slurm exports the submitter's environment: drop any torch.distributed variables it had, then
            # set MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE for this job.
            for key in TORCH_DIST_VARS:
                os.environ.pop(key, None)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        log_path = str(env.paths.stderr)
        os.environ["RLHI_TASK_LOG"] = log_path
        return self.run_task(self.stage_dir, list(shard_ids), log_path=log_path)


@dataclass(frozen=True, kw_only=True)
class WatchTarget:
    """A stage being watched: its directory, the shards it waits for and its job ids."""

    stage: str
    paths: StagePaths
    shards: frozenset[str]
    job_ids: tuple[str, ...]


def regroup(shard_ids: Sequence[str], per_task: int) -> list[tuple[str, ...]]:
    return [tuple(shard_ids[i:i + per_task]) for i in range(0, len(shard_ids), per_task)]


class SlurmExecutor:
    """Submits stage arrays through submitit (see the module docstring)."""

    name = "slurm"

    def __init__(self, cfg: RunConfig, run_task: RunTask | None = None, *, reason: str = "run") -> None:
        if run_task is None:
            from rlhi_hpc.worker import run_task as worker_run_task

            run_task = worker_run_task
        self.cfg = cfg
        self.run_task = run_task
        self.reason = reason  # recorded in jobs.json: run or retry

    # ---------------------------------------------------------------- parameters

    def stage_config(self, sub: StageSubmission) -> RunConfig:
        """The stage's resolved config.yaml when written (sweep points differ), else the launch config."""
        path = StagePaths(sub.stage_dir).config
        return build(RunConfig, load_yaml(path)) if path.exists() else self.cfg

    def resources(self, sub: StageSubmission) -> TaskResources:
        return stage_resources(self.stage_config(sub), sub.kind, sub.sections)

    def parameters(self, sub: StageSubmission, n_tasks: int, after: Sequence[str] = ()) -> dict[str, Any]:
        """submitit `update_parameters` arguments of the stage's array."""
        c = self.stage_config(sub).cluster
        res = self.resources(sub)
        params: dict[str, Any] = {
            "name": f"{c.job_name}-{sub.stage}", "timeout_min": res.time_min, "nodes": res.nodes,
            "tasks_per_node": res.tasks_per_node, "cpus_per_task": res.cpus_per_task,
            "slurm_signal_delay_s": c.signal_delay_s,
            "slurm_array_parallelism": c.max_parallel or max(n_tasks, 1),
            "slurm_setup": [*c.setup, *(env_lines(c.env).splitlines() if c.env else [])],
            "slurm_additional_parameters": {"requeue": True},
        }
        if res.gpus_per_node:
            params["gpus_per_node"] = res.gpus_per_node
        if res.mem_gb:
            params["mem_gb"] = res.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(c, key):
                params[f"slurm_{key}"] = getattr(c, key)
        if c.exclusive:
            params["slurm_exclusive"] = True
        if after:
            params["slurm_additional_parameters"].update(
                {"dependency": "afterok:" + ":".join(after), "kill_on_invalid_dep": "yes"})
        return params

    def describe(self, sub: StageSubmission) -> dict[str, object]:
        c = self.stage_config(sub).cluster
        res = self.resources(sub)
        return {"executor": self.name, "tasks": len(sub.tasks), "array": array_spec(len(sub.tasks), c.max_parallel),
                "nodes": res.nodes, "tasks_per_node": res.tasks_per_node, "gpus_per_node": res.gpus_per_node,
                "cpus_per_task": res.cpus_per_task, "mem_gb": res.mem_gb or "default", "time_min": res.time_min,
                "partition": c.partition or "default", "account": c.account or "default",
                "qos": c.qos or "default", "constraint": c.constraint or "none", "exclusive": c.exclusive,
                "signal": f"USR2@{c.signal_delay_s}s", "max_requeues": c.max_requeues,
                "submitit": self.parameters(sub, len(sub.tasks))}

    def render(self, sub: StageSubmission, tasks: Sequence[Sequence[str]] | None = None) -> str:
        """The stage's submit.slurm for `tasks` (default: the submission's)."""
        cfg = self.stage_config(sub)
        return render_stage_script(stage=sub.stage, stage_dir=Path(sub.stage_dir), kind=sub.kind,
                                   n_tasks=len(tasks if tasks is not None else sub.tasks),
                                   res=self.resources(sub), cluster=cfg.cluster)

    # ---------------------------------------------------------------- submission

    def existing(self, stage: str, paths: StagePaths) -> JobHandle | None:
        """A handle on the stage's jobs still queued or running, if any (for dependencies)."""
        live = live_tasks(paths)
        if not live:
            return None
        return JobHandle(stage=stage, job_ids=tuple(sorted({v.submission.job_id for v in live})),
                         info={"reason": "already queued"})

    def _dependencies(self, after: Sequence[JobHandle]) -> tuple[list[str], str]:
        """Upstream job ids still in the queue; or a reason not to submit at all."""
        bad = [h.stage for h in after if h.finished and not h.ok]
        if bad:
            return [], f"upstream stage(s) {', '.join(bad)} failed"
        ids = sorted({j for h in after for j in h.job_ids})
        if not ids:
            return [], ""
        live = squeue_states(ids)
        if live is None:
            raise SlurmError("squeue does not answer, so the dependencies cannot be checked; try again")
        live_jobs = {k.split("_")[0] for k in live}
        gone = [j for j in ids if j not in live_jobs]
        failed = sorted(f"{k} {v.state}" for k, v in sacct_states(gone).items() if v.state in BAD_STATES)
        if failed:
            return [], f"upstream job(s) ended badly: {', '.join(failed)}"
        return [j for j in ids if j in live_jobs], ""

    def submit(self, sub: StageSubmission, after: Sequence[JobHandle] = ()) -> JobHandle:
        paths = StagePaths(Path(sub.stage_dir))
        deps, problem = self._dependencies(after)
        if problem:
            log.error("event=not_submitted stage=%s reason=%s", sub.stage, problem)
            return JobHandle(stage=sub.stage, finished=True, ok=False, info={"reason": problem})
        live = live_tasks(paths)
        if live is None:
            raise SlurmError(f"squeue does not answer, so it is unknown whether jobs of stage {sub.stage} are "
                             "still queued; try again")
        covered = {s for v in live for s in v.shards}
        live_ids = tuple(sorted({v.submission.job_id for v in live}))
        todo = [s for task in sub.tasks for s in task if s not in covered]
        if not todo:
            log.info("event=already_queued stage=%s jobs=%s", sub.stage, ",".join(live_ids))
            return JobHandle(stage=sub.stage, job_ids=live_ids, info={"reason": "already queued"})
        tasks = regroup(todo, self.stage_config(sub).cluster.shards_per_task)
        atomic_write_json(paths.root / "tasks.json", {"tasks": [list(t) for t in tasks]})
        atomic_write_text(paths.sbatch, self.render(sub, tasks))
        job_id, array = self._submit_array(sub, paths, tasks, deps)
        record_submission(paths, Submission(job_id=job_id, tasks=tuple(tasks), via="submitit",
                                            reason=self.reason, after=tuple(deps), array=array,
                                            submitted_at=time.time()))
        log.info("event=submitted stage=%s job=%s tasks=%d shards=%d after=%s also_live=%s", sub.stage, job_id,
                 len(tasks), len(todo), ",".join(deps) or "-", ",".join(live_ids) or "-")
        return JobHandle(stage=sub.stage, job_ids=(job_id, *live_ids),
                         info={"tasks": str(len(tasks)), "shards": str(len(todo)), "after": ",".join(deps)})

    def _submit_array(self, sub: StageSubmission, paths: StagePaths, tasks: Sequence[tuple[str, ...]],
                      deps: Sequence[str]) -> tuple[str, bool]:
        """Submit through submitit; (job id, whether it is an array)."""
        c = self.stage_config(sub).cluster
        try:
            ex = submitit.AutoExecutor(folder=paths.logs_dir / "submitit", cluster="slurm",
                                       slurm_max_num_timeout=c.max_requeues)
            ex.update_parameters(**self.parameters(sub, len(tasks), deps))
            task = ShardTask(self.run_task, str(paths.root), sub.kind)
            jobs = ex.map_array(task, [list(t) for t in tasks])
        except (RuntimeError, OSError, ValueError) as exc:  # submitit wraps sbatch failures in these
            raise SlurmError(f"submitting stage {sub.stage} failed: {exc}") from exc
        first = str(jobs[0].job_id)
        return first.split("_")[0], "_" in first


# --------------------------------------------------------------------------------------------
# Watching submitted jobs
# --------------------------------------------------------------------------------------------


def _progress_line(targets: Sequence[WatchTarget], live: dict[str, Any]) -> str:
    parts = []
    for t in targets:
        jobs = set(t.job_ids)
        states = [s.state for k, s in live.items() if k.split("_")[0] in jobs]
        running = sum(st == "RUNNING" for st in states)
        queued = len(states) - running
        done = len(t.shards & done_ids(t.paths))
        parts.append(f"{t.stage} {done}/{len(t.shards)}" + (f" R{running}" if running else "")
                     + (f" Q{queued}" if queued else ""))
    return " | ".join(parts)


def watch(targets: Sequence[WatchTarget], poll_s: float = 5.0, *, show: bool = True) -> None:
    """Show progress (done markers + squeue states) until no job of `targets` is queued or running.

    KeyboardInterrupt propagates: the caller stops watching; the jobs go on.
    """
    from tqdm import tqdm

    ids = sorted({j for t in targets for j in t.job_ids})
    total = sum(len(t.shards) for t in targets)
    bar = tqdm(total=total, unit="shard", desc="slurm", disable=not show, file=sys.stderr, dynamic_ncols=True)
    shown = ""
    try:
        while True:
            live = squeue_states(ids)
            done = sum(len(t.shards & done_ids(t.paths)) for t in targets)
            line = _progress_line(targets, live) if live is not None else shown
            if done != bar.n or line != shown:
                bar.set_postfix_str(line, refresh=False)
                bar.update(done - bar.n)
                bar.refresh()
                shown = line
            if live is not None and not live:
                return
            time.sleep(poll_s)
    finally:
        bar.close()
