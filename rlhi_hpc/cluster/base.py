"""The executor interface every backend implements.

A stage is submitted as one *job array*: one task per group of shards still missing. Local
executors run the array before returning; the Slurm executor returns at once with job ids, and
later stages are chained to earlier ones with `afterok` dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class StageSubmission:
    """One stage's array: `tasks[i]` are the shard ids of array task i."""

    stage: str
    stage_dir: Path
    tasks: tuple[tuple[str, ...], ...]
    kind: str = "cpu"  # "cpu" | "gpu" | "multinode"
    sections: tuple[str, ...] = ()  # the stage's config sections: their models decide a task's GPUs


@dataclass(frozen=True, kw_only=True)
class JobHandle:
    """What a submission returned: job ids (Slurm) and, for local executors, the outcome."""

    stage: str
    job_ids: tuple[str, ...] = ()
    finished: bool = False
    ok: bool = True
    failed_tasks: tuple[int, ...] = ()
    info: dict[str, str] = field(default_factory=dict)


class Executor(Protocol):
    """Runs or submits stage arrays."""

    name: str

    def submit(self, sub: StageSubmission, after: Sequence[JobHandle] = ()) -> JobHandle:
        """Run (local) or queue (Slurm) the array; `after` are handles it must wait for (afterok)."""
        ...

    def describe(self, sub: StageSubmission) -> dict[str, object]:
        """The parameters `submit` would use (for dry runs)."""
        ...
