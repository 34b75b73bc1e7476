"""pairs: DPO preference pairs from rewrites and scored candidates, quality-filtered and deduplicated.

* **rewrites** (``RewritePair``) become pairs as they are: chosen = the rewrite, rejected = the
  regenerated original; ``margin`` is None.
* **rewards** (``ScoredCandidates``) give best vs worst per prompt (the first candidate wins ties
  within best or worst). Dropped, with the reason counted: ``tie`` (best - worst <= tie_epsilon),
  ``low_margin`` (margin < pairs.min_margin), ``low_best_score`` (best < pairs.min_best_score).
* every pair: ``identical`` (chosen == rejected after whitespace normalisation), ``empty``,
  ``duplicate_key`` and ``duplicate_content`` (same prompt, chosen and rejected as a kept pair)
  when ``pairs.dedup``; ``mix_excluded`` for a source that ``pairs.mix`` leaves out.

Inputs are read in a fixed order (rewrites, then scored candidates, each in file order), so the
decisions are deterministic; the shard's statistics (kept and dropped by reason and source, margin
histogram) go into its done marker under ``pair_stats``. :func:`summarize` prints them for a stage.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhi_hpc.config import PairsConfig, RunConfig
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Pair, Provenance, RewritePair, ScoredCandidates
from rlhi_hpc.shards import ShardSpec, ShardWriter, done_ids, plan_shards, read_json
from rlhi_hpc.stage import StageContext, chunked

SOURCES = ("rewrites", "rewards")


@dataclass(frozen=True)
class Decision:
    """What happened to one candidate pair: kept (`pair` set) or dropped with `reason`."""

    source: str
    pair: Pair | None
    reason: str = ""
    margin: float | None = None


def _norm(text: str) -> str:
    return " ".join(text.split())


def best_vs_worst(rec: ScoredCandidates) -> tuple[int, int]:
    """Indices of the best and worst candidate (first index on ties)."""
    best = max(range(len(rec.scores)), key=lambda i: (rec.scores[i], -i))
    worst = min(range(len(rec.scores)), key=lambda i: (rec.scores[i], i))
    return best, worst


def _provenance(ctx: StageContext, src: Provenance) -> Provenance:
    return ctx.provenance(models=dict(src.models), user=src.user, conversation_id=src.conversation_id,
                          turn_index=src.turn_index)


def from_rewrite(ctx: StageContext, rec: RewritePair) -> Decision:
    pair = Pair(key=f"rewrites:{rec.key}", prompt=rec.prompt, persona=rec.persona, chosen=rec.chosen,
                rejected=rec.rejected, source="rewrites", margin=None, provenance=_provenance(ctx, rec.provenance))
    return Decision("rewrites", pair)


def from_scores(ctx: StageContext, rec: ScoredCandidates, cfg: PairsConfig) -> Decision:
    if len(rec.scores) < 2:
        return Decision("rewards", None, "too_few_candidates")
    best, worst = best_vs_worst(rec)
    margin = rec.scores[best] - rec.scores[worst]
    if margin <= cfg.tie_epsilon:
        return Decision("rewards", None, "tie", margin)
    if margin < cfg.min_margin:
        return Decision("rewards", None, "low_margin", margin)
    if cfg.min_best_score is not None and rec.scores[best] < cfg.min_best_score:
        return Decision("rewards", None, "low_best_score", margin)
    pair = Pair(key=f"rewards:{rec.key}", prompt=rec.prompt, persona=rec.persona, chosen=rec.texts[best],
                rejected=rec.texts[worst], source="rewards", margin=margin, provenance=_provenance(ctx, rec.provenance))
    return Decision("rewards", pair, margin=margin)


def _content_hash(pair: Pair) -> str:
    blob = json.dumps([list(map(dict, pair.prompt)), _norm(pair.chosen), _norm(pair.rejected)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def decide(ctx: StageContext, rewrites: Iterable[RewritePair], scored: Iterable[ScoredCandidates],
           cfg: PairsConfig) -> list[Decision]:
    """Every input's decision, in input order (deterministic: resume skips a prefix of this list)."""
    raw = [from_rewrite(ctx, r) if cfg.mix in ("both", "rewrites") else Decision("rewrites", None, "mix_excluded")
           for r in rewrites]
    raw += [from_scores(ctx, s, cfg) if cfg.mix in ("both", "rewards") else Decision("rewards", None, "mix_excluded")
            for s in scored]
    seen_keys: set[str] = set()
    seen_content: set[str] = set()
    out: list[Decision] = []
    for d in raw:
        if d.pair is not None:
            reason = _pair_problem(d.pair, cfg, seen_keys, seen_content)
            if reason:
                d = Decision(d.source, None, reason, d.margin)
        out.append(d)
    return out


def _pair_problem(pair: Pair, cfg: PairsConfig, seen_keys: set[str], seen_content: set[str]) -> str:
    if not pair.chosen.strip() or not pair.rejected.strip():
        return "empty"
    if _norm(pair.chosen) == _norm(pair.rejected):
        return "identical"
    if cfg.dedup:
        digest = _content_hash(pair)
        if pair.key in seen_keys:
            return "duplicate_key"
        if digest in seen_content:
            return "duplicate_content"
        seen_keys.add(pair.key)
        seen_content.add(digest)
    return ""


def histogram(values: Iterable[float], bins: Sequence[float]) -> list[int]:
    """Counts per bin; bin i holds bins[i] <= v < bins[i+1] (the first bin also takes smaller values)."""
    counts = [0] * len(bins)
    for v in values:
        counts[max(0, bisect.bisect_right(bins, v) - 1)] += 1
    return counts


def statistics(decisions: Sequence[Decision], cfg: PairsConfig) -> dict[str, Any]:
    """Kept/dropped counts by source and reason, and histograms of the reward margins (kept, and all)."""
    kept = Counter(d.source for d in decisions if d.pair is not None)
    dropped = Counter(d.reason for d in decisions if d.pair is None)
    dropped_by_source = Counter(f"{d.source}:{d.reason}" for d in decisions if d.pair is None)
    margins = [d.margin for d in decisions if d.pair is not None and d.margin is not None]
    every = [d.margin for d in decisions if d.margin is not None]
    return {
        "inputs": {s: sum(1 for d in decisions if d.source == s) for s in SOURCES},
        "kept": {s: kept.get(s, 0) for s in SOURCES},
        "kept_total": sum(kept.values()),
        "dropped": dict(sorted(dropped.items())),
        "dropped_by_source": dict(sorted(dropped_by_source.items())),
        "margin_histogram": {"bins": list(cfg.margin_bins), "counts": histogram(margins, cfg.margin_bins)},
        "margin_histogram_all": {"bins": list(cfg.margin_bins), "counts": histogram(every, cfg.margin_bins)},
        "margin_mean": round(sum(margins) / len(margins), 6) if margins else None,
    }


class PairsStage:
    name = "pairs"
    needs = ("rewrite", "reward")
    sections = ("pairs",)
    kind = "cpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def summary(self, paths: StagePaths) -> str:
        """Pair statistics the launcher prints after a run."""
        return summarize(paths.root)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.pairs
        decisions = decide(ctx, ctx.read_upstream("rewrite", shard, RewritePair),
                           ctx.read_upstream("reward", shard, ScoredCandidates), cfg)
        for chunk in chunked(decisions, cfg.chunk_size, start=writer.consumed):
            counts: Counter = Counter()
            for d in chunk:
                counts[f"kept_{d.source}" if d.pair is not None else f"dropped_{d.reason}"] += 1
            writer.commit([d.pair for d in chunk if d.pair is not None], consumed=len(chunk), counts=dict(counts))
        return {"pair_stats": statistics(decisions, cfg)}


# --------------------------------------------------------------------------------------------
# Summary for the launcher
# --------------------------------------------------------------------------------------------


def aggregate(stage_dir: Path | str) -> dict[str, Any]:
    """`pair_stats` summed over the finished shards of a pairs stage directory."""
    paths = StagePaths(Path(stage_dir))
    total: dict[str, Any] = {"shards": 0, "inputs": Counter(), "kept": Counter(), "dropped": Counter(),
                             "bins": [], "hist": [], "hist_all": []}
    for sid in sorted(done_ids(paths)):
        stats = read_json(paths.done(sid)).get("pair_stats")
        if not stats:
            continue
        total["shards"] += 1
        for key in ("inputs", "kept", "dropped"):
            total[key].update(stats[key])
        total["bins"] = stats["margin_histogram"]["bins"]
        for key, name in (("hist", "margin_histogram"), ("hist_all", "margin_histogram_all")):
            counts = stats[name]["counts"]
            total[key] = [a + b for a, b in zip(total[key] or [0] * len(counts), counts)]
    return total


def summarize(stage_dir: Path | str) -> str:
    """A few lines of pair statistics for a pairs stage directory (finished shards only)."""
    t = aggregate(stage_dir)
    if not t["shards"]:
        return f"pairs: no finished shard with statistics in {stage_dir}"
    kept = sum(t["kept"].values())
    by_source = ", ".join(f"{s} {t['kept'].get(s, 0)}/{t['inputs'].get(s, 0)}" for s in SOURCES)
    lines = [
        f"pairs: kept {kept} of {sum(t['inputs'].values())} ({by_source}) from {t['shards']} shard(s)",
        "dropped: " + (", ".join(f"{r} {n}" for r, n in sorted(t["dropped"].items())) or "none"),
    ]
    edges = [*t["bins"], None]
    for key, label in (("hist", "kept"), ("hist_all", "all")):
        if any(t[key]):
            cells = [f"[{lo:g},{'inf' if hi is None else f'{hi:g}'}):{n}"
                     for lo, hi, n in zip(edges, edges[1:], t[key])]
            lines.append(f"reward margins ({label}): " + " ".join(cells))
    return "\n".join(lines)
