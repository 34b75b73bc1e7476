"""ingest: WildChat-format rows → validated conversations grouped by user, time-sorted, split.

Shard i owns the users whose stable hash falls in bucket i (rows whose user cannot be read are
bucketed by their source position, so every malformed row is quarantined by exactly one shard).
Each user's conversations are sorted by time; the most recent `data.target_fraction` of them are
targets, the older ones are persona history. Users are held out for evaluation by stable hash.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from typing import Any

from rlhi_hpc.config import DataConfig, RunConfig
from rlhi_hpc.data.wildchat import (RawRow, filter_reason, is_eval_user, iter_input_rows, parse_row, raw_user,
                                    stable_bucket)
from rlhi_hpc.records import Conversation, Quarantined
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext

log = logging.getLogger(__name__)


def row_bucket(row: RawRow, cfg: DataConfig, seed: int) -> int:
    """The shard of a row: its user's bucket (the same user parse_row reads), else its position."""
    user = raw_user(row, cfg.user_key)
    key = user if user else f"row:{row.source}"
    return stable_bucket(key, cfg.num_shards, seed)


def assign_roles(convs: list[Conversation], target_fraction: float, split: str) -> list[Conversation]:
    """Sort by time; the newest ceil(n * fraction) are targets (at least 1, leaving >= 1 history)."""
    convs = sorted(convs, key=lambda c: (c.timestamp, c.conversation_id))
    n_target = max(1, min(len(convs) - 1, round(len(convs) * target_fraction + 0.4999))) if len(convs) > 1 else 1
    first_target = len(convs) - n_target
    return [dataclasses.replace(c, split=split, role="history" if i < first_target else "target")
            for i, c in enumerate(convs)]


def select_users(users: list[str], cfg: DataConfig, seed: int) -> list[str]:
    """All users, or the per-shard share of `max_users` with the lowest stable hash."""
    users = sorted(users, key=lambda u: (stable_bucket(u, 1 << 30, seed), u))
    if cfg.max_users:
        per_shard = -(-cfg.max_users // cfg.num_shards)
        users = users[:per_shard]
    return users


def read_bucket(cfg: RunConfig, bucket: int, counts: Counter) -> tuple[dict[str, list[Conversation]], list[Quarantined]]:
    """Parse and filter the rows of one bucket; group valid conversations by user."""
    by_user: dict[str, list[Conversation]] = defaultdict(list)
    quarantined: list[Quarantined] = []
    seen: set[tuple[str, str]] = set()  # (user, conversation hash): the hash is a content hash
    for row in iter_input_rows(cfg.data):
        if row_bucket(row, cfg.data, cfg.seed) != bucket:
            continue
        counts["records_in"] += 1
        parsed = parse_row(row, cfg.data)
        if isinstance(parsed, Quarantined):
            quarantined.append(parsed)
            counts[f"quarantine_{parsed.reason}"] += 1
            continue
        if (parsed.user, parsed.conversation_id) in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add((parsed.user, parsed.conversation_id))
        reason = filter_reason(parsed, cfg.data)
        if reason:
            counts[f"dropped_{reason}"] += 1
            continue
        by_user[parsed.user].append(parsed)
    return by_user, quarantined


class IngestStage:
    name = "ingest"
    needs: tuple[str, ...] = ()
    sections = ("data",)
    kind = "cpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg
        if writer.consumed:  # one commit per ingest shard: a bookmark means everything was written
            return {}
        counts: Counter = Counter()
        by_user, quarantined = read_bucket(cfg, shard.index, counts)
        out: list[Conversation] = []
        kept_users = 0
        for user in select_users(list(by_user), cfg.data, cfg.seed):
            convs = by_user[user]
            if len(convs) < cfg.data.min_conversations_per_user:
                counts["dropped_few_conversations"] += len(convs)
                continue
            split = "eval" if is_eval_user(user, cfg.data.eval_fraction, cfg.seed) else "train"
            out.extend(assign_roles(convs, cfg.data.target_fraction, split))
            kept_users += 1
            counts[f"users_{split}"] += 1
        skipped = sum(len(v) for u, v in by_user.items()) - len(out) - counts["dropped_few_conversations"]
        counts["dropped_max_users"] += skipped
        n_in = counts.pop("records_in")
        writer.commit(out, quarantined, consumed=n_in, counts=dict(counts))
        log.info("event=ingest_shard shard=%s rows=%d conversations=%d users=%d quarantined=%d", shard.id, n_in,
                 len(out), kept_users, len(quarantined))
        return {}
