"""Shared builders for the DPO training tests: pairs with long-tailed lengths, configs, reference caches."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from rlhi_hpc.records import Pair, Provenance, dumps

WORDS = ("the user asks for a short poem about python code and the assistant writes it clearly with examples "
         "because my friend needs the report for tomorrow please explain the main idea").split()
PROV = Provenance(stage="pairs", config_hash="test", code_version="test")


def _text(rng: random.Random, median: float, sigma: float, cap: int) -> str:
    n = max(1, min(cap, int(rng.lognormvariate(math.log(median), sigma))))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_pairs(n: int, seed: int = 0, *, cap: int = 40, sources: tuple[str, ...] = ("rewrites", "rewards"),
               multi_turn: bool = True) -> list[Pair]:
    """`n` pairs with long-tailed (log-normal) prompt/response lengths, alternating sources."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt: list[dict[str, str]] = [{"role": "user", "content": _text(rng, 8, 0.9, cap)}]
        if multi_turn and i % 3 == 0:
            prompt += [{"role": "assistant", "content": _text(rng, 6, 0.5, cap)},
                       {"role": "user", "content": _text(rng, 4, 0.5, cap)}]
        pairs.append(Pair(key=f"pair-{i:04d}", prompt=tuple(prompt), persona=_text(rng, 5, 0.3, cap) if i % 4 else "",
                          chosen=_text(rng, 10, 1.0, cap), rejected=_text(rng, 10, 1.0, cap),
                          source=sources[i % len(sources)], margin=None, provenance=PROV))
    return pairs


def write_pairs(path: Path, pairs: list[Pair]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dumps(p) + "\n" for p in pairs))
    return path


def run_config(model_dir: Path, *overrides: str) -> Any:
    """A full RunConfig with the tiny model as policy and reference."""
    from rlhi_hpc.config import load_config

    return load_config(["model=tiny", f"model.name={model_dir}", "log_level=WARNING", *overrides])
