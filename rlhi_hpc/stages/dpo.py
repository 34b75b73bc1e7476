"""dpo: persona-conditioned DPO on the pairs, with the cached reference log-probs.

One shard: the whole training run (:class:`rlhi_hpc.train.trainer.Trainer`), on every rank of a
multi-node task (DeepSpeed; ``dpo.nodes`` x ranks per node) or in one process on a laptop.
Checkpoints, ``metrics.jsonl`` and the DeepSpeed state live in ``<stage>/train/``; the final
Hugging Face model (weights + tokenizer) in ``<stage>/model/``, where eval reads it. A preempted or
timed-out task saves a checkpoint and hands the signal on (submitit requeues it); the requeued task
resumes from that checkpoint, mid-epoch, exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhi_hpc.config import RunConfig
from rlhi_hpc.errors import StageError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import ShardSpec, ShardWriter, done_ids, load_manifest, manifest_shards, plan_shards, read_json
from rlhi_hpc.stage import StageContext


def _finished_shards(paths: StagePaths, stage: str) -> list[str]:
    ids = [s.id for s in manifest_shards(load_manifest(paths))]
    missing = sorted(set(ids) - done_ids(paths))
    if missing:
        raise StageError(f"upstream {stage} has unfinished shards {missing[:5]} ({paths.root}); run "
                         f"`python -m rlhi_hpc.launch stage={stage}` first")
    return ids


def training_inputs(ctx: StageContext) -> tuple[list[Path], list[Path]]:
    """The pairs files and the reference cache files of every upstream shard."""
    pairs_paths = ctx.upstream_paths("pairs")
    pairs = [pairs_paths.out(s) for s in _finished_shards(pairs_paths, "pairs")]
    ref_paths = ctx.upstream_paths("reflogp")
    caches = [read_json(ref_paths.done(s)).get("cache") for s in _finished_shards(ref_paths, "reflogp")]
    return pairs, [Path(c) for c in caches if c]


class DPOStage:
    name = "dpo"
    needs = ("pairs", "reflogp")
    sections = ("model", "dpo")
    kind = "multinode"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(1)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        from rlhi_hpc.train.trainer import Preempted, Trainer

        pairs, caches = training_inputs(ctx)
        trainer = Trainer(ctx.cfg, pairs, caches, ctx.paths.root / "train", final_dir=ctx.paths.root / "model")
        try:
            summary = trainer.run()
        except Preempted as exc:
            trainer.stop.forward()  # submitit's handler requeues the task (and exits) when it is installed
            raise StageError(f"dpo {exc}") from exc
        writer.commit([], consumed=summary["steps"], counts={"steps": summary["steps"],
                                                             "tokens": summary.get("tokens", 0)})
        return {"train": summary, "model": str(ctx.paths.root / "model"),
                "metrics": str(ctx.paths.root / "train" / "metrics.jsonl")}
