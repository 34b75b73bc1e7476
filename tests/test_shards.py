"""Shard planning, atomic writes and the crash-safe chunked writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import (ShardWriter, atomic_write_json, done_ids, group_tasks, missing_shards, plan_shards,
                             write_manifest)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_planning_is_deterministic() -> None:
    a, b = plan_shards(50), plan_shards(50)
    assert a == b
    assert [s.id for s in a][:3] == ["00000", "00001", "00002"]
    assert group_tasks(a, 8)[0] == tuple(f"{i:05d}" for i in range(8))
    assert sum(len(t) for t in group_tasks(a, 8)) == 50


def test_missing_shards_follow_done_markers(tmp_path: Path) -> None:
    paths = StagePaths(tmp_path / "st")
    shards = plan_shards(10)
    write_manifest(paths, stage="x", stage_hash="h", shards=shards, upstream={})
    for sid in ("00001", "00007"):
        atomic_write_json(paths.done(sid), {"ok": True})
    (paths.done_dir / ".00003.json.tmp").write_text("{")  # a torn temp file is not a marker
    assert done_ids(paths) == {"00001", "00007"}
    assert [s.id for s in missing_shards(shards, paths)] == [s.id for s in shards if s.id not in ("00001", "00007")]


def test_manifest_refuses_another_plan(tmp_path: Path) -> None:
    paths = StagePaths(tmp_path / "st")
    write_manifest(paths, stage="x", stage_hash="h1", shards=plan_shards(3), upstream={})
    write_manifest(paths, stage="x", stage_hash="h1", shards=plan_shards(3), upstream={})  # relaunch: fine
    with pytest.raises(RuntimeError, match="another plan"):
        write_manifest(paths, stage="x", stage_hash="h2", shards=plan_shards(3), upstream={})


def test_writer_resumes_from_last_commit_and_drops_torn_tail(tmp_path: Path) -> None:
    paths = StagePaths(tmp_path / "st")
    w = ShardWriter(paths, "00000", stage="x", stage_hash="h")
    w.commit([{"i": 0}, {"i": 1}], [{"bad": 1}], consumed=3)
    w.commit([{"i": 2}], consumed=1)
    # a crash in the middle of the next chunk: half a line written, no bookmark
    with open(paths.partial("00000"), "a") as fh:
        fh.write('{"i": 3}\n{"i": 4, "tru')
    assert not paths.done("00000").exists()
    assert not paths.out("00000").exists()  # a partial file is never the output

    w2 = ShardWriter(paths, "00000", stage="x", stage_hash="h")
    assert w2.consumed == 4
    w2.commit([{"i": 3}, {"i": 4}], consumed=2)
    marker = w2.finish({"extra": 1})
    assert _read(paths.out("00000")) == [{"i": i} for i in range(5)]
    assert _read(paths.quarantine("00000")) == [{"bad": 1}]
    assert marker["counts"]["records_in"] == 6
    assert marker["counts"]["records_out"] == 5
    assert marker["counts"]["quarantined"] == 1
    assert marker["extra"] == 1 and marker["stage_hash"] == "h" and marker["code_version"]
    assert not paths.partial("00000").exists() and not paths.progress("00000").exists()


def test_bookmark_of_another_config_is_ignored(tmp_path: Path) -> None:
    paths = StagePaths(tmp_path / "st")
    ShardWriter(paths, "00000", stage="x", stage_hash="old").commit([{"i": 0}], consumed=1)
    fresh = ShardWriter(paths, "00000", stage="x", stage_hash="new")
    assert fresh.consumed == 0
    assert os.path.getsize(paths.partial("00000")) == 0


def test_kill_between_rename_and_done_marker_loses_nothing(tmp_path: Path) -> None:
    paths = StagePaths(tmp_path / "st")
    w = ShardWriter(paths, "00000", stage="x", stage_hash="h")
    w.commit([{"i": 0}, {"i": 1}], [{"bad": 1}], consumed=3)
    w.commit((), consumed=0)
    # what finish() does before its done marker, then the process dies
    os.replace(paths.partial("00000"), paths.out("00000"))
    os.replace(paths.quarantine_partial("00000"), paths.quarantine("00000"))
    resumed = ShardWriter(paths, "00000", stage="x", stage_hash="h")
    assert resumed.consumed == 3
    resumed.finish()
    assert _read(paths.out("00000")) == [{"i": 0}, {"i": 1}]
    assert _read(paths.quarantine("00000")) == [{"bad": 1}]
