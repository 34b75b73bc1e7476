"""Run the shards of one array task inside a stage directory.

This is what every executor ends up calling, and what the rendered ``submit.slurm`` runs::

    python -m rlhi_hpc.worker runs/stages/persona-1a2b3c4d5e6f --shards 00000,00001
    python -m rlhi_hpc.worker runs/stages/persona-1a2b3c4d5e6f --task-index $SLURM_ARRAY_TASK_ID

It reads the stage's resolved ``config.yaml`` and ``manifest.json``, skips shards that already
have a done marker, resumes shards that have a bookmark, and records failures under ``failed/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhi_hpc.config import RunConfig, build, load_yaml
from rlhi_hpc.errors import ShardError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.registry import get_stage
from rlhi_hpc.shards import (FollowerWriter, ShardWriter, load_manifest, manifest_shards, mark_failed, process_rank,
                             read_json)
from rlhi_hpc.stage import StageContext

log = logging.getLogger("rlhi_hpc.worker")


def load_stage_config(paths: StagePaths) -> RunConfig:
    return build(RunConfig, load_yaml(paths.config))


def make_context(paths: StagePaths) -> StageContext:
    """Rebuild a stage's context from what is on disk (config.yaml + manifest.json)."""
    cfg = load_stage_config(paths)
    manifest = load_manifest(paths)
    upstream = {name: StagePaths((paths.root / rel).resolve()) for name, rel in manifest["upstream"].items()}
    return StageContext(cfg=cfg, stage=manifest["stage"], stage_hash=manifest["stage_hash"], paths=paths,
                        upstream=upstream)


def run_task(stage_dir: Path | str, shard_ids: Sequence[str], log_path: str = "") -> dict[str, Any]:
    """Run `shard_ids` of the stage in `stage_dir`; raise ShardError if any of them failed."""
    paths = StagePaths(Path(stage_dir).resolve())
    ctx = make_context(paths)
    stage = get_stage(ctx.stage)
    shards = {s.id: s for s in manifest_shards(load_manifest(paths))}
    summary: dict[str, Any] = {"done": [], "skipped": [], "failed": []}
    try:
        for sid in shard_ids:
            if paths.done(sid).exists():
                summary["skipped"].append(sid)
                continue
            try:
                _run_one(stage, ctx, shards[sid])
                summary["done"].append(sid)
            except Exception as exc:  # noqa: BLE001 - recorded per shard, re-raised below
                log.error("event=shard_failed stage=%s shard=%s rank=%d error=%r", ctx.stage, sid, process_rank(), exc)
                if process_rank() == 0:
                    mark_failed(paths, sid, error=f"{type(exc).__name__}: {exc}",
                                traceback_text=traceback.format_exc(), log_path=log_path)
                summary["failed"].append(sid)
    finally:
        ctx.close()
    if summary["failed"]:
        raise ShardError(f"stage {ctx.stage}: shards {summary['failed']} failed; see {paths.failed_dir}")
    return summary


def _run_one(stage: Any, ctx: StageContext, shard: Any) -> None:
    t0 = time.monotonic()
    if process_rank() != 0:  # multi-rank stages (DPO): every rank trains, rank 0 alone writes
        stage.run_shard(ctx, shard, FollowerWriter())
        return
    writer = ShardWriter(ctx.paths, shard.id, stage=ctx.stage, stage_hash=ctx.stage_hash)
    extra = stage.run_shard(ctx, shard, writer) or {}
    marker = writer.finish(extra)
    c = marker["counts"]
    log.info("event=shard_done stage=%s shard=%s records_in=%d records_out=%d quarantined=%d seconds=%.2f "
             "records_per_s=%.2f tokens_per_s=%s", ctx.stage, shard.id, c["records_in"], c["records_out"],
             c["quarantined"], time.monotonic() - t0, marker["records_per_s"], marker.get("tokens_per_s", "-"))


def task_shards(paths: StagePaths, task_index: int) -> list[str]:
    """Shard ids of array task `task_index` from the stage's latest `tasks.json`."""
    tasks = read_json(paths.root / "tasks.json")["tasks"]
    return list(tasks[task_index])


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhi_hpc.worker", description=__doc__.split("\n")[0])
    parser.add_argument("stage_dir")
    parser.add_argument("--shards", default="", help="comma-separated shard ids")
    parser.add_argument("--task-index", type=int, default=None,
                        help="array task index into tasks.json (default: $SLURM_ARRAY_TASK_ID)")
    args = parser.parse_args(argv)
    setup_logging(os.environ.get("RLHI_LOG_LEVEL", "INFO"))
    paths = StagePaths(Path(args.stage_dir).resolve())
    if args.shards:
        ids = [s for s in args.shards.split(",") if s]
    else:
        index = args.task_index if args.task_index is not None else int(os.environ["SLURM_ARRAY_TASK_ID"])
        ids = task_shards(paths, index)
    try:
        run_task(paths.root, ids, log_path=os.environ.get("RLHI_TASK_LOG", ""))
    except ShardError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
