"""Reward scoring: sequence-classification reward models through transformers, and an LLM judge.

**Classifier** (:class:`ClassifierRewardModel`): any ``AutoModelForSequenceClassification``
checkpoint. The chat plus the response as the assistant turn is rendered with the reward model's
chat template, the optional CLS token is appended, and the head is applied to the hidden state of
the *last* token (the CLS token when there is one). That is the Athene-RM-8B convention: it appends
``<|reserved_special_token_1|>`` and reads its ``v_head`` there; on load, ``key_mapping`` renames
``v_head`` onto the transformers ``score`` head so the stock ``LlamaForSequenceClassification``
class loads it. Sequences are length-sorted, right-padded (pads after the scored token never
affect it under causal attention) and scored ``batch_size`` at a time; the head reads an explicit
position, so a pad token that equals the CLS token cannot confuse it.

**Judge** (:func:`judge_scores`): an :class:`~rlhi_hpc.inference.engine.Engine` chooses among the
ratings ``"1"…"N"``; the score is the expected rating under the softmax of the options' log-probs.
``engine.choose`` always returns valid options, so the judge never produces an unparsable score.

vLLM: its pooling runner (``vllm.LLM(model, runner="pooling")`` then ``llm.reward``/``llm.classify``)
serves ``*ForSequenceClassification`` reward models with last-token pooling, which matches this
convention when the CLS token is appended to the prompt text; for Athene-RM the ``v_head`` weight
would need the same renaming (``hf_overrides``/a converted checkpoint). A vLLM engine that offers
such a ``reward(texts)`` method could replace :meth:`ClassifierRewardModel.score_texts` here.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlhi_hpc.errors import ConfigError
from rlhi_hpc.inference.engine import Chat, Engine
from rlhi_hpc.inference.models import resolve_model_path

if TYPE_CHECKING:
    from rlhi_hpc.config import ModelConfig

log = logging.getLogger(__name__)


class ClassifierRewardModel:
    """A sequence-classification reward model scoring (chat, response) pairs."""

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str, max_model_len: int, batch_size: int,
                 cls_token: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.batch_size = max(1, batch_size)
        self.cls_token = cls_token
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.scored_tokens = 0
        self.score_seconds = 0.0
        if cls_token:
            tid = tokenizer.convert_tokens_to_ids(cls_token)
            if not isinstance(tid, int) or tid < 0 or tid == tokenizer.unk_token_id or \
                    self.encode(cls_token) != [tid]:
                raise ConfigError(f"config key 'reward.cls_token': {cls_token!r} is not a single token of the "
                                  f"tokenizer of {model_name!r}; use its CLS token or empty (score at the last token)")

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, cls_token: str = "",
                    key_mapping: dict[str, str] | None = None) -> ClassifierRewardModel:
        """Load the reward model named by `cfg` (CUDA when available, else CPU)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        start = time.perf_counter()
        path = resolve_model_path(cfg.name)
        tok_path = resolve_model_path(cfg.tokenizer) if cfg.tokenizer else path
        tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=cfg.trust_remote_code)
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"config key 'reward.model': the tokenizer of {cfg.name!r} has no chat template")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        kwargs: dict[str, Any] = {"key_mapping": dict(key_mapping)} if key_mapping else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype, trust_remote_code=cfg.trust_remote_code, **kwargs).to(device).eval()
        limit = getattr(model.config, "max_position_embeddings", None)
        max_len = min(cfg.max_model_len, limit) if isinstance(limit, int) and limit > 0 else cfg.max_model_len
        rm = cls(model, tokenizer, model_name=cfg.name, max_model_len=max_len, batch_size=cfg.batch_size,
                 cls_token=cls_token)
        log.info("event=reward_model_loaded model=%s path=%s device=%s cls_token=%r seconds=%.1f", cfg.name, path,
                 device, cls_token, time.perf_counter() - start)
        return rm

    # ---------------------------------------------------------------------------------------

    def render(self, chat: Chat, response: str) -> str:
        """The text the reward model reads: chat + response as the assistant turn (+ CLS token)."""
        messages = [*chat, {"role": "assistant", "content": response}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        return text + self.cls_token

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def truncate(self, text: str, max_tokens: int, keep: str = "start") -> str:
        """Cut `text` to at most `max_tokens` tokens (at a token boundary), keeping its start or end."""
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        kept = ids[:max_tokens] if keep == "start" else ids[-max_tokens:]
        return self.tokenizer.decode(kept, skip_special_tokens=True)

    def input_tokens(self, chat: Chat, response: str) -> int:
        return len(self.encode(self.render(chat, response)))

    def score(self, chats: Sequence[Chat], responses: Sequence[str]) -> list[float]:
        """One reward per (chat, response); raises ValueError for an input over ``max_model_len``."""
        return self.score_texts([self.render(c, r) for c, r in zip(chats, responses, strict=True)])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Rewards of already rendered inputs, read at their last token."""
        import torch

        start = time.perf_counter()
        seqs = [self.encode(t) for t in texts]
        too_long = [i for i, s in enumerate(seqs) if len(s) > self.max_model_len or not s]
        if too_long:
            raise ValueError(f"inputs {too_long[:10]} are empty or longer than max_model_len={self.max_model_len}")
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        scores = [math.nan] * len(seqs)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                batch = order[b:b + self.batch_size]
                for i, value in zip(batch, self._score_batch([seqs[i] for i in batch]), strict=True):
                    scores[i] = value
        self.scored_tokens += sum(len(s) for s in seqs)
        self.score_seconds += time.perf_counter() - start
        return scores

    def _score_batch(self, seqs: list[list[int]]) -> list[float]:
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, seq in enumerate(seqs):
            ids[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[b, :len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        last = torch.tensor([len(s) - 1 for s in seqs], device=self.device)
        head = getattr(self.model, "score", None)
        if head is None:  # a classifier without a `score` head: trust its own pooling (right padding)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        else:
            hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = head(hidden[torch.arange(len(seqs), device=self.device), last])
        return logits[:, 0].float().tolist()

    def stats(self) -> dict[str, float]:
        return {"scored_tokens": self.scored_tokens, "score_seconds": round(self.score_seconds, 4),
                "scored_tokens_per_s": round(self.scored_tokens / self.score_seconds, 2) if self.score_seconds else 0.0}

    def close(self) -> None:
        self.model = None
        gc.collect()


def expected_rating(logprobs: Sequence[float], ratings: Sequence[float]) -> float:
    """Expectation of `ratings` under the softmax of `logprobs` (numerically stable)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return sum(w * r for w, r in zip(weights, ratings, strict=True)) / total


def judge_scores(engine: Engine, chats: Sequence[Chat], scale: int) -> list[float]:
    """Expected 1..scale rating of each judge chat from the log-probs of the rating tokens."""
    options = [str(i) for i in range(1, scale + 1)]
    choices = engine.choose(chats, options)
    return [expected_rating(c.logprobs, range(1, scale + 1)) for c in choices]
