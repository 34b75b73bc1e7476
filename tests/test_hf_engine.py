"""The transformers engine on the offline tiny model: generation, sampling, scoring, choice, tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rlhi_hpc.config import ModelConfig
from rlhi_hpc.errors import ConfigError, PromptTooLongError
from rlhi_hpc.inference.engine import Engine, SamplingParams
from rlhi_hpc.inference.hf_engine import TransformersEngine, sample_seed
from rlhi_hpc.inference.models import resolve_model_path

CHATS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are a friendly assistant."},
     {"role": "user", "content": "Can you write a short poem about the sea, in a formal style?"}],
    [{"role": "user", "content": "Write the SQL query."}],
    [{"role": "user", "content": "Explain the history of Rome."},
     {"role": "assistant", "content": "Rome was founded a long time ago."},
     {"role": "user", "content": "That is too short, make it longer and more detailed please."}],
    [{"role": "user", "content": "Translate the meeting notes into French, café style."}],
    [{"role": "user", "content": "Why?"}],
]
SAMPLED = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=12, n=2, seed=7, logprobs=True)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    eng = TransformersEngine.from_config(ModelConfig(name=str(tiny_model_dir), batch_size=4))
    yield eng
    eng.close()


def _clone(engine: TransformersEngine, **changes: object) -> TransformersEngine:
    """Another engine over the same model and tokenizer (batch size, context, stop tokens changed)."""
    kwargs = {"model_name": engine.model_name, "max_model_len": engine.max_model_len,
              "batch_size": engine.batch_size}
    stop_ids = changes.pop("stop_ids", None)
    kwargs.update(changes)
    clone = TransformersEngine(engine.model, engine.tokenizer, **kwargs)
    if stop_ids is not None:
        clone.stop_ids = frozenset(stop_ids)
    return clone


def _manual_logprob(model: torch.nn.Module, prefix: list[int], tokens: list[int]) -> float:
    """Sum of log p(tokens | prefix) from one unpadded forward pass."""
    ids = torch.tensor([prefix + tokens], device=next(model.parameters()).device)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prefix) + j - 1, t]) for j, t in enumerate(tokens))


def test_engine_satisfies_protocol(engine: TransformersEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.tokenizer.convert_tokens_to_ids("<|im_end|>") in engine.stop_ids


def test_greedy_matches_model_generate(engine: TransformersEngine) -> None:
    gens = engine.generate(CHATS, SamplingParams(max_new_tokens=24))
    for chat, gen in zip(CHATS, gens):
        prompt = torch.tensor([engine.prompt_ids(chat)], device=engine.device)
        ref = engine.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    max_new_tokens=24, eos_token_id=sorted(engine.stop_ids),
                                    pad_token_id=engine.pad_id)
        assert list(gen.token_ids[0]) == ref[0, prompt.shape[1]:].tolist()
        assert gen.prompt_tokens == prompt.shape[1]
        assert gen.logprobs is None
        assert gen.finish_reasons[0] == ("stop" if gen.token_ids[0][-1] in engine.stop_ids else "length")


@pytest.mark.parametrize("params", [SamplingParams(max_new_tokens=16), SAMPLED], ids=["greedy", "sampled"])
def test_batch_composition_does_not_change_results(engine: TransformersEngine, params: SamplingParams) -> None:
    together = engine.generate(CHATS, params)
    alone = _clone(engine, batch_size=1)
    for chat, gen in zip(CHATS, together):
        assert alone.generate([chat], params)[0].token_ids == gen.token_ids
    shuffled = [CHATS[i] for i in (3, 0, 5, 1, 4, 2)]
    regrouped = _clone(engine, batch_size=3).generate(shuffled, params)
    assert [g.token_ids for g in regrouped] == [together[i].token_ids for i in (3, 0, 5, 1, 4, 2)]
    unsorted = _clone(engine, sort_by_length=False).generate(CHATS, params)  # input-order batches
    assert [g.token_ids for g in unsorted] == [g.token_ids for g in together]


def test_rows_finishing_early_leave_the_batch(engine: TransformersEngine) -> None:
    """With many stop tokens, rows stop at different steps; results still match one-by-one decoding."""
    stops = set(range(3, engine.tokenizer.vocab_size, 9)) | set(engine.stop_ids)
    batched = _clone(engine, stop_ids=stops, batch_size=6)
    single = _clone(engine, stop_ids=stops, batch_size=1)
    params = dataclasses.replace(SAMPLED, max_new_tokens=40, n=3)
    gens = batched.generate(CHATS, params)
    lengths = {len(t) for g in gens for t in g.token_ids}
    assert len(lengths) > 2, "expected rows of different lengths"
    for chat, gen in zip(CHATS, gens):
        alone = single.generate([chat], params)[0]
        assert (alone.token_ids, alone.texts, alone.finish_reasons) == (gen.token_ids, gen.texts, gen.finish_reasons)
        assert alone.logprobs == pytest.approx(gen.logprobs, abs=1e-4)
        for tokens, reason in zip(gen.token_ids, gen.finish_reasons):
            assert reason == ("stop" if tokens[-1] in stops else "length")
            assert reason == "stop" or len(tokens) == 40
            assert not any(t in stops for t in tokens[:-1])


def test_sampling_n_outputs_reproducible_with_seed(engine: TransformersEngine) -> None:
    params = dataclasses.replace(SAMPLED, n=3)
    first = engine.generate(CHATS[:3], params)
    again = engine.generate(CHATS[:3], params)
    other_seed = engine.generate(CHATS[:3], dataclasses.replace(params, seed=8))
    assert first == again
    for gen, other in zip(first, other_seed):
        assert len(gen.texts) == len(gen.token_ids) == len(gen.finish_reasons) == len(gen.logprobs) == 3
        assert len(set(gen.token_ids)) == 3, "the n samples of a prompt should differ"
        assert gen.token_ids != other.token_ids
    assert sample_seed(7, "a", 0) != sample_seed(7, "a", 1) != sample_seed(8, "a", 1)


def test_tiny_top_p_is_greedy(engine: TransformersEngine) -> None:
    greedy = engine.generate(CHATS, SamplingParams(max_new_tokens=10))
    nucleus = engine.generate(CHATS, SamplingParams(max_new_tokens=10, temperature=1.5, top_p=0.0, seed=1))
    assert [g.token_ids for g in nucleus] == [g.token_ids for g in greedy]


def test_generation_logprobs_are_model_logprobs(engine: TransformersEngine) -> None:
    for gen, chat in zip(engine.generate(CHATS[:3], SAMPLED), CHATS[:3]):
        for tokens, logprob in zip(gen.token_ids, gen.logprobs):
            assert logprob == pytest.approx(_manual_logprob(engine.model, engine.prompt_ids(chat), list(tokens)),
                                            abs=1e-3)


def test_results_come_back_in_input_order(engine: TransformersEngine) -> None:
    chats = sorted(CHATS, key=lambda c: len(str(c)) % 7)
    gens = engine.generate(chats, SamplingParams(max_new_tokens=6))
    assert [g.prompt_tokens for g in gens] == [len(engine.prompt_ids(c)) for c in chats]
    assert [g.token_ids for g in gens] == [engine.generate([c], SamplingParams(max_new_tokens=6))[0].token_ids
                                            for c in chats]
    assert len({g.prompt_tokens for g in gens}) > 3


def test_score_equals_manual_log_softmax(engine: TransformersEngine) -> None:
    replies = ["Sure! Here is a poem.", "", "SELECT name FROM users;", "Rome grew from a small town.",
               "Café au lait, s'il vous plaît.", "Because."]
    scores = engine.score(CHATS, replies)
    im_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for chat, reply, score in zip(CHATS, replies, scores):
        prompt = engine.prompt_ids(chat)
        full = engine.encode(engine.render([*chat, {"role": "assistant", "content": reply}], generation_prompt=False))
        assert full[:len(prompt)] == prompt
        tokens = full[len(prompt):]
        tokens = tokens[:tokens.index(im_end) + 1]
        assert engine.tokenizer.decode(tokens[:-1]) == reply
        assert score == pytest.approx(_manual_logprob(engine.model, prompt, tokens), abs=1e-3)
        assert score < 0
    assert _clone(engine, batch_size=1).score(CHATS, replies) == pytest.approx(scores, abs=1e-4)


def test_choose_is_valid_and_agrees_with_score(engine: TransformersEngine) -> None:
    options = ["new_request", "continuation", "negative_feedback", "yes", "a much longer option with many words"]
    choices = engine.choose(CHATS, options)
    assert len(choices) == len(CHATS)
    for chat, choice in zip(CHATS, choices):
        scores = engine.score([chat] * len(options), options)
        assert 0 <= choice.index < len(options)
        assert choice.logprobs == pytest.approx(scores, abs=1e-3)
        assert choice.index == max(range(len(options)), key=lambda j: scores[j])
    tie = engine.choose(CHATS[:2], ["same", "same"])
    assert [c.index for c in tie] == [0, 0]
    with pytest.raises(ValueError):
        engine.choose(CHATS[:1], [])


def test_count_tokens_and_truncate(engine: TransformersEngine) -> None:
    text = "The history of Rome is long. Café, naïve, 東京! " * 20
    n = engine.count_tokens(text)
    assert n > 100
    assert engine.count_tokens("") == 0
    for keep in ("end", "start"):
        cut = engine.truncate(text, 37, keep=keep)
        assert engine.count_tokens(cut) <= 37 and engine.count_tokens(cut) >= 30
        assert text.endswith(cut) if keep == "end" else text.startswith(cut)
        assert engine.truncate(text, n, keep=keep) == text
        assert engine.truncate(text, 0, keep=keep) == ""
    with pytest.raises(ValueError):
        engine.truncate(text, 5, keep="middle")


def test_prompt_too_long_is_a_typed_error(engine: TransformersEngine) -> None:
    short = _clone(engine, max_model_len=64)
    long_chat = [{"role": "user", "content": "please explain the history of Rome " * 20}]
    assert short.fits(CHATS[0], 16) and not short.fits(long_chat, 16)
    with pytest.raises(PromptTooLongError) as err:
        short.generate([CHATS[0], long_chat, CHATS[2], long_chat], SamplingParams(max_new_tokens=16))
    assert err.value.indices == (1, 3)
    assert "fits" in str(err.value)
    with pytest.raises(PromptTooLongError):
        short.score([long_chat], ["x"])
    with pytest.raises(PromptTooLongError):
        short.choose([long_chat], ["x"])


def test_stats_count_tokens_and_time(tiny_model_dir: Path) -> None:
    eng = TransformersEngine.from_config(ModelConfig(name=str(tiny_model_dir), batch_size=2))
    gens = eng.generate(CHATS[:3], SamplingParams(max_new_tokens=5, n=2, temperature=1.0))
    eng.score(CHATS[:2], ["a", "b"])
    stats = eng.stats()
    assert stats["sequences"] == 6
    assert stats["prompt_tokens"] == 2 * sum(g.prompt_tokens for g in gens)
    assert stats["generated_tokens"] == sum(g.completion_tokens for g in gens) == 30
    assert stats["generate_seconds"] > 0 and stats["generated_tokens_per_s"] > 0
    assert stats["scored_tokens"] > 0 and stats["score_seconds"] > 0
    eng.close()


def test_load_engine_and_tiny_name(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rlhi_hpc.inference.factory import load_engine

    monkeypatch.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
    assert resolve_model_path("tiny") == str(tiny_model_dir)
    assert resolve_model_path("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    eng = load_engine(ModelConfig(name="tiny", engine="hf"))
    assert isinstance(eng, TransformersEngine) and eng.model_name == "tiny"
    assert eng.generate(CHATS[:1], SamplingParams(max_new_tokens=3))[0].completion_tokens == 3
    eng.close()
    monkeypatch.setenv("RLHI_TINY_MODEL", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="make tiny-model"):
        resolve_model_path("tiny")


def test_vllm_engine_missing_is_a_clear_error(tiny_model_dir: Path) -> None:
    import importlib.util

    from rlhi_hpc.inference.factory import load_engine

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the vLLM engine is tested separately")
    with pytest.raises(ConfigError, match="model.engine"):
        load_engine(ModelConfig(name=str(tiny_model_dir), engine="vllm"))
