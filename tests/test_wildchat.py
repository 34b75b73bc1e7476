"""WildChat-format input: the bundled sample, row validation and quarantine, readers, stable hashing."""

from __future__ import annotations

import collections
import copy
import dataclasses
import gzip
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlhi_hpc.config import DataConfig
from rlhi_hpc.data import (
    FILTER_REASONS,
    QUARANTINE_REASONS,
    RawRow,
    filter_reason,
    input_files,
    is_eval_user,
    iter_hub_rows,
    iter_input_rows,
    iter_raw_rows,
    parse_row,
    parse_timestamp,
    raw_user,
    sample_path,
    stable_bucket,
)
from rlhi_hpc.errors import StageError
from rlhi_hpc.records import Conversation, Quarantined
from rlhi_hpc.tools import make_sample
from rlhi_hpc.tools.sample_texts import LABELS, PERSONAS

REPO = Path(__file__).resolve().parents[1]
CFG = DataConfig()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> make_sample.Sample:
    return make_sample.build_sample()


@pytest.fixture(scope="module")
def parsed() -> list[Conversation | Quarantined]:
    return [parse_row(row, CFG) for row in iter_raw_rows(sample_path())]


def _row(user: str = "u1", conv: str = "c1", n_turns: int = 2, ts: Any = "2024-05-01T10:00:00+00:00",
         language: str = "English") -> dict[str, Any]:
    """A minimal valid row in the WildChat-1M field set."""
    turns = []
    for i in range(n_turns):
        turns.append({"content": f"question {i}", "country": "France", "hashed_ip": user, "header": {},
                      "language": language, "redacted": False, "role": "user", "state": None,
                      "timestamp": None, "toxic": False, "turn_identifier": 100 + i})
        turns.append({"content": f"answer {i}", "country": None, "hashed_ip": None, "header": None,
                      "language": language, "redacted": False, "role": "assistant", "state": None,
                      "timestamp": f"2024-05-01T10:0{i}:30+00:00", "toxic": False, "turn_identifier": 100 + i})
    return {"conversation_hash": conv, "model": "gpt-4-0314", "timestamp": ts, "conversation": turns,
            "turn": n_turns, "language": language, "openai_moderation": [], "detoxify_moderation": [],
            "toxic": False, "redacted": False, "state": None, "country": "France", "hashed_ip": user,
            "header": {"accept-language": "fr-FR", "user-agent": "x"}}


def _row_48m(user: str = "u2", conv: str = "c48") -> dict[str, Any]:
    """A valid row in the WildChat-4.8M field set: naive timestamps, `created`, extra turn fields."""
    row = _row(user, conv, ts=1720000000123)  # epoch milliseconds, as pandas writes JSON
    for turn in row["conversation"]:
        turn.update({"created": 1720000000 if turn["role"] == "assistant" else None, "openai_id": None,
                     "temperature": 1.0, "timestamp": "2024-07-03T09:46:40", "token_counter": 12,
                     "top_p": 1.0, "system_fingerprint": None, "usage": None})
    return row


def _reasons(results: list[Conversation | Quarantined]) -> dict[str, str]:
    return {r.source: r.reason for r in results if isinstance(r, Quarantined)}


# --------------------------------------------------------------------------------------------
# The bundled sample
# --------------------------------------------------------------------------------------------


def test_sample_file_is_generator_output(sample: make_sample.Sample) -> None:
    assert sample_path().read_text(encoding="utf-8") == sample.text(), \
        "rlhi_hpc/data/sample/wildchat_sample.jsonl is stale: run python -m rlhi_hpc.tools.make_sample"
    assert sample_path().stat().st_size < 2 * 1024 * 1024


def test_generator_is_deterministic_across_processes(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "rlhi_hpc.tools.make_sample", f"out={out}"], check=True, cwd=REPO,
                   env=env, capture_output=True)
    assert out.read_bytes() == sample_path().read_bytes()
    other = make_sample.build_sample(seed=7)
    assert other.text() != sample_path().read_text(encoding="utf-8")


def test_sample_has_users_conversations_and_spread(parsed: list[Conversation | Quarantined],
                                                   sample: make_sample.Sample) -> None:
    convs = [r for r in parsed if isinstance(r, Conversation)]
    assert len(convs) == sample.n_conversations >= 320
    by_user: dict[str, list[Conversation]] = collections.defaultdict(list)
    for conv in convs:
        by_user[conv.user].append(conv)
    assert len(by_user) >= 60
    assert set(by_user) == set(sample.personas)
    regulars = [u for u, cs in by_user.items() if len(cs) >= 3]
    assert len(regulars) >= 60
    spans = [max(c.timestamp for c in by_user[u]) - min(c.timestamp for c in by_user[u]) for u in regulars]
    assert sorted(spans)[len(spans) // 2] > 14 * 86400  # most users come back over weeks
    stamps = [c.timestamp for c in convs]
    assert max(stamps) - min(stamps) > 90 * 86400  # a few months
    assert sum(1 for cs in by_user.values() if len(cs) == 1) == make_sample.N_ONE_OFF_USERS
    assert sum(1 for c in convs if sum(t.role == "user" for t in c.turns) >= 3) >= 50  # multi-turn


def test_sample_personas_are_consistent(parsed: list[Conversation | Quarantined],
                                        sample: make_sample.Sample) -> None:
    by_key = {p.key: p for p in PERSONAS}
    requests = {p.key: {r for t in p.topics for r in t.requests} for p in PERSONAS}
    for conv in (r for r in parsed if isinstance(r, Conversation)):
        persona = sample.personas[conv.user]
        assert conv.language == by_key[persona].language
        assert conv.turns[0].content in requests[persona]  # every opening comes from the user's persona


def test_sample_languages_flags_and_field_sets(parsed: list[Conversation | Quarantined],
                                               sample: make_sample.Sample) -> None:
    convs = [r for r in parsed if isinstance(r, Conversation)]
    languages = collections.Counter(c.language for c in convs)
    assert {"English", "French", "Spanish", "Chinese"} <= set(languages)
    assert 3 <= sum(c.toxic for c in convs) == len(sample.toxic) <= 10
    assert 3 <= sum(c.redacted for c in convs) == len(sample.redacted)
    assert all(any(t.toxic for t in c.turns) for c in convs if c.toxic)
    bad_lines = {m.line for m in sample.malformed}
    rows = [json.loads(line) for i, line in enumerate(sample.lines) if i not in bad_lines]
    v48 = [r for r in rows if "created" in r["conversation"][0]]
    v1m = [r for r in rows if "created" not in r["conversation"][0]]
    assert len(v48) >= 20 and len(v1m) >= 200
    assert any(isinstance(r["timestamp"], int) for r in v48)  # epoch milliseconds
    assert any(isinstance(r["timestamp"], str) and "+" not in r["timestamp"] for r in v48)  # naive ISO
    assert all(r["timestamp"].endswith("+00:00") for r in v1m)
    for key in ("conversation_hash", "model", "timestamp", "conversation", "turn", "language",
                "openai_moderation", "detoxify_moderation", "toxic", "redacted", "state", "country",
                "hashed_ip", "header"):
        assert all(key in r for r in rows), key
    for key in ("content", "role", "language", "redacted", "toxic", "turn_identifier", "timestamp",
                "country", "state", "hashed_ip", "header"):
        assert all(key in t for r in rows for t in r["conversation"]), key
    longest = max(len(t.content) for c in convs for t in c.turns if t.role == "assistant")
    assert longest > 1200


def test_sample_malformed_rows_are_quarantined_with_their_reason(
        parsed: list[Conversation | Quarantined], sample: make_sample.Sample) -> None:
    expected = {f"{sample_path().name}:{m.line}": m.reason for m in sample.malformed}
    assert len(expected) >= 12
    assert len({m.kind for m in sample.malformed}) == len(sample.malformed)
    assert _reasons(parsed) == expected
    assert set(expected.values()) <= set(QUARANTINE_REASONS)
    reasons = {filter_reason(c, CFG) for c in parsed if isinstance(c, Conversation)}
    assert reasons == {None, "filtered_toxic"}  # defaults drop toxic rows only


def test_sample_followups_cover_the_taxonomy(parsed: list[Conversation | Quarantined],
                                             sample: make_sample.Sample) -> None:
    counts = collections.Counter(f.label for f in sample.followups)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 10, counts
    convs = {c.conversation_id: c for c in parsed if isinstance(c, Conversation)}
    for f in sample.followups:
        conv = convs[f.conversation_id]
        turn = conv.turns[f.turn_index]
        assert turn.role == "user" and turn.content == f.text and f.turn_index > 0
        assert conv.turns[f.turn_index - 1].role == "assistant"
    feedback = [f.text for f in sample.followups if f.label == "reattempt_with_feedback"]
    assert any("just the code" in t for t in feedback) and any("not Java" in t for t in feedback)


# --------------------------------------------------------------------------------------------
# Validation of hand-made broken rows
# --------------------------------------------------------------------------------------------


def _broken_rows() -> list[tuple[str, str | None]]:
    """(line, expected reason or None for a good row) for a deliberately broken JSONL file."""
    good = _row("u1", "good1")
    cases: list[tuple[Any, str | None]] = [(good, None), (_row_48m("u2", "good48"), None)]

    def bad(reason: str, mutate: Any) -> None:
        row = _row("u3", f"bad{len(cases)}")
        mutate(row)
        cases.append((row, reason))

    bad("missing_field", lambda r: r.pop("conversation"))
    bad("missing_field", lambda r: r.pop("conversation_hash"))
    bad("missing_field", lambda r: r["conversation"][1].pop("content"))
    bad("missing_field", lambda r: r["conversation"][0].update(role=None))
    bad("wrong_type", lambda r: r.update(turn="2"))
    bad("wrong_type", lambda r: r.update(turn=True))
    bad("wrong_type", lambda r: r.update(conversation={"0": "hi"}))
    bad("wrong_type", lambda r: r["conversation"].__setitem__(1, "just text"))
    bad("wrong_type", lambda r: r["conversation"][0].update(content=42))
    bad("wrong_type", lambda r: r.update(toxic="no"))
    bad("wrong_type", lambda r: r.update(hashed_ip=1234))
    bad("wrong_type", lambda r: r.update(model=["gpt"]))
    bad("empty_conversation", lambda r: r.update(conversation=[]))
    bad("empty_content", lambda r: r["conversation"][2].update(content=" \n\t"))
    bad("unknown_role", lambda r: r["conversation"][1].update(role="tool"))
    bad("bad_alternation", lambda r: r["conversation"].reverse())
    bad("bad_alternation", lambda r: r["conversation"].pop(1))
    bad("turn_too_long", lambda r: r["conversation"][3].update(content="x" * (CFG.max_turn_chars + 1)))
    bad("bad_timestamp", lambda r: r.update(timestamp="yesterday-ish"))
    bad("bad_timestamp", lambda r: r.update(timestamp=-5))
    bad("bad_timestamp", lambda r: r["conversation"][1].update(timestamp="2024-13-45T99:00:00"))
    bad("missing_user", lambda r: [r.pop("hashed_ip"), *(t.update(hashed_ip=None) for t in r["conversation"])])
    bad("missing_user", lambda r: [r.update(hashed_ip="  "), r["conversation"][0].update(hashed_ip="  ")])
    lines: list[tuple[str, str | None]] = [(json.dumps(row, ensure_ascii=False), why) for row, why in cases]
    truncated = json.dumps(_row("u4", "trunc"))
    lines += [
        ("{not json at all", "invalid_json"),
        (truncated[: len(truncated) // 3], "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        ("null", "invalid_json"),
        (json.dumps(_row("u5", "good2", ts="2024-05-02 08:00:00")), None),  # naive: read as UTC
    ]
    return lines


def test_broken_file_quarantines_each_bad_row_and_keeps_every_good_one(tmp_path: Path) -> None:
    lines = _broken_rows()
    path = tmp_path / "broken.jsonl"
    with open(path, "wb") as fh:
        fh.write(b"\n")  # blank lines are skipped but still count for the line index
        for text, _ in lines:
            fh.write(text.encode("utf-8") + b"\r\n")
        fh.write(b'{"conversation_hash": "\xff\xfe bad bytes"}\n')
    expected = {f"broken.jsonl:{i + 1}": why for i, (_, why) in enumerate(lines)}
    expected[f"broken.jsonl:{len(lines) + 1}"] = "invalid_json"
    results = [parse_row(row, CFG) for row in iter_raw_rows(path)]
    assert len(results) == len(expected)
    got = {r.source: (r.reason if isinstance(r, Quarantined) else None) for r in results}
    assert got == expected
    for r in results:
        if isinstance(r, Quarantined):
            assert r.detail and r.raw and len(r.raw) <= 4100
    good = {r.conversation_id: r for r in results if isinstance(r, Conversation)}
    assert set(good) == {"good1", "good48", "good2"}
    assert good["good1"].timestamp == datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
    assert good["good48"].timestamp == pytest.approx(1720000000.123)
    assert good["good48"].turns[1].timestamp == datetime(2024, 7, 3, 9, 46, 40, tzinfo=timezone.utc).timestamp()
    assert good["good2"].timestamp == datetime(2024, 5, 2, 8, tzinfo=timezone.utc).timestamp()
    conv = good["good1"]
    assert (conv.user, conv.model, conv.language, conv.country) == ("u1", "gpt-4-0314", "English", "France")
    assert [t.role for t in conv.turns] == ["user", "assistant"] * 2
    assert conv.turns[0].timestamp is None and conv.turns[1].turn_id == "100"
    assert conv.source == "broken.jsonl:1" and conv.split == "train"


def test_parse_row_fallbacks_and_limits() -> None:
    row = _row("u9", "x")
    row.pop("hashed_ip")  # the user key is also on every user turn (WildChat keeps it there too)
    row["conversation_id"] = row.pop("conversation_hash")  # the original WildChat's name
    raw = RawRow(source="f:0", data=row, error=None, raw="")
    conv = parse_row(raw, CFG)
    assert isinstance(conv, Conversation) and conv.user == "u9" and conv.conversation_id == "x"
    assert raw_user(raw, CFG.user_key) == "u9"  # the same user, read before validation
    assert raw_user(RawRow(source="f:0", data=None, error="bad", raw="{"), CFG.user_key) is None
    assert raw_user(RawRow(source="f:0", data={"hashed_ip": 5}, error=None, raw=""), CFG.user_key) is None
    # without a row timestamp, the latest turn timestamp stands in
    row = _row("u9", "t")
    row.pop("timestamp")
    conv = parse_row(RawRow(source="f:0", data=row, error=None, raw=""), CFG)
    assert conv.timestamp == datetime(2024, 5, 1, 10, 1, 30, tzinfo=timezone.utc).timestamp()
    # a trailing user turn without an answer is valid (the user left after complaining)
    row = _row("u9", "y")
    row["conversation"] = row["conversation"][:3]
    assert isinstance(parse_row(RawRow(source="f:1", data=row, error=None, raw=""), CFG), Conversation)
    # the length limit and the user key come from the config
    long_row = _row("u9", "z")
    long_row["conversation"][0]["content"] = "y" * 500
    tight = dataclasses.replace(CFG, max_turn_chars=100)
    assert parse_row(RawRow(source="f:2", data=long_row, error=None, raw=""), tight).reason == "turn_too_long"
    other_key = dataclasses.replace(CFG, user_key="user_id")
    q = parse_row(RawRow(source="f:3", data=_row(), error=None, raw=""), other_key)
    assert isinstance(q, Quarantined) and q.reason == "missing_user"
    # a quarantined parquet row keeps a JSON dump of its data, cut to a bounded size
    huge = _row()
    huge["conversation"][0]["content"] = "z" * 30000
    q = parse_row(RawRow(source="p:0", data=huge, error=None, raw=""), CFG)
    assert q.reason == "turn_too_long" and q.raw.startswith('{"conversation_hash"') and len(q.raw) < 4100


def test_parse_row_never_raises_on_mutated_rows() -> None:
    rng = random.Random(0)
    junk: list[Any] = [None, "", " ", "x", 0, -1, 1.5, float("nan"), True, [], {}, ["a"], {"a": 1}, 10**20]
    base = [_row(f"u{i}", f"c{i}", n_turns=1 + i % 3) for i in range(5)] + [_row_48m()]
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(600):
        row = copy.deepcopy(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            target = row
            if rng.random() < 0.5 and isinstance(row.get("conversation"), list) and row["conversation"]:
                target = rng.choice(row["conversation"])
            if isinstance(target, dict) and target:
                key = rng.choice(sorted(target))
                if rng.random() < 0.3:
                    del target[key]
                else:
                    target[key] = rng.choice(junk)
        result = parse_row(RawRow(source="fuzz:0", data=row, error=None, raw=""), CFG)
        assert isinstance(result, (Conversation, Quarantined))
        if isinstance(result, Quarantined):
            assert result.reason in QUARANTINE_REASONS
            seen[result.reason] += 1
        else:
            assert isinstance(result.timestamp, float) and result.user and result.turns
            seen["valid"] += 1
    assert len(seen) >= 6 and seen["valid"] >= 30, seen


@pytest.mark.parametrize("value, expected", [
    ("2024-05-01T10:00:00+00:00", 1714557600.0),
    ("2024-05-01T12:00:00+02:00", 1714557600.0),
    ("2024-05-01T10:00:00Z", 1714557600.0),
    ("2024-05-01 10:00:00", 1714557600.0),
    ("2024-05-01T10:00:00.250000", 1714557600.25),
    (1714557600, 1714557600.0),
    (1714557600.5, 1714557600.5),
    (1714557600000, 1714557600.0),
    (1714557600000000, 1714557600.0),
    ("1714557600", 1714557600.0),
    (datetime(2024, 5, 1, 10), 1714557600.0),
    (datetime(2024, 5, 1, 10, tzinfo=timezone.utc), 1714557600.0),
])
def test_parse_timestamp_formats(value: Any, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "soon", "2024-02-30", True, [], {}, -1, float("inf"), float("nan"),
                                   "3000-01-01T00:00:00"])
def test_parse_timestamp_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


def _conv(**row_changes: Any) -> Conversation:
    row = _row(n_turns=row_changes.pop("n_turns", 2))
    row.update(row_changes)
    conv = parse_row(RawRow(source="f:0", data=row, error=None, raw=""), CFG)
    assert isinstance(conv, Conversation)
    return conv


def test_filter_reason() -> None:
    assert filter_reason(_conv(), CFG) is None
    french = dataclasses.replace(CFG, languages=["french", "Spanish"])
    assert filter_reason(_conv(language="French"), french) is None  # case-insensitive
    assert filter_reason(_conv(), french) == "filtered_language"
    assert filter_reason(_conv(toxic=True), CFG) == "filtered_toxic"
    assert filter_reason(_conv(toxic=True), dataclasses.replace(CFG, drop_toxic=False)) is None
    assert filter_reason(_conv(redacted=True), CFG) is None  # drop_redacted is off by default
    assert filter_reason(_conv(redacted=True), dataclasses.replace(CFG, drop_redacted=True)) == "filtered_redacted"
    assert filter_reason(_conv(n_turns=1), dataclasses.replace(CFG, min_turns=2)) == "filtered_min_turns"
    assert filter_reason(_conv(n_turns=3), dataclasses.replace(CFG, max_turns=2)) == "filtered_max_turns"
    assert filter_reason(_conv(toxic=True), french) == "filtered_language"  # language is checked first
    toxic_turn = _row()
    toxic_turn["conversation"][2]["toxic"] = True
    conv = parse_row(RawRow(source="f:0", data=toxic_turn, error=None, raw=""), CFG)
    assert filter_reason(conv, CFG) == "filtered_toxic"
    assert set(FILTER_REASONS) == {"filtered_language", "filtered_toxic", "filtered_redacted",
                                   "filtered_min_turns", "filtered_max_turns"}


# --------------------------------------------------------------------------------------------
# Readers: parquet, folders, JSON arrays, gzip, hub
# --------------------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int):  # epoch milliseconds (4.8M rows): a naive UTC datetime
        return datetime.fromtimestamp(value / 1000, timezone.utc).replace(tzinfo=None)
    return datetime.fromisoformat(value)


def _to_parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON row as WildChat's parquet files hold it: timestamps as datetimes (aware in 1M, naive in 4.8M)."""
    row = copy.deepcopy(row)
    row["timestamp"] = _as_datetime(row["timestamp"])
    for turn in row["conversation"]:
        turn["timestamp"] = _as_datetime(turn["timestamp"])
    return row


def _sample_rows(sample: make_sample.Sample) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bad_lines = {m.line for m in sample.malformed}
    rows = [json.loads(line) for i, line in enumerate(sample.lines) if i not in bad_lines]
    v1m = [r for r in rows if "created" not in r["conversation"][0]]
    v48 = [r for r in rows if "created" in r["conversation"][0]]
    return v1m, v48


def _strip_source(results: list[Any]) -> list[Any]:
    return [dataclasses.replace(r, source="") for r in results]


def test_parquet_input_matches_jsonl(tmp_path: Path, sample: make_sample.Sample) -> None:
    v1m, _ = _sample_rows(sample)
    rows = v1m[:60]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    table = pa.Table.from_pylist([_to_parquet_row(r) for r in rows])
    assert pa.types.is_timestamp(table.schema.field("timestamp").type)
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=16)
    from_parquet = [parse_row(r, CFG) for r in iter_raw_rows(tmp_path / "rows.parquet", parquet_batch_rows=7)]
    from_jsonl = [parse_row(r, CFG) for r in iter_raw_rows(jsonl)]
    assert all(isinstance(r, Conversation) for r in from_parquet)
    assert [r.source for r in from_parquet] == [f"rows.parquet:{i}" for i in range(len(rows))]
    assert _strip_source(from_parquet) == _strip_source(from_jsonl)


def test_folder_input_reads_files_in_sorted_order(tmp_path: Path, sample: make_sample.Sample) -> None:
    v1m, v48 = _sample_rows(sample)
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_to_parquet_row(r) for r in v1m[:5]]), folder / "b-1m.parquet")
    pq.write_table(pa.Table.from_pylist([_to_parquet_row(r) for r in v48[:4]]), folder / "a-48m.parquet")
    (folder / "sub" / "c.jsonl").write_text(json.dumps(v1m[5]) + "\n{broken\n", encoding="utf-8")
    with gzip.open(folder / "d.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(v1m[6]) + "\n")
    (folder / "e.json").write_text(json.dumps([v1m[7], 5]), encoding="utf-8")  # one JSON array
    (folder / "README.md").write_text("not data")
    (folder / ".hidden.jsonl").write_text("{broken\n")
    assert [p.relative_to(folder).as_posix() for p in input_files(folder)] == \
        ["a-48m.parquet", "b-1m.parquet", "d.jsonl.gz", "e.json", "sub/c.jsonl"]
    results = [parse_row(r, CFG) for r in iter_raw_rows(folder)]
    expected_48 = [parse_row(RawRow(source="", data=r, error=None, raw=""), CFG) for r in v48[:4]]
    assert _strip_source(results[:4]) == _strip_source(expected_48)  # naive parquet timestamps read as UTC
    assert [r.source for r in results] == (
        [f"a-48m.parquet:{i}" for i in range(4)] + [f"b-1m.parquet:{i}" for i in range(5)]
        + ["d.jsonl.gz:0", "e.json:0", "e.json:1", "sub/c.jsonl:0", "sub/c.jsonl:1"])
    assert _reasons(results) == {"e.json:1": "invalid_json", "sub/c.jsonl:1": "invalid_json"}
    assert sum(isinstance(r, Conversation) for r in results) == 12


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="does not exist"):
        list(iter_raw_rows(tmp_path / "missing.jsonl"))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(StageError, match="not .jsonl"):
        list(iter_raw_rows(tmp_path / "data.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match="no .jsonl"):
        list(iter_raw_rows(tmp_path / "empty"))
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StageError, match="cannot read parquet"):
        list(iter_raw_rows(tmp_path / "corrupt.parquet"))
    with pytest.raises(StageError, match="neither"):
        list(iter_input_rows(dataclasses.replace(CFG, path=str(tmp_path / "nope"))))


def test_iter_input_rows_sample_and_local_path(tmp_path: Path) -> None:
    rows = list(iter_input_rows(dataclasses.replace(CFG, path="sample")))
    assert len(rows) == len(sample_path().read_text(encoding="utf-8").splitlines())
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(_row()) + "\n")
    assert [r.source for r in iter_input_rows(dataclasses.replace(CFG, path=str(path)))] == ["one.jsonl:0"]


def test_iter_hub_rows_streams_a_local_dataset_folder(tmp_path: Path, sample: make_sample.Sample,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    v1m, _ = _sample_rows(sample)
    folder = tmp_path / "wildchat" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_to_parquet_row(r) for r in v1m[:12]]), folder / "train-00000.parquet")
    rows = list(iter_hub_rows(str(tmp_path / "wildchat"), "train"))
    assert [r.source.rsplit(":", 1)[1] for r in rows] == [str(i) for i in range(12)]
    convs = [parse_row(r, CFG) for r in rows]
    expected = [parse_row(RawRow(source="", data=r, error=None, raw=""), CFG) for r in v1m[:12]]
    assert _strip_source(convs) == _strip_source(expected)


# --------------------------------------------------------------------------------------------
# Stable hashing
# --------------------------------------------------------------------------------------------

_HASH_SCRIPT = ("from rlhi_hpc.data import stable_bucket, is_eval_user; "
                "print([stable_bucket(f'user{i}', 7, 3) for i in range(50)], "
                "[is_eval_user(f'user{i}', 0.3, 3) for i in range(50)])")


def test_stable_hashing_is_the_same_in_other_processes() -> None:
    here = f"{[stable_bucket(f'user{i}', 7, 3) for i in range(50)]} {[is_eval_user(f'user{i}', 0.3, 3) for i in range(50)]}"
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], check=True, capture_output=True, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout.strip()
        assert out == here
    assert stable_bucket("a", 1, 0) == 0


def test_stable_hashing_honours_fraction_and_spreads_evenly() -> None:
    users = [f"{i:064x}" for i in range(20000)]
    n_buckets = 8
    buckets = collections.Counter(stable_bucket(u, n_buckets, 0) for u in users)
    assert set(buckets) == set(range(n_buckets))
    assert all(abs(c - len(users) / n_buckets) < 0.1 * len(users) / n_buckets for c in buckets.values())
    held = [u for u in users if is_eval_user(u, 0.2, 0)]
    assert abs(len(held) / len(users) - 0.2) < 0.015
    per_bucket = collections.Counter(stable_bucket(u, n_buckets, 0) for u in held)
    assert all(abs(per_bucket[b] / buckets[b] - 0.2) < 0.04 for b in range(n_buckets))  # independent of shards
    other_seed = {u for u in users if is_eval_user(u, 0.2, 1)}
    assert 0.1 < len(other_seed & set(held)) / len(held) < 0.35  # a new seed gives a new split
    assert not any(is_eval_user(u, 0.0, 0) for u in users[:100])
    assert all(is_eval_user(u, 1.0, 0) for u in users[:100])
    with pytest.raises(ValueError):
        stable_bucket("a", 0, 0)
    with pytest.raises(ValueError):
        is_eval_user("a", 1.5, 0)


def test_raw_user_agrees_with_parse_row_on_the_sample() -> None:
    for row in iter_raw_rows(sample_path()):
        result = parse_row(row, CFG)
        if isinstance(result, Conversation):
            assert raw_user(row, CFG.user_key) == result.user
