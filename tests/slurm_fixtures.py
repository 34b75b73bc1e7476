"""Fixtures and helpers for tests that run on the local Slurm cluster (slurm/local-cluster.sh).

Use them from a test module with::

    from slurm_fixtures import slurm, slurm_cluster  # noqa: F401  (pytest fixtures)

`slurm_cluster` (session) skips the test, with the reason, when no cluster answers; `slurm`
(per test) is a `SlurmSession` that submits jobs, waits on them and cancels what is left at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEFAULT_SLURM_CONF = Path(os.environ.get("RLHI_SLURM_DIR", "/tmp/rlhi-slurm")) / "etc" / "slurm.conf"
START_HINT = "start it with `bash slurm/local-cluster.sh start` (as root) and `source slurm/env.sh`"
# sacct states after which a job record no longer changes (a requeued job gets a new record).
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
)
POLL_S = 0.25


@dataclass(frozen=True, kw_only=True)
class SlurmCluster:
    """The cluster the tests talk to: its config file, its one node and that node's CPU count."""

    conf: Path | None
    node: str
    cpus: int


def run_slurm(args: Sequence[str], *, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command; raise with its stderr when it fails and `check` is set."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `predicate` every POLL_S seconds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _probe_cluster() -> SlurmCluster | str:
    """The reachable cluster, or the reason why none is reachable."""
    if shutil.which("sinfo") is None:
        return f"Slurm client commands (sinfo) are not installed; {START_HINT}"
    try:
        proc = run_slurm(["sinfo", "-h", "-N", "-o", "%N %c %T"], timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return f"sinfo timed out: no Slurm controller answers; {START_HINT}"
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = proc.stderr.strip().splitlines()[-1:] or ["no node listed"]
        return f"sinfo cannot reach a Slurm cluster ({detail[0]}); {START_HINT}"
    node, cpus, state = proc.stdout.split()[:3]
    if state.rstrip("*~#") not in {"idle", "mixed", "allocated"}:
        return f"the Slurm node {node} is {state!r}, not usable; restart the cluster: {START_HINT}"
    conf = os.environ.get("SLURM_CONF")
    return SlurmCluster(conf=Path(conf) if conf else None, node=node, cpus=int(cpus))


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local cluster; skips when none answers. Sets SLURM_CONF to the local cluster when unset."""
    with pytest.MonkeyPatch.context() as mp:
        if "SLURM_CONF" not in os.environ and DEFAULT_SLURM_CONF.is_file():
            mp.setenv("SLURM_CONF", str(DEFAULT_SLURM_CONF))
        found = _probe_cluster()
        if isinstance(found, str):
            pytest.skip(found)
        yield found


@dataclass(kw_only=True)
class SlurmSession:
    """Submits jobs for one test, waits on them, and cancels whatever is left at the end."""

    cluster: SlurmCluster
    workdir: Path
    job_ids: list[str] = field(default_factory=list)

    def sbatch(self, *args: str, wrap: str | None = None, script: Path | None = None) -> str:
        """Submit a job (`wrap` command or `script` file) and return its job id."""
        cmd = ["sbatch", "--parsable", f"--chdir={self.workdir}", *args]
        if wrap is not None:
            cmd += ["--wrap", wrap]
        if script is not None:
            cmd.append(str(script))
        job_id = run_slurm(cmd).stdout.strip().split(";")[0]
        self.job_ids.append(job_id)
        return job_id

    def states(self, job_id: str, *, history: bool = False) -> list[str]:
        """sacct states of the job's allocation records (every array task; every run with `history`)."""
        args = ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id] + (["-D"] if history else [])
        # "CANCELLED by 0" -> "CANCELLED"
        return [line.split()[0] for line in run_slurm(args).stdout.splitlines() if line.strip()]

    def in_queue(self, job_id: str) -> bool:
        """Whether squeue still lists the job (pending, running or completing)."""
        return bool(run_slurm(["squeue", "-h", "-j", job_id, "-o", "%i"], check=False).stdout.strip())

    def wait_done(self, job_id: str, *, tasks: int = 1, timeout: float = 60.0) -> list[str]:
        """Wait until the job has left the queue and sacct shows a final state for each of its `tasks`
        (array tasks); sacct may lag slurmctld by a moment, records of array tasks included."""

        def done() -> bool:
            states = self.states(job_id)
            final = len(states) == tasks and all(s in TERMINAL_STATES for s in states)
            return final and not self.in_queue(job_id)

        wait_until(done, timeout=timeout, what=f"job {job_id} to finish")
        return self.states(job_id)

    def wait_running(self, job_id: str, *, timeout: float = 30.0) -> None:
        """Wait until squeue shows the job running."""

        def running() -> bool:
            out = run_slurm(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).stdout
            return "RUNNING" in out

        wait_until(running, timeout=timeout, what=f"job {job_id} to run")

    def cancel_all(self) -> None:
        """Cancel every job this session submitted and wait (bounded) until they are gone."""
        if not self.job_ids:
            return
        run_slurm(["scancel", *self.job_ids], check=False)
        deadline = time.monotonic() + 30
        while any(self.in_queue(j) for j in self.job_ids) and time.monotonic() < deadline:
            time.sleep(POLL_S)


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[SlurmSession]:
    """A `SlurmSession` working in the test's tmp_path; leftover jobs are cancelled afterwards."""
    session = SlurmSession(cluster=slurm_cluster, workdir=tmp_path)
    try:
        yield session
    finally:
        session.cancel_all()
