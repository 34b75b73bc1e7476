"""Iterative RLHI: ``rounds=K`` runs the round stages K times, each round on the previous round's model.

    python -m rlhi_hpc.launch job=demo rounds=2 out=runs

Round 1 is the job as it is. In round r >= 2 the stages of ``round_stages`` (default sample, reward,
pairs, reflogp, dpo, eval, report) get ``model.name`` = round r-1's DPO model (``<dpo stage>/model``):
the candidates are sampled from it and DPO starts from it. The reference model is the job's own policy
(``round_reference=base``, set as ``reflogp.model``) or the previous round's model (``previous``); the
eval baseline stays the job's own policy. Every other stage (ingest, classify, persona, rewrite, ...)
keeps the job's config, so every round reads the same, once-computed outputs.

Planning needs no earlier round to have run (round r-1's model folder is known from its plan), each
round is its own pipeline (``<out>/<job>-<hash>``, listed in ``<out>/<job>-rounds-<hash>.json``), and a
relaunch skips finished shards of every round, so it resumes the round in progress.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from rlhi_hpc.config import RunConfig, stable_hash
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.pipeline import JobSpec, Plan, plan_pipeline
from rlhi_hpc.shards import atomic_write_json

log = logging.getLogger(__name__)


def round_config(cfg: RunConfig, previous_model: str) -> RunConfig:
    """The config of the round stages of a round >= 2."""
    base = cfg.model.name
    reference = cfg.reflogp.model or (base if cfg.round_reference == "base" else "")
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, name=previous_model, tokenizer=""),
        reflogp=dataclasses.replace(cfg.reflogp, model=reference),
        eval=dataclasses.replace(cfg.eval, baseline_model=cfg.eval.baseline_model or base),
    )


def plan_rounds(cfg: RunConfig, job: JobSpec) -> list[Plan]:
    """One plan per round; round r's round stages use round r-1's DPO model."""
    unknown = [s for s in cfg.round_stages if s not in job.stages]
    if "dpo" not in job.stages or unknown:
        raise ConfigError(f"config key 'round_stages': {unknown or cfg.round_stages} must be stages of job "
                          f"{job.name!r}, which needs a dpo stage for rounds > 1")
    plans = [plan_pipeline(cfg, job)]
    for _ in range(1, cfg.rounds):
        model_dir = str(plans[-1].get("dpo").paths.root / "model")
        rcfg = round_config(cfg, model_dir)
        plans.append(plan_pipeline(cfg, job, stage_cfg=lambda name, r=rcfg: r if name in cfg.round_stages else cfg))
    return plans


def run_rounds(cfg: RunConfig, job: JobSpec, args: Sequence[str],
               run: Callable[[Plan, RunConfig, JobSpec, Sequence[str]], int]) -> int:
    """Run the rounds in order (each waits for the previous one); stop at the first failure."""
    plans = plan_rounds(cfg, job)
    if not cfg.dry_run:
        index = {"job": job.name, "args": list(args), "rounds": [p.pipeline_id for p in plans]}
        atomic_write_json(plans[0].layout.root / f"{job.name}-rounds-{stable_hash(index['rounds'], 10)}.json", index)
    for r, plan in enumerate(plans, 1):
        print(f"\n# round {r}/{len(plans)}: pipeline {plan.pipeline_id}")
        log.info("event=round_start round=%d rounds=%d pipeline=%s", r, len(plans), plan.pipeline_id)
        rc = run(plan, cfg, job, args)
        if rc != 0:
            print(f"round {r} failed (exit {rc}); relaunch the same command to resume it")
            return rc
    return 0
