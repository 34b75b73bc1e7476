"""The `Engine` protocol every inference backend implements.

Stages talk to models only through this interface, so the same stage code runs with the
transformers engine (CPU, tests, small models) and the vLLM engine (GPU clusters).
A chat is a list of ``{"role": ..., "content": ...}`` messages rendered with the model's
chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Message = dict[str, str]
Chat = Sequence[Message]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """Decoding parameters shared by all engines.

    temperature == 0 means greedy decoding. `seed` makes sampling reproducible: engines
    derive a per-completion generator from (seed, prompt text, sample index) so results do not
    depend on how prompts are batched or sharded.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    n: int = 1
    seed: int = 0
    logprobs: bool = False


@dataclass(frozen=True, kw_only=True)
class Generation:
    """The `n` completions of one prompt."""

    texts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    finish_reasons: tuple[str, ...]  # "stop" | "length"
    prompt_tokens: int
    logprobs: tuple[float, ...] | None = None  # summed log-prob of each completion

    @property
    def completion_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)


@dataclass(frozen=True, kw_only=True)
class Choice:
    """Result of a constrained choice among fixed options."""

    index: int
    logprobs: tuple[float, ...]  # log-prob of each option as the full assistant reply


@runtime_checkable
class Engine(Protocol):
    """Batched chat generation and scoring."""

    model_name: str

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """Generate `params.n` completions per chat, in input order."""
        ...

    def score(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        """Summed log-prob of each continuation as the assistant reply to its chat."""
        ...

    def choose(self, chats: Sequence[Chat], options: Sequence[str]) -> list[Choice]:
        """Pick one of `options` for each chat (always a valid option, whatever the model)."""
        ...

    def fits(self, chat: Chat, max_new_tokens: int) -> bool:
        """Whether the rendered chat plus `max_new_tokens` fits the context length."""
        ...

    def stats(self) -> dict[str, float]:
        """Throughput counters since load: prompt/generated tokens, seconds, tokens/s."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` under the engine's tokenizer."""
        ...

    def truncate(self, text: str, max_tokens: int, keep: str = "end") -> str:
        """Cut `text` to at most `max_tokens` tokens, keeping its start or its end."""
        ...

    def close(self) -> None:
        """Release the model (GPU memory, worker processes)."""
        ...
