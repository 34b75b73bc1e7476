"""The demo chain on the local executors: complete runs, relaunches, and a SIGKILLed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rlhi_hpc.launch import main as launch
from rlhi_hpc.paths import RunLayout, StagePaths
from rlhi_hpc.records import Conversation, Persona, TurnLabel, read_records
from rlhi_hpc.shards import read_json

REPO = Path(__file__).resolve().parent.parent
FAST = ["data.num_shards=2", "data.max_users=16", "persona.max_new_tokens=16", "log_level=WARNING"]
CHAIN = ["job=demo"]


def _stage_dirs(out: Path) -> dict[str, StagePaths]:
    (pipeline,) = RunLayout(out).pipelines()
    info = read_json(pipeline / "pipeline.json")
    return {name: StagePaths(out / rel) for name, rel in info["stages"].items()}


def _outputs(paths: StagePaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(paths.out_dir.glob("*.jsonl"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for stage in ("ingest", "classify", "persona"):
        assert launch([*CHAIN, f"stage={stage}", *FAST, "cluster=inprocess", f"out={out}"]) == 0
    return out


def test_every_stage_complete_with_done_markers(finished_run: Path) -> None:
    dirs = _stage_dirs(finished_run)
    for name in ("ingest", "classify", "persona"):
        paths = dirs[name]
        manifest = read_json(paths.manifest)
        for shard in manifest["shards"]:
            marker = read_json(paths.done(shard["id"]))
            assert marker["stage_hash"] == manifest["stage_hash"]
            assert marker["code_version"] and marker["seconds"] >= 0
        assert (paths.config).exists()


def test_labels_are_always_in_the_taxonomy(finished_run: Path) -> None:
    from rlhi_hpc.config import load_config

    taxonomy = set(load_config([]).classify.taxonomy)
    labels = [r for p in _stage_dirs(finished_run)["classify"].out_dir.glob("*.jsonl")
              for r in read_records(p, TurnLabel)]
    assert labels, "the sample has follow-up turns"
    assert {r.label for r in labels} <= taxonomy
    assert all(set(r.scores) == taxonomy for r in labels)
    assert all(r.provenance.conversation_id == r.conversation_id for r in labels)


def test_persona_reads_only_history_before_cutoff(finished_run: Path) -> None:
    dirs = _stage_dirs(finished_run)
    convs = {c.conversation_id: c for p in dirs["ingest"].out_dir.glob("*.jsonl")
             for c in read_records(p, Conversation)}
    personas = [r for p in dirs["persona"].out_dir.glob("*.jsonl") for r in read_records(p, Persona)]
    assert personas
    for persona in personas:
        user_convs = [c for c in convs.values() if c.user == persona.user]
        targets = [c.timestamp for c in user_convs if c.role == "target"]
        assert persona.cutoff_time == min(targets)
        for cid in persona.conversation_ids:
            assert convs[cid].user == persona.user
            assert convs[cid].timestamp < persona.cutoff_time


def test_relaunch_of_finished_pipeline_touches_nothing(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = {k: v for k, v in _stage_dirs(finished_run).items() if k in ("ingest", "classify", "persona")}
    before = {p: p.stat().st_mtime_ns for d in dirs.values() for p in d.root.rglob("*") if p.is_file()}
    for stage in ("ingest", "classify", "persona"):
        assert launch([*CHAIN, f"stage={stage}", *FAST, "cluster=inprocess", f"out={finished_run}"]) == 0
    after = {p: p.stat().st_mtime_ns for d in dirs.values() for p in d.root.rglob("*") if p.is_file()}
    assert before == after
    assert capsys.readouterr().out.count("complete") >= 3


def test_changed_config_gets_new_stage_dirs(finished_run: Path, tmp_path: Path) -> None:
    from rlhi_hpc.config import load_config
    from rlhi_hpc.pipeline import load_job, plan_pipeline

    job = load_job("demo")
    a = plan_pipeline(load_config([*FAST, f"out={finished_run}"], job_overrides=job.overrides), job)
    b = plan_pipeline(load_config([*FAST, "persona.max_history_tokens=99", f"out={finished_run}"],
                                  job_overrides=job.overrides), job)
    assert a.get("ingest").paths == b.get("ingest").paths  # shared upstream
    assert a.get("persona").paths != b.get("persona").paths
    assert a.pipeline_id != b.pipeline_id


def _launch_proc(out: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlhi_hpc.launch", *CHAIN, *FAST, *extra, f"out={out}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_worker_mid_shard(proc: subprocess.Popen, paths_of: callable, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = paths_of()
        if paths is not None:
            bookmarks = list(paths.progress_dir.glob("*.json")) if paths.progress_dir.exists() else []
            started = [b for b in bookmarks if read_json(b)["consumed"] > 0]
            if started:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    os.kill(child.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return
        if proc.poll() is not None:
            pytest.fail("stage finished before it could be interrupted: " + proc.stdout.read().decode()[-2000:])
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no shard started in time")


def test_sigkill_mid_shard_then_relaunch_equals_uninterrupted(finished_run: Path, tmp_path: Path) -> None:
    """Kill the worker after its first committed chunk; the relaunch finishes with identical output."""
    import shutil

    out = tmp_path / "runs"
    reference = _stage_dirs(finished_run)
    shutil.copytree(reference["ingest"].root, RunLayout(out).root / "stages" / reference["ingest"].root.name)
    args = ["stage=persona", "persona.chunk_size=1", "cluster=local", "cluster.parallelism=1"]
    proc = _launch_proc(out, args)
    target = RunLayout(out).root / "stages" / reference["persona"].root.name

    _kill_worker_mid_shard(proc, lambda: StagePaths(target) if target.exists() else None)
    assert proc.returncode != 0
    persona = StagePaths(target)
    assert len(list(persona.done_dir.glob("*.json"))) < len(read_json(persona.manifest)["shards"])
    assert list(persona.out_dir.glob("*.partial"))  # the interrupted shard left a partial file

    rerun = _launch_proc(out, args)
    log = rerun.communicate(timeout=600)[0].decode()
    assert rerun.returncode == 0, log[-3000:]
    assert _outputs(persona) == _outputs(reference["persona"])
    users = [r.user for p in persona.out_dir.glob("*.jsonl") for r in read_records(p, Persona)]
    assert len(users) == len(set(users))  # no duplicate record
    assert not list(persona.out_dir.glob("*.partial"))
