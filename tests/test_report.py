"""The report: rendered from a finished demo-like run, from hand-made sweep inputs, and with inputs missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from eval_chain import CHAIN, EVAL_ARGS, TRAIN, launch_job, local_files

from rlhi_hpc.config import load_config
from rlhi_hpc.eval.report import RunInfo, build_report
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import atomic_write_json

SECTIONS = ("## Runs", "## UserEval win rates", "## Win rate against reference answers",
            "## Math accuracy", "## Win rate against β per data mix", "## Pair statistics per source and filter",
            "## DPO training", "## Throughput and GPU-hours per stage")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n## ", 1)[0]


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def test_report_from_a_finished_demo_like_run(stage_chain,  # noqa: ANN001
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    files = local_files(tmp_path_factory.mktemp("bench"))
    dirs = launch_job(stage_chain.out, (*CHAIN, *TRAIN, "eval", "report"), [*EVAL_ARGS, *files])
    report = dirs["report"].root / "report.md"
    text = report.read_text()
    for title in SECTIONS:
        assert title in text
    for turn in ("### Initial turns", "### Follow-up turns", "### All turns"):
        assert turn in section(text, "## UserEval win rates")
    for title in ("## UserEval win rates", "## Win rate against reference answers", "## Math accuracy",
                  "## Pair statistics per source and filter", "## Throughput and GPU-hours per stage"):
        body = section(text, title)
        assert "|---|" in body and "not available" not in body, title  # a real Markdown table
    if "dpo" in TRAIN:
        assert "|---|" in section(text, "## DPO training") and is_png(dirs["report"].root / "dpo_curves.png")
    else:
        assert "not available" in section(text, "## DPO training")
    pngs = [p for p in dirs["report"].root.glob("*.png") if is_png(p)]
    assert len(pngs) >= 2
    for name in ("winrates.csv", "pairs.csv", "throughput.csv", "alpaca.csv", "math.csv"):
        assert (dirs["report"].root / name).stat().st_size > 0
    assert "- [winrates.png](winrates.png)" in text


# --------------------------------------------------------------------------------------------
# Hand-made inputs: two sweep points with DPO metrics, shared pairs
# --------------------------------------------------------------------------------------------


def make_stage(root: Path, name: str, tag: str, config: dict[str, Any], markers: dict[str, dict[str, Any]],
               outputs: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    paths = StagePaths(root / "stages" / f"{name}-{tag}")
    paths.make_dirs()
    atomic_write_json(paths.manifest, {"stage": name, "stage_hash": tag,
                                       "shards": [{"id": s, "index": i, "meta": {}} for i, s in enumerate(markers)]})
    paths.config.write_text(yaml.safe_dump(config))
    for sid, rows in (outputs or {}).items():
        paths.out(sid).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for sid, extra in markers.items():
        base = {"stage": name, "shard": sid, "seconds": 10.0, "counts": {"records_in": 4, "records_out": 4}}
        atomic_write_json(paths.done(sid), {**base, **extra})
    return paths.root


def verdict(cmp: str, turn: str, outcome: str) -> dict[str, Any]:
    return {"task": "usereval", "comparison": cmp, "turn_type": turn, "candidate": "candidate",
            "candidate_model": "m", "outcomes": {"overall": outcome, "personalization": outcome}}


def sweep_point(root: Path, label: str, beta: float, wins: int, pairs: Path) -> RunInfo:
    cfg = {"cluster": {"gpus_per_node": 8}, "dpo": {"beta": beta, "nodes": 2, "persona": True},
           "pairs": {"mix": "both"}, "model": {"tensor_parallel_size": 1}}
    dpo = make_stage(root, "dpo", label, cfg, {"00000": {"seconds": 3600.0}})
    (dpo / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 0.69 - 0.01 * s * beta, "margin": 0.1 * s, "accuracy": 0.5, "tokens_per_s": 900})
        + "\n" for s in range(1, 11)))
    rows = [verdict("candidate vs baseline", t, "win" if i < wins else "loss")
            for i in range(10) for t in ("initial", "follow_up")]
    ev = make_stage(root, "eval", label, cfg, {"00000": {"task": "usereval", "models": {"candidate": "m"}}},
                    {"00000": rows})
    return RunInfo(label=label, overrides={"dpo.beta": beta, "pairs.mix": "both"},
                   stages={"pairs": pairs, "dpo": dpo, "eval": ev})


def test_report_of_sweep_points_with_dpo_curves(tmp_path: Path) -> None:
    pairs = make_stage(tmp_path, "pairs", "shared", {}, {"00000": {"pair_stats": {
        "inputs": {"rewrites": 10, "rewards": 20}, "kept": {"rewrites": 9, "rewards": 12},
        "dropped_by_source": {"rewards:low_margin": 8, "rewrites:identical": 1}}}})
    runs = [sweep_point(tmp_path, "p-a", 0.05, 7, pairs), sweep_point(tmp_path, "p-b", 0.2, 4, pairs)]
    cfg = load_config(["report.bootstrap_samples=200"]).report
    text = build_report(runs, tmp_path / "report", cfg).read_text()
    beta = section(text, "## Win rate against β per data mix")
    assert "| p-a | 0.05 | both |" in beta and "| p-b | 0.2 | both |" in beta
    assert "70.0% [" in beta and "40.0% [" in beta
    dpo = section(text, "## DPO training")
    assert "| p-a | 0.05 | 10 |" in dpo and "900" in dpo
    pairs_md = section(text, "## Pair statistics per source and filter")
    assert "| pairs-shared | rewards | 20 | 12 | 60.0% |" in pairs_md and "dropped: low_margin" in pairs_md
    throughput = section(text, "## Throughput and GPU-hours per stage")
    assert "| dpo | dpo-p-a | 1/1 |" in throughput and "| 16 | 16.0 |" in throughput  # 2 nodes x 8 GPUs, 1 hour
    assert throughput.count("pairs-shared") == 1  # a shared directory is counted once
    for name in ("winrates.png", "winrate_vs_beta.png", "dpo_curves.png", "throughput.png"):
        assert is_png(tmp_path / "report" / name), name
    rows = (tmp_path / "report" / "points.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per grid point


def test_missing_inputs_say_not_available(tmp_path: Path) -> None:
    runs = [RunInfo(label="empty", stages={"eval": tmp_path / "stages" / "eval-none"})]
    text = build_report(runs, tmp_path / "report", load_config([]).report).read_text()
    for title in SECTIONS[1:]:
        assert "not available" in section(text, title), title
    assert not list((tmp_path / "report").glob("*.png"))
