"""The Slurm executor on the real local cluster (slurm/local-cluster.sh): submitit job arrays per stage.

Every test launches stages of jobs/slurm_test.yaml (bundled sample, tiny model, small settings)
through `python -m rlhi_hpc.launch ... cluster=slurm` in-process, and checks what Slurm did with
sacct/squeue: throttled arrays, afterok chains, cancelled dependents of a failed task, requeue by
`scontrol requeue`, preemption by the `urgent` partition (submitit's USR2 handler, and the trap of
the rendered submit.slurm), a real time limit, relaunches, retries and config injection attempts.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from rlhi_hpc.cluster.jobs import Submission, read_submissions
from rlhi_hpc.cluster.resources import TaskResources
from rlhi_hpc.cluster.sbatch import render_stage_script
from rlhi_hpc.config import load_config
from rlhi_hpc.launch import main as launch_main
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Persona, read_records
from slurm_fixtures import SlurmCluster, SlurmSession, run_slurm, slurm, slurm_cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.slurm

BASE = ["job=slurm_test", "cluster=slurm", "cluster.poll_s=0.5", "log_level=WARNING"]
# One shard whose personas are committed one at a time: long enough to interrupt between commits.
# 22 personas of 192 tokens: ~12 s of work on an idle machine (a minute or two under load), so that
# after the first commit there is always more left than what a task still does between `scontrol
# requeue` and SIGKILL (submitit ignores SIGTERM; KillWait is 2 s).
ONE_SHARD = ["data.num_shards=1", "data.max_users=24", "persona.chunk_size=1", "persona.max_new_tokens=192"]


@dataclass
class Runs:
    """Launches into one runs root and registers every job it submits for cleanup."""

    slurm: SlurmSession
    out: Path

    def launch(self, *args: str) -> int:
        try:
            return launch_main([*BASE, f"out={self.out}", *args])
        finally:
            self.track()

    def track(self) -> None:
        for path in self.out.glob("stages/*/jobs.json"):
            for sub in read_submissions(StagePaths(path.parent)):
                if sub.job_id not in self.slurm.job_ids:
                    self.slurm.job_ids.append(sub.job_id)

    def stage(self, name: str) -> StagePaths:
        (path,) = self.out.glob(f"stages/{name}-*")
        return StagePaths(path)

    def submissions(self, name: str) -> list[Submission]:
        return read_submissions(self.stage(name))


@pytest.fixture
def runs(slurm: SlurmSession, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    monkeypatch.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))  # the jobs inherit it through sbatch
    return Runs(slurm=slurm, out=slurm.workdir / "runs")


@pytest.fixture(scope="module")
def reference_persona(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> bytes:
    """The one-shard persona output of an uninterrupted in-process run."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
        for stage in ("ingest", "persona"):
            args = ["job=slurm_test", f"stage={stage}", "cluster=inprocess", f"out={out}", "log_level=WARNING"]
            assert launch_main([*args, *ONE_SHARD]) == 0
    (path,) = out.glob("stages/persona-*/out/00000.jsonl")
    return path.read_bytes()


def _outputs(paths: StagePaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(paths.out_dir.glob("*.jsonl"))}


def _consumed(paths: StagePaths, shard: str = "00000") -> int:
    try:
        return int(json.loads(paths.progress(shard).read_text())["consumed"])
    except (OSError, ValueError, KeyError):
        return 0


def _times(job_id: str) -> list[tuple[str, float, float]]:
    """(task id, start, end) in epoch seconds of every finished task of the job (latest records)."""
    text = run_slurm(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,Start,End", "--noconvert"]).stdout
    rows = []
    for line in text.splitlines():
        task, start, end = line.split("|")
        if start not in ("Unknown", "None") and end not in ("Unknown", "None"):
            rows.append((task, _epoch(start), _epoch(end)))
    return rows


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    live = best = 0
    for _, step in events:
        live += step
        best = max(best, live)
    return best


def _logs(paths: StagePaths) -> str:
    files = [p for p in sorted(paths.logs_dir.rglob("*")) if p.is_file() and p.suffix in (".log", ".err", ".out")]
    return "\n".join(p.read_text(errors="replace") for p in files)


def _wait_cancelled(slurm: SlurmSession, job_id: str) -> None:
    """Wait until a job array has left the queue cancelled (a never-started array has one sacct record)."""

    def cancelled() -> bool:
        states = slurm.states(job_id)
        return bool(states) and set(states) == {"CANCELLED"} and not slurm.in_queue(job_id)

    wait_until(cancelled, timeout=30, what=f"job {job_id} to be cancelled")


def _comparable(text: bytes) -> list[dict[str, object]]:
    """Records without provenance.code_version (the git commit, which may move between two runs)."""
    records = [json.loads(line) for line in text.splitlines()]
    for rec in records:
        rec["provenance"].pop("code_version")
    return records


def _assert_resumed_identically(persona: StagePaths, reference: bytes) -> None:
    """Same records as the uninterrupted run, no duplicate user, and the worker resumed from a bookmark."""
    assert _comparable(persona.out("00000").read_bytes()) == _comparable(reference)
    users = [p.user for p in read_records(persona.out("00000"), Persona)]
    assert users and len(users) == len(set(users))
    resumed = [line for line in _logs(persona).splitlines() if "event=shard_resume" in line]
    assert resumed and all(int(line.rsplit("consumed=", 1)[1].split()[0]) >= 1 for line in resumed)


# --------------------------------------------------------------------------------------------
# Arrays, chains, failures
# --------------------------------------------------------------------------------------------


def test_stage_is_one_throttled_array(runs: Runs, slurm: SlurmSession) -> None:
    assert runs.launch("stage=ingest", "data.num_shards=6", "cluster.max_parallel=2") == 0
    ingest = runs.stage("ingest")
    (sub,) = runs.submissions("ingest")
    assert sub.array and len(sub.tasks) == 6
    assert "#SBATCH --array=0-5%2" in ingest.sbatch.read_text()
    assert slurm.wait_done(sub.job_id, tasks=6, timeout=30) == ["COMPLETED"] * 6
    times = _times(sub.job_id)
    assert len(times) == 6
    assert _max_overlap([(s, e) for _, s, e in times]) <= 2
    assert len(list(ingest.done_dir.glob("*.json"))) == 6


def test_stage_all_is_an_afterok_chain(runs: Runs, slurm: SlurmSession, capsys: pytest.CaptureFixture[str]) -> None:
    assert runs.launch("stage=all") == 0
    subs = {name: runs.submissions(name)[0] for name in ("ingest", "classify", "persona", "sample")}
    ids = {name: s.job_id for name, s in subs.items()}
    assert subs["ingest"].after == ()
    assert subs["classify"].after == (ids["ingest"],) and subs["persona"].after == (ids["ingest"],)
    assert subs["sample"].after == tuple(sorted((ids["ingest"], ids["classify"], ids["persona"])))
    for name, sub in subs.items():
        assert slurm.wait_done(sub.job_id, tasks=4, timeout=30) == ["COMPLETED"] * 4, name
    span = {name: _times(job) for name, job in ids.items()}
    for child, parents in (("classify", ["ingest"]), ("persona", ["ingest"]), ("sample", ["classify", "persona"])):
        first_start = min(s for _, s, _ in span[child])
        assert all(first_start >= max(e for _, _, e in span[p]) for p in parents), (child, parents)
    capsys.readouterr()
    assert launch_main(["status", f"out={runs.out}"]) == 0
    out = capsys.readouterr().out
    assert "(complete)" in out and f"{ids['sample']}: COMPLETED 4" in out


def test_failed_task_cancels_dependents_and_status_shows_it(runs: Runs, slurm: SlurmSession,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    two = "data.num_shards=2"
    assert runs.launch("stage=ingest", two) == 0
    ingest = runs.stage("ingest")
    ingest.out("00001").unlink()  # shard 00001 of every dependent stage now fails on its input
    assert runs.launch("stage=all", two) == 1
    subs = {name: runs.submissions(name)[0] for name in ("classify", "persona", "sample")}
    assert slurm.wait_done(subs["classify"].job_id, tasks=2, timeout=30) == ["COMPLETED", "FAILED"]
    assert slurm.wait_done(subs["persona"].job_id, tasks=2, timeout=30) == ["COMPLETED", "FAILED"]
    # kill-on-invalid-dep: the dependents are cancelled instead of pending forever.
    _wait_cancelled(slurm, subs["sample"].job_id)
    assert not list(runs.stage("sample").done_dir.glob("*.json"))
    failed = json.loads(runs.stage("classify").failed("00001").read_text())
    assert "upstream ingest shard 00001 is not finished" in failed["error"]
    capsys.readouterr()
    assert launch_main(["status", f"out={runs.out}"]) == 0
    out = capsys.readouterr().out
    assert "failed classify shard 00001 [FAILED]: StageError: upstream ingest shard 00001" in out
    assert f"log: {failed['log']}" in out and Path(failed["log"]).is_file()
    assert "last error line:" in out and "sample shard 00000 [CANCELLED]" in out

    # Repair the input, then retry only the failed shard of classify.
    ingest.done("00001").unlink()
    assert runs.launch("stage=ingest", two) == 0
    assert launch_main(["retry", f"out={runs.out}", "stage=classify", "cluster.poll_s=0.5"]) == 0
    retry = runs.submissions("classify")[-1]
    runs.track()
    assert retry.reason == "retry" and retry.tasks == (("00001",),)
    assert sorted(p.stem for p in runs.stage("classify").done_dir.glob("*.json")) == ["00000", "00001"]


# --------------------------------------------------------------------------------------------
# Requeue, preemption, time limit
# --------------------------------------------------------------------------------------------


def _job_processes(job_id: str) -> list[psutil.Process]:
    """The Python processes of a running job (the cluster's one node is this machine)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if not argv or not Path(argv[0]).name.startswith("python"):
            continue  # not srun or the batch shell, whose command lines name the same module
        if not ({"submitit.core._submit", "rlhi_hpc.worker"} & set(argv)):
            continue
        try:
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if job_id in (env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_JOB_ID")):
            found.append(proc)
    return found


def _freeze(job_id: str) -> list[psutil.Process]:
    """SIGSTOP the job's Python processes: from here on it makes no progress until Slurm (or we) resume it.

    Interruption tests freeze a task after its first committed chunk, so that where it stops does
    not depend on how fast this machine happens to be.
    """
    procs = _job_processes(job_id)
    assert procs, f"no Python process of job {job_id}"
    for proc in procs:
        proc.suspend()
    return procs


def _keep_frozen_until_killed(procs: list[psutil.Process], timeout: float = 30.0) -> None:
    """Stop the processes again after each SIGCONT from Slurm (it sends one with every signal) until
    its SIGKILL ends them, so that the requeued task cannot commit more work while it is killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for proc in procs:
            try:
                if proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                    proc.suspend()
                    alive = True
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return
        time.sleep(0.002)
    pytest.fail(f"the requeued task's processes still run after {timeout:.0f} s")


def _start_persona(runs: Runs, *extra: str) -> tuple[StagePaths, Submission]:
    """Ingest, then the one-shard persona array, returned once its first persona is committed."""
    assert runs.launch("stage=ingest", *ONE_SHARD) == 0
    assert runs.launch("stage=persona", *ONE_SHARD, "cluster.wait=false", *extra) == 0
    persona = runs.stage("persona")
    (sub,) = runs.submissions("persona")
    wait_until(lambda: _consumed(persona) >= 1, timeout=120, what="a committed persona")
    return persona, sub


def _resumed_at(persona: StagePaths) -> list[int]:
    lines = [line for line in _logs(persona).splitlines() if "event=shard_resume" in line]
    return [int(line.rsplit("consumed=", 1)[1].split()[0]) for line in lines]


def test_scontrol_requeue_resumes_with_identical_output(runs: Runs, slurm: SlurmSession,
                                                        reference_persona: bytes) -> None:
    # Two fake GPUs per node: the inference task asks for (and gets) one of them.
    persona, sub = _start_persona(runs, "cluster.gpus_per_node=2")
    procs = _freeze(sub.job_id)
    committed = _consumed(persona)
    run_slurm(["scontrol", "requeue", sub.task_id(0)])
    _keep_frozen_until_killed(procs)
    assert slurm.wait_done(sub.job_id, timeout=120) == ["COMPLETED"]
    assert "REQUEUED" in slurm.states(sub.job_id, history=True)
    resumed = _resumed_at(persona)
    assert len(resumed) == 1 and committed <= resumed[0] <= committed + 1  # not from scratch, not after the end
    _assert_resumed_identically(persona, reference_persona)
    tres = run_slurm(["sacct", "-X", "-n", "-P", "-j", sub.job_id, "-o", "AllocTRES"]).stdout
    assert "gres/gpu=1" in tres


def test_preempted_task_checkpoints_requeues_and_resumes(runs: Runs, slurm: SlurmSession,
                                                         reference_persona: bytes) -> None:
    persona, sub = _start_persona(runs)
    _freeze(sub.job_id)  # Slurm continues it together with the preemption signal
    committed = _consumed(persona)
    urgent = slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="sleep 1")
    assert slurm.wait_done(urgent, timeout=60) == ["COMPLETED"]
    assert slurm.wait_done(sub.job_id, timeout=120) == ["COMPLETED"]
    assert {"PREEMPTED", "REQUEUED"} & set(slurm.states(sub.job_id, history=True))
    logs = _logs(persona)
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs  # submitit's Checkpointable path
    assert _resumed_at(persona)[0] >= committed
    _assert_resumed_identically(persona, reference_persona)


def test_rendered_submit_slurm_completes_the_stage_and_survives_preemption(
        runs: Runs, slurm: SlurmSession, reference_persona: bytes) -> None:
    assert runs.launch("stage=ingest", *ONE_SHARD) == 0
    # The node is busy: the launcher's submission stays pending and is cancelled, which leaves the
    # rendered submit.slurm and tasks.json for a manual relaunch.
    blocker = slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="sleep 300")
    slurm.wait_running(blocker)
    assert runs.launch("stage=persona", *ONE_SHARD, "cluster.wait=false") == 0
    persona = runs.stage("persona")
    (sub,) = runs.submissions("persona")
    run_slurm(["scancel", sub.job_id, blocker])
    wait_until(lambda: not slurm.in_queue(sub.job_id) and not slurm.in_queue(blocker), timeout=30,
               what="the cancelled jobs to leave")
    assert not persona.progress("00000").exists() and not persona.done("00000").exists()
    job = slurm.sbatch(script=persona.sbatch)  # plain sbatch, as a user relaunching by hand would
    wait_until(lambda: _consumed(persona) >= 1, timeout=120, what="a persona from the sbatch job")
    procs = _freeze(job)
    committed = _consumed(persona)
    urgent = slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="sleep 1")
    log_path = persona.logs_dir / f"sbatch-{job}_0.log"
    wait_until(lambda: "rlhi: SIGUSR2" in log_path.read_text(), timeout=30, what="the trap to run")
    for proc in procs:  # the trap forwarded SIGUSR2 to the worker: it ends as soon as it runs again
        try:
            proc.resume()
        except psutil.NoSuchProcess:
            pass  # Slurm's SIGCONT came first
    assert slurm.wait_done(urgent, timeout=60) == ["COMPLETED"]
    assert slurm.wait_done(job, timeout=120) == ["COMPLETED"]
    assert {"PREEMPTED", "REQUEUED"} & set(slurm.states(job, history=True))
    log = log_path.read_text()
    assert log.count("starts (restart") == 2
    assert _resumed_at(persona)[0] >= committed
    _assert_resumed_identically(persona, reference_persona)


@pytest.mark.slow
def test_time_limit_signal_requeues_until_done(runs: Runs, slurm: SlurmSession, reference_persona: bytes) -> None:
    # A one-minute limit with USR2 40 s before it. slurmctld checks limits every 30 s and may signal
    # up to 60 s early, so a run is signalled at its first check (< 30 s after it starts) and killed
    # at the first check after 60 s. The task is frozen after its first commit and resumed 35 s
    # after it started, so that the signal always finds it running however fast this machine is;
    # submitit's handler then checkpoints and requeues it, and the shard resumes from its bookmark.
    assert runs.launch("stage=ingest", *ONE_SHARD) == 0
    assert runs.launch("stage=persona", *ONE_SHARD, "cluster.wait=false", "cluster.time_min=1",
                       "cluster.signal_delay_s=40", "cluster.max_requeues=30") == 0
    persona = runs.stage("persona")
    (sub,) = runs.submissions("persona")
    slurm.wait_running(sub.job_id)
    started = time.monotonic()
    wait_until(lambda: _consumed(persona) >= 1 or time.monotonic() - started > 25, timeout=60,
               what="a committed persona")
    procs = _job_processes(sub.job_id)
    for proc in procs:
        proc.suspend()
    time.sleep(max(0.0, started + 35 - time.monotonic()))
    for proc in procs:
        try:
            proc.resume()
        except psutil.NoSuchProcess:
            pass
    assert slurm.wait_done(sub.job_id, timeout=600) == ["COMPLETED"]
    history = slurm.states(sub.job_id, history=True)
    assert "REQUEUED" in history and "TIMEOUT" not in history
    logs = _logs(persona)
    assert "this job is timed-out" in logs and "Requeued job" in logs
    _assert_resumed_identically(persona, reference_persona)


# --------------------------------------------------------------------------------------------
# Relaunches and live jobs
# --------------------------------------------------------------------------------------------


def test_relaunch_submits_only_missing_shards_and_never_twice(runs: Runs, slurm: SlurmSession,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert runs.launch("stage=ingest") == 0
    ingest = runs.stage("ingest")
    before = _outputs(ingest)
    for sid in ("00001", "00003"):
        ingest.done(sid).unlink()
        ingest.out(sid).unlink()
    assert runs.launch("stage=ingest") == 0
    assert [s.tasks for s in runs.submissions("ingest")][1] == (("00001",), ("00003",))
    assert _outputs(ingest) == before

    # While a submission is queued (the node is busy), relaunching submits nothing new, and a
    # downstream stage launched on its own waits for the queued job.
    blocker = slurm.sbatch("-p", "urgent", "--exclusive", "-o", "/dev/null", wrap="sleep 300")
    slurm.wait_running(blocker)
    ingest.done("00002").unlink()
    assert runs.launch("stage=ingest", "cluster.wait=false") == 0
    queued = runs.submissions("ingest")[-1]
    assert queued.tasks == (("00002",),)
    capsys.readouterr()
    assert runs.launch("stage=ingest", "cluster.wait=false") == 0
    assert "already queued" in capsys.readouterr().out
    assert len(runs.submissions("ingest")) == 3
    assert runs.launch("stage=persona", "cluster.wait=false") == 0
    (persona,) = runs.submissions("persona")
    assert persona.after == (queued.job_id,)
    # Cancelling the upstream job cancels the dependent array (kill-on-invalid-dep).
    run_slurm(["scancel", queued.job_id])
    _wait_cancelled(slurm, persona.job_id)
    run_slurm(["scancel", blocker])


# --------------------------------------------------------------------------------------------
# Injection and the multi-node template
# --------------------------------------------------------------------------------------------


def test_config_strings_cannot_run_code(runs: Runs, slurm: SlurmSession, capsys: pytest.CaptureFixture[str]) -> None:
    marker = slurm.workdir / "pwned"
    assert runs.launch("stage=ingest", f"cluster.account=x; touch {marker}") == 2
    assert "cluster.account" in capsys.readouterr().err and not runs.out.exists()
    assert runs.launch("stage=ingest", f"cluster.job_name=$(touch {marker})") == 2
    assert runs.launch("stage=ingest", f"cluster.partition=debug;touch {marker}") == 2
    # Environment values are free text, quoted wherever they are rendered.
    probe = f"$(touch {marker}); `touch {marker}`"
    assert runs.launch("stage=ingest", f"cluster.env.RLHI_PROBE={probe}") == 0
    ingest = runs.stage("ingest")
    job = slurm.sbatch(script=ingest.sbatch)  # the rendered script too (every shard is done: quick)
    assert slurm.wait_done(job, tasks=4, timeout=30) == ["COMPLETED"] * 4
    assert not marker.exists()
    assert "export RLHI_PROBE='$(touch" in ingest.sbatch.read_text()
    (submission,) = (ingest.logs_dir / "submitit").glob("*_submission.sh")
    assert "export RLHI_PROBE='$(touch" in submission.read_text()


def test_multinode_template_gives_every_rank_a_torch_environment(slurm: SlurmSession,
                                                                 slurm_cluster: SlurmCluster) -> None:
    stage_dir = slurm.workdir / "stages" / "dpo-0123456789ab"
    (stage_dir / "logs").mkdir(parents=True)
    cfg = load_config(["cluster=slurm"])
    probe = 'echo "rank=$RANK local=$LOCAL_RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT"'
    script = render_stage_script(stage="dpo", stage_dir=stage_dir, kind="multinode", n_tasks=1,
                                 res=TaskResources(nodes=1, tasks_per_node=2, cpus_per_task=1, time_min=5),
                                 cluster=cfg.cluster, command=["bash", "-c", probe])
    path = stage_dir / "submit.slurm"
    path.write_text(script)
    job = slurm.sbatch(script=path)
    assert slurm.wait_done(job, timeout=30) == ["COMPLETED"]
    log = (stage_dir / "logs" / f"sbatch-{job}_0.log").read_text().splitlines()
    (header,) = [line for line in log if "world size" in line]
    port = int(header.rsplit(":", 1)[1])
    assert header.endswith(f"1 node(s), world size 2, master {slurm_cluster.node}:{port}") and 20000 <= port < 40000
    ranks = sorted(line for line in log if line.startswith("rank="))
    assert ranks == [f"rank={r} local={r} world=2 master={slurm_cluster.node}:{port}" for r in (0, 1)]


def test_multinode_task_runs_every_rank_through_submitit(slurm: SlurmSession, slurm_cluster: SlurmCluster) -> None:
    from rlhi_hpc.cluster.base import StageSubmission
    from rlhi_hpc.cluster.slurm import SlurmExecutor

    def probe(stage_dir: str, shard_ids: list[str], log_path: str = "") -> dict[str, str]:
        import os  # pickled by value: runs in each rank of the job
        from pathlib import Path as P

        keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        line = " ".join(f"{k}={os.environ[k]}" for k in keys) + f" shards={','.join(shard_ids)}"
        (P(stage_dir) / f"rank{os.environ['RANK']}.txt").write_text(line)
        return {}

    stage_dir = slurm.workdir / "stages" / "dpo-0123456789ab"
    stage_dir.mkdir(parents=True)
    executor = SlurmExecutor(load_config(["cluster=slurm", "cluster.tasks_per_node=2"]), run_task=probe)
    sub = StageSubmission(stage="dpo", stage_dir=stage_dir, tasks=(("00000",),), kind="multinode",
                          sections=("model", "dpo"))
    handle = executor.submit(sub)
    slurm.job_ids.extend(handle.job_ids)
    assert slurm.wait_done(handle.job_ids[0], timeout=60) == ["COMPLETED"]
    lines = sorted((stage_dir / f"rank{r}.txt").read_text() for r in (0, 1))
    port = lines[0].split("MASTER_PORT=")[1].split()[0]
    assert lines == [f"RANK={r} LOCAL_RANK={r} WORLD_SIZE=2 MASTER_ADDR={slurm_cluster.node} MASTER_PORT={port} "
                     "shards=00000" for r in (0, 1)]
    assert "#SBATCH --ntasks-per-node=2" in (stage_dir / "submit.slurm").read_text()


def test_launcher_without_wait_returns_at_once(runs: Runs, slurm: SlurmSession) -> None:
    assert runs.launch("stage=ingest", "cluster.wait=false") == 0
    (sub,) = runs.submissions("ingest")
    assert slurm.wait_done(sub.job_id, tasks=4, timeout=30) == ["COMPLETED"] * 4
    proc = subprocess.run([".venv/bin/python", "-m", "rlhi_hpc.launch", "status", f"out={runs.out}"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0 and f"{sub.job_id}: COMPLETED 4" in proc.stdout
