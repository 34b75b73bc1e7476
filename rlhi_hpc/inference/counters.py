"""Throughput counters shared by the engines (what `Engine.stats` reports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class EngineCounters:
    """Tokens and seconds of one engine instance since it was created."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    scored_tokens: int = 0
    generate_seconds: float = 0.0
    score_seconds: float = 0.0
    sequences: int = 0

    def add_scoring(self, tokens: int, seconds: float) -> None:
        self.scored_tokens += tokens
        self.score_seconds += seconds

    def as_stats(self) -> dict[str, float]:
        """The counters plus tokens/s rates."""
        gen_s, score_s = self.generate_seconds, self.score_seconds
        return {
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "sequences": self.sequences,
            "generate_seconds": round(gen_s, 4),
            "generated_tokens_per_s": round(self.generated_tokens / gen_s, 2) if gen_s else 0.0,
            "scored_tokens": self.scored_tokens,
            "score_seconds": round(score_s, 4),
            "scored_tokens_per_s": round(self.scored_tokens / score_s, 2) if score_s else 0.0,
        }
