"""The local Slurm cluster (slurm/local-cluster.sh) does what the pipeline relies on.

Each test submits real jobs: accounting through slurmdbd, array throttles, dependencies (and
cancellation of dependents of a failed job), requeue, partition preemption with SIGUSR2, srun with
two tasks, fake GPUs, and submitit round trips, including a Checkpointable job that is preempted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from slurm_fixtures import SlurmCluster, SlurmSession, run_slurm, slurm, slurm_cluster, wait_until  # noqa: F401

if TYPE_CHECKING:
    import submitit

pytestmark = pytest.mark.slurm


def _timestamp(path: Path) -> float:
    return float(path.read_text().split()[0])


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that hold at the same instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    live = best = 0
    for _, step in events:
        live += step
        best = max(best, live)
    return best


def test_sbatch_completes_and_sacct_records_it(slurm: SlurmSession) -> None:
    job = slurm.sbatch("-o", "out.txt", wrap="hostname")
    assert slurm.wait_done(job, timeout=30) == ["COMPLETED"]
    assert (slurm.workdir / "out.txt").read_text().strip() == slurm.cluster.node


@pytest.mark.parametrize(("limit", "tasks", "sleep_s"), [(1, 3, 1), (2, 4, 2)])
def test_array_throttle_bounds_concurrency(slurm: SlurmSession, limit: int, tasks: int, sleep_s: int) -> None:
    wrap = (
        "date +%s.%N > start_$SLURM_ARRAY_TASK_ID; "
        f"sleep {sleep_s}; date +%s.%N > end_$SLURM_ARRAY_TASK_ID"
    )
    job = slurm.sbatch(f"--array=0-{tasks - 1}%{limit}", "-o", "/dev/null", wrap=wrap)
    assert slurm.wait_done(job, tasks=tasks, timeout=60) == ["COMPLETED"] * tasks
    intervals = [(_timestamp(slurm.workdir / f"start_{i}"), _timestamp(slurm.workdir / f"end_{i}")) for i in range(tasks)]
    # Never more than the throttle; with a throttle of 2 on this node, two tasks do run together.
    assert _max_overlap(intervals) == limit


def test_afterok_chain_runs_in_order(slurm: SlurmSession) -> None:
    first = slurm.sbatch("-o", "/dev/null", wrap="sleep 1; date +%s.%N > a_end")
    second = slurm.sbatch(f"--dependency=afterok:{first}", "-o", "/dev/null", wrap="date +%s.%N > b_start")
    third = slurm.sbatch(f"--dependency=afterok:{second}", "-o", "/dev/null", wrap="date +%s.%N > c_start")
    assert slurm.wait_done(third, timeout=60) == ["COMPLETED"]
    assert slurm.states(first) == ["COMPLETED"] and slurm.states(second) == ["COMPLETED"]
    w = slurm.workdir
    assert _timestamp(w / "a_end") <= _timestamp(w / "b_start") <= _timestamp(w / "c_start")


def test_dependents_of_failed_job_are_cancelled(slurm: SlurmSession) -> None:
    failing = slurm.sbatch("-o", "/dev/null", wrap="exit 3")
    child = slurm.sbatch(f"--dependency=afterok:{failing}", "-o", "/dev/null", wrap="touch child_ran")
    grandchild = slurm.sbatch(f"--dependency=afterok:{child}", "-o", "/dev/null", wrap="touch grandchild_ran")
    assert slurm.wait_done(failing, timeout=30) == ["FAILED"]
    # DependencyParameters=kill_invalid_depend: cancelled instead of pending forever.
    assert slurm.wait_done(child, timeout=30) == ["CANCELLED"]
    assert slurm.wait_done(grandchild, timeout=30) == ["CANCELLED"]
    assert not (slurm.workdir / "child_ran").exists() and not (slurm.workdir / "grandchild_ran").exists()


RUN_RECORDING_SCRIPT = """#!/bin/bash
echo "${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> runs.txt
if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then exit 0; fi
trap 'date +%s.%N > usr2; scontrol requeue "$SLURM_JOB_ID"; exit 0' USR2
for i in $(seq 1200); do sleep 0.1; done  # short sleeps, so that the trap runs at once
exit 1
"""


def _runs(workdir: Path) -> list[int]:
    path = workdir / "runs.txt"
    return [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def test_scontrol_requeue_reruns_the_job(slurm: SlurmSession) -> None:
    script = slurm.workdir / "job.sh"
    script.write_text(RUN_RECORDING_SCRIPT)
    job = slurm.sbatch("-o", "/dev/null", script=script)
    wait_until(lambda: _runs(slurm.workdir) == [0], timeout=30, what="the first run")
    run_slurm(["scontrol", "requeue", job])
    assert slurm.wait_done(job, timeout=60) == ["COMPLETED"]
    assert _runs(slurm.workdir) == [0, 1]
    assert "REQUEUED" in slurm.states(job, history=True)


def test_urgent_partition_preempts_debug_with_usr2(slurm: SlurmSession) -> None:
    script = slurm.workdir / "job.sh"
    script.write_text(RUN_RECORDING_SCRIPT)
    # The signal is due 60 s before a time limit that never comes: only preemption sends it.
    victim = slurm.sbatch("-p", "debug", "--signal=B:USR2@60", "-o", "/dev/null", script=script)
    wait_until(lambda: _runs(slurm.workdir) == [0], timeout=30, what="the debug job to start")
    urgent = slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="date +%s.%N > urgent_start")
    assert slurm.wait_done(urgent, timeout=60) == ["COMPLETED"]
    assert (slurm.workdir / "usr2").exists(), "the preempted job got no SIGUSR2"
    assert _timestamp(slurm.workdir / "usr2") <= _timestamp(slurm.workdir / "urgent_start")
    assert slurm.wait_done(victim, timeout=60) == ["COMPLETED"]
    assert _runs(slurm.workdir) == [0, 1]
    assert slurm.states(victim, history=True)[0] in {"REQUEUED", "PREEMPTED"}


def test_srun_runs_two_tasks(slurm: SlurmSession) -> None:
    job = slurm.sbatch("-n2", "-o", "out.txt", wrap='srun bash -c "echo rank=\\$SLURM_PROCID/\\$SLURM_NTASKS"')
    assert slurm.wait_done(job, timeout=30) == ["COMPLETED"]
    assert sorted((slurm.workdir / "out.txt").read_text().split()) == ["rank=0/2", "rank=1/2"]


def test_gpus_per_node_schedules_on_fake_gpus(slurm: SlurmSession) -> None:
    job = slurm.sbatch("--gpus-per-node=1", "-o", "out.txt", wrap="echo $CUDA_VISIBLE_DEVICES")
    assert slurm.wait_done(job, timeout=30) == ["COMPLETED"]
    assert (slurm.workdir / "out.txt").read_text().strip() in {"0", "1"}


def _submitit_executor(folder: Path) -> submitit.AutoExecutor:
    import submitit

    executor = submitit.AutoExecutor(folder=folder)
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition="debug", timeout_min=30, cpus_per_task=1)
    return executor


def _wait_submitit(jobs: list[submitit.Job[Any]], timeout: float) -> None:
    wait_until(lambda: all(j.done() for j in jobs), timeout=timeout, what="submitit jobs")


def test_submitit_round_trip(slurm: SlurmSession) -> None:
    offset = 2  # captured by the closure: the function is pickled by value

    def work(x: int) -> tuple[int, str]:
        return x * 2 + offset, os.environ["SLURM_JOB_PARTITION"]

    executor = _submitit_executor(slurm.workdir / "submitit")
    job = executor.submit(work, 20)
    slurm.job_ids.append(str(job.job_id))
    array = executor.map_array(work, [1, 2, 3])
    slurm.job_ids.extend(str(j.job_id) for j in array)
    _wait_submitit([job, *array], timeout=60)
    assert job.result() == (42, "debug")
    assert [j.result()[0] for j in array] == [4, 6, 8]
    assert slurm.wait_done(str(job.job_id), timeout=30) == ["COMPLETED"]


def test_submitit_checkpointable_requeued_on_preemption(slurm: SlurmSession) -> None:
    import submitit

    class Resumable(submitit.helpers.Checkpointable):
        def __call__(self, marker: str) -> str:
            restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
            with open(marker, "a") as fh:
                fh.write(f"start {restarts}\n")
            if restarts:
                return f"resumed after {restarts} requeue(s)"
            time.sleep(120)
            return "never preempted"

        def checkpoint(self, marker: str) -> submitit.helpers.DelayedSubmission:
            with open(marker, "a") as fh:
                fh.write("checkpoint\n")
            return super().checkpoint(marker)

    marker = slurm.workdir / "marker.txt"
    job = _submitit_executor(slurm.workdir / "submitit").submit(Resumable(), str(marker))
    slurm.job_ids.append(str(job.job_id))
    wait_until(marker.exists, timeout=30, what="the submitit job to start")
    slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="true")
    _wait_submitit([job], timeout=60)
    assert job.result() == "resumed after 1 requeue(s)"
    assert marker.read_text().split("\n")[:3] == ["start 0", "checkpoint", "start 1"]


def test_cluster_is_registered_with_slurmdbd(slurm_cluster: SlurmCluster) -> None:
    config = run_slurm(["scontrol", "show", "config"]).stdout
    name = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("ClusterName"))
    assert name in run_slurm(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"]).stdout.split()
