"""Slurm job bookkeeping: ``jobs.json`` in each stage directory, and what squeue/sacct say about it.

``jobs.json`` lists every submission of the stage (newest last)::

    {"submissions": [{"job_id": "4242", "tasks": [["00000", "00001"], ["00002"]], "via": "submitit",
                      "reason": "run", "after": ["4241"], "submitted_at": 1730000000.0, "array": true}]}

Array task ``i`` of job ``4242`` (Slurm id ``4242_i``) ran the shards ``tasks[i]`` (a one-task
submission through submitit is a plain job: id ``4242``). Live states come
from ``squeue`` (pending, running, completing, requeued), final ones from ``sacct``, which can lag
a few seconds behind. Every query degrades to "unknown" when the Slurm commands are missing.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import atomic_write_json, done_ids, read_json

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 30.0
# Final sacct states that mean the task did not finish its work.
BAD_STATES = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                        "DEADLINE", "PREEMPTED"})
_ARRAY_TASK = re.compile(r"^(\d+)_(\d+)$")
_ARRAY_RANGE = re.compile(r"^(\d+)_\[(.+?)(?:%\d+)?\]$")


@dataclass(frozen=True, kw_only=True)
class Submission:
    """One array submitted for a stage: task i ran shards tasks[i]."""

    job_id: str
    tasks: tuple[tuple[str, ...], ...]
    via: str = "submitit"
    reason: str = "run"
    after: tuple[str, ...] = ()
    submitted_at: float = 0.0
    array: bool = True  # submitit submits a single task as a plain job (id without _<index>)

    def task_id(self, index: int) -> str:
        return f"{self.job_id}_{index}" if self.array else self.job_id


@dataclass(frozen=True, kw_only=True)
class TaskState:
    """What Slurm says about one array task: state, plus exit code and times when finished."""

    state: str
    reason: str = ""
    exit_code: str = ""
    start: str = ""
    end: str = ""

    @property
    def live(self) -> bool:
        return self.state not in BAD_STATES and self.state != "COMPLETED"


# --------------------------------------------------------------------------------------------
# jobs.json
# --------------------------------------------------------------------------------------------


def read_submissions(paths: StagePaths) -> list[Submission]:
    """Every submission recorded in the stage's jobs.json, oldest first."""
    if not paths.jobs.exists():
        return []
    out = []
    for item in read_json(paths.jobs).get("submissions", []):
        out.append(Submission(job_id=str(item["job_id"]), tasks=tuple(tuple(t) for t in item["tasks"]),
                              via=item.get("via", "submitit"), reason=item.get("reason", "run"),
                              after=tuple(item.get("after", ())), submitted_at=float(item.get("submitted_at", 0)),
                              array=bool(item.get("array", True))))
    return out


def record_submission(paths: StagePaths, sub: Submission) -> None:
    """Append one submission to jobs.json (atomically rewritten)."""
    items = [vars_of(s) for s in read_submissions(paths)]
    items.append(vars_of(sub))
    atomic_write_json(paths.jobs, {"submissions": items})


def vars_of(sub: Submission) -> dict[str, object]:
    return {"job_id": sub.job_id, "tasks": [list(t) for t in sub.tasks], "via": sub.via, "reason": sub.reason,
            "after": list(sub.after), "submitted_at": sub.submitted_at or time.time(), "array": sub.array}


# --------------------------------------------------------------------------------------------
# squeue / sacct
# --------------------------------------------------------------------------------------------


def slurm_available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("sacct") is not None


def _run(args: Sequence[str]) -> str | None:
    """stdout of a Slurm query, or None when it cannot answer."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("event=slurm_query_failed cmd=%s error=%r", args[0], exc)
        return None
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # every id has left slurmctld's memory
            return ""
        log.warning("event=slurm_query_failed cmd=%s rc=%d stderr=%s", args[0], proc.returncode,
                    proc.stderr.strip()[:300])
        return None
    return proc.stdout


def _expand_range(spec: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]."""
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def squeue_states(job_ids: Iterable[str]) -> dict[str, TaskState] | None:
    """Live tasks of these jobs, keyed '<job>_<task>' (or '<job>' for a job that is no array).

    None when squeue cannot answer (so callers can tell "nothing live" from "unknown").
    """
    ids = sorted({j for j in job_ids if j})
    if not ids or not slurm_available():
        return {} if ids == [] else None
    text = _run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%F|%K|%T|%r|%i"])
    if text is None:
        return None
    states: dict[str, TaskState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5:
            continue
        array_id, task, state, reason, raw = parts[:5]
        key = f"{array_id}_{task}" if task not in ("N/A", "") else raw
        states[key] = TaskState(state=state, reason=reason)
    return states


def sacct_states(job_ids: Iterable[str]) -> dict[str, TaskState]:
    """The latest accounting record of every task of these jobs, keyed like squeue_states."""
    ids = sorted({j for j in job_ids if j})
    if not ids or not slurm_available():
        return {}
    text = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,Start,End"])
    states: dict[str, TaskState] = {}
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5:
            continue
        job, state, code, start, end = parts[:5]
        st = TaskState(state=state.split()[0] if state else "UNKNOWN", exit_code=code, start=start, end=end)
        m = _ARRAY_RANGE.match(job)
        if m:
            for i in _expand_range(m.group(2)):
                states.setdefault(f"{m.group(1)}_{i}", st)
        else:
            states[job] = st
    return states


# --------------------------------------------------------------------------------------------
# Views of a stage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskView:
    """One array task of one submission and its latest known state."""

    submission: Submission
    index: int
    shards: tuple[str, ...]
    state: TaskState | None

    @property
    def task_id(self) -> str:
        return self.submission.task_id(self.index)


def task_views(paths: StagePaths, *, live: dict[str, TaskState] | None = None,
               final: dict[str, TaskState] | None = None) -> list[TaskView]:
    """Every task of every submission with its state (squeue first, then sacct)."""
    subs = read_submissions(paths)
    ids = [s.job_id for s in subs]
    live = squeue_states(ids) if live is None else live
    final = sacct_states(ids) if final is None else final
    views = []
    for sub in subs:
        for i, shards in enumerate(sub.tasks):
            tid = sub.task_id(i)
            state = (live or {}).get(tid) or (final or {}).get(tid)
            if live is not None and tid not in live and state is not None and state.live:
                # sacct lags: the task has left the queue, its record is not final yet.
                state = TaskState(state="ENDING", start=state.start)
            views.append(TaskView(submission=sub, index=i, shards=shards, state=state))
    return views


def live_tasks(paths: StagePaths) -> list[TaskView] | None:
    """Tasks of this stage still queued or running (None when squeue cannot answer)."""
    subs = read_submissions(paths)
    if not subs:
        return []
    live = squeue_states([s.job_id for s in subs])
    if live is None:
        return None
    return [v for v in task_views(paths, live=live, final={}) if v.task_id in live]


def shard_states(paths: StagePaths, views: Sequence[TaskView]) -> dict[str, str]:
    """Slurm state of the newest task covering each shard that has no done marker."""
    done = done_ids(paths)
    out: dict[str, str] = {}
    for view in views:  # oldest first: newer submissions overwrite
        for sid in view.shards:
            if sid not in done:
                out[sid] = view.state.state if view.state else "UNKNOWN"
    return out


def wait_for_accounting(task_ids: Sequence[str], timeout: float = 15.0) -> dict[str, TaskState]:
    """sacct states once every task in `task_ids` has a final record, or what it has at `timeout`.

    sacct lags squeue: for a moment after an array ends it lists one record for the whole array
    (id without _<task>) before the per-task records appear.
    """
    jobs = sorted({t.split("_")[0] for t in task_ids})
    deadline = time.monotonic() + timeout
    while True:
        states = sacct_states(jobs)
        ready = all(t in states and not states[t].live for t in task_ids)
        if ready or time.monotonic() > deadline:
            return states
        time.sleep(0.5)
