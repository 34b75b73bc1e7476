"""WildChat-format input: raw rows from files or the hub, row validation, filters and the user split.

The layer under the ``ingest`` stage, in four parts:

* **Reading** — :func:`iter_raw_rows` streams :class:`RawRow` objects from a JSONL file (``.jsonl``,
  ``.json``, optionally ``.gz``), a parquet file (batch by batch) or a folder of those (sorted
  relative paths). A line that is not JSON never raises: it becomes a row with ``data=None`` and an
  ``error``. :func:`iter_hub_rows` streams a hub dataset through ``datasets`` (clusters only).
* **Validation** — :func:`parse_row` turns a raw row into a :class:`~rlhi_hpc.records.Conversation`
  or a :class:`~rlhi_hpc.records.Quarantined` carrying one of :data:`QUARANTINE_REASONS`.
* **Filters** — :func:`filter_reason` applies the ``data.*`` filters (language, toxic, redacted,
  user-turn counts) to a *valid* conversation; filtered rows are counted, not quarantined.
* **Stable hashing** — :func:`stable_bucket` (shard of a user) and :func:`is_eval_user` (held-out
  users) hash with sha256, so they agree across processes, machines and Python versions.

Both field sets are accepted:

* **WildChat-1M**: ``conversation_hash``, ``model``, ``timestamp`` (a timezone-aware datetime; in
  JSON an ISO-8601 string), ``conversation`` (turns with ``content``, ``role``, ``language``,
  ``redacted``, ``toxic``, ``turn_identifier``, ``timestamp`` — null on user turns — ``country``,
  ``state``, ``hashed_ip``, ``header``), ``turn``, ``language``, ``openai_moderation``,
  ``detoxify_moderation``, ``toxic``, ``redacted``, ``state``, ``country``, ``hashed_ip``, ``header``.
* **WildChat-4.8M**: the same row fields, a timezone-naive ``timestamp`` (read as UTC; pandas JSON
  exports write it as epoch milliseconds) and extra per-turn fields (``created`` in epoch seconds,
  ``openai_id``, ``temperature``, ``top_p``, ``token_counter``, ``system_fingerprint``, ``usage``).
  The original WildChat's ``conversation_id`` is accepted in place of ``conversation_hash``.

Note that WildChat's ``conversation_hash`` is a hash of the content, so identical conversations
from different rows share it: key records by ``(user, conversation_id, source)`` when uniqueness
matters.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from rlhi_hpc.config import DataConfig
from rlhi_hpc.errors import StageError
from rlhi_hpc.records import Conversation, Quarantined, Turn

log = logging.getLogger(__name__)

#: Every reason :func:`parse_row` can give a quarantined row, with what it means.
QUARANTINE_REASONS: Mapping[str, str] = MappingProxyType({
    "invalid_json": "the line is not valid UTF-8 JSON, is truncated, or is not a JSON object",
    "wrong_type": "a field has the wrong type (e.g. `turn` as a string, `conversation` not a list, "
                  "a turn that is not an object, non-string content, a non-boolean flag)",
    "missing_field": "a required field is absent or null (`conversation`, `conversation_hash`, "
                     "`timestamp`, a turn's `role` or `content`)",
    "missing_user": "the user key (`data.user_key`, default `hashed_ip`) is absent or empty",
    "empty_conversation": "`conversation` is an empty list",
    "empty_content": "a turn's content is empty or only whitespace",
    "unknown_role": "a turn's role is not `user` or `assistant`",
    "bad_alternation": "roles do not alternate user/assistant starting with user",
    "turn_too_long": "a turn is longer than `data.max_turn_chars` characters",
    "bad_timestamp": "a row or turn timestamp cannot be read as a date between 1970 and 2100",
})

#: Every reason :func:`filter_reason` can give a valid conversation that is left out.
FILTER_REASONS: Mapping[str, str] = MappingProxyType({
    "filtered_language": "the conversation's language is not in `data.languages`",
    "filtered_toxic": "flagged toxic (row or any turn) and `data.drop_toxic` is set",
    "filtered_redacted": "flagged redacted (row or any turn) and `data.drop_redacted` is set",
    "filtered_min_turns": "fewer user turns than `data.min_turns`",
    "filtered_max_turns": "more user turns than `data.max_turns`",
})

ROLES = frozenset({"user", "assistant"})
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
PARQUET_BATCH_ROWS = 1024
RAW_KEEP_CHARS = 4000  # a quarantined row keeps this much of its text
SAMPLE_NAME = "sample"  # the value of data.path that means the bundled sample
_MAX_EPOCH = 4102444800.0  # 2100-01-01: anything later is garbage, not a date


@dataclass(frozen=True, kw_only=True)
class RawRow:
    """One input row as read, before validation.

    ``source`` is ``"<file>:<index>"`` (the file name, or its path relative to the input folder;
    the 0-based line index in JSONL files, blank lines included, or row index in parquet files).
    ``data`` is the decoded object, or None when the line could not be decoded (``error`` says
    why). ``raw`` is the line as read for JSONL input and ``""`` for parquet and hub rows.
    """

    source: str
    data: dict[str, Any] | None
    error: str | None
    raw: str


class _Reject(Exception):
    """Internal: a row failed validation with a machine-readable reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def sample_path() -> Path:
    """The bundled WildChat-format sample (``python -m rlhi_hpc.tools.make_sample`` writes it)."""
    return Path(__file__).resolve().parent / "sample" / "wildchat_sample.jsonl"


def _is_supported(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(JSONL_SUFFIXES) or name.endswith(PARQUET_SUFFIXES)


def input_files(path: str | Path) -> list[Path]:
    """The files behind a local input path: the file itself, or a folder's supported files.

    Folders are searched recursively; hidden files and folders are skipped; the order is the
    sorted relative path, so every process sees the same order.
    """
    root = Path(path)
    if root.is_file():
        if not _is_supported(root):
            raise StageError(f"input file {root} is not .jsonl/.json(.gz) or .parquet; convert it or "
                             "point data.path at a supported file or folder")
        return [root]
    if root.is_dir():
        files = sorted(
            (p for p in root.rglob("*") if p.is_file() and _is_supported(p)
             and not any(part.startswith(".") for part in p.relative_to(root).parts)),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise StageError(f"input folder {root} holds no .jsonl/.json(.gz)/.parquet files; "
                             "check data.path")
        return files
    raise StageError(f"input path {root} does not exist; set data.path to a parquet/JSONL file or "
                     f"folder, '{SAMPLE_NAME}' for the bundled sample, or a hub dataset id")


def iter_raw_rows(path: str | Path, *, parquet_batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[RawRow]:
    """Stream the rows of a JSONL or parquet file, or of every such file in a folder (sorted)."""
    root = Path(path)
    for file in input_files(root):
        name = file.name if root.is_file() else file.relative_to(root).as_posix()
        log.info("event=read_input file=%s", file)
        yield from iter_file_rows(file, name, parquet_batch_rows=parquet_batch_rows)


def iter_file_rows(file: str | Path, name: str | None = None, *,
                   parquet_batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[RawRow]:
    """Stream the rows of one file; ``name`` (default: the file name) prefixes each source."""
    file = Path(file)
    label = name if name is not None else file.name
    if file.name.lower().endswith(PARQUET_SUFFIXES):
        yield from _iter_parquet(file, label, parquet_batch_rows)
    else:
        yield from _iter_jsonl(file, label)


def _open_binary(file: Path) -> IO[bytes]:
    return gzip.open(file, "rb") if file.name.lower().endswith(".gz") else open(file, "rb")


def _iter_jsonl(file: Path, label: str) -> Iterator[RawRow]:
    if file.name.lower().endswith((".json", ".json.gz")) and _starts_with_array(file):
        with _open_binary(file) as fh:
            blob = fh.read()
        rows = _decode_json_array(blob, label)
        if rows is not None:
            yield from rows
            return
        # Not one valid JSON array after all: read it as JSON lines, so good lines are kept.
    with _open_binary(file) as fh:
        for index, line in enumerate(fh):
            if line.strip():
                yield decode_line(line, f"{label}:{index}")


def _starts_with_array(file: Path) -> bool:
    with _open_binary(file) as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith(b"[")
    return False


def decode_line(line: bytes | str, source: str) -> RawRow:
    """Decode one JSON line into a :class:`RawRow`; never raises."""
    if isinstance(line, bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
            return RawRow(source=source, data=None, error=f"not UTF-8: {exc}", raw=raw)
    else:
        text = line
    text = text.rstrip("\r\n")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return RawRow(source=source, data=None, error=f"invalid JSON: {exc}", raw=text)
    if not isinstance(data, dict):
        return RawRow(source=source, data=None, error=f"a JSON {type(data).__name__}, not an object", raw=text)
    return RawRow(source=source, data=data, error=None, raw=text)


def _decode_json_array(blob: bytes, label: str) -> list[RawRow] | None:
    """The rows of a file holding one JSON array, or None when it is not a valid array."""
    try:
        items = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(items, list):
        return None
    rows = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            rows.append(RawRow(source=f"{label}:{index}", data=item, error=None, raw=""))
        else:
            rows.append(RawRow(source=f"{label}:{index}", data=None, raw=json.dumps(item, default=str),
                               error=f"a JSON {type(item).__name__}, not an object"))
    return rows


def _iter_parquet(file: Path, label: str, batch_rows: int) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise StageError(f"cannot read parquet file {file}: {exc}; re-download or remove it") from exc
    index = 0
    for batch in reader.iter_batches(batch_size=batch_rows):
        for data in batch.to_pylist():
            yield RawRow(source=f"{label}:{index}", data=data, error=None, raw="")
            index += 1


def iter_hub_rows(dataset_id: str, split: str) -> Iterator[RawRow]:
    """Stream a hub dataset (e.g. ``allenai/WildChat-1M``) with ``datasets`` in streaming mode.

    Meant for clusters with hub access (gated datasets need ``huggingface-cli login`` first); no
    test downloads anything. ``dataset_id`` may also be a local folder that ``datasets`` can load.
    Sources read ``"<dataset_id>/<split>:<row index>"``.
    """
    from datasets import load_dataset

    log.info("event=read_hub dataset=%s split=%s streaming=true", dataset_id, split)
    dataset = load_dataset(dataset_id, split=split, streaming=True)
    for index, data in enumerate(dataset):
        yield RawRow(source=f"{dataset_id}/{split}:{index}", data=dict(data), error=None, raw="")


def iter_input_rows(cfg: DataConfig) -> Iterator[RawRow]:
    """Rows of ``cfg.path``: the bundled sample, a local file or folder, or a hub dataset id."""
    if cfg.path == SAMPLE_NAME:
        yield from iter_raw_rows(sample_path())
    elif Path(cfg.path).exists():
        yield from iter_raw_rows(cfg.path)
    elif _looks_like_hub_id(cfg.path):
        yield from iter_hub_rows(cfg.path, cfg.hub_split)
    else:
        raise StageError(f"data.path={cfg.path!r} is neither a local file/folder, '{SAMPLE_NAME}', "
                         "nor a hub dataset id like allenai/WildChat-1M")


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not path.startswith((".", "~"))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def parse_timestamp(value: Any) -> float:
    """Epoch seconds (UTC) from a datetime, an ISO-8601 string, or an epoch number.

    Naive datetimes and strings are read as UTC. Numbers above 1e14 are taken as microseconds and
    above 1e11 as milliseconds (pandas writes timestamps as epoch milliseconds). Raises ValueError
    for anything else or a date outside 1970..2100.
    """
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a timestamp: {value!r}")
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        seconds = stamp.timestamp()
    elif isinstance(value, (int, float)):
        seconds = _epoch_seconds(float(value))
    elif isinstance(value, str):
        seconds = _parse_timestamp_text(value.strip())
    else:
        raise ValueError(f"a {type(value).__name__} is not a timestamp")
    if not (math.isfinite(seconds) and 0.0 <= seconds < _MAX_EPOCH):
        raise ValueError(f"timestamp {value!r} is outside 1970..2100")
    return seconds


def _epoch_seconds(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError(f"timestamp {number!r} is not finite")
    if abs(number) >= 1e14:
        return number / 1e6
    if abs(number) >= 1e11:
        return number / 1e3
    return number


def _parse_timestamp_text(text: str) -> float:
    if not text:
        raise ValueError("empty timestamp")
    try:
        return _epoch_seconds(float(text))
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"cannot parse timestamp {text[:60]!r}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def parse_row(row: RawRow, cfg: DataConfig) -> Conversation | Quarantined:
    """Validate one raw row: a :class:`Conversation`, or a :class:`Quarantined` with a reason.

    Never raises on bad data; the reason is one of :data:`QUARANTINE_REASONS`. The conversation's
    ``split`` is left at ``"train"``: the caller assigns held-out users with :func:`is_eval_user`.
    """
    if row.data is None:
        return _quarantine(row, "invalid_json", row.error or "the row could not be decoded")
    try:
        return _conversation(row.data, row.source, cfg)
    except _Reject as exc:
        return _quarantine(row, exc.reason, exc.detail)


def _quarantine(row: RawRow, reason: str, detail: str) -> Quarantined:
    raw = row.raw if row.raw or row.data is None else json.dumps(row.data, ensure_ascii=False, default=str)
    if len(raw) > RAW_KEEP_CHARS:
        raw = raw[:RAW_KEEP_CHARS] + f"...[{len(raw) - RAW_KEEP_CHARS} more chars]"
    return Quarantined(source=row.source, reason=reason, detail=detail, raw=raw)


def _conversation(data: Any, source: str, cfg: DataConfig) -> Conversation:
    if not isinstance(data, dict):
        raise _Reject("wrong_type", f"the row is a {type(data).__name__}, not an object")
    items = _require(data, "conversation")
    if not isinstance(items, list):
        raise _Reject("wrong_type", f"'conversation' is a {type(items).__name__}, not a list")
    if not items:
        raise _Reject("empty_conversation", "'conversation' is an empty list")
    conversation_id = _conversation_id(data)
    user = _user(data, cfg.user_key)
    turns = tuple(_turn(item, index, cfg) for index, item in enumerate(items))
    _check_alternation(turns)
    _optional(data, "turn", int)
    return Conversation(
        conversation_id=conversation_id,
        user=user,
        timestamp=_row_timestamp(data, turns),
        model=_optional(data, "model", str) or "",
        language=_optional(data, "language", str) or _first_user_language(turns),
        turns=turns,
        toxic=bool(_optional(data, "toxic", bool)),
        redacted=bool(_optional(data, "redacted", bool)),
        country=_optional(data, "country", str) or "",
        source=source,
    )


def _require(data: dict[str, Any], key: str, where: str = "") -> Any:
    value = data.get(key)
    if value is None:
        raise _Reject("missing_field", f"{where}'{key}' is missing")
    return value


def _optional(data: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """The value of an optional field (None when absent), checked against `kind`."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Reject("wrong_type", f"{where}'{key}' is a {type(value).__name__}, not {kind.__name__}")
    return value


def _conversation_id(data: dict[str, Any]) -> str:
    for key in ("conversation_hash", "conversation_id"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _Reject("wrong_type", f"'{key}' is a {type(value).__name__}, not str")
        if value.strip():
            return value
    raise _Reject("missing_field", "'conversation_hash' (or 'conversation_id') is missing or empty")


def _user_value(data: dict[str, Any], key: str) -> Any:
    """The row-level `key`, else the first user turn's (WildChat keeps it on user turns too)."""
    value = data.get(key)
    items = data.get("conversation")
    if value is None and isinstance(items, list):
        first = next((t for t in items if isinstance(t, dict) and t.get("role") == "user"), None)
        value = first.get(key) if first is not None else None
    return value


def raw_user(row: RawRow, user_key: str) -> str | None:
    """The user :func:`parse_row` would assign to `row`, read cheaply before validation (for
    bucketing rows by user); None when the row has no usable user id."""
    if not isinstance(row.data, dict):
        return None
    value = _user_value(row.data, user_key)
    return value if isinstance(value, str) and value.strip() else None


def _user(data: dict[str, Any], key: str) -> str:
    value = _user_value(data, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Reject("missing_user", f"user key '{key}' is missing or empty")
    if not isinstance(value, str):
        raise _Reject("wrong_type", f"user key '{key}' is a {type(value).__name__}, not str")
    return value


def _turn(item: Any, index: int, cfg: DataConfig) -> Turn:
    where = f"conversation[{index}]."
    if not isinstance(item, dict):
        raise _Reject("wrong_type", f"conversation[{index}] is a {type(item).__name__}, not an object")
    role = _require(item, "role", where)
    if not isinstance(role, str):
        raise _Reject("wrong_type", f"{where}'role' is a {type(role).__name__}, not str")
    if role not in ROLES:
        raise _Reject("unknown_role", f"{where}role is {role[:40]!r}; expected 'user' or 'assistant'")
    content = _require(item, "content", where)
    if not isinstance(content, str):
        raise _Reject("wrong_type", f"{where}'content' is a {type(content).__name__}, not str")
    if not content.strip():
        raise _Reject("empty_content", f"{where}content is empty")
    if len(content) > cfg.max_turn_chars:
        raise _Reject("turn_too_long", f"{where}content has {len(content)} chars > data.max_turn_chars="
                      f"{cfg.max_turn_chars}")
    turn_id = item.get("turn_identifier")
    return Turn(
        role=role,
        content=content,
        turn_id="" if turn_id is None else str(turn_id),
        language=_optional(item, "language", str, where) or "",
        timestamp=_turn_timestamp(item, where),
        toxic=bool(_optional(item, "toxic", bool, where)),
        redacted=bool(_optional(item, "redacted", bool, where)),
    )


def _turn_timestamp(item: dict[str, Any], where: str) -> float | None:
    """A turn's time: its `timestamp`, else its `created` (WildChat-4.8M), else None."""
    for key in ("timestamp", "created"):
        value = item.get(key)
        if value is None:
            continue
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise _Reject("bad_timestamp", f"{where}'{key}': {exc}") from None
    return None


def _row_timestamp(data: dict[str, Any], turns: tuple[Turn, ...]) -> float:
    """The row's `timestamp`; when it is absent, the latest turn timestamp."""
    value = data.get("timestamp")
    if value is None:
        stamps = [t.timestamp for t in turns if t.timestamp is not None]
        if not stamps:
            raise _Reject("missing_field", "'timestamp' is missing and no turn has one")
        return max(stamps)
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _Reject("bad_timestamp", f"'timestamp': {exc}") from None


def _check_alternation(turns: tuple[Turn, ...]) -> None:
    for index, turn in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn.role != expected:
            raise _Reject("bad_alternation", f"conversation[{index}] has role {turn.role!r}; expected "
                          f"{expected!r} (turns alternate user/assistant, starting with user)")


def _first_user_language(turns: tuple[Turn, ...]) -> str:
    return next((t.language for t in turns if t.role == "user" and t.language), "")


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


def user_turn_count(conv: Conversation) -> int:
    """Number of user turns in a conversation (WildChat's `turn`)."""
    return sum(1 for t in conv.turns if t.role == "user")


def filter_reason(conv: Conversation, cfg: DataConfig) -> str | None:
    """Why the ``data.*`` filters leave a valid conversation out (one of :data:`FILTER_REASONS`),
    or None when it is kept. Checked in the order language, toxic, redacted, turn counts."""
    if cfg.languages and conv.language.casefold() not in {lang.casefold() for lang in cfg.languages}:
        return "filtered_language"
    if cfg.drop_toxic and (conv.toxic or any(t.toxic for t in conv.turns)):
        return "filtered_toxic"
    if cfg.drop_redacted and (conv.redacted or any(t.redacted for t in conv.turns)):
        return "filtered_redacted"
    n_user = user_turn_count(conv)
    if n_user < cfg.min_turns:
        return "filtered_min_turns"
    if n_user > cfg.max_turns:
        return "filtered_max_turns"
    return None


# --------------------------------------------------------------------------------------------
# Stable hashing
# --------------------------------------------------------------------------------------------


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def stable_bucket(key: str, n: int, seed: int) -> int:
    """A bucket in ``[0, n)`` for `key`, the same in every process and Python version."""
    if n < 1:
        raise ValueError(f"number of buckets must be >= 1, got {n}")
    return _hash64(f"bucket:{seed}:{key}") % n


def is_eval_user(user: str, fraction: float, seed: int) -> bool:
    """Whether `user` is held out for evaluation; about `fraction` of users are.

    Hashed with a different salt than :func:`stable_bucket`, so the held-out users spread evenly
    over the shards.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"eval fraction must be in [0, 1], got {fraction}")
    return _hash64(f"eval:{seed}:{user}") < fraction * 2.0**64
