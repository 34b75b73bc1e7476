"""Chat rendering and token accounting shared by the engines that hold a Hugging Face tokenizer.

A class using :class:`ChatTokenizer` provides ``tokenizer`` (a transformers tokenizer with a chat
template), ``stop_ids`` (end-of-turn token ids) and ``max_model_len``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlhi_hpc.errors import PromptTooLongError
from rlhi_hpc.inference.engine import Chat


class ChatTokenizer:
    """Rendering, encoding, fitting and truncation on top of the model's tokenizer."""

    tokenizer: Any
    stop_ids: frozenset[int]
    max_model_len: int

    def render(self, chat: Chat, *, generation_prompt: bool = True) -> str:
        """The chat as the model sees it (chat template applied)."""
        return self.tokenizer.apply_chat_template(list(chat), tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens written in the text are recognised, none are added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, chat: Chat) -> list[int]:
        """Token ids of the rendered prompt, ending with the assistant header."""
        return self.encode(self.render(chat))

    def fits(self, chat: Chat, max_new_tokens: int) -> bool:
        """True when the prompt plus `max_new_tokens` fits in ``max_model_len``."""
        return len(self.prompt_ids(chat)) + max_new_tokens <= self.max_model_len

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def truncate(self, text: str, max_tokens: int, keep: str = "end") -> str:
        """Cut `text` at a character boundary to at most `max_tokens` tokens, keeping its start or end."""
        if keep not in ("end", "start"):
            raise ValueError(f"keep={keep!r}; allowed: 'end' or 'start'")
        if max_tokens <= 0:
            return ""
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        for limit in range(max_tokens, 0, -1):
            cut = text[:offsets[limit - 1][1]] if keep == "start" else text[offsets[len(offsets) - limit][0]:]
            if self.count_tokens(cut) <= max_tokens:
                return cut
        return ""

    def reply_ids(self, chat: Chat, prompt: list[int], reply: str) -> list[int]:
        """Tokens of `reply` as the assistant turn after `prompt`, up to the end-of-turn token."""
        full = self.encode(self.render([*chat, {"role": "assistant", "content": reply}], generation_prompt=False))
        if len(full) > len(prompt) and full[:len(prompt)] == prompt:
            tokens = full[len(prompt):]
        else:  # the template renders a finished turn differently: reply tokens + end of turn
            tokens = self.encode(reply) + [self._end_of_turn_id()]
        for pos, tok in enumerate(tokens):
            if tok in self.stop_ids:
                return tokens[:pos + 1]
        return tokens

    def _end_of_turn_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        return int(eos) if eos is not None and eos in self.stop_ids else min(self.stop_ids)

    def _check_fit(self, lengths: Sequence[int], what: str) -> None:
        bad = tuple(i for i, n in enumerate(lengths) if n > self.max_model_len)
        if bad:
            raise PromptTooLongError(
                f"{len(bad)} of {len(lengths)} {what} exceed max_model_len={self.max_model_len} tokens "
                f"(indices {list(bad[:20])}{'...' if len(bad) > 20 else ''}); check engine.fits() and skip or "
                "truncate them, or raise model.max_model_len", bad)
