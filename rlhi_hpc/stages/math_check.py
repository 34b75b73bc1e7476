"""math_check: keep only the rewrites of flawed solutions whose final answer is the ground truth.

Reads the ``rewrite`` pairs and the ``math_feedback`` records they came from (by conversation id).
A pair whose chosen side (the rewrite) states no final answer (:func:`final_answer`, ``math_check.strict_answer``), or one
that does not match the ground truth (:func:`rlhi_hpc.eval.math.answers_match`) is dropped and
quarantined with reason ``wrong_final_answer``; a pair without its feedback record with
``missing_conversation``. With ``math_check.rejected=original`` (the default) the rejected side of a kept
pair becomes the flawed solution the simulated user pointed at (rewrite that fixes the error ≻ the
flawed solution); ``regenerated`` keeps the rewrite stage's regenerated reply. The output is
:class:`~rlhi_hpc.records.RewritePair` records, so ``pairs`` reads it in place of ``rewrite``
(``inputs: {rewrite: math_check}``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rlhi_hpc.config import RunConfig
from rlhi_hpc.data.prm800k import MathFeedback
import re

from rlhi_hpc.eval.math import answers_match, boxed_contents, extract_answer
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Quarantined, RewritePair
from rlhi_hpc.shards import ShardSpec, ShardWriter, done_ids, plan_shards, read_json
from rlhi_hpc.stage import StageContext, chunked
from rlhi_hpc.stages.sample import quarantine

#: Every reason a rewrite is dropped.
DROP_REASONS = {
    "wrong_final_answer": "the rewrite states no final answer (math_check.strict_answer), or one that does not match "
                          "the ground truth",
    "missing_conversation": "no math_feedback record for the pair's conversation",
}


_ANSWER_HEADING_RE = re.compile(r"#\s*Answer\s*\n+\s*(.+?)\s*$", re.DOTALL)
_STATED_RE = re.compile(r"(?:final answer is|answer is|answer:)", re.IGNORECASE)


def final_answer(text: str, strict: bool = True) -> str | None:
    """The final answer a solution states, or None.

    strict: only a ``\\boxed{}`` answer, a PRM800K-style ``# Answer`` section or an answer phrase
    ("the answer is ...") counts, never a stray last number; otherwise :func:`extract_answer`.
    """
    if not strict:
        return extract_answer(text)
    boxed = boxed_contents(text)
    if boxed:
        return boxed[-1]
    heading = _ANSWER_HEADING_RE.search(text)
    if heading:
        return heading.group(1).strip().strip("$").strip() or None
    return extract_answer(text) if _STATED_RE.search(text) else None


def check_pair(pair: RewritePair, fb: MathFeedback | None, rejected: str, strict: bool = True
               ) -> RewritePair | Quarantined:
    """The kept pair (rejected side per `rejected`), or the quarantined reason it is dropped."""
    ids = {"conversation_id": pair.provenance.conversation_id, "user": pair.provenance.user}
    if fb is None:
        return quarantine(pair.key, "missing_conversation", DROP_REASONS["missing_conversation"], **ids)
    predicted = final_answer(pair.chosen, strict)
    if not answers_match(predicted, fb.ground_truth):
        return quarantine(pair.key, "wrong_final_answer", f"extracted {predicted!r}, ground truth {fb.ground_truth!r}",
                          **ids, chosen=pair.chosen[-500:])
    if rejected == "original":
        return dataclasses.replace(pair, rejected=fb.turns[1].content)
    return pair


def check_pairs(pairs: Iterable[RewritePair], feedback: dict[str, MathFeedback], rejected: str, strict: bool = True
                ) -> tuple[list[RewritePair], list[Quarantined], Counter]:
    kept: list[RewritePair] = []
    dropped: list[Quarantined] = []
    for pair in pairs:
        out = check_pair(pair, feedback.get(pair.provenance.conversation_id), rejected, strict)
        (dropped if isinstance(out, Quarantined) else kept).append(out)
    counts = Counter({"kept": len(kept)}) + Counter(f"dropped_{q.reason}" for q in dropped)
    return kept, dropped, counts


class MathCheckStage:
    name = "math_check"
    needs = ("rewrite", "math_feedback")
    sections = ("math_check",)
    kind = "cpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def summary(self, paths: StagePaths) -> str:
        """Kept and dropped rewrites over the finished shards (printed by the launcher)."""
        total: Counter = Counter()
        for sid in done_ids(paths):
            total.update(read_json(paths.done(sid)).get("counts", {}))
        drops = ", ".join(f"{k[len('dropped_'):]} {v}" for k, v in sorted(total.items()) if k.startswith("dropped_"))
        return (f"math_check: kept {total.get('kept', 0)} of {total.get('records_in', 0)} rewrites; "
                f"dropped: {drops or 'none'}")

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.math_check
        feedback = {f.conversation_id: f for f in ctx.read_upstream("math_feedback", shard, MathFeedback)}
        pairs = list(ctx.read_upstream("rewrite", shard, RewritePair))
        for chunk in chunked(pairs, ctx.cfg.math_check.chunk_size, start=writer.consumed):
            kept, dropped, counts = check_pairs(chunk, feedback, cfg.rejected, cfg.strict_answer)
            writer.commit(kept, dropped, consumed=len(chunk), counts=dict(counts))
        return {}
