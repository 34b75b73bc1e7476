"""Launch the demo chain plus eval/report on the stage-test settings (shared by the eval and report tests)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from stage_chain import BASE_ARGS

from rlhi_hpc.config import load_config
from rlhi_hpc.launch import run as launch_run
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.pipeline import JobSpec, load_job, plan_pipeline
from rlhi_hpc.registry import stage_names

CHAIN = ("ingest", "classify", "persona", "rewrite", "sample", "reward", "pairs")
TRAIN = tuple(s for s in ("reflogp", "dpo") if s in stage_names())  # present once the trainer is registered
EVAL_ARGS = ("eval.max_initial_per_user=2", "eval.max_follow_up_per_user=2", "eval.max_new_tokens=12",
             "eval.baseline_persona=never", "eval.bootstrap_samples=200", "eval.chunk_size=3",
             "eval.math_max_new_tokens=12", "eval.max_context_chars=300", "eval.max_answer_chars=300",
             "eval.persona_max_chars=300")


def launch_job(out: Path, stages: Sequence[str], extra: Sequence[str]) -> dict[str, StagePaths]:
    """Launch a pipeline of `stages` (demo overrides, stage-test settings) and return its stage directories."""
    args = [a for a in BASE_ARGS if not a.startswith("job=")] + list(extra) + [f"out={out}"]
    demo = load_job("demo")
    cfg = load_config(args, job_overrides=demo.overrides)
    job = JobSpec(name="demo", description="", stages=tuple(stages), overrides=demo.overrides)
    plan = plan_pipeline(cfg, job)
    assert launch_run(plan, cfg, job, args) == 0
    return {ps.name: ps.paths for ps in plan.stages}


def local_files(folder: Path) -> list[str]:
    """A tiny reference-answer file and a tiny math file; the overrides that point eval at them."""
    alpaca = folder / "alpaca.jsonl"
    alpaca.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Name a primary colour.", "output": "Red."},
        {"instruction": "Say hello in French.", "output": "Bonjour."},
        {"no_instruction": True},
    ]) + "\n")
    math = folder / "math.jsonl"
    math.write_text("\n".join(json.dumps(r) for r in [
        {"problem": "What is 1/2 + 0?", "answer": "0.5"},
        {"question": "2+2?", "choices": ["3", "4"], "answer": "B"},
    ]) + "\n")
    return [f"eval.alpaca_path={alpaca}", f"eval.math_files={{toy: {math}}}"]
