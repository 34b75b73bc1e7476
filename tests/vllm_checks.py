"""Exercise the vLLM engine on one model and write what it returned as JSON.

Runs inside the vLLM environment (``.venv-vllm``, built by ``tests/setup_vllm_venv.sh``); the test
module ``tests/test_vllm_engine.py`` starts it as a subprocess and compares the results with the
transformers engine run in the main environment. One vLLM engine serves every check (vLLM takes
tens of seconds to start on CPU).

    .venv-vllm/bin/python tests/vllm_checks.py MODEL_DIR OUT.json

The ``__main__`` guard is required: vLLM starts its engine in child processes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_cases import (CHATS, CONTINUATIONS, GREEDY, JSON_SCHEMA, LONG_CHATS, OPTIONS,  # noqa: E402
                        SAMPLED, STRUCTURED, model_config)


def _gen(gens: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(g) for g in gens]


def _sampling_checks(engine: Any) -> dict[str, Any]:
    from rlhi_hpc.inference.engine import SamplingParams

    first = engine.generate(CHATS, SAMPLED)
    again = engine.generate(CHATS, SAMPLED)
    alone = engine.generate(CHATS[1:2], SAMPLED)
    other_seed = engine.generate(CHATS, dataclasses.replace(SAMPLED, seed=SAMPLED.seed + 1))
    single = engine.generate(CHATS[:2], SamplingParams(temperature=1.0, max_new_tokens=8, n=1, seed=3))
    # More prompt tokens than one step prefills: seeded requests must not have their prefill split.
    long = engine.generate(LONG_CHATS, SamplingParams(temperature=1.0, max_new_tokens=4, seed=3))
    return {"sampled": _gen(first), "sampled_again": _gen(again), "sampled_alone": _gen(alone),
            "sampled_other_seed": _gen(other_seed), "sampled_n1": _gen(single), "sampled_long": _gen(long)}


def _structured_checks(engine: Any) -> dict[str, Any]:
    choice = engine.generate_structured(CHATS, choices=OPTIONS, params=STRUCTURED)
    schema = engine.generate_structured(CHATS, json_schema=JSON_SCHEMA,
                                        params=dataclasses.replace(STRUCTURED, max_new_tokens=64))
    try:
        engine.generate_structured(CHATS, params=STRUCTURED)
        neither = "no error"
    except ValueError as exc:
        neither = f"ValueError: {exc}"
    return {"choice": _gen(choice), "json": _gen(schema), "neither_error": neither}


def _token_checks(engine: Any) -> dict[str, Any]:
    from rlhi_hpc.errors import PromptTooLongError
    from rlhi_hpc.inference.engine import SamplingParams

    long_chat = [{"role": "user", "content": "word " * (engine.max_model_len + 10)}]
    try:
        engine.generate([CHATS[0], long_chat], SamplingParams(max_new_tokens=4))
        too_long = None
    except PromptTooLongError as exc:
        too_long = list(exc.indices)
    text = CHATS[1][-1]["content"]
    return {
        "prompt_ids": [engine.prompt_ids(chat) for chat in CHATS],
        "fits": [engine.fits(CHATS[0], 8), engine.fits(long_chat, 8)],
        "count_tokens": engine.count_tokens(text),
        "truncate_start": engine.truncate(text, 5, keep="start"),
        "truncate_end": engine.truncate(text, 5, keep="end"),
        "too_long_indices": too_long,
        "stop_ids": sorted(engine.stop_ids),
    }


def run(model_dir: str) -> dict[str, Any]:
    from rlhi_hpc.inference.engine import Engine
    from rlhi_hpc.inference.factory import load_engine

    start = time.perf_counter()
    engine = load_engine(model_config(model_dir, engine="vllm"))
    results: dict[str, Any] = {"startup_seconds": time.perf_counter() - start,
                               "is_engine": isinstance(engine, Engine), "engine_class": type(engine).__name__}
    try:
        results["greedy"] = _gen(engine.generate(CHATS, GREEDY))
        results.update(_sampling_checks(engine))
        results["score"] = engine.score(CHATS, CONTINUATIONS)
        results["choose"] = [dataclasses.asdict(c) for c in engine.choose(CHATS, OPTIONS)]
        results.update(_structured_checks(engine))
        results.update(_token_checks(engine))
        results["stats"] = engine.stats()
    finally:
        engine.close()
    results["seconds"] = time.perf_counter() - start
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = run(argv[0])
    Path(argv[1]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
