"""Entry point of one DPO training run (every rank runs it).

    python -m rlhi_hpc.train.run --config <resolved config.yaml> --pairs <pairs.jsonl ...> \\
        --reflogp <reference cache .json ...> --out <run dir>

    torchrun --nproc_per_node=2 -m rlhi_hpc.train.run ...      # one node, 2 ranks (gloo on CPU)
    srun python -m rlhi_hpc.train.run ...                      # Slurm: RANK etc. from SLURM_* and
                                                               # MASTER_ADDR/MASTER_PORT from the job

``--config`` is a config.yaml written by the launcher (a full RunConfig tree); ``key=value``
arguments after it override single keys (e.g. ``dpo.max_steps=10``). Exit status: 0 when training
finished (``<out>/final`` holds the model), 75 after a checkpoint forced by SIGUSR2/SIGTERM or the
time limit (requeue the job to resume), 2 for a bad config, 1 for any other error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rlhi_hpc.config import RunConfig, build, load_yaml, parse_override, set_dotted
from rlhi_hpc.errors import ConfigError, RlhiError


def load_run_config(path: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A resolved config.yaml (plus optional key=value overrides), validated."""
    tree = load_yaml(path)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(tree, key, value)
    cfg = build(RunConfig, tree)
    cfg.validate()
    return cfg


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rlhi_hpc.train.run", description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="resolved config.yaml")
    ap.add_argument("--pairs", type=Path, nargs="+", required=True, help="Pair JSONL files")
    ap.add_argument("--reflogp", type=Path, nargs="+", required=True,
                    help="reference log-prob cache file(s) (merged)")
    ap.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, final model)")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_run_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return ConfigError.exit_code
    logging.basicConfig(level=getattr(logging, cfg.log_level), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from rlhi_hpc.train.trainer import PREEMPT_EXIT_CODE, Preempted, Trainer

    try:
        Trainer(cfg, args.pairs, args.reflogp, args.out).run()
    except Preempted:
        return PREEMPT_EXIT_CODE
    except RlhiError as exc:
        logging.getLogger(__name__).error("event=train_failed error=%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
