"""The pairwise judge: prompt rendering, verdict parsing, position swap, retries and unparseable verdicts.

`RuleJudge` is a small deterministic Engine (a judge whose answer follows a rule), so that the
swap and retry logic can be checked exactly; the tiny model exercises the same code for real.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rlhi_hpc.config import ModelConfig, load_config
from rlhi_hpc.eval.judge import (JudgeItem, JudgeSettings, combine_orders, judge_items, parse_verdict,
                                 render_judge_chat, to_outcome)
from rlhi_hpc.eval.winrate import win_rate
from rlhi_hpc.inference.engine import Choice, Generation, SamplingParams

DIMS = ("personalization", "instruction_following", "overall")


def lines(a: str, b: str | None = None, c: str | None = None) -> str:
    return f"personalization: {a}\ninstruction_following: {b or a}\noverall: {c or a}"


class RuleJudge:
    """An Engine whose reply is `rule(prompt text, params)`; records every call."""

    model_name = "rule-judge"

    def __init__(self, rule: Callable[[str, SamplingParams], str]) -> None:
        self.rule = rule
        self.calls: list[tuple[str, SamplingParams]] = []

    def generate(self, chats: Sequence[Sequence[dict[str, str]]], params: SamplingParams) -> list[Generation]:
        out = []
        for chat in chats:
            text = chat[-1]["content"]
            self.calls.append((text, params))
            out.append(Generation(texts=(self.rule(text, params),), token_ids=((1,),), finish_reasons=("stop",),
                                  prompt_tokens=len(text.split())))
        return out

    def choose(self, chats: Sequence[Sequence[dict[str, str]]], options: Sequence[str]) -> list[Choice]:
        return [Choice(index=1, logprobs=tuple(-1.0 for _ in options)) for _ in chats]  # always "B"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int, keep: str = "end") -> str:
        return text

    def close(self) -> None:
        pass


def settings(mode: str = "generate", max_retries: int = 2) -> JudgeSettings:
    cfg = load_config([]).eval
    return JudgeSettings(prompt=cfg.judge_prompt, dimensions=dict(cfg.dimensions), system_prompt="judge", mode=mode,
                         max_retries=max_retries, temperature=0.0, retry_temperature=0.7, seed=11)


def item(candidate: str = "GOOD answer", baseline: str = "plain answer") -> JudgeItem:
    return JudgeItem(key="k", fields={"persona": "a Python developer", "context": "(none)", "request": "sort a list"},
                     candidate=candidate, baseline=baseline)


def block(text: str, letter: str) -> str:
    return text.split(f"[Response {letter}]\n", 1)[1].split(f"\n[End of Response {letter}]", 1)[0]


def prefers_good(text: str, params: SamplingParams) -> str:
    """A content judge: the response that contains GOOD wins on every dimension."""
    return lines("A" if "GOOD" in block(text, "A") else "B" if "GOOD" in block(text, "B") else "tie")


def test_prompt_has_persona_context_request_and_both_answers() -> None:
    chat = render_judge_chat(item(), "ab", settings())
    assert chat[0] == {"role": "system", "content": "judge"}
    text = chat[1]["content"]
    parts = ("a Python developer", "sort a list", "GOOD answer", "plain answer", "instruction_following: A, B or tie")
    for part in parts:
        assert part in text


def test_position_swap_really_swaps() -> None:
    ab = render_judge_chat(item(), "ab", settings())[1]["content"]
    ba = render_judge_chat(item(), "ba", settings())[1]["content"]
    assert (block(ab, "A"), block(ab, "B")) == ("GOOD answer", "plain answer")
    assert (block(ba, "A"), block(ba, "B")) == ("plain answer", "GOOD answer")
    assert ab.replace("GOOD answer", "X").replace("plain answer", "Y") == \
        ba.replace("GOOD answer", "Y").replace("plain answer", "X")  # nothing else differs


def test_content_judge_gives_consistent_wins_and_losses() -> None:
    engine = RuleJudge(prefers_good)
    good, bad = judge_items(engine, [item(), item("plain", "GOOD other")], settings())
    assert good.verdicts == {"ab": dict.fromkeys(DIMS, "A"), "ba": dict.fromkeys(DIMS, "B")}
    assert good.outcomes == dict.fromkeys(DIMS, "win")
    assert bad.outcomes == dict.fromkeys(DIMS, "loss")
    assert len(engine.calls) == 4  # two items x two orders, no retry


def test_position_bias_cancels_into_ties() -> None:
    judgement = judge_items(RuleJudge(lambda text, p: lines("A")), [item()], settings())[0]
    assert judgement.outcomes == dict.fromkeys(DIMS, "tie")
    chosen = judge_items(RuleJudge(lambda text, p: ""), [item()], settings("choose"))[0]
    assert chosen.verdicts["ab"] == dict.fromkeys(DIMS, "B") and chosen.outcomes == dict.fromkeys(DIMS, "tie")


def test_combine_orders_table() -> None:
    assert to_outcome("A", "ab") == "win" and to_outcome("A", "ba") == "loss" and to_outcome("tie", "ba") == "tie"
    assert combine_orders("win", "win") == "win"
    assert combine_orders("win", "tie") == "win"
    assert combine_orders("win", "loss") == "tie"
    assert combine_orders("tie", "loss") == "loss"
    assert combine_orders("win", None) == "unparseable"


@pytest.mark.parametrize("reply,expected", [
    (lines("A"), dict.fromkeys(DIMS, "A")),
    ("Some reasoning.\n**Personalization**: A\nInstruction following: Response B\nOverall: **Tie**",
     {"personalization": "A", "instruction_following": "B", "overall": "tie"}),
    (lines("A") + "\nOn reflection:\noverall: B",
     {"personalization": "A", "instruction_following": "A", "overall": "B"}),
    ("personalization: A\noverall: B", None),  # a dimension is missing
    ("I prefer the first one.", None),
    ("personalization: a\ninstruction_following: a\noverall: a", None),  # lower-case letters are not verdicts
])
def test_parse_verdict(reply: str, expected: dict[str, str] | None) -> None:
    assert parse_verdict(reply, DIMS) == expected


def test_unparseable_reply_is_retried_with_a_new_seed() -> None:
    def rule(text: str, params: SamplingParams) -> str:
        return "hmm, hard to say" if params.seed == 11 else prefers_good(text, params)

    engine = RuleJudge(rule)
    judgement = judge_items(engine, [item()], settings())[0]
    assert judgement.attempts == {"ab": 2, "ba": 2}
    assert judgement.outcomes == dict.fromkeys(DIMS, "win")
    seeds = [(p.seed, p.temperature) for _, p in engine.calls]
    assert seeds == [(11, 0.0), (11, 0.0), (12, 0.7), (12, 0.7)]
    assert judgement.raw["ab"][0] == "hmm, hard to say"  # every attempt is kept


def test_unparseable_verdict_is_counted_not_dropped() -> None:
    engine = RuleJudge(lambda text, p: "no verdict" if "GOOD answer" in block(text, "B") else lines("A"))
    items = [item(), item("other GOOD", "plain")]
    judgements = judge_items(engine, items, settings(max_retries=2))
    assert len(judgements) == 2  # nothing dropped
    assert judgements[0].attempts == {"ab": 1, "ba": 3}  # order ba never parses: 1 + max_retries attempts
    assert judgements[0].verdicts["ba"] is None
    assert judgements[0].outcomes == dict.fromkeys(DIMS, "unparseable")
    rate = win_rate([j.outcomes["overall"] for j in judgements], samples=0)
    assert rate.unparseable == 1 and rate.n == 1


def test_tiny_model_judge(tiny_model_dir: Path) -> None:
    """The real engine: free text from a random model never parses (counted), choose mode always does."""
    from rlhi_hpc.inference.factory import load_engine

    engine = load_engine(ModelConfig(name=str(tiny_model_dir), batch_size=4))
    try:
        s = settings(max_retries=1)
        s = JudgeSettings(**{**s.__dict__, "max_new_tokens": 8, "max_answer_chars": 200})
        free = judge_items(engine, [item()], s)[0]
        assert free.outcomes == dict.fromkeys(DIMS, "unparseable")
        assert free.attempts == {"ab": 2, "ba": 2} and len(free.raw["ab"]) == 2
        chosen = judge_items(engine, [item()], JudgeSettings(**{**s.__dict__, "mode": "choose"}))[0]
        assert set(chosen.outcomes.values()) <= {"win", "tie", "loss"}
        assert all(v in ("A", "B", "tie") for order in ("ab", "ba") for v in chosen.verdicts[order].values())
    finally:
        engine.close()
