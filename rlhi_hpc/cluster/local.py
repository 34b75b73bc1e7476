"""Executors without Slurm: in-process (debugging, tests) and a local array of worker processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rlhi_hpc.cluster.base import JobHandle, StageSubmission
from rlhi_hpc.errors import ShardError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import done_ids

log = logging.getLogger(__name__)


class InProcessExecutor:
    """Runs every task in the calling process, one after the other, through `run_task`."""

    name = "inprocess"

    def __init__(self, run_task: Callable[[Path, Sequence[str]], object]) -> None:
        self.run_task = run_task

    def submit(self, sub: StageSubmission, after: Sequence[JobHandle] = ()) -> JobHandle:
        if any(not h.ok for h in after):
            return JobHandle(stage=sub.stage, finished=True, ok=False, info={"reason": "upstream failed"})
        failed: list[int] = []
        for i, shard_ids in enumerate(sub.tasks):
            try:
                self.run_task(sub.stage_dir, shard_ids)
            except ShardError as exc:
                log.error("event=task_failed stage=%s task=%d error=%s", sub.stage, i, exc)
                failed.append(i)
        return JobHandle(stage=sub.stage, finished=True, ok=not failed, failed_tasks=tuple(failed))

    def describe(self, sub: StageSubmission) -> dict[str, object]:
        return {"executor": self.name, "tasks": len(sub.tasks)}


class LocalProcessExecutor:
    """A job array of local worker processes, `parallelism` at a time, one log file per task."""

    name = "local"

    def __init__(self, parallelism: int = 2, poll_s: float = 0.5, show_progress: bool = True) -> None:
        self.parallelism = max(1, parallelism)
        self.poll_s = poll_s
        self.show_progress = show_progress

    def describe(self, sub: StageSubmission) -> dict[str, object]:
        return {"executor": self.name, "tasks": len(sub.tasks), "parallelism": self.parallelism,
                "command": f"{sys.executable} -m rlhi_hpc.worker {sub.stage_dir} --shards <ids>"}

    def _spawn(self, sub: StageSubmission, index: int) -> subprocess.Popen:
        paths = StagePaths(sub.stage_dir)
        log_path = paths.log(f"local-task-{index:05d}")
        env = dict(os.environ, RLHI_TASK_LOG=str(log_path), PYTHONUNBUFFERED="1")
        # Share the cores between concurrent workers instead of oversubscribing them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.parallelism)))
        fh = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "rlhi_hpc.worker", str(sub.stage_dir), "--shards", ",".join(sub.tasks[index])],
                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            fh.close()

    def submit(self, sub: StageSubmission, after: Sequence[JobHandle] = ()) -> JobHandle:
        if any(not h.ok for h in after):
            return JobHandle(stage=sub.stage, finished=True, ok=False, info={"reason": "upstream failed"})
        pending = list(range(len(sub.tasks)))
        running: dict[int, subprocess.Popen] = {}
        failed: list[int] = []
        bar = self._progress(sub)
        try:
            while pending or running:
                while pending and len(running) < self.parallelism:
                    i = pending.pop(0)
                    running[i] = self._spawn(sub, i)
                for i, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[i]
                        if proc.returncode != 0:
                            failed.append(i)
                            log.error("event=task_failed stage=%s task=%d rc=%d log=%s", sub.stage, i,
                                      proc.returncode, StagePaths(sub.stage_dir).log(f"local-task-{i:05d}"))
                bar.update()
                time.sleep(self.poll_s if running else 0)
        finally:
            for proc in running.values():
                proc.kill()
            bar.close()
        return JobHandle(stage=sub.stage, finished=True, ok=not failed, failed_tasks=tuple(failed))

    def _progress(self, sub: StageSubmission) -> "_ShardProgress":
        return _ShardProgress(sub, enabled=self.show_progress)


class _ShardProgress:
    """A tqdm bar over the shards of a submission, advanced by counting done markers."""

    def __init__(self, sub: StageSubmission, enabled: bool) -> None:
        from tqdm import tqdm

        self.paths = StagePaths(sub.stage_dir)
        self.ids = {s for t in sub.tasks for s in t}
        self.start = len(self.ids & done_ids(self.paths))
        self.bar = tqdm(total=len(self.ids), initial=self.start, desc=sub.stage, unit="shard",
                        disable=not enabled, file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        n = len(self.ids & done_ids(self.paths))
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.update()
        self.bar.close()


def make_local_executor(kind: str, parallelism: int,
                        run_task: Callable[[Path, Sequence[str]], object]) -> InProcessExecutor | LocalProcessExecutor:
    if kind == "inprocess":
        return InProcessExecutor(run_task)
    return LocalProcessExecutor(parallelism=parallelism)

