"""Pairs -> token ids, and the deterministic, resumable sampler over them.

Rendering. Every sequence is the model's chat template applied to::

    [system: dpo.system_prompt + dpo.persona_template.format(persona)]   (persona part only if dpo.persona)
    <the pair's prompt messages>
    [assistant: chosen | rejected]

With ``dpo.persona=false`` (the user-agnostic ablation) the system message holds only the base
system prompt, and there is no system message at all when that is empty too. The prompt ids are
the tokenised prompt with the generation header; the response ids are what the full rendering adds
after the longest common prefix (as TRL does), so they include the end-of-turn tokens.

Truncation to ``dpo.max_length`` (prompt + the longer response):

1. prompt tokens are removed from the left, oldest conversation tokens first and the system
   message (which carries the persona) last, but the prompt keeps at least
   ``min(len(prompt), max_length // 2)`` tokens;
2. if that is not enough, both responses are cut from the end to the remaining budget.

Sampling. One epoch holds every pair of a source with weight ``w`` ``floor(w)`` times plus a random
``w - floor(w)`` fraction of them once more, shuffled. The order of epoch ``e`` is a pure function
of (seed, e, the pairs), so the sampler state is three integers. Optimizer steps take
``global_batch_size`` consecutive items of this stream, crossing epoch boundaries, so a dataset that
is not a multiple of the batch loses nothing and repeats nothing, and a checkpoint taken exactly at
an epoch boundary resumes at the first item of the next epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhi_hpc.config import DPOConfig
from rlhi_hpc.records import Pair, read_records
from rlhi_hpc.train import TrainError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RenderSpec:
    """How pairs become token sequences (everything here changes the reference log-probs)."""

    system_prompt: str
    persona_template: str
    persona: bool
    max_length: int

    @classmethod
    def from_config(cls, dpo: DPOConfig) -> RenderSpec:
        return cls(system_prompt=dpo.system_prompt, persona_template=dpo.persona_template,
                   persona=dpo.persona, max_length=dpo.max_length)

    def as_dict(self) -> dict[str, Any]:
        return {"system_prompt": self.system_prompt, "persona_template": self.persona_template,
                "persona": self.persona, "max_length": self.max_length}


@dataclass(frozen=True, kw_only=True)
class TokenizedPair:
    """A pair as token ids; chosen and rejected sequences are prompt_ids + response ids."""

    key: str
    source: str
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    truncated: bool = False

    @property
    def n_tokens(self) -> int:
        """Real tokens of both sequences."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


def system_text(spec: RenderSpec, persona: str) -> str:
    """The system message: base prompt, plus the persona when persona conditioning is on."""
    text = spec.system_prompt
    if spec.persona and persona.strip():
        text += spec.persona_template.format(persona=persona.strip())
    return text


def prompt_messages(pair: Pair, spec: RenderSpec) -> list[dict[str, str]]:
    """System message (if any) followed by the pair's prompt messages."""
    system = system_text(spec, pair.persona)
    messages = [{"role": "system", "content": system}] if system else []
    messages.extend({"role": m["role"], "content": m["content"]} for m in pair.prompt if m["role"] != "system")
    return messages


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=generation_prompt)
    return list(out["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def truncate(system_len: int, prompt: list[int], chosen: list[int], rejected: list[int],
             max_length: int) -> tuple[list[int], list[int], list[int], bool]:
    """Apply the module's truncation rule; return (prompt, chosen, rejected, truncated)."""
    longest = max(len(chosen), len(rejected))
    over = len(prompt) + longest - max_length
    if over <= 0:
        return prompt, chosen, rejected, False
    floor = min(len(prompt), max_length // 2)
    cut = min(over, len(prompt) - floor)
    system_len = min(system_len, len(prompt))
    from_conv = min(cut, len(prompt) - system_len)
    from_system = cut - from_conv
    prompt = prompt[from_system:system_len] + prompt[system_len + from_conv:]
    budget = max(max_length - len(prompt), 1)
    return prompt, chosen[:budget], rejected[:budget], True


def tokenize_pair(pair: Pair, tokenizer: Any, spec: RenderSpec) -> TokenizedPair:
    """Render and tokenise one pair (see the module docstring for the rules)."""
    messages = prompt_messages(pair, spec)
    prompt = _ids(tokenizer, messages, True)
    full_c = _ids(tokenizer, messages + [{"role": "assistant", "content": pair.chosen}], False)
    full_r = _ids(tokenizer, messages + [{"role": "assistant", "content": pair.rejected}], False)
    plen = min(_common_prefix(prompt, full_c), _common_prefix(prompt, full_r))
    system_len = 0
    if messages and messages[0]["role"] == "system":
        system_len = _common_prefix(_ids(tokenizer, messages[:1], False), prompt)
    p, c, r, cut = truncate(system_len, prompt[:plen], full_c[plen:], full_r[plen:], spec.max_length)
    if not c or not r:
        raise TrainError(f"pair {pair.key}: a response renders to no tokens; check the chat template")
    return TokenizedPair(key=pair.key, source=pair.source, prompt_ids=tuple(p), chosen_ids=tuple(c),
                         rejected_ids=tuple(r), truncated=cut)


def tokenize_pairs(pairs: Sequence[Pair], tokenizer: Any, spec: RenderSpec,
                   show_progress: bool = True) -> list[TokenizedPair]:
    """Tokenise every pair (with a progress bar); log how many were truncated."""
    from tqdm import tqdm

    out = [tokenize_pair(p, tokenizer, spec) for p in tqdm(pairs, desc="tokenize pairs", unit="pair",
                                                           disable=not show_progress, mininterval=2.0)]
    n_cut = sum(t.truncated for t in out)
    log.info("event=pairs_tokenized pairs=%d truncated=%d max_length=%d", len(out), n_cut, spec.max_length)
    return out


def load_pairs(paths: Iterable[Path | str]) -> list[Pair]:
    """Read Pair records from JSONL files; keys must be unique."""
    pairs: list[Pair] = []
    for path in paths:
        if not Path(path).is_file():
            raise TrainError(f"pairs file {path} does not exist; run the pairs stage first")
        pairs.extend(read_records(path, Pair))
    seen: set[str] = set()
    for p in pairs:
        if p.key in seen:
            raise TrainError(f"pair key {p.key!r} appears twice in the pairs files; keys must be unique")
        seen.add(p.key)
    return pairs


def pairs_fingerprint(pairs: Sequence[Pair]) -> str:
    """sha256 of the pairs' content (order-independent)."""
    digests = sorted(
        hashlib.sha256(json.dumps([p.key, list(p.prompt), p.persona, p.chosen, p.rejected, p.source],
                                  sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        for p in pairs
    )
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


class PairSampler:
    """Deterministic, resumable stream of pair indices over (mixed) epochs; see the module docstring."""

    def __init__(self, sources: Sequence[str], mix: Mapping[str, float], *, seed: int,
                 epochs: int | None, fingerprint: str = "") -> None:
        missing = sorted(set(sources) - set(mix))
        if missing:
            raise TrainError(f"pairs have sources {missing} that dpo.mix does not weight; add them to dpo.mix "
                             f"(e.g. dpo.mix.{missing[0]}=1.0) or drop them upstream")
        self._by_source: dict[str, list[int]] = {}
        for i, src in enumerate(sources):
            self._by_source.setdefault(src, []).append(i)
        self._mix = {s: float(mix[s]) for s in self._by_source}
        self.seed, self.epochs, self.fingerprint = seed, epochs, fingerprint
        self.epoch, self.position = 0, 0
        self._cache: tuple[int, list[int]] | None = None
        if self.epoch_length == 0:
            raise TrainError(f"dpo.mix {dict(mix)} leaves no pairs to train on (sources: {sorted(self._by_source)})")

    @property
    def epoch_length(self) -> int:
        return sum(math.floor(w) * len(ix) + round((w - math.floor(w)) * len(ix))
                   for s, ix in self._by_source.items() for w in [self._mix[s]])

    def total_items(self) -> int | None:
        return None if self.epochs is None else self.epochs * self.epoch_length

    def epoch_items(self, epoch: int) -> list[int]:
        """The shuffled, mixed items of `epoch` (a pure function of seed, epoch and pairs)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for src in sorted(self._by_source):
            idx = np.asarray(self._by_source[src], dtype=np.int64)
            w = self._mix[src]
            parts.append(np.repeat(idx, math.floor(w)))
            n_extra = round((w - math.floor(w)) * len(idx))
            parts.append(np.sort(rng.choice(idx, size=n_extra, replace=False)))
        items = rng.permutation(np.concatenate(parts)).tolist()
        self._cache = (epoch, items)
        return items

    def exhausted(self) -> bool:
        return self.epochs is not None and self.epoch >= self.epochs

    def next_batch(self, n: int) -> list[int]:
        """The next `n` items (fewer only at the very end of the last epoch)."""
        out: list[int] = []
        while len(out) < n and not self.exhausted():
            items = self.epoch_items(self.epoch)
            take = items[self.position:self.position + n - len(out)]
            out.extend(take)
            self.position += len(take)
            if self.position >= len(items):
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "epoch_length": self.epoch_length, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("seed", "epoch_length", "fingerprint"):
            if state.get(key) != getattr(self, key):
                raise TrainError(f"cannot resume: sampler {key} was {state.get(key)!r}, now "
                                 f"{getattr(self, key)!r}; the pairs or dpo.mix changed since the checkpoint "
                                 "(start a new run directory)")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
