"""Write the bundled WildChat-format sample: deterministic, template-generated, no real user data.

    python -m rlhi_hpc.tools.make_sample [out=rlhi_hpc/data/sample/wildchat_sample.jsonl] [seed=2024]

The sample has 68 users (``hashed_ip``), each with a consistent persona (see ``sample_texts.py``)
and several conversations spread over April–July 2024, multi-turn conversations whose follow-up
user messages cover every class of the default taxonomy, a few French/Spanish/Chinese, toxic and
redacted conversations, rows in the WildChat-1M field set and (from July 2024 on) in the
WildChat-4.8M one, and 14 malformed rows of distinct kinds. The same seed always gives the same
bytes. What the data file cannot say — the label of every generated follow-up, the persona of
every user and the expected quarantine reason of every malformed row — is returned by
:func:`build_sample` as a :class:`Sample`, which tests use as ground truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rlhi_hpc.tools.sample_texts import (
    LABELS,
    MODELS_1M,
    MODELS_48M,
    PERSONAS,
    PHRASES,
    TOXIC_FOLLOWUPS,
    USER_AGENTS,
    PersonaSpec,
    Phrases,
    Topic,
)

DEFAULT_SEED = 2024
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "sample" / "wildchat_sample.jsonl"
START = datetime(2024, 4, 1, tzinfo=timezone.utc)
END = datetime(2024, 7, 31, 23, 0, tzinfo=timezone.utc)
V48_FROM = datetime(2024, 7, 1, tzinfo=timezone.utc)  # rows from here on use the 4.8M field set
N_ONE_OFF_USERS = 3  # users with a single conversation (dropped by min_conversations_per_user)
N_TOXIC = 5
FOLLOWUP_COUNTS = (0, 1, 2, 3, 4)
FOLLOWUP_COUNT_WEIGHTS = (25, 35, 22, 12, 6)
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "self-harm",
    "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic",
)
DETOXIFY_KEYS = ("identity_attack", "insult", "obscene", "severe_toxicity", "sexual_explicit", "threat", "toxicity")


@dataclass(frozen=True, kw_only=True)
class FollowUp:
    """Ground truth for one generated follow-up user message."""

    conversation_id: str
    user: str
    turn_index: int  # index of the user turn in the row's `conversation` list
    label: str
    persona: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Malformed:
    """A deliberately broken line of the sample and the quarantine reason it must get."""

    line: int  # 0-based line index in the file
    kind: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Sample:
    """The sample's lines plus the ground truth the data file does not carry."""

    lines: tuple[str, ...]
    personas: Mapping[str, str]  # hashed_ip -> persona key
    followups: tuple[FollowUp, ...]
    malformed: tuple[Malformed, ...]
    toxic: tuple[str, ...]  # conversation ids with a toxic turn
    redacted: tuple[str, ...]  # conversation ids with a redacted turn
    n_conversations: int  # valid rows

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


@dataclass(frozen=True, kw_only=True)
class _User:
    hashed_ip: str
    persona: PersonaSpec
    country: str
    state: str
    header: Mapping[str, str]
    times: tuple[datetime, ...]  # start time of each conversation


@dataclass(frozen=True, kw_only=True)
class _Message:
    role: str
    content: str
    label: str = ""  # taxonomy label of a follow-up user message
    toxic: bool = False
    redacted: bool = False


@dataclass(kw_only=True)
class _Dialogue:
    """Mutable state while one conversation is being written."""

    persona: PersonaSpec
    phrases: Phrases
    topic: Topic
    messages: list[_Message] = field(default_factory=list)
    flaw: str = ""  # "alt" | "long" when the last answer is flawed on purpose
    last_kind: str = "answer"  # answer | fixed | closing | explain | more
    asked_terms: set[str] = field(default_factory=set)
    continued: bool = False
    used_other: bool = False


# --------------------------------------------------------------------------------------------
# Users and times
# --------------------------------------------------------------------------------------------


def _dumps(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def _hex(*parts: object, length: int = 64) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:length]


def _make_user(rng: random.Random, persona: PersonaSpec, index: int, n_convs: int, seed: int) -> _User:
    country, state = rng.choice(persona.places)
    first = START + timedelta(days=rng.uniform(0, 75))
    span = timedelta(days=rng.uniform(25, 110))
    last = min(first + span, END)
    times = sorted(first + (last - first) * rng.random() for _ in range(n_convs))
    return _User(
        hashed_ip=_hex(seed, persona.key, index),
        persona=persona,
        country=country,
        state=state,
        header={"accept-language": persona.accept_language, "user-agent": rng.choice(USER_AGENTS)},
        times=tuple(t.replace(microsecond=0) for t in times),
    )


def _make_users(rng: random.Random, seed: int) -> list[_User]:
    users = []
    for persona in PERSONAS:
        for index in range(persona.n_users):
            n_convs = rng.randint(4, 7) if persona.language == "English" else rng.randint(3, 5)
            users.append(_make_user(rng, persona, index, n_convs, seed))
    english = [p for p in PERSONAS if p.language == "English"]
    for index in range(N_ONE_OFF_USERS):
        users.append(_make_user(rng, rng.choice(english), 1000 + index, 1, seed))
    return users


# --------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------


def _long(rng: random.Random, dlg: _Dialogue, body: str) -> str:
    """Pad an answer into the long, chatty kind that draws "too long" feedback."""
    extra = rng.sample(dlg.persona.filler, k=min(len(dlg.persona.filler), rng.randint(3, 5)))
    parts = [rng.choice(dlg.phrases.long_intro), body, *extra, rng.choice(dlg.phrases.long_outro)]
    return "\n\n".join(parts)


def _flaws(dlg: _Dialogue) -> list[str]:
    flaws = []
    if dlg.topic.alt and dlg.topic.alt_feedback:
        flaws.append("alt")
    if dlg.persona.long_feedback and dlg.persona.filler:
        flaws.append("long")
    return flaws


def _feasible(dlg: _Dialogue, answer_point: bool) -> list[str]:
    """Labels that can follow the last assistant message."""
    labels = ["new_request"]
    if not dlg.used_other:
        labels.append("other")
    if dlg.last_kind == "closing":
        return labels
    labels += ["positive_feedback", "negative_feedback"]
    if answer_point and _flaws(dlg):
        labels.append("reattempt_with_feedback")
    if dlg.last_kind in ("answer", "fixed") and _alternatives(dlg):
        labels.append("reattempt_without_feedback")
    if dlg.topic.more and not dlg.continued:
        labels.append("continuation")
    if _open_terms(dlg):
        labels.append("clarification")
    return labels


def _alternatives(dlg: _Dialogue) -> list[str]:
    """Answers to the current request that differ from the last assistant message."""
    last = next((m.content for m in reversed(dlg.messages) if m.role == "assistant"), "")
    topic = dlg.topic
    return [text for text in (topic.again, topic.short, topic.reply) if text and text not in last]


def _open_terms(dlg: _Dialogue) -> list[tuple[str, str]]:
    last = dlg.messages[-1].content if dlg.messages else ""
    return [(t, e) for t, e in dlg.topic.terms if t.casefold() in last.casefold() and t not in dlg.asked_terms]


def _draw_label(rng: random.Random, dlg: _Dialogue, answer_point: bool) -> str:
    labels = _feasible(dlg, answer_point)
    weights = [dlg.persona.weights.get(label, 0.5) for label in labels]
    return rng.choices(labels, weights=weights)[0]


def _flawed(rng: random.Random, dlg: _Dialogue) -> str:
    """A flawed answer to the current request, which the persona's feedback will complain about."""
    dlg.flaw = rng.choice(_flaws(dlg))
    return dlg.topic.alt if dlg.flaw == "alt" else _long(rng, dlg, dlg.topic.reply)


_REPLY_KINDS: Mapping[str, str] = {
    "new_request": "answer", "reattempt_without_feedback": "answer", "reattempt_with_feedback": "fixed",
    "negative_feedback": "fixed", "continuation": "more", "clarification": "explain",
    "positive_feedback": "closing", "other": "closing",
}


def _prefixed(prefix: str, body: str) -> str:
    """`prefix` + `body`, with a blank line between when the body opens with a block (code, list)."""
    if prefix and body.lstrip().startswith(("```", "-", "1.", "|", "**")):
        return prefix.rstrip() + "\n\n" + body
    return prefix + body


def _reply(rng: random.Random, dlg: _Dialogue, label: str) -> str:
    """The assistant's answer to a user message with taxonomy `label` (the opening is a new_request)."""
    ph, topic = dlg.phrases, dlg.topic
    dlg.last_kind = _REPLY_KINDS[label]
    if label == "new_request":
        return topic.reply
    alternatives = _alternatives(dlg)
    if label == "reattempt_without_feedback":
        return _prefixed(rng.choice(ph.again_prefix), alternatives[0])
    if label == "reattempt_with_feedback":
        fixed = topic.reply if dlg.flaw == "alt" else (topic.short or topic.reply)
        return _prefixed(rng.choice(ph.fix_prefix), fixed)
    if label == "negative_feedback":
        if not alternatives:
            return ph.sorry_ask
        return _prefixed(rng.choice(ph.sorry_prefix), alternatives[0])
    if label == "continuation":
        return topic.more
    if label == "positive_feedback":
        return rng.choice(ph.thanks_reply)
    raise AssertionError(f"no reply rule for {label}")


def _followup(rng: random.Random, dlg: _Dialogue, label: str) -> tuple[str, str | None]:
    """The follow-up user message for `label`, and a fixed assistant reply when the label implies one."""
    ph, persona = dlg.phrases, dlg.persona
    own = persona.phrases.get(label, ())
    if label == "new_request":
        dlg.topic = rng.choice([t for t in persona.topics if t is not dlg.topic])
        dlg.continued = False
        return rng.choice(ph.next_prefix) + rng.choice(dlg.topic.requests), None
    if label == "reattempt_with_feedback":
        pool = dlg.topic.alt_feedback if dlg.flaw == "alt" else persona.long_feedback
        return rng.choice(pool), None
    if label == "clarification":
        term, explanation = rng.choice(_open_terms(dlg))
        dlg.asked_terms.add(term)
        return rng.choice(ph.clarify).format(term=term), _prefixed(rng.choice(ph.clarify_prefix), explanation)
    if label == "other":
        dlg.used_other = True
        return rng.choice(ph.other)
    if label == "continuation":
        dlg.continued = True
    pools = {"continuation": ph.more, "positive_feedback": ph.positive, "negative_feedback": ph.negative,
             "reattempt_without_feedback": ph.again}
    return rng.choice(own or pools[label]), None


def make_dialogue(rng: random.Random, persona: PersonaSpec, toxic: bool = False) -> list[_Message]:
    """One conversation of `persona`: an opening request, answers and labelled follow-ups."""
    dlg = _Dialogue(persona=persona, phrases=PHRASES[persona.language], topic=rng.choice(persona.topics))
    n_follow = rng.choices(FOLLOWUP_COUNTS, weights=FOLLOWUP_COUNT_WEIGHTS)[0]
    n_follow = max(n_follow, 1) if toxic else n_follow
    dlg.messages.append(_Message(role="user", content=rng.choice(dlg.topic.requests),
                                 redacted=dlg.topic.redacted))
    label, fixed_reply = "new_request", None
    for step in range(n_follow + 1):
        if fixed_reply is None:
            reply = _reply(rng, dlg, label)
        else:
            reply, dlg.last_kind = fixed_reply, _REPLY_KINDS[label]
        dlg.messages.append(_Message(role="assistant", content=reply))
        if step == n_follow:
            break
        if toxic and step == 0:
            next_label = "negative_feedback"
            text, fixed_reply = rng.choice(TOXIC_FOLLOWUPS)
        else:
            next_label = _draw_label(rng, dlg, label in ("new_request", "reattempt_without_feedback"))
            if next_label == "reattempt_with_feedback":
                dlg.messages[-1] = _Message(role="assistant", content=_flawed(rng, dlg))
            text, fixed_reply = _followup(rng, dlg, next_label)
        dlg.messages.append(_Message(role="user", content=text, label=next_label, toxic=toxic and step == 0,
                                     redacted=next_label == "new_request" and dlg.topic.redacted))
        label = next_label
    return dlg.messages


# --------------------------------------------------------------------------------------------
# Rows in the WildChat-1M and WildChat-4.8M field sets
# --------------------------------------------------------------------------------------------


def _turn_times(rng: random.Random, start: datetime, messages: Sequence[_Message]) -> list[datetime]:
    times, now = [], start
    for index, message in enumerate(messages):
        if message.role == "user" and index:
            now += timedelta(seconds=rng.uniform(20, 400))
        elif message.role == "assistant":
            now += timedelta(seconds=rng.uniform(2, 8) + len(message.content) / rng.uniform(60, 120))
        times.append(now.replace(microsecond=0))
    return times


def _score(rng: random.Random, high: bool) -> float:
    return float(f"{rng.uniform(0.6, 0.98):.2f}") if high else float(f"{rng.uniform(1e-6, 2e-3):.1g}")


def _moderation(rng: random.Random, toxic: bool) -> tuple[dict[str, Any], dict[str, float]]:
    """One turn's `openai_moderation` and `detoxify_moderation` entries."""
    scores = {c: _score(rng, toxic and c == "harassment") for c in MODERATION_CATEGORIES}
    openai = {"categories": {c: v > 0.5 for c, v in scores.items()}, "category_scores": scores, "flagged": toxic}
    detox = {k: _score(rng, toxic and k in ("insult", "toxicity")) for k in DETOXIFY_KEYS}
    return openai, detox


def _turn_1m(user: _User, message: _Message, when: datetime, language: str, turn_id: int) -> dict[str, Any]:
    is_user = message.role == "user"
    return {
        "content": message.content,
        "country": user.country if is_user else None,
        "hashed_ip": user.hashed_ip if is_user else None,
        "header": dict(user.header) if is_user else None,
        "language": language,
        "redacted": message.redacted,
        "role": message.role,
        "state": (user.state or None) if is_user else None,
        "timestamp": None if is_user else when.isoformat(),
        "toxic": message.toxic,
        "turn_identifier": turn_id,
    }


def _turn_48m(rng: random.Random, user: _User, message: _Message, when: datetime, language: str,
              turn_id: int) -> dict[str, Any]:
    is_user = message.role == "user"
    tokens = max(1, len(message.content) // 4)
    return {
        "content": message.content,
        "created": None if is_user else int(when.timestamp()),
        "header": dict(user.header) if is_user else None,
        "hashed_ip": user.hashed_ip if is_user else None,
        "country": user.country if is_user else None,
        "toxic": message.toxic,
        "redacted": message.redacted,
        "state": (user.state or None) if is_user else None,
        "language": language,
        "openai_id": None if is_user else "chatcmpl-" + _hex(turn_id, user.hashed_ip, length=29),
        "role": message.role,
        "temperature": None if is_user else 1.0,
        "timestamp": when.replace(tzinfo=None).isoformat(),
        "token_counter": None if is_user else tokens,
        "top_p": None if is_user else 1.0,
        "turn_identifier": turn_id,
        "system_fingerprint": None if is_user else "fp_" + _hex(turn_id, length=10),
        "usage": None if is_user else {"completion_tokens": tokens, "prompt_tokens": rng.randint(20, 900),
                                        "total_tokens": None},
    }


def render_row(rng: random.Random, user: _User, conv_id: str, start: datetime, messages: Sequence[_Message],
               v48: bool) -> dict[str, Any]:
    """A WildChat row (the 4.8M field set when `v48`, else the 1M one) for one conversation."""
    language = user.persona.language
    times = _turn_times(rng, start, messages)
    base = rng.randrange(1_000_000, 5_000_000)
    turns = [
        _turn_48m(rng, user, m, t, language, base + i // 2) if v48 else _turn_1m(user, m, t, language, base + i // 2)
        for i, (m, t) in enumerate(zip(messages, times))
    ]
    for turn in turns:
        if turn.get("usage"):
            turn["usage"]["total_tokens"] = turn["usage"]["completion_tokens"] + turn["usage"]["prompt_tokens"]
    moderation = [_moderation(rng, m.toxic) for m in messages if m.role == "user"]  # one per turn
    if not v48:
        stamp: Any = times[-1].isoformat()
    elif rng.random() < 0.5:
        stamp = times[-1].replace(tzinfo=None).isoformat(sep=" ")  # naive, as WildChat-4.8M stores it
    else:
        stamp = int(times[-1].timestamp() * 1000)  # epoch milliseconds, as pandas writes JSON
    return {
        "conversation_hash": conv_id,
        "model": rng.choice(MODELS_48M if v48 else MODELS_1M),
        "timestamp": stamp,
        "conversation": turns,
        "turn": sum(1 for m in messages if m.role == "user"),
        "language": language,
        "openai_moderation": [o for o, _ in moderation],
        "detoxify_moderation": [d for _, d in moderation],
        "toxic": any(m.toxic for m in messages),
        "redacted": any(m.redacted for m in messages),
        "state": user.state or None,
        "country": user.country,
        "hashed_ip": user.hashed_ip,
        "header": dict(user.header),
    }


# --------------------------------------------------------------------------------------------
# Malformed rows
# --------------------------------------------------------------------------------------------

#: Kinds of broken rows in the sample, with the quarantine reason each must get.
MALFORMED_KINDS: Mapping[str, str] = {
    "missing_conversation": "missing_field",
    "turn_as_string": "wrong_type",
    "timestamp_garbage": "bad_timestamp",
    "empty_content": "empty_content",
    "null_content": "missing_field",
    "non_string_content": "wrong_type",
    "unknown_role": "unknown_role",
    "assistant_first": "bad_alternation",
    "not_json": "invalid_json",
    "truncated_line": "invalid_json",
    "turn_too_long": "turn_too_long",
    "missing_hashed_ip": "missing_user",
    "conversation_not_list": "wrong_type",
    "empty_conversation": "empty_conversation",
}

_LOG_LINE = "2024-05-14 03:12:{s:02d},118 ERROR [worker-{w}] job=sync-orders attempt={a} failed: " \
            "ConnectionResetError(104, 'Connection reset by peer')\n"


def _pasted_log() -> str:
    """A pasted log of about 25,000 characters (longer than the default data.max_turn_chars)."""
    return "".join(_LOG_LINE.format(s=i % 60, w=i % 8, a=i % 5 + 1) for i in range(230))


def _break(kind: str, row: dict[str, Any]) -> str:
    """The JSON line of `row` broken in the way `kind` names."""
    conv = row["conversation"]
    if kind == "missing_conversation":
        del row["conversation"]
    elif kind == "turn_as_string":
        row["turn"] = str(row["turn"])
    elif kind == "timestamp_garbage":
        row["timestamp"] = "sometime last tuesday"
    elif kind in ("empty_content", "null_content"):
        conv[1]["content"] = "" if kind == "empty_content" else None
    elif kind == "non_string_content":
        conv[0]["content"] = [{"type": "text", "text": conv[0]["content"]}]
    elif kind == "unknown_role":
        conv.insert(0, {**conv[1], "role": "system", "content": "You are a helpful assistant."})
    elif kind == "assistant_first":
        row["conversation"] = conv[1:]
    elif kind == "missing_hashed_ip":
        del row["hashed_ip"]
        for turn in conv:
            turn["hashed_ip"] = None
    elif kind == "conversation_not_list":
        row["conversation"] = json.dumps(conv, ensure_ascii=False)
    elif kind == "empty_conversation":
        row["conversation"] = []
    elif kind == "turn_too_long":
        conv[0]["content"] = "why does my sync job keep failing? log:\n" + _pasted_log()
    line = _dumps(row)
    if kind == "truncated_line":
        return line[: len(line) // 2]
    if kind == "not_json":
        return "conversation_hash,model,timestamp,turn,language,toxic,redacted,country,hashed_ip"
    return line


def _malformed_lines(rng: random.Random, users: Sequence[_User]) -> list[tuple[str, str]]:
    """(kind, line) for every malformed kind, each built from a fresh valid conversation."""
    out = []
    for kind in MALFORMED_KINDS:
        user = rng.choice([u for u in users if u.persona.language == "English"])
        start = START + (V48_FROM - START) * rng.random()
        messages = make_dialogue(rng, user.persona)
        conv_id = hashlib.md5(f"malformed:{kind}:{user.hashed_ip}".encode()).hexdigest()
        row = render_row(rng, user, conv_id, start.replace(microsecond=0), messages, v48=False)
        out.append((kind, _break(kind, row)))
    return out


# --------------------------------------------------------------------------------------------
# The sample
# --------------------------------------------------------------------------------------------


def _toxic_slots(rng: random.Random, users: Sequence[_User]) -> set[tuple[str, int]]:
    english = [u for u in users if u.persona.language == "English" and len(u.times) > 1]
    chosen = rng.sample(english, N_TOXIC)
    return {(u.hashed_ip, rng.randrange(len(u.times))) for u in chosen}


def _conversations(rng: random.Random, users: Sequence[_User]) -> tuple[list[tuple[datetime, str, str]], list[FollowUp],
                                                                        list[str], list[str]]:
    toxic_slots = _toxic_slots(rng, users)
    rows, followups, toxic, redacted = [], [], [], []
    for user in users:
        for k, start in enumerate(user.times):
            messages = make_dialogue(rng, user.persona, toxic=(user.hashed_ip, k) in toxic_slots)
            conv_id = hashlib.md5(f"{user.hashed_ip}:{k}:{messages[0].content}".encode()).hexdigest()
            row = render_row(rng, user, conv_id, start, messages, v48=start >= V48_FROM)
            rows.append((start, conv_id, _dumps(row)))
            followups += [FollowUp(conversation_id=conv_id, user=user.hashed_ip, turn_index=i, label=m.label,
                                   persona=user.persona.key, text=m.content)
                          for i, m in enumerate(messages) if m.label]
            if row["toxic"]:
                toxic.append(conv_id)
            if row["redacted"]:
                redacted.append(conv_id)
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows, followups, toxic, redacted


def build_sample(seed: int = DEFAULT_SEED) -> Sample:
    """Generate the sample and its ground truth; the same seed always gives the same sample."""
    rng = random.Random(seed)
    users = _make_users(rng, seed)
    rows, followups, toxic, redacted = _conversations(rng, users)
    lines = [line for _, _, line in rows]
    bad = _malformed_lines(rng, users)
    malformed = []
    for k, (kind, line) in enumerate(bad):
        position = (k + 1) * len(lines) // (len(bad) + 1) + k  # spread out; +k counts earlier inserts
        lines.insert(position, line)
        malformed.append(Malformed(line=position, kind=kind, reason=MALFORMED_KINDS[kind]))
    missing = sorted(set(LABELS) - {f.label for f in followups})
    if missing:
        raise ValueError(f"seed {seed} gives no follow-up labelled {missing}; choose another seed")
    return Sample(
        lines=tuple(lines),
        personas={u.hashed_ip: u.persona.key for u in users},
        followups=tuple(followups),
        malformed=tuple(malformed),
        toxic=tuple(toxic),
        redacted=tuple(redacted),
        n_conversations=len(rows),
    )


def write_sample(out: Path | str = DEFAULT_OUT, seed: int = DEFAULT_SEED) -> Sample:
    """Write the sample to `out` atomically (temporary file, then rename)."""
    sample = build_sample(seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(sample.text(), encoding="utf-8")
    os.replace(tmp, out)
    return sample


def _parse_args(argv: Sequence[str]) -> tuple[Path, int]:
    out, seed = DEFAULT_OUT, DEFAULT_SEED
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("out", "seed"):
            raise SystemExit(f"unknown argument {arg!r}; usage: python -m rlhi_hpc.tools.make_sample "
                             "[out=PATH] [seed=N]")
        if key == "out":
            out = Path(value)
        else:
            seed = int(value)
    return out, seed


def main(argv: Sequence[str] | None = None) -> int:
    out, seed = _parse_args(sys.argv[1:] if argv is None else argv)
    sample = write_sample(out, seed)
    print(f"wrote {out}: lines={len(sample.lines)} conversations={sample.n_conversations} "
          f"users={len(sample.personas)} followups={len(sample.followups)} malformed={len(sample.malformed)} "
          f"bytes={out.stat().st_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
