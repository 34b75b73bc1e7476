"""math_feedback: a simulated user's follow-up pointing at the first wrong step of a flawed solution.

For every solution of ``prm_ingest`` with a step rated -1 (:func:`select_flawed`), the policy engine
plays a non-expert user who read the solution and writes the follow-up message about the first
wrong step (``math.feedback_prompt``). An output that is empty, degenerate, too short
(``math.min_feedback_chars``) or that gives the ground-truth answer away (:func:`feedback_check`)
is retried ``math.max_retries`` times and then replaced by ``math.feedback_template``.

Each record is a :class:`~rlhi_hpc.data.prm800k.MathFeedback`: a three-turn conversation (problem,
flawed solution, feedback) that also reads as a :class:`~rlhi_hpc.records.TurnLabel` for turn 2,
labelled ``math.label`` and actionable. With ``inputs: {ingest: math_feedback, classify:
math_feedback}`` (jobs/reasoning_demo.yaml), the persona, rewrite and sample stages read it in place
of the WildChat ingest and classify outputs.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rlhi_hpc.config import MathConfig, RunConfig
from rlhi_hpc.data.prm800k import MathConversation, MathFeedback
from rlhi_hpc.eval.math import answers_match
from rlhi_hpc.inference.engine import SamplingParams
from rlhi_hpc.inference.robust import OutputCheck, check_output, generate_valid
from rlhi_hpc.records import Turn
from rlhi_hpc.shards import ShardSpec, ShardWriter, plan_shards
from rlhi_hpc.stage import StageContext, chunked

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_STEP_REF_RE = re.compile(r"\bsteps?\s*#?\s*\d+", re.IGNORECASE)


def select_flawed(solutions: Sequence[MathConversation]) -> list[MathConversation]:
    """Train-split solutions with a wrong step inside the shown solution, in input order."""
    return [s for s in solutions if s.split == "train" and 0 <= s.first_wrong_step < len(s.steps)]


def wrong_step(sol: MathConversation) -> str:
    """Text of the first wrong step."""
    return sol.steps[sol.first_wrong_step]


def numbered(steps: Sequence[str]) -> str:
    return "\n".join(f"Step {i}: {s.strip()}" for i, s in enumerate(steps, 1))


def feedback_chat(sol: MathConversation, cfg: MathConfig) -> list[dict[str, str]]:
    """The simulated user's chat for one flawed solution."""
    text = cfg.feedback_prompt.format(problem=sol.problem.strip(), solution=numbered(sol.steps),
                                      step=wrong_step(sol).strip(), step_number=sol.first_wrong_step + 1)
    chat = [{"role": "user", "content": text}]
    return ([{"role": "system", "content": cfg.feedback_system_prompt}] if cfg.feedback_system_prompt else []) + chat


def template_feedback(sol: MathConversation, cfg: MathConfig) -> str:
    """The fallback follow-up: the template with the (cut) wrong step."""
    step = " ".join(wrong_step(sol).split())
    if len(step) > cfg.step_max_chars:
        step = step[:cfg.step_max_chars - 3].rstrip() + "..."
    return cfg.feedback_template.format(step=step, step_number=sol.first_wrong_step + 1)


def reveals_answer(text: str, sol: MathConversation) -> bool:
    """True when the feedback states the ground-truth answer, which a non-expert user does not know.

    A number equal to the answer counts only when it appears nowhere in the problem or the solution
    (step references such as "step 2" are not numbers here).
    """
    seen = set(_NUMBER_RE.findall(sol.problem + " " + " ".join(sol.steps)))
    text = _STEP_REF_RE.sub(" ", text)  # "step 2" names a step, it states no value
    return any(answers_match(n, sol.ground_truth) for n in _NUMBER_RE.findall(text) if n not in seen)


def feedback_check(sol: MathConversation, cfg: MathConfig) -> OutputCheck:
    """Output check of a generated follow-up (reason string, or None when usable)."""
    def check(text: str) -> str | None:
        reason = check_output(text)
        if reason:
            return reason
        if len(text.strip()) < cfg.min_feedback_chars:
            return "too_short"
        return "reveals_answer" if reveals_answer(text, sol) else None
    return check


def feedback_record(ctx: StageContext, sol: MathConversation, text: str, source: str, model: str) -> MathFeedback:
    """The three-turn conversation with its actionable label for turn 2."""
    cfg = ctx.cfg.math
    fields = {f.name: getattr(sol, f.name) for f in dataclasses.fields(MathConversation)}
    fields["turns"] = (*sol.turns[:2], Turn(role="user", content=text))
    return MathFeedback(**fields, turn_index=2, label=cfg.label, actionable=True, feedback=text,
                        feedback_source=source, scores={},
                        provenance=ctx.provenance(models={"simulated_user": model} if source == "llm" else {},
                                                  user=sol.user, conversation_id=sol.conversation_id, turn_index=2))


class MathFeedbackStage:
    name = "math_feedback"
    needs = ("prm_ingest",)
    sections = ("model", "math")
    kind = "gpu"

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return plan_shards(cfg.data.num_shards)

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.math
        solutions = list(ctx.read_upstream("prm_ingest", shard, MathConversation))
        flawed = select_flawed(solutions)
        engine = ctx.engine() if flawed else None
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed)
        for chunk in chunked(flawed, cfg.chunk_size, start=writer.consumed):
            outs, stats = generate_valid(engine, [feedback_chat(s, cfg) for s in chunk], params,
                                         max_retries=cfg.max_retries, retry_temperature=max(cfg.temperature, 0.7),
                                         check=[feedback_check(s, cfg) for s in chunk])
            counts: Counter = Counter(stats.counts("feedback_"))
            records = []
            for sol, out in zip(chunk, outs, strict=True):
                if out.ok:
                    records.append(feedback_record(ctx, sol, out.texts[0].strip(), "llm", engine.model_name))
                else:
                    counts[f"template_after_{out.reason}"] += 1
                    records.append(feedback_record(ctx, sol, template_feedback(sol, cfg), "template", ""))
                counts[f"feedback_source_{records[-1].feedback_source}"] += 1
            writer.commit(records, consumed=len(chunk), counts=dict(counts))
        return {"flawed_solutions": len(flawed), "other_solutions": len(solutions) - len(flawed),
                "engine": engine.stats() if engine is not None and hasattr(engine, "stats") else {}}
