"""Inputs shared by the vLLM checks (run in .venv-vllm) and the tests that compare them (main venv)."""

from __future__ import annotations

from typing import Any

from rlhi_hpc.config import ModelConfig
from rlhi_hpc.inference.engine import SamplingParams

CHATS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are a friendly assistant."},
     {"role": "user", "content": "Can you write a short poem about the sea, in a formal style?"}],
    [{"role": "user", "content": "Explain the history of Rome."},
     {"role": "assistant", "content": "Rome was founded a long time ago."},
     {"role": "user", "content": "That is too short, make it longer and more detailed please."}],
    [{"role": "user", "content": "Translate the meeting notes into French, café style."}],
]
#: 12 prompts of ~450 tokens: more than the 4096 prompt tokens vLLM prefills per step on CPU.
LONG_CHATS = [[{"role": "user", "content": f"Request {i}: " + " ".join(
    ("the", "user", "asks", "for", "a", "short", "poem", "about", "the", "sea")[(i + j) % 10] for j in range(440))}]
    for i in range(12)]
CONTINUATIONS = ["Hello! How can I help?", "The sea is wide and deep.", "", "Voici les notes."]
OPTIONS = ["new_request", "continuation", "reattempt_with_feedback", "other"]
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": OPTIONS}, "actionable": {"type": "boolean"}},
    "required": ["label", "actionable"],
    "additionalProperties": False,
}
GREEDY = SamplingParams(max_new_tokens=24, logprobs=True)
SAMPLED = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=12, n=3, seed=7, logprobs=True)
STRUCTURED = SamplingParams(temperature=1.0, max_new_tokens=24, n=3, seed=5)
#: Small context and KV cache: the checks run on 2 CPU cores next to other work.
MAX_MODEL_LEN = 512


def model_config(model_dir: str, *, engine: str) -> ModelConfig:
    """The engine settings both sides use (only ``engine`` differs)."""
    return ModelConfig(name=str(model_dir), engine=engine, max_model_len=MAX_MODEL_LEN, batch_size=4,
                       max_num_seqs=32, kv_cache_memory_gb=0.25, enforce_eager=True)
