"""What a runs root contains: per pipeline and stage, shards done, running, pending and failed.

Counts come from the done and failed markers; for stages submitted to Slurm, ``jobs.json`` maps
every array task to its shards and ``squeue`` (live tasks) / ``sacct`` (finished ones) give their
states, queried once for the whole runs root. For every failed shard the table is followed by the
error, the task's log path and the last error line of that log.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhi_hpc.cluster.jobs import (BAD_STATES, TaskState, TaskView, read_submissions, sacct_states, shard_states,
                                   squeue_states, task_views)
from rlhi_hpc.paths import RunLayout, StagePaths
from rlhi_hpc.shards import done_ids, failed_ids, read_json

COLUMNS = ("stage", "shards", "done", "running", "pending", "failed", "missing", "in", "out", "quarantined",
           "rec/s", "tok/s", "eta", "jobs")
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "ENDING", "STAGE_OUT", "SIGNALING"})
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*:")
ERROR_HINTS = ("Error", "error", "Exception", "Traceback", "Killed", "CANCELLED", "TIME LIMIT", "not requeued",
               "OOM", "oom-kill")


@dataclass
class SlurmSnapshot:
    """squeue/sacct answers for every job recorded under a runs root, queried once."""

    live: dict[str, TaskState] | None = None
    final: dict[str, TaskState] = field(default_factory=dict)

    @classmethod
    def of(cls, stage_dirs: list[StagePaths]) -> SlurmSnapshot:
        ids = sorted({s.job_id for p in stage_dirs for s in read_submissions(p)})
        if not ids:
            return cls(live={}, final={})
        return cls(live=squeue_states(ids), final=sacct_states(ids))


def _eta(missing: int, done: int, seconds: float, running: int) -> str:
    if not missing:
        return "-"
    if not done or not running:
        return "?"
    left = missing * (seconds / done) / running
    return f"{left / 3600:.1f}h" if left >= 3600 else f"{left / 60:.1f}m" if left >= 60 else f"{left:.0f}s"


def _jobs_cell(views: list[TaskView]) -> str:
    """'4242: RUNNING 2, PENDING 1; 4250: COMPLETED 4'."""
    by_job: dict[str, Counter[str]] = {}
    for v in views:
        by_job.setdefault(v.submission.job_id, Counter())[v.state.state if v.state else "UNKNOWN"] += 1
    return "; ".join(f"{job}: " + ", ".join(f"{st} {n}" for st, n in sorted(c.items())) for job, c in by_job.items())


def slurm_counts(paths: StagePaths, snapshot: SlurmSnapshot | None) -> tuple[dict[str, str], list[TaskView]]:
    """Per unfinished shard, the Slurm state of the newest task covering it; and the task views."""
    if snapshot is None or not paths.jobs.exists():
        return {}, []
    views = task_views(paths, live=snapshot.live, final=snapshot.final)
    return shard_states(paths, views), views


def stage_summary(paths: StagePaths, snapshot: SlurmSnapshot | None = None) -> dict[str, Any]:
    """Counts aggregated over the done markers of one stage directory, plus Slurm states."""
    row: dict[str, Any] = {"stage": paths.root.name.rsplit("-", 1)[0], "dir": str(paths.root)}
    if not paths.manifest.exists():
        return {**row, "shards": 0, "done": 0, "running": 0, "pending": 0, "failed": 0, "missing": 0, "in": 0,
                "out": 0, "quarantined": 0, "rec/s": 0.0, "tok/s": 0.0, "eta": "-", "jobs": ""}
    ids = {s["id"] for s in read_json(paths.manifest)["shards"]}
    done = done_ids(paths) & ids
    states, views = slurm_counts(paths, snapshot)
    running = {s for s, st in states.items() if st in RUNNING_STATES} & ids
    pending = {s for s, st in states.items() if st not in RUNNING_STATES and st not in BAD_STATES
               and st not in ("COMPLETED", "UNKNOWN")} & ids
    bad = {s for s, st in states.items() if st in BAD_STATES or st == "COMPLETED"}  # COMPLETED without marker
    failed = (((failed_ids(paths) & ids) | (bad & ids)) - done) - running - pending
    totals = {"records_in": 0, "records_out": 0, "quarantined": 0, "generated_tokens": 0}
    seconds = 0.0
    for sid in done:
        marker = read_json(paths.done(sid))
        for key in totals:
            totals[key] += marker["counts"].get(key, 0)
        seconds += marker.get("seconds", 0.0)
    seconds = max(seconds, 1e-9)
    return {**row, "shards": len(ids), "done": len(done), "running": len(running), "pending": len(pending),
            "failed": len(failed), "missing": len(ids) - len(done), "in": totals["records_in"],
            "out": totals["records_out"], "quarantined": totals["quarantined"],
            "rec/s": round(totals["records_in"] / seconds, 2) if done else 0.0,
            "tok/s": round(totals["generated_tokens"] / seconds, 1) if done else 0.0,
            "eta": _eta(len(ids) - len(done), len(done), seconds, len(running)), "jobs": _jobs_cell(views),
            "failed_ids": sorted(failed), "views": views}


def pipeline_stage_dirs(out: Path, pipeline_dir: Path) -> list[StagePaths]:
    info = read_json(pipeline_dir / "pipeline.json")
    return [StagePaths(out / info["stages"][name]) for name in info["order"]]


def stage_rows(out: Path, pipeline_dir: Path, *, slurm: bool = True) -> list[dict[str, Any]]:
    """One summary row per stage of the pipeline (with Slurm states when `slurm` and jobs were submitted)."""
    dirs = pipeline_stage_dirs(out, pipeline_dir)
    snapshot = SlurmSnapshot.of(dirs) if slurm else None
    return [stage_summary(p, snapshot) for p in dirs]


def render_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of stage rows (the jobs column only when some stage went through Slurm)."""
    cols = [c for c in COLUMNS if c != "jobs" or any(r.get("jobs") for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def last_error_line(log: Path, max_bytes: int = 65536) -> str:
    """The most telling error line of a task log (its tail): a logged ERROR event, else the last
    exception line, else Slurm's own '*** ... CANCELLED ... ***' notice, else the last line."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    tests = (lambda ln: " ERROR " in ln and "event=" in ln, lambda ln: bool(_EXCEPTION_LINE.match(ln)),
             lambda ln: "***" in ln, lambda ln: not ln.startswith("srun:") and any(h in ln for h in ERROR_HINTS))
    for test in tests:
        for line in reversed(lines):
            if test(line):
                return line[:400]
    return lines[-1][:400] if lines else ""


def task_log(paths: StagePaths, view: TaskView) -> Path:
    """Where a task wrote its output: submitit's stderr file, or the sbatch template's log."""
    if view.submission.via == "sbatch":
        return paths.logs_dir / f"sbatch-{view.task_id}.log"
    return paths.logs_dir / "submitit" / f"{view.task_id}_0_log.err"


def failure_lines(row: dict[str, Any]) -> list[str]:
    """For each failed shard: error, log path and the log's last error line."""
    paths = StagePaths(Path(row["dir"]))
    views: list[TaskView] = row.get("views", [])
    newest = {sid: v for v in views for sid in v.shards}
    lines = []
    for sid in row.get("failed_ids", []):
        info = read_json(paths.failed(sid)) if paths.failed(sid).exists() else {}
        view = newest.get(sid)
        state = view.state.state if view and view.state else ""
        log = Path(info["log"]) if info.get("log") else task_log(paths, view) if view else paths.logs_dir
        error = info.get("error") or f"task {view.task_id if view else '?'} ended {state or 'without a done marker'}"
        lines.append(f"  failed {row['stage']} shard {sid}" + (f" [{state}]" if state else "") + f": {error}")
        if not log.is_file() and state == "CANCELLED":
            lines.append("    log: none (the task never started: an upstream task failed or it was cancelled)")
            continue
        lines.append(f"    log: {log}")
        last = last_error_line(log) if log.is_file() else ""
        if last:
            lines.append(f"    last error line: {last}")
    return lines


def print_status(out: str | Path) -> int:
    """Print every pipeline under `out`; exit status 0 when readable, 1 when there is nothing."""
    layout = RunLayout(Path(out))
    pipelines = layout.pipelines()
    if not pipelines:
        print(f"no pipelines under {out}", file=sys.stderr)
        return 1
    for pdir in pipelines:
        rows = stage_rows(layout.root, pdir)
        complete = all(r["missing"] == 0 and r["shards"] > 0 for r in rows)
        print(f"\n## {pdir.name} ({'complete' if complete else 'incomplete'})")
        print(render_table(rows))
        for r in rows:
            for line in failure_lines(r):
                print(line)
    return 0
