"""The reflogp and dpo stages on their protocol: cached reference values, training, the model eval reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dpo_helpers import make_pairs, run_config

from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import dumps, read_jsonl
from rlhi_hpc.shards import ShardWriter, plan_shards, read_json, write_manifest
from rlhi_hpc.stage import StageContext
from rlhi_hpc.stages.dpo import DPOStage
from rlhi_hpc.stages.reflogp import RefLogpStage

OVERRIDES = ("data.num_shards=2", "dpo.max_length=96", "dpo.global_batch_size=4", "dpo.max_tokens_per_microbatch=256",
             "dpo.max_steps=3", "dpo.checkpoint_every=2", "dpo.lr=1e-3", "dpo.zero_stage=0")


def _run_stage(stage, ctx: StageContext, n_shards: int) -> list[dict]:  # noqa: ANN001
    write_manifest(ctx.paths, stage=stage.name, stage_hash=ctx.stage_hash, shards=plan_shards(n_shards),
                   upstream={k: str(v.root) for k, v in ctx.upstream.items()})
    markers = []
    for shard in stage.plan(ctx.cfg):
        writer = ShardWriter(ctx.paths, shard.id, stage=stage.name, stage_hash=ctx.stage_hash)
        markers.append(writer.finish(stage.run_shard(ctx, shard, writer)))
    return markers


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("runs") / "stages"
    cfg = run_config(tiny_model_dir, *OVERRIDES)
    pairs = StagePaths(root / "pairs-p")
    write_manifest(pairs, stage="pairs", stage_hash="p", shards=plan_shards(2), upstream={})
    all_pairs = make_pairs(10, seed=5)
    for i, sid in enumerate(("00000", "00001")):
        w = ShardWriter(pairs, sid, stage="pairs", stage_hash="p")
        w.commit(all_pairs[i::2], consumed=5)
        w.finish()
    return {"root": root, "cfg": cfg, "pairs": pairs, "all_pairs": all_pairs}


def _reflogp(runs: dict, cfg, name: str) -> tuple[StageContext, list[dict]]:  # noqa: ANN001
    ctx = StageContext(cfg=cfg, stage="reflogp", stage_hash=name, paths=StagePaths(runs["root"] / f"reflogp-{name}"),
                       upstream={"pairs": runs["pairs"]})
    return ctx, _run_stage(RefLogpStage(), ctx, 2)


def test_reflogp_writes_the_shared_cache_and_reuses_it_across_sweep_points(runs) -> None:  # noqa: ANN001
    ctx, markers = _reflogp(runs, runs["cfg"], "a")
    assert [m["pairs"] for m in markers] == [5, 5] and not any(m["cache_hit"] for m in markers)
    cache_dir = runs["root"].parent / "reflogp_cache"
    assert {Path(m["cache"]).parent for m in markers} == {cache_dir}
    rows = [r for sid in ("00000", "00001") for r in read_jsonl(ctx.paths.out(sid))]
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in runs["all_pairs"])
    assert all(r["chosen_logp"] < 0 and r["rejected_logp"] < 0 for r in rows)
    beta = dataclasses.replace(runs["cfg"], dpo=dataclasses.replace(runs["cfg"].dpo, beta=0.5))
    _, again = _reflogp(runs, beta, "b")
    assert all(m["cache_hit"] for m in again) and [m["cache"] for m in again] == [m["cache"] for m in markers]
    runs["reflogp"] = ctx.paths


def test_dpo_stage_trains_and_leaves_the_model_where_eval_reads_it(runs) -> None:  # noqa: ANN001
    if "reflogp" not in runs:
        _reflogp(runs, runs["cfg"], "a")
        runs["reflogp"] = StagePaths(runs["root"] / "reflogp-a")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = StageContext(cfg=runs["cfg"], stage="dpo", stage_hash="d", paths=StagePaths(runs["root"] / "dpo-d"),
                       upstream={"pairs": runs["pairs"], "reflogp": runs["reflogp"]})
    (marker,) = _run_stage(DPOStage(), ctx, 1)
    assert marker["train"]["steps"] == 3 and marker["counts"]["steps"] == 3
    model_dir = ctx.paths.root / "model"
    AutoModelForCausalLM.from_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).chat_template
    metrics = [r for r in read_jsonl(ctx.paths.root / "train" / "metrics.jsonl")]
    assert [r["step"] for r in metrics] == [1, 2, 3]
    assert (ctx.paths.root / "train" / "checkpoints" / "step_00000002" / "meta.json").is_file()
    assert read_json(ctx.paths.done("00000"))["model"] == str(model_dir)
    assert dumps(marker)  # JSON-able done marker
