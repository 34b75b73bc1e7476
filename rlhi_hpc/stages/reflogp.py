"""reflogp: reference log-probs of every DPO pair, once, cached by content.

One shard per pairs shard (a forward pass of the reference model, ``reflogp.model`` or the
policy). The values go to the content-addressed cache ``<out>/reflogp_cache/<key>.json`` (or
``reflogp.cache_dir``), shared by every sweep point that has the same reference model, rendering
(``dpo.system_prompt``, ``dpo.persona``, ``dpo.max_length``...) and pairs: a β or loss sweep
computes them once. The shard output also lists them (``{key, chosen_logp, rejected_logp}`` per
pair) and the done marker names the cache file the dpo stage reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhi_hpc.config import RunConfig
from rlhi_hpc.records import Pair
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext


def cache_dir(ctx: StageContext) -> Path:
    """reflogp.cache_dir, else <out>/reflogp_cache next to the stages/ folder."""
    if ctx.cfg.reflogp.cache_dir:
        return Path(ctx.cfg.reflogp.cache_dir).expanduser()
    return ctx.paths.root.parent.parent / "reflogp_cache"


class RefLogpStage:
    name = "reflogp"
    needs = ("pairs",)
    sections = ("model", "reflogp", "dpo")  # dpo: rendering and max_length; the cache key is finer
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        from rlhi_hpc.train.reference import ensure_reference_cache, read_cache

        pairs = list(ctx.read_upstream("pairs", shard, Pair))
        if not pairs:
            writer.commit([], consumed=0)
            return {"cache": None, "pairs": 0, "cache_hit": False}
        folder = cache_dir(ctx)
        before = set(folder.glob("*.json")) if folder.is_dir() else set()
        path = ensure_reference_cache(ctx.cfg, pairs, folder)
        values = read_cache(path)
        rows = [{"key": p.key, "chosen_logp": values[p.key][0], "rejected_logp": values[p.key][1]} for p in pairs]
        writer.commit(rows, consumed=len(pairs), counts={"pairs": len(pairs)})
        return {"cache": str(path), "pairs": len(pairs), "cache_hit": path in before}
