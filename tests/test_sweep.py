"""Sweeps: grid expansion, ids and dedup, shared upstream stage directories, relaunch skips finished points."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import rlhi_hpc.launch as launcher
from rlhi_hpc.config import JOBS_DIR
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.pipeline import load_job
from rlhi_hpc.shards import read_json
from rlhi_hpc.sweep import SweepSpec, expand_grid, load_sweep, plan_points, point_id, run_sweep, sweep_file

EVAL_ARGS = ("eval.max_initial_per_user=1", "eval.max_follow_up_per_user=1", "eval.max_new_tokens=8",
             "eval.bootstrap_samples=100", "eval.max_context_chars=200", "eval.max_answer_chars=200",
             "eval.persona_max_chars=200")


def test_expand_dedupes_equal_values() -> None:
    grid = expand_grid({"dpo.beta": [0.1, 0.10, "0.1", 0.3], "dpo.persona": [True, "true", False]})
    assert grid == [{"dpo.beta": 0.1, "dpo.persona": True}, {"dpo.beta": 0.1, "dpo.persona": False},
                    {"dpo.beta": 0.3, "dpo.persona": True}, {"dpo.beta": 0.3, "dpo.persona": False}]


def test_point_ids_come_from_the_overrides() -> None:
    assert point_id({"a": 1, "b": "x"}) == point_id({"b": "x", "a": 1})  # order does not matter
    assert point_id({"dpo.beta": 0.1}) == point_id({"dpo.beta": "0.10"})  # written forms are normalised
    assert point_id({"dpo.beta": 0.1}) != point_id({"dpo.beta": 0.2})
    assert point_id({"dpo.mix": {"rewrites": 1.0}}).startswith("p-")


def test_shipped_sweep_specs() -> None:
    demo = load_sweep("sweep_demo")
    assert demo.base_job == "demo" and len(expand_grid(demo.axes)) == 4
    real = load_sweep("sweep_beta_mix")
    assert len(expand_grid(real.axes)) == 4 * 3 * 2
    assert set(real.axes) == {"dpo.beta", "pairs.mix", "dpo.persona"}
    with pytest.raises(ConfigError, match="no 'sweep:' section"):
        load_sweep("demo")


def test_upstream_directories_are_shared_across_points(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    chain = ["ingest", "classify", "persona", "rewrite", "sample", "reward", "pairs", "eval"]  # no dpo
    (jobs / "base.yaml").write_text(yaml.safe_dump({"stages": chain, "overrides": {}}))
    spec = SweepSpec(name="mix", description="", base_job="base", axes={"pairs.mix": ["rewrites", "rewards", "both"],
                     "eval.temperature": [0.5, 0.7]}, stages=("pairs", "eval"), overrides={})
    points = plan_points(spec, [f"out={tmp_path}"], jobs)
    dirs: dict[str, set[Path]] = {}
    for p in points:
        for ps in p.plan.stages:
            dirs.setdefault(ps.name, set()).add(ps.paths.root)
    assert len(points) == 6
    assert all(len(dirs[s]) == 1 for s in ("ingest", "classify", "persona", "rewrite", "sample", "reward"))
    assert len(dirs["pairs"]) == 3
    assert len(dirs["eval"]) == 2  # without a dpo stage, eval reads ingest and persona only: pairs.mix is moot


def test_cli_sweep_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = launcher.main(["sweep=sweep_demo", "dry_run=true", f"out={tmp_path}"])
    captured = capsys.readouterr()
    if "dpo" in load_job("demo").stages:
        assert rc == 0 and captured.out.count(" [to run] ") == 4
        assert not (tmp_path / "sweeps").exists()  # a dry run writes nothing
    else:  # until the demo job has a dpo stage, the spec is rejected before anything is written
        assert rc == 2 and "'dpo'" in captured.err


def test_real_grid_shares_upstream_directories(tmp_path: Path) -> None:
    spec = load_sweep("sweep_beta_mix")
    base = load_job(spec.base_job)
    if not {"dpo", "eval"} <= set(base.stages):
        pytest.skip(f"job {spec.base_job} has no dpo/eval stage yet ({', '.join(base.stages)})")
    points = plan_points(spec, [f"out={tmp_path}"])
    assert len(points) == 24
    dirs: dict[str, set[Path]] = {}
    for p in points:
        for ps in p.plan.stages:
            dirs.setdefault(ps.name, set()).add(ps.paths.root)
    for shared in ("ingest", "classify", "persona", "rewrite", "sample", "reward"):
        assert len(dirs[shared]) == 1, shared  # one directory for all 24 points
    assert len(dirs["pairs"]) == 3  # one per data mix
    assert len(dirs["dpo"]) == len(dirs["eval"]) == 24


@pytest.fixture()
def mini_jobs(tmp_path: Path) -> Path:
    """A base job (ingest, persona, eval, report) and a sweep with a duplicate value and a no-op axis."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    demo = load_job("demo")
    (jobs / "mini.yaml").write_text(yaml.safe_dump({
        "description": "mini", "stages": ["ingest", "persona", "eval", "report"], "overrides": demo.overrides}))
    (jobs / "mini_sweep.yaml").write_text(yaml.safe_dump({
        "description": "2 distinct points out of 6 combinations",
        # 0.6 == 0.60; eval.chunk_size does not change outputs, so its points collapse by stage hashes.
        "sweep": {"base_job": "mini", "axes": {"eval.temperature": [0.6, 0.60, 1.0], "eval.chunk_size": [4, 8]},
                  "stages": ["eval"]},
        "overrides": {}}))
    return jobs


def test_sweep_runs_shares_upstream_and_skips_finished_points(stage_chain, mini_jobs: Path,  # noqa: ANN001
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from stage_chain import BASE_ARGS

    out = stage_chain.out
    args = [a for a in BASE_ARGS if not a.startswith("job=")] + [*EVAL_ARGS, "sweep=mini_sweep", f"out={out}"]
    assert run_sweep(args, launcher=launcher, jobs_dir=mini_jobs) == 0
    first = capsys.readouterr().out
    info = read_json(sweep_file(out, "mini_sweep"))
    points = info["points"]
    assert len(points) == 2 and [len(p["aliases"]) for p in points] == [1, 1]
    assert {p["overrides"]["eval.temperature"] for p in points} == {0.6, 1.0}
    assert points[0]["stages"]["ingest"] == points[1]["stages"]["ingest"]  # shared upstream directories
    assert points[0]["stages"]["persona"] == points[1]["stages"]["persona"]
    assert points[0]["stages"]["eval"] != points[1]["stages"]["eval"]
    for p in points:
        assert (out / p["pipeline_id"] / "pipeline.json").exists()
        assert read_json(out / p["stages"]["eval"] / "done" / "00000.json")["stage"] == "eval"
    report = Path(first.strip().splitlines()[-1].removeprefix("report: "))
    text = report.read_text()
    beta = text.split("## Win rate against β per data mix", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {p['id']} |" in beta for p in points)  # one row per grid point

    evals = [out / p["stages"]["eval"] / "done" / "00000.json" for p in points]
    stamps = [m.stat().st_mtime_ns for m in evals]
    assert run_sweep(args, launcher=launcher, jobs_dir=mini_jobs) == 0
    again = capsys.readouterr().out
    assert again.count("finished, skipped") == 2
    assert [m.stat().st_mtime_ns for m in evals] == stamps  # nothing recomputed
    assert f"report: {report}" in again


@pytest.mark.slow
def test_sweep_demo_grid_on_cpu(stage_chain, tmp_path: Path,  # noqa: ANN001
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped 2x2 sweep (beta x persona) end to end on the tiny model: one report row per grid point."""
    from eval_chain import CHAIN
    from stage_chain import BASE_ARGS

    demo = load_job("demo")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    stages = [*CHAIN, "reflogp", "dpo", "eval", "report"]  # the demo pipeline, whatever jobs/demo.yaml lists now
    (jobs / "demo.yaml").write_text(yaml.safe_dump({"description": "demo", "stages": stages,
                                                    "overrides": demo.overrides}))
    (jobs / "sweep_demo.yaml").write_text((JOBS_DIR / "sweep_demo.yaml").read_text())
    out = stage_chain.out
    args = [a for a in BASE_ARGS if not a.startswith("job=")] + [*EVAL_ARGS, "sweep=sweep_demo", f"out={out}"]
    assert run_sweep(args, launcher=launcher, jobs_dir=jobs) == 0
    printed = capsys.readouterr().out
    points = read_json(sweep_file(out, "sweep_demo"))["points"]
    assert len(points) == 4
    for shared in ("ingest", "classify", "persona", "rewrite", "sample", "reward", "pairs"):
        assert len({p["stages"][shared] for p in points}) == 1, shared
    assert len({p["stages"]["dpo"] for p in points}) == len({p["stages"]["eval"] for p in points}) == 4
    report = Path(printed.strip().splitlines()[-1].removeprefix("report: "))
    text = report.read_text()
    beta = text.split("## Win rate against β per data mix", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in beta.splitlines() if ln.startswith("| p-")]
    assert sorted(r.split(" | ")[0][2:] for r in rows) == sorted(p["id"] for p in points)  # one row per point
    assert (report.parent / "winrate_vs_beta.png").exists() and (report.parent / "dpo_curves.png").exists()
