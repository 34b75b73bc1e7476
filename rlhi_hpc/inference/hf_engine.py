"""The transformers engine: batched chat generation and scoring on CPU (or one CUDA GPU).

Used by tests, the demo and small models; the vLLM engine serves big models on GPU clusters.
Both implement :class:`rlhi_hpc.inference.engine.Engine`.

How it works:

* Chats are rendered with the tokenizer's chat template (``add_generation_prompt=True``) and
  tokenized without extra special tokens (the template already holds them).
* ``generate`` sorts prompts by length (longest first), decodes ``batch_size`` rows at a time with
  left padding and a KV cache, drops finished rows from the batch, and returns results in input
  order. Sampling draws one uniform number per step from a per-row ``torch.Generator`` seeded from
  (seed, prompt text, sample index), so a prompt's completions do not depend on which prompts share
  its batch, on the batch size or on the shard it sits in. ``temperature == 0`` is greedy.
* Completions stop at the end-of-turn/eos tokens (the stop token is kept in ``token_ids`` and in
  ``logprobs``, not in ``texts``). ``logprobs`` are under the model's own distribution (temperature 1,
  no top-p), the same quantity ``score`` returns.
* ``score`` scores a continuation as the assistant reply: the tokens of the rendered full chat after
  the rendered prompt, up to and including the end-of-turn token.
* ``choose`` scores every option that way, sharing one prompt forward pass (KV cache) between the
  options of a chat, and returns the argmax, so the answer is always one of the options.
* A prompt that does not leave room for ``max_new_tokens`` within ``max_model_len`` raises
  :class:`PromptTooLongError` naming the offending indices before any work; call
  :meth:`TransformersEngine.fits` (or ``truncate`` the long parts) to avoid it.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.chat import ChatTokenizer
from rlhi_hpc.inference.counters import EngineCounters
from rlhi_hpc.inference.engine import Chat, Choice, Generation, SamplingParams
from rlhi_hpc.inference.models import resolve_model_path

if TYPE_CHECKING:
    import torch

    from rlhi_hpc.config import ModelConfig

log = logging.getLogger(__name__)


def sample_seed(seed: int, prompt_text: str, index: int) -> int:
    """The seed of one completion: a stable function of (seed, prompt text, sample index)."""
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{prompt_text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@dataclass(kw_only=True)
class _Row:
    """One completion being decoded."""

    prompt: list[int]
    generator: Any  # torch.Generator | None (greedy)
    tokens: list[int]
    logprob: float = 0.0
    finish: str = "length"


class TransformersEngine(ChatTokenizer):
    """:class:`~rlhi_hpc.inference.engine.Engine` backed by a transformers causal LM."""

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str, max_model_len: int,
                 batch_size: int, sort_by_length: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.batch_size = max(1, batch_size)
        self.sort_by_length = sort_by_length  # False: batches in input order (the baseline of bench/inference.py)
        self.device = next(model.parameters()).device
        self.stop_ids = self._find_stop_ids()
        self.pad_id = self._find_pad_id()
        self._counters = EngineCounters()
        self._keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    # ---------------------------------------------------------------------------------------
    # Construction
    # ---------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> TransformersEngine:
        """Load the model and tokenizer named by `cfg` on CUDA when available, else on CPU."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.perf_counter()
        path = resolve_model_path(cfg.name)
        tok_path = resolve_model_path(cfg.tokenizer) if cfg.tokenizer else path
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=cfg.trust_remote_code)
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"config key 'model.tokenizer': {tok_path!r} has no chat template; "
                              "use a chat/instruct model or a tokenizer that ships one")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        model = model.to(device).eval()
        max_len = _context_length(model.config, cfg.max_model_len)
        engine = cls(model, tokenizer, model_name=cfg.name, max_model_len=max_len, batch_size=cfg.batch_size)
        log.info("event=engine_loaded engine=hf model=%s path=%s device=%s dtype=%s max_model_len=%d seconds=%.1f",
                 cfg.name, path, device, next(model.parameters()).dtype, max_len, time.perf_counter() - start)
        return engine

    def _find_stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            ids.add(int(eos))
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            ids.update(int(i) for i in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        if not ids:
            raise ConfigError(f"model {self.model_name!r}: its tokenizer has no eos token to stop generation at")
        return frozenset(ids)

    def _find_pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else min(self.stop_ids)

    # ---------------------------------------------------------------------------------------
    # Generation
    # ---------------------------------------------------------------------------------------

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """`params.n` completions per chat, in input order (see the module docstring)."""
        import torch
        from tqdm.auto import tqdm

        start = time.perf_counter()
        texts = [self.render(chat) for chat in chats]
        prompts = [self.encode(text) for text in texts]
        self._check_fit([len(p) + params.max_new_tokens for p in prompts], "prompts (+ max_new_tokens)")
        rows = [_Row(prompt=prompts[i], tokens=[], generator=self._generator(params, texts[i], k))
                for i in range(len(chats)) for k in range(params.n)]
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r].prompt)) if self.sort_by_length \
            else list(range(len(rows)))
        batches = list(_chunks(order, self.batch_size))
        with torch.inference_mode():
            for batch in tqdm(batches, desc="generate", unit="batch", disable=None, leave=False):
                self._decode([rows[r] for r in batch], params)
        self._count_generation(rows, time.perf_counter() - start)
        return [self._generation(rows[i * params.n:(i + 1) * params.n], params) for i in range(len(chats))]

    def _generator(self, params: SamplingParams, prompt_text: str, index: int) -> Any:
        import torch

        if params.temperature <= 0:
            return None
        gen = torch.Generator(device="cpu")
        gen.manual_seed(sample_seed(params.seed, prompt_text, index))
        return gen

    def _decode(self, rows: list[_Row], params: SamplingParams) -> None:
        """Decode one batch of rows in place, with a KV cache; finished rows leave the batch."""
        import torch

        ids, mask = self._left_pad([r.prompt for r in rows])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, mask, positions, None, keep=1)
        active = list(range(len(rows)))
        for _ in range(params.max_new_tokens):
            logits = out.logits[:, -1, :].float()
            tokens, logps = self._pick(logits, [rows[a].generator for a in active], params)
            still: list[int] = []
            for j, a in enumerate(active):
                row = rows[a]
                row.tokens.append(int(tokens[j]))
                row.logprob += float(logps[j])
                if int(tokens[j]) in self.stop_ids:
                    row.finish = "stop"
                else:
                    still.append(j)
            if not still or len(rows[active[0]].tokens) >= params.max_new_tokens:
                return
            cache = out.past_key_values
            if len(still) < len(active):
                keep = torch.tensor(still, device=self.device)
                cache.batch_select_indices(keep)
                tokens, mask, positions = tokens[keep], mask[keep], positions[keep]
                active = [active[j] for j in still]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self._forward(tokens[:, None], mask, positions, cache, keep=1)

    def _pick(self, logits: torch.Tensor, generators: list[Any], params: SamplingParams
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row (greedy or seeded nucleus sampling) and its model log-prob."""
        import torch

        logp = torch.log_softmax(logits, dim=-1)
        if params.temperature <= 0:
            tokens = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / params.temperature, dim=-1)
            sorted_p, sorted_idx = torch.sort(probs, dim=-1, descending=True, stable=True)
            if params.top_p < 1.0:
                inside = (sorted_p.cumsum(-1) - sorted_p) < params.top_p
                inside[:, 0] = True  # the most likely token is always kept
                sorted_p = torch.where(inside, sorted_p, torch.zeros_like(sorted_p))
            cum = sorted_p.cumsum(-1)
            u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
            target = (u.to(self.device) * cum[:, -1].double()).to(cum.dtype)[:, None]
            pick = torch.searchsorted(cum, target, right=True).clamp(max=cum.shape[-1] - 1)
            tokens = sorted_idx.gather(1, pick)[:, 0]
        return tokens, logp.gather(1, tokens[:, None])[:, 0]

    def _generation(self, rows: list[_Row], params: SamplingParams) -> Generation:
        return Generation(
            texts=tuple(self.tokenizer.decode(r.tokens, skip_special_tokens=True) for r in rows),
            token_ids=tuple(tuple(r.tokens) for r in rows),
            finish_reasons=tuple(r.finish for r in rows),
            prompt_tokens=len(rows[0].prompt) if rows else 0,
            logprobs=tuple(r.logprob for r in rows) if params.logprobs else None,
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
        self._check_fit([len(p) + len(r) for p, r in pairs], "chats (+ continuation)")
        scores = self._score_pairs(pairs)
        self._counters.add_scoring(sum(len(p) + len(r) for p, r in pairs), time.perf_counter() - start)
        return scores

    def _score_pairs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        import torch

        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        scores = [0.0] * len(pairs)
        with torch.inference_mode():
            for batch in _chunks(order, self.batch_size):
                values = self._score_batch([pairs[i] for i in batch])
                for i, value in zip(batch, values):
                    scores[i] = value
        return scores

    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Left-padded prompt+reply rows; only the logits that predict reply tokens are computed."""
        width = max(len(r) for _, r in pairs)
        if width == 0:
            return [0.0] * len(pairs)
        ids, mask = self._left_pad([p + r for p, r in pairs])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(ids, mask, positions, None, keep=width + 1).logits[:, :width]
        return self._reply_logprobs(logits, [r for _, r in pairs])

    def _reply_logprobs(self, logits: torch.Tensor, replies: list[list[int]]) -> list[float]:
        """Sum of log p(reply token) where logits[b, j] predicts the j-th of the last `width` tokens."""
        import torch

        width = logits.shape[1]
        targets = torch.full((len(replies), width), -1, dtype=torch.long)
        for b, reply in enumerate(replies):
            if reply:
                targets[b, width - len(reply):] = torch.tensor(reply)
        targets = targets.to(self.device)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(2, targets.clamp(min=0)[..., None])[..., 0]
        return (logp * (targets >= 0)).sum(-1).tolist()

    def choose(self, chats: Sequence[Chat], options: Sequence[str]) -> list[Choice]:
        """The most likely option (as the full assistant reply) for each chat; ties go to the first."""
        import torch

        if not options:
            raise ValueError("choose: options must not be empty")
        start = time.perf_counter()
        prompts = [self.prompt_ids(chat) for chat in chats]
        replies = [[self.reply_ids(chat, prompt, opt) for opt in options] for chat, prompt in zip(chats, prompts)]
        self._check_fit([len(p) + max(len(r) for r in rs) for p, rs in zip(prompts, replies)],
                        "chats (+ longest option)")
        order = sorted(range(len(chats)), key=lambda i: -len(prompts[i]))
        results: list[Choice | None] = [None] * len(chats)
        with torch.inference_mode():
            for batch in _chunks(order, self.batch_size):
                values = self._choose_batch([prompts[i] for i in batch], [replies[i] for i in batch])
                for i, row in zip(batch, values):
                    results[i] = Choice(index=max(range(len(row)), key=lambda j: (row[j], -j)), logprobs=tuple(row))
        tokens = sum(len(p) + sum(len(r) for r in rs) for p, rs in zip(prompts, replies))
        self._counters.add_scoring(tokens, time.perf_counter() - start)
        return [r for r in results if r is not None]

    def _choose_batch(self, prompts: list[list[int]], replies: list[list[list[int]]]) -> list[list[float]]:
        """One forward pass over the prompts; its KV cache is repeated for every option."""
        import torch

        k = len(replies[0])
        ids, mask = self._left_pad(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        first = self._forward(ids, mask, positions, None, keep=1)
        cache = first.past_key_values
        cache.batch_repeat_interleave(k)
        flat = [r for rs in replies for r in rs]
        width = max(len(r) for r in flat)
        opt_ids = torch.full((len(flat), width), self.pad_id, dtype=torch.long)
        opt_mask = torch.zeros((len(flat), width), dtype=torch.long)
        for b, reply in enumerate(flat):
            opt_ids[b, :len(reply)] = torch.tensor(reply, dtype=torch.long)
            opt_mask[b, :len(reply)] = 1
        opt_ids, opt_mask = opt_ids.to(self.device), opt_mask.to(self.device)
        full_mask = torch.cat([mask.repeat_interleave(k, dim=0), opt_mask], dim=1)
        opt_pos = positions[:, -1:].repeat_interleave(k, dim=0) + 1 + torch.arange(width, device=self.device)
        rest = self._forward(opt_ids, full_mask, opt_pos, cache, keep=0).logits
        logits = torch.cat([first.logits[:, -1:].repeat_interleave(k, dim=0), rest[:, :-1]], dim=1)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(2, opt_ids[..., None])[..., 0]
        sums = (logp * opt_mask).sum(-1).tolist()
        return [sums[i * k:(i + 1) * k] for i in range(len(prompts))]

    # ---------------------------------------------------------------------------------------
    # Shared pieces
    # ---------------------------------------------------------------------------------------

    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, seq in enumerate(seqs):
            if seq:
                ids[b, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
                mask[b, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
                 *, keep: int) -> Any:
        """One model call; `keep` > 0 computes logits for the last `keep` positions only."""
        from transformers import DynamicCache

        if cache is None:
            cache = DynamicCache(config=self.model.config)
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if self._keep_logits and keep else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, **kwargs)
        if keep and not self._keep_logits:
            out.logits = out.logits[:, -keep:]
        return out

    def _count_generation(self, rows: list[_Row], seconds: float) -> None:
        c = self._counters
        c.prompt_tokens += sum(len(r.prompt) for r in rows)
        c.generated_tokens += sum(len(r.tokens) for r in rows)
        c.sequences += len(rows)
        c.generate_seconds += seconds
        log.debug("event=generate rows=%d generated_tokens=%d seconds=%.2f", len(rows),
                  sum(len(r.tokens) for r in rows), seconds)

    def stats(self) -> dict[str, float]:
        """Throughput counters since the engine was created."""
        return self._counters.as_stats()

    def close(self) -> None:
        """Drop the model and free its memory."""
        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _context_length(model_config: Any, requested: int) -> int:
    """`requested`, capped at the model's position limit when it declares one."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < requested:
        log.warning("event=max_model_len_capped requested=%d model_limit=%d", requested, limit)
        return limit
    return requested
