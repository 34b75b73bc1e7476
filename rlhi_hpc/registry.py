"""Stage name → implementation. The only place that knows every stage."""

from __future__ import annotations

import importlib

from rlhi_hpc.errors import ConfigError
from rlhi_hpc.stage import Stage

_STAGES: dict[str, str] = {
    "ingest": "rlhi_hpc.stages.ingest:IngestStage",
    "classify": "rlhi_hpc.stages.classify:ClassifyStage",
    "persona": "rlhi_hpc.stages.persona:PersonaStage",
    "rewrite": "rlhi_hpc.stages.rewrite:RewriteStage",
    "sample": "rlhi_hpc.stages.sample:SampleStage",
    "reward": "rlhi_hpc.stages.reward:RewardStage",
    "pairs": "rlhi_hpc.stages.pairs:PairsStage",
    "reflogp": "rlhi_hpc.stages.reflogp:RefLogpStage",
    "dpo": "rlhi_hpc.stages.dpo:DPOStage",
    "eval": "rlhi_hpc.stages.eval:EvalStage",
    "report": "rlhi_hpc.stages.report:ReportStage",
    # The reasoning track (jobs/reasoning_demo.yaml).
    "prm_ingest": "rlhi_hpc.stages.prm_ingest:PrmIngestStage",
    "math_feedback": "rlhi_hpc.stages.math_feedback:MathFeedbackStage",
    "math_check": "rlhi_hpc.stages.math_check:MathCheckStage",
}


def stage_names() -> list[str]:
    return list(_STAGES)


def get_stage(name: str) -> Stage:
    """Instantiate the stage called `name` (its module is imported on demand)."""
    if name not in _STAGES:
        raise ConfigError(f"config key 'stage': got {name!r}; allowed: {', '.join(_STAGES)}, all")
    module, cls = _STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
