"""Slurm planning without a cluster: presets, resources, validation, rendered scripts, estimates.

The scripts rendered here are checked with `bash -n`, and config strings with shell metacharacters
are pushed through bash to show that they stay literal. Submissions to a real cluster are in
tests/test_slurm_executor.py.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from rlhi_hpc.cluster.jobs import Submission, _expand_range
from rlhi_hpc.cluster.resources import TaskResources, stage_models, stage_resources, validate_slurm
from rlhi_hpc.cluster.sbatch import env_lines, one_line, render_stage_script
from rlhi_hpc.config import load_config
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.estimate import InputSize, estimate_stage, input_size, load_throughput
from rlhi_hpc.launch import main as launch

GPU_STAGE = ("classify", "gpu", ("model", "classify"))


def _bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("preset", ["slurm", "a100", "h100"])
def test_presets_load_and_validate_for_every_demo_stage(preset: str) -> None:
    cfg = load_config([f"cluster={preset}"])
    assert cfg.cluster.executor == "slurm"
    validate_slurm(cfg, [("ingest", "cpu", ("data",)), GPU_STAGE, ("dpo", "multinode", ("model", "dpo"))])


def test_inference_task_asks_for_tensor_parallel_gpus() -> None:
    cfg = load_config(["cluster=a100", "model=llama-3.3-70b-instruct"])
    res = stage_resources(cfg, "gpu", ("model", "classify"))
    assert (res.gpus_per_node, res.cpus_per_task, res.mem_gb) == (4, 4 * 8, 4 * 100)
    # A judge preset counts too: the 8B policy with a 70B judge asks for the judge's 4 GPUs.
    cfg = load_config(["cluster=h100", "model=llama-3.1-8b-instruct", "eval.judge_model=llama-3.3-70b-instruct"])
    assert [key for key, _ in stage_models(cfg, ("model", "eval"))] == ["model", "eval.judge_model"]
    assert stage_resources(cfg, "gpu", ("model", "eval")).gpus_per_node == 4
    assert stage_resources(cfg, "cpu", ("data",)).gpus_per_node == 0


def test_multinode_task_asks_for_nodes_times_gpus() -> None:
    cfg = load_config(["cluster=h100", "dpo.nodes=4"])
    res = stage_resources(cfg, "multinode", ("model", "dpo"))
    assert (res.nodes, res.tasks_per_node, res.gpus_per_node, res.gpus, res.ranks) == (4, 8, 8, 32, 32)
    cpu = stage_resources(load_config(["cluster=slurm", "cluster.tasks_per_node=2"]), "multinode", ("dpo",))
    assert (cpu.nodes, cpu.tasks_per_node, cpu.gpus_per_node) == (1, 2, 0)


@pytest.mark.parametrize(("args", "key"), [
    (["cluster=slurm", "model=llama-3.1-8b-instruct"], "cluster.gpus_per_node"),
    (["cluster=a100", "model=llama-3.3-70b-instruct", "cluster.gpus_per_node=2"], "model.tensor_parallel_size"),
    (["cluster=slurm", "cluster.time_min=1", "cluster.signal_delay_s=90"], "cluster.signal_delay_s"),
])
def test_impossible_resources_are_rejected_naming_the_key(args: list[str], key: str) -> None:
    cfg = load_config(args)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate_slurm(cfg, [GPU_STAGE])


@pytest.mark.parametrize(("key", "value"), [
    ("cluster.partition", "debug; touch /tmp/x"), ("cluster.account", "x; touch /tmp/pwned"),
    ("cluster.qos", "$(id)"), ("cluster.job_name", "a b"), ("cluster.constraint", "a100 && rm"),
    ("cluster.gpu_type", "h100`id`"), ("cluster.env", {"1BAD": "x"}), ("cluster.env", {"OK": "two\nlines"}),
])
def test_config_strings_that_could_reach_a_shell_are_rejected(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}"):
        load_config([f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"]
                    if isinstance(value, dict) else [f"{key}={value}"])


def test_launcher_rejects_injection_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    rc = launch(["job=slurm_test", "stage=ingest", "cluster=slurm", f"out={tmp_path / 'runs'}",
                 f"cluster.account=x; touch {marker}"])
    assert rc == 2 and "cluster.account" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "runs").exists()
    # A newline would end an #SBATCH line and start a shell line: never rendered.
    with pytest.raises(ConfigError, match="'out'"):
        one_line("out", f"{tmp_path}/a\nrm -rf b")


def _render(tmp_path: Path, kind: str = "gpu", env: dict[str, str] | None = None, **cluster: str) -> str:
    cfg = load_config(["cluster=h100", *(f"cluster.{k}={v}" for k, v in cluster.items())])
    res = stage_resources(cfg, kind, ("model", "persona"))
    c = dataclasses.replace(cfg.cluster, env={**cfg.cluster.env, **(env or {})})
    c.validate("cluster")
    return render_stage_script(stage="persona", stage_dir=tmp_path / "stages" / "persona-abc", kind=kind,
                               n_tasks=5, res=res, cluster=c)


@pytest.mark.parametrize("kind", ["gpu", "multinode"])
def test_rendered_scripts_are_complete_and_valid_bash(tmp_path: Path, kind: str) -> None:
    script = _render(tmp_path, kind, max_parallel="2")
    assert not re.search(r"\{\{\s*[a-z_]+\s*\}\}", script)
    assert "#SBATCH --array=0-4%2" in script and "#SBATCH --signal=B:USR2@120" in script
    assert "#SBATCH --partition=h100" in script and "#SBATCH --requeue" in script
    assert "module load cuda/12.4 nccl" in script  # setup lines: as written
    assert "export NCCL_IB_HCA=mlx5" in script
    if kind == "multinode":
        assert "#SBATCH --ntasks-per-node=8" in script and "#SBATCH --gpus-per-node=8" in script
        assert "srun --kill-on-bad-exit=1" in script and "MASTER_ADDR" in script
    else:
        assert "#SBATCH --gpus-per-node=1" in script and "-m rlhi_hpc.worker" in script
    path = tmp_path / "submit.slurm"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_env_values_with_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}` '\"; touch {marker} #"
    lines = env_lines({"PROBE": value})
    out = _bash(f'{lines}\nprintf %s "$PROBE"')
    assert out.returncode == 0 and out.stdout == value
    assert not marker.exists()
    # The same value in a whole rendered script: `bash -n` parses it and the export line is the quoted one.
    script = _render(tmp_path, "gpu", env={"PROBE": value})
    assert f"export PROBE={shlex.quote(value)}" in script
    path = tmp_path / "submit.slurm"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_dry_run_prints_parameters_estimate_and_script(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = launch(["job=slurm_test", "stage=all", "cluster=h100", "model=llama-3.1-8b-instruct",
                 f"out={tmp_path / 'runs'}", "dry_run=true"])
    out = capsys.readouterr().out
    assert rc == 0 and not (tmp_path / "runs").exists()
    assert out.count("submit.slurm:") == 4 and out.count("estimate: GPU-hours") == 4
    assert "estimate: GPU-hours 0 [CPU stage]" in out  # ingest
    assert "| #SBATCH --gpus-per-node=1" in out and "'name': 'rlhi-persona'" in out


def test_throughput_table_is_validated(tmp_path: Path) -> None:
    table = load_throughput()
    assert set(table["gpus"]) >= {"a100", "h100"}
    bad = yaml.safe_load((Path(__file__).parent.parent / "configs" / "throughput.yaml").read_text())
    bad["gpus"]["h100"]["inference"][8]["decode_tokens_per_s"] = -1
    path = tmp_path / "throughput.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="gpus.h100.inference.8.decode_tokens_per_s"):
        load_throughput(path)


def test_gpu_hour_estimate_scales_with_work_and_hardware() -> None:
    table = load_throughput()
    size = InputSize(conversations=1e6, tokens_per_conversation=1200, source="test")
    model = load_config(["model=llama-3.1-8b-instruct"]).model

    def hours(gpu: str, fraction: float, stage: str = "persona", kind: str = "gpu") -> float | None:
        cfg = load_config([f"cluster={gpu}", "model=llama-3.1-8b-instruct"])
        return estimate_stage(cfg, stage, kind, [model], size, fraction, table).gpu_hours

    assert hours("h100", 1.0) == pytest.approx(2 * hours("h100", 0.5))
    assert hours("a100", 1.0) > 2 * hours("h100", 1.0)
    assert hours("slurm", 1.0) is None  # CPU preset: no GPU rate
    assert hours("h100", 1.0, "ingest", "cpu") == 0.0
    dpo = hours("h100", 1.0, "dpo", "multinode")
    assert dpo is not None and dpo > 0
    # The bundled sample is measured from its bytes; data.max_users caps it.
    capped = input_size(load_config(["data.max_users=10"]), None, table)
    assert capped.conversations == 10 * table["input"]["conversations_per_user"]


def test_job_ids_and_sacct_ranges() -> None:
    assert _expand_range("1-3,7") == [1, 2, 3, 7]
    assert Submission(job_id="42", tasks=(("a",), ("b",))).task_id(1) == "42_1"
    assert Submission(job_id="42", tasks=(("a",),), array=False).task_id(0) == "42"


def test_retry_accepts_only_cluster_settings(tmp_path: Path) -> None:
    from rlhi_hpc.config import dump_yaml
    from rlhi_hpc.paths import StagePaths
    from rlhi_hpc.slurm_launch import retry_config

    paths = StagePaths(tmp_path)
    paths.config.write_text(dump_yaml(load_config(["cluster=slurm"])))
    assert retry_config(paths, ["cluster.time_min=7", "out=x", "stage=persona"]).cluster.time_min == 7
    assert retry_config(paths, ["cluster=h100"]).cluster.gpus_per_node == 8
    with pytest.raises(ConfigError, match="'persona.max_new_tokens'"):
        retry_config(paths, ["persona.max_new_tokens=3"])


def test_task_resources_defaults() -> None:
    res = TaskResources(nodes=2, tasks_per_node=4, gpus_per_node=4)
    assert (res.gpus, res.ranks) == (8, 8)


def test_status_picks_the_telling_error_line_of_a_log(tmp_path: Path) -> None:
    from rlhi_hpc.status import last_error_line

    log = tmp_path / "task.err"
    log.write_text("2026-01-01 INFO rlhi_hpc.worker event=shard_done shard=00000\n"
                   "2026-01-01 ERROR rlhi_hpc.worker event=shard_failed shard=00001 error=StageError('no input')\n"
                   "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "rlhi_hpc.errors.ShardError: stage classify: shards ['00001'] failed\n"
                   "srun: error: vm: task 0: Exited with exit code 1\n")
    assert "event=shard_failed" in last_error_line(log)
    log.write_text("loading\n"
                   "slurmstepd: error: *** JOB 7 ON vm CANCELLED AT 2026-01-01T00:01:00 DUE TO TIME LIMIT ***\n"
                   "srun: error: vm: task 0: Exited with exit code 1\n")
    assert "DUE TO TIME LIMIT" in last_error_line(log)
    log.write_text("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\nsrun: error: task 0: Killed\n")
    assert last_error_line(log).startswith("RuntimeError: CUDA out of memory")
    assert last_error_line(tmp_path / "missing.err") == ""
