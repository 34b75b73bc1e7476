"""prm_ingest: PRM800K-format step-labelled solutions → conversations (problem, solution) with labels.

The reasoning track's ``ingest``: every valid row becomes a :class:`~rlhi_hpc.data.prm800k.MathConversation`
(a :class:`~rlhi_hpc.records.Conversation` whose user turn is the problem and whose assistant turn
is the model's solution, plus the ground-truth answer, the steps, their ratings and the first wrong
step). Each solution is its own "user" (there is no user history in PRM800K). Shard i owns the
solutions whose id falls in bucket i (damaged rows: by position), so every row is read by exactly one
shard. Damaged rows are quarantined with their reason; ``bad_problem`` / ``give_up`` rows and
duplicates are counted (``dropped_<reason>``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import Any

from rlhi_hpc.config import RunConfig
from rlhi_hpc.data.prm800k import MathConversation, drop_reason, iter_prm_rows, parse_prm_row
from rlhi_hpc.data.wildchat import is_eval_user, stable_bucket
from rlhi_hpc.records import Quarantined
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext

log = logging.getLogger(__name__)


def read_prm_bucket(cfg: RunConfig, bucket: int, counts: Counter) -> tuple[list[MathConversation], list[Quarantined]]:
    """The valid, kept solutions of one bucket (file order) and its quarantined rows."""
    kept: list[MathConversation] = []
    quarantined: list[Quarantined] = []
    seen: set[str] = set()
    for row in iter_prm_rows(cfg.math.path):
        parsed = parse_prm_row(row)
        key = parsed.conversation_id if isinstance(parsed, MathConversation) else f"row:{row.source}"
        if stable_bucket(key, cfg.data.num_shards, cfg.seed) != bucket:
            continue
        counts["records_in"] += 1
        if isinstance(parsed, Quarantined):
            quarantined.append(parsed)
            counts[f"quarantine_{parsed.reason}"] += 1
            continue
        reason = "duplicate" if parsed.conversation_id in seen else drop_reason(parsed)
        seen.add(parsed.conversation_id)
        if reason:
            counts[f"dropped_{reason}"] += 1
            continue
        split = "eval" if is_eval_user(parsed.user, cfg.data.eval_fraction, cfg.seed) else "train"
        counts[f"solutions_{'with' if parsed.first_wrong_step >= 0 else 'without'}_wrong_step"] += 1
        kept.append(dataclasses.replace(parsed, split=split))
    return kept, quarantined


class PrmIngestStage:
    name = "prm_ingest"
    needs: tuple[str, ...] = ()
    sections = ("data", "math")
    kind = "cpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        if writer.consumed:  # one commit per shard: a bookmark means everything was written
            return {}
        counts: Counter = Counter()
        kept, quarantined = read_prm_bucket(ctx.cfg, shard.index, counts)
        n_in = counts.pop("records_in")
        writer.commit(kept, quarantined, consumed=n_in, counts=dict(counts))
        log.info("event=prm_ingest_shard shard=%s rows=%d solutions=%d quarantined=%d", shard.id, n_in, len(kept),
                 len(quarantined))
        return {}
