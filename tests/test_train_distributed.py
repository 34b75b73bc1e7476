"""Real DeepSpeed training with two ranks (torchrun, gloo on CPU): ZeRO-2 and ZeRO-3 train, save
and load; a run preempted with SIGUSR2 (sent to rank 0 only) or SIGKILLed after a checkpoint and
then relaunched logs exactly the per-step losses of an uninterrupted run.

The data: 21 pairs (not a multiple of the global batch of 4), 6 epochs, so steps span epoch
boundaries and the last step is partial; a small token budget gives several micro-batches. The
run is long enough (32 steps) that a signal sent after step 1 always lands mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dpo_helpers import make_pairs, run_config, write_pairs

from rlhi_hpc.config import dump_yaml
from rlhi_hpc.train.metrics import read_metrics

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

OVERRIDES = ("dpo.global_batch_size=4", "dpo.max_length=96", "dpo.max_tokens_per_microbatch=200", "dpo.epochs=6",
             "dpo.checkpoint_every=3", "dpo.keep_checkpoints=2", "dpo.lr=2e-3", "dpo.warmup_ratio=0.2",
             "dpo.comm_timeout_min=3", "dpo.nll_weight=0.1", "log_level=INFO")
TOTAL_STEPS = 32  # ceil(6 * 21 / 4)
PREEMPT_EXIT_CODE = 75


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    from rlhi_hpc.train.reference import ensure_reference_cache

    root = tmp_path_factory.mktemp("dpo-dist")
    pairs = make_pairs(21, seed=11)
    write_pairs(root / "pairs.jsonl", pairs)
    cfg = run_config(tiny_model_dir, *OVERRIDES)
    (root / "config.yaml").write_text(dump_yaml(cfg))
    ref = ensure_reference_cache(cfg, pairs, root / "cache", show_progress=False)
    return {"root": root, "ref": ref}


def _launch(job: dict, out: Path, *overrides: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "-m", "rlhi_hpc.train.run", "--config", str(job["root"] / "config.yaml"),
           "--pairs", str(job["root"] / "pairs.jsonl"), "--reflogp", str(job["ref"]), "--out", str(out), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    log = open(out.parent / f"{out.name}.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=Path(__file__).resolve().parent.parent)


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (which run in sessions of their own)."""
    workers = _worker_pids(proc.pid)
    for pid in workers.values():
        os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in workers.values():
        while _alive(pid):
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait(proc: subprocess.Popen, timeout: float = 240) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(proc)
        raise


def _run(job: dict, out: Path, *overrides: str, port: int) -> int:
    return _wait(_launch(job, out, *overrides, port=port))


def _losses(out: Path) -> list[float]:
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, TOTAL_STEPS + 1)), "each step logged exactly once"
    return [r["loss"] for r in records]


def _log(out: Path) -> str:
    return (out.parent / f"{out.name}.log").read_text()


def _worker_pids(torchrun_pid: int) -> dict[int, int]:
    """rank -> pid of the worker processes torchrun started."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == torchrun_pid:
            env = dict(e.split(b"=", 1) for e in environ if b"=" in e)
            if b"RANK" in env:
                found[int(env[b"RANK"])] = int(stat.parent.name)
    return found


@pytest.fixture(scope="module")
def uninterrupted(job):  # noqa: ANN001, ANN201
    out = job["root"] / "zero2"
    rc = _run(job, out, "dpo.zero_stage=2", port=29621)
    assert rc == 0, _log(out)[-3000:]
    return out


def test_zero2_trains_saves_and_writes_a_loadable_model(uninterrupted, tiny_model_dir) -> None:  # noqa: ANN001
    import torch
    from transformers import AutoModelForCausalLM

    out = uninterrupted
    losses = _losses(out)
    records = read_metrics(out / "metrics.jsonl")
    assert abs(losses[0] - 0.6931472 - 0.1 * records[0]["nll"]) < 1e-4  # policy == reference at step 1
    assert min(losses[-3:]) < losses[0]
    assert all(r["padding_fraction"] == 0 and r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in records)
    assert any(r["micro_batches"] > 1 for r in records)
    kept = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    assert kept == ["step_00000027", "step_00000030"]
    meta = json.loads((out / "checkpoints" / "step_00000030" / "meta.json").read_text())
    assert meta["step"] == 30 and meta["world_size"] == 2
    assert meta["sampler"]["epoch"] == 5 and meta["sampler"]["position"] == 120 - 5 * 21
    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    init = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    diffs = [(a - b).abs().max().item() for a, b in zip(trained.state_dict().values(), init.state_dict().values())]
    assert max(diffs) > 1e-4
    with torch.no_grad():
        trained(input_ids=torch.tensor([[1, 2, 3]]))
    assert json.loads((out / "train_summary.json").read_text())["steps"] == TOTAL_STEPS


def test_zero3_matches_zero2(job, uninterrupted) -> None:  # noqa: ANN001
    from safetensors.torch import load_file

    out = job["root"] / "zero3"
    rc = _run(job, out, "dpo.zero_stage=3", port=29622)
    assert rc == 0, _log(out)[-3000:]
    assert _losses(out) == pytest.approx(_losses(uninterrupted), abs=1e-5)
    a, b = load_file(out / "final" / "model.safetensors"), load_file(uninterrupted / "final" / "model.safetensors")
    assert sorted(a) == sorted(b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_sigusr2_on_one_rank_checkpoints_exits_and_resumes_exactly(job, uninterrupted) -> None:  # noqa: ANN001
    out = job["root"] / "usr2"
    proc = _launch(job, out, "dpo.zero_stage=2", port=29623)
    deadline = time.time() + 180
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.time() < deadline, _log(out)[-3000:]
        time.sleep(0.01)
    os.kill(_worker_pids(proc.pid)[0], signal.SIGUSR2)  # rank 0 only: all ranks must agree to stop
    rc = _wait(proc)
    log = _log(out)
    assert rc != 0 and f"exitcode  : {PREEMPT_EXIT_CODE}" in log.replace("exitcode:", "exitcode  :"), log[-3000:]
    assert "event=preempted" in log and "reason=SIGUSR2" in log
    stopped = [int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*") if (p / "meta.json").exists()]
    assert stopped and max(stopped) < TOTAL_STEPS
    assert _run(job, out, "dpo.zero_stage=2", port=29624) == 0, _log(out)[-3000:]
    assert f"event=resumed step={max(stopped)}" in _log(out)
    assert _losses(out) == pytest.approx(_losses(uninterrupted), abs=1e-6)


def test_sigkill_after_a_checkpoint_resumes_exactly(job, uninterrupted) -> None:  # noqa: ANN001
    out = job["root"] / "kill"
    proc = _launch(job, out, "dpo.zero_stage=2", port=29625)
    meta = out / "checkpoints" / "step_00000003" / "meta.json"
    deadline = time.time() + 180
    while not meta.is_file():
        assert proc.poll() is None and time.time() < deadline, _log(out)[-3000:]
        time.sleep(0.01)
    _kill_all(proc)
    assert not (out / "final").exists()
    assert _run(job, out, "dpo.zero_stage=2", port=29626) == 0, _log(out)[-3000:]
    assert "event=resumed step=" in _log(out)
    assert _losses(out) == pytest.approx(_losses(uninterrupted), abs=1e-6)
