"""pairs stage: quality filters and their counted reasons, dedup, mix, provenance, resume, summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlhi_hpc.config import PairsConfig, load_config
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Pair, Provenance, RewritePair, ScoredCandidates, from_dict, read_jsonl
from rlhi_hpc.shards import ShardWriter, load_manifest, manifest_shards
from rlhi_hpc.stage import StageContext
from rlhi_hpc.stages.pairs import PairsStage, decide, statistics, summarize
from stage_chain import markers, rows

PROMPT = ({"role": "user", "content": "Plan a weekend in Rome."},)


def prov(turn: int = 0) -> Provenance:
    return Provenance(stage="reward", config_hash="up", code_version="t", models={"policy": "p", "reward": "r"},
                      user="u1", conversation_id="c1", turn_index=turn)


def scored(key: str, scores: tuple[float, ...], texts: tuple[str, ...] | None = None) -> ScoredCandidates:
    texts = texts or tuple(f"answer {i} for {key}" for i in range(len(scores)))
    return ScoredCandidates(key=key, prompt=PROMPT, persona="likes food", texts=texts, scores=scores,
                            persona_visible=True, provenance=prov())


def rewrite(key: str, chosen: str = "better", rejected: str = "worse") -> RewritePair:
    return RewritePair(key=key, prompt=PROMPT, persona="likes food", chosen=chosen, rejected=rejected,
                       feedback="too long", with_feedback=True,
                       provenance=dataclasses.replace(prov(2), stage="rewrite"))


def context(tmp_path: Path, **pairs: object) -> StageContext:
    cfg = load_config([])
    cfg = dataclasses.replace(cfg, pairs=dataclasses.replace(cfg.pairs, **pairs))
    return StageContext(cfg=cfg, stage="pairs", stage_hash="pairshash", paths=StagePaths(tmp_path / "pairs"),
                        upstream={})


def test_filters_count_every_reason(tmp_path: Path) -> None:
    ctx = context(tmp_path, min_margin=0.5, min_best_score=1.0)
    rewrites = [rewrite("a"), rewrite("b", "same  text", "same text"), rewrite("a", "other", "one"),
                rewrite("c", "better", "worse")]
    records = [
        scored("best", (2.0, 0.1, 1.2)),  # kept, margin 1.9
        scored("tie", (1.5, 1.5, 1.5)),
        scored("small", (1.5, 1.2)),  # margin 0.3 < 0.5
        scored("low", (0.9, 0.1)),  # best 0.9 < 1.0
        scored("alone", (3.0,)),
        scored("dup-text", (3.0, 0.0), texts=("answer 0 for best", "answer 1 for best")),  # same content as "best"
        scored("same", (3.0, 0.0), texts=("x y", "x  y")),
    ]
    decisions = decide(ctx, rewrites, records, ctx.cfg.pairs)
    reasons = [d.reason for d in decisions]
    assert reasons == ["", "identical", "duplicate_key", "duplicate_content",
                       "", "tie", "low_margin", "low_best_score", "too_few_candidates", "duplicate_content",
                       "identical"]
    kept = [d.pair for d in decisions if d.pair is not None]
    assert [p.key for p in kept] == ["rewrites:a", "rewards:best"]
    best = kept[1]
    assert best.chosen == "answer 0 for best" and best.rejected == "answer 1 for best"
    assert best.margin == pytest.approx(1.9) and best.source == "rewards" and kept[0].margin is None
    stats = statistics(decisions, ctx.cfg.pairs)
    assert stats["kept"] == {"rewrites": 1, "rewards": 1} and stats["inputs"] == {"rewrites": 4, "rewards": 7}
    assert stats["dropped"] == {"duplicate_content": 2, "duplicate_key": 1, "identical": 2, "low_best_score": 1,
                                "low_margin": 1, "tie": 1, "too_few_candidates": 1}
    bins = stats["margin_histogram"]
    assert bins["bins"] == list(PairsConfig().margin_bins) and bins["counts"] == [0, 0, 0, 0, 1, 0, 0]
    assert stats["margin_histogram_all"]["counts"] == [1, 0, 1, 1, 1, 2, 0]  # every best-vs-worst margin


def test_ties_use_the_first_index_and_tiny_margins_are_ties(tmp_path: Path) -> None:
    ctx = context(tmp_path, tie_epsilon=0.01)
    (d,) = decide(ctx, [], [scored("k", (0.5, 0.504, 0.496))], ctx.cfg.pairs)
    assert d.reason == "tie"
    (d,) = decide(ctx, [], [scored("k", (1.0, 2.0, 2.0, 0.0, 0.0))], ctx.cfg.pairs)
    assert d.pair is not None and d.pair.chosen == "answer 1 for k" and d.pair.rejected == "answer 3 for k"


@pytest.mark.parametrize("mix,kept", [("both", {"rewrites", "rewards"}), ("rewrites", {"rewrites"}),
                                      ("rewards", {"rewards"})])
def test_mix_selects_sources(tmp_path: Path, mix: str, kept: set[str]) -> None:
    ctx = context(tmp_path, mix=mix)
    decisions = decide(ctx, [rewrite("a")], [scored("s", (1.0, 0.0))], ctx.cfg.pairs)
    assert {d.pair.source for d in decisions if d.pair} == kept
    assert {d.reason for d in decisions if not d.pair} <= {"mix_excluded"}


def test_provenance_traces_every_pair(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    decisions = decide(ctx, [rewrite("a")], [scored("s", (1.0, 0.0))], ctx.cfg.pairs)
    for d in decisions:
        p = d.pair.provenance
        assert p.stage == "pairs" and p.config_hash == "pairshash" and p.code_version
        assert (p.user, p.conversation_id) == ("u1", "c1") and p.models == {"policy": "p", "reward": "r"}
    assert [d.pair.provenance.turn_index for d in decisions] == [2, 0]


@pytest.fixture(scope="module")
def paired(stage_chain) -> dict[str, StagePaths]:  # noqa: ANN001
    return stage_chain.run("ingest", "classify", "persona", "rewrite", "sample", "reward", "pairs")


def test_pairs_end_to_end_with_provenance_on_every_pair(paired: dict[str, StagePaths]) -> None:
    pairs = [from_dict(Pair, r) for r in rows(paired["pairs"])]
    sources = {p.source for p in pairs}
    assert sources == {"rewrites", "rewards"}
    stage_hash = load_manifest(paired["pairs"])["stage_hash"]
    convs = {r["conversation_id"]: r for r in rows(paired["ingest"])}
    for p in pairs:
        prov_ = p.provenance
        assert prov_.stage == "pairs" and prov_.config_hash == stage_hash and prov_.code_version
        assert prov_.user and prov_.conversation_id in convs and convs[prov_.conversation_id]["user"] == prov_.user
        assert prov_.turn_index >= 0 and prov_.models["policy"] == "tiny"
        assert ("rewriter" in prov_.models) == (p.source == "rewrites")
        assert ("reward" in prov_.models) == (p.source == "rewards")
        assert p.chosen != p.rejected and p.persona and p.prompt[-1]["role"] == "user"
        assert (p.margin is None) == (p.source == "rewrites")
    assert len({p.key for p in pairs}) == len(pairs)
    for m in markers(paired["pairs"]):
        stats = m["pair_stats"]
        assert m["counts"]["records_out"] == stats["kept_total"]
        assert m["counts"]["records_in"] == sum(stats["inputs"].values())
        assert sum(stats["margin_histogram"]["counts"]) == stats["kept"]["rewards"]
    text = summarize(paired["pairs"].root)
    assert text.startswith(f"pairs: kept {len(pairs)} of ") and "dropped:" in text


def test_min_margin_filter_end_to_end(stage_chain, paired: dict[str, StagePaths]) -> None:  # noqa: ANN001
    dirs = stage_chain.run("pairs", extra=["pairs.min_margin=1000", "pairs.mix=rewards"])
    assert not rows(dirs["pairs"])
    dropped = sum(m["pair_stats"]["dropped"].get("low_margin", 0) + m["pair_stats"]["dropped"].get("tie", 0)
                  for m in markers(dirs["pairs"]))
    assert dropped == len(rows(paired["reward"]))
    assert "low_margin" in summarize(dirs["pairs"].root)


def test_resumed_shard_equals_uninterrupted(paired: dict[str, StagePaths], tmp_path: Path) -> None:
    """A pairs shard killed after its first chunk resumes with no duplicate and no lost pair."""
    from stage_chain import rerun_shard

    class Crash(Exception):
        pass

    ctx = rerun_shard(paired["pairs"], tmp_path / "whole", pairs={"chunk_size": 3})
    expected = ctx.paths.out(manifest_shards(load_manifest(paired["pairs"]))[0].id).read_text()
    resumed = dataclasses.replace(ctx, paths=StagePaths(tmp_path / "resumed"))
    shard = manifest_shards(load_manifest(paired["pairs"]))[0]
    writer = ShardWriter(resumed.paths, shard.id, stage="pairs", stage_hash="rerun")
    real_commit = writer.commit

    def commit_then_die(*args: object, **kwargs: object) -> None:
        real_commit(*args, **kwargs)
        raise Crash

    writer.commit = commit_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        PairsStage().run_shard(resumed, shard, writer)
    writer = ShardWriter(resumed.paths, shard.id, stage="pairs", stage_hash="rerun")
    assert writer.consumed == 3
    writer.finish(PairsStage().run_shard(resumed, shard, writer))
    assert resumed.paths.out(shard.id).read_text() == expected
    assert len(list(read_jsonl(resumed.paths.out(shard.id)))) == expected.count("\n")
