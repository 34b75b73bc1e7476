"""Typed records that flow between stages, and their JSONL I/O.

Every record is a frozen dataclass that serialises to one JSON object per line.
Records produced by a model carry a :class:`Provenance` so a DPO pair can be traced
back to the user message, conversation and turn it came from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a record came from: stage, models, config hash and source ids."""

    stage: str
    config_hash: str
    code_version: str
    models: dict[str, str] = field(default_factory=dict)
    user: str = ""
    conversation_id: str = ""
    turn_index: int = -1


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One message of a conversation (WildChat `conversation[i]`)."""

    role: str  # "user" | "assistant"
    content: str
    turn_id: str = ""
    language: str = ""
    timestamp: float | None = None
    toxic: bool = False
    redacted: bool = False


@dataclass(frozen=True, kw_only=True)
class Conversation:
    """A validated WildChat conversation, owned by one user."""

    conversation_id: str
    user: str
    timestamp: float  # seconds since the epoch (UTC)
    model: str
    language: str
    turns: tuple[Turn, ...]
    split: str = "train"  # "train" | "eval" (held-out users)
    role: str = "target"  # "history" (persona input only) | "target" (turns the pipeline learns from)
    toxic: bool = False
    redacted: bool = False
    country: str = ""
    source: str = ""  # "<file>:<row>" it was read from


@dataclass(frozen=True, kw_only=True)
class Quarantined:
    """A malformed input row kept aside with the reason it was rejected."""

    source: str
    reason: str
    detail: str = ""
    raw: str = ""  # the row as read (truncated), so nothing is lost


@dataclass(frozen=True, kw_only=True)
class TurnLabel:
    """Classification of a user turn that follows an assistant turn."""

    user: str
    conversation_id: str
    turn_index: int  # index into Conversation.turns of the labelled *user* turn
    label: str
    actionable: bool
    feedback: str  # the user's message when actionable, else ""
    scores: dict[str, float]
    split: str
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class Persona:
    """An LLM-written summary of one user's history strictly before `cutoff_time`."""

    user: str
    text: str
    n_conversations: int
    conversation_ids: tuple[str, ...]
    cutoff_time: float
    history_tokens: int
    split: str
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class RewritePair:
    """A user-guided rewrite (chosen) against the regenerated original (rejected)."""

    key: str
    prompt: tuple[dict[str, str], ...]  # chat messages up to the assistant turn, no system prompt
    persona: str
    chosen: str
    rejected: str
    feedback: str
    with_feedback: bool
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class Candidates:
    """N persona-conditioned samples for one request without feedback."""

    key: str
    prompt: tuple[dict[str, str], ...]
    persona: str
    texts: tuple[str, ...]
    with_persona: bool
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class ScoredCandidates:
    """Candidates with one reward-model score each."""

    key: str
    prompt: tuple[dict[str, str], ...]
    persona: str
    texts: tuple[str, ...]
    scores: tuple[float, ...]
    persona_visible: bool
    provenance: Provenance


@dataclass(frozen=True, kw_only=True)
class Pair:
    """A DPO preference pair after quality filtering, tagged with its data-mix source."""

    key: str
    prompt: tuple[dict[str, str], ...]
    persona: str
    chosen: str
    rejected: str
    source: str  # "rewrites" | "rewards"
    margin: float | None
    provenance: Provenance


def to_dict(record: Any) -> dict[str, Any]:
    """Serialise a record dataclass to plain JSON-able data (no deep copies: records are frozen)."""
    return {name: _plain(getattr(record, name)) for name in record.__dataclass_fields__}


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a record of type `cls` from :func:`to_dict` output (nested dataclasses too)."""
    kwargs: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, value in data.items():
        if name not in hints:
            continue
        kwargs[name] = _coerce(hints[name].type, value)
    return cls(**kwargs)


_NESTED = {"Provenance": Provenance, "tuple[Turn, ...]": Turn}


def _coerce(annotation: Any, value: Any) -> Any:
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if ann == "Provenance" and isinstance(value, dict):
        return Provenance(**value)
    if ann == "tuple[Turn, ...]":
        return tuple(Turn(**t) for t in value)
    if ann.startswith("tuple[dict"):
        return tuple(dict(m) for m in value)
    if ann.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    return value


def dumps(record: Any) -> str:
    """One JSON line (no trailing newline) for a record or a plain dict."""
    data = record if isinstance(record, dict) else to_dict(record)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def read_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a finished JSONL file."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_records(path: Path | str, cls: type[T]) -> Iterator[T]:
    """Yield typed records from a JSONL file written by a stage."""
    for row in read_jsonl(path):
        yield from_dict(cls, row)


def write_jsonl_lines(fh: Any, records: Iterable[Any]) -> int:
    """Write records to an open text file, one per line; return how many."""
    n = 0
    for rec in records:
        fh.write(dumps(rec) + "\n")
        n += 1
    return n
