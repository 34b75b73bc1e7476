"""Shard runtime: manifests, atomic writes, chunked resumable shard output, done markers.

A shard's output is appended to ``out/<shard>.jsonl.partial`` one *chunk* at a time. After each
chunk the data is fsynced and a bookmark (``progress/<shard>.json``: inputs consumed, bytes of
output and quarantine files, running counts) is written atomically. A shard that is killed resumes
from its last bookmark: the partial files are cut back to the bookmarked sizes (dropping whatever a
killed process half-wrote) and the first ``consumed`` inputs are skipped. When every input has been
consumed, the partial files are renamed into place and the done marker is written last. A shard is
finished if and only if its done marker exists.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhi_hpc import __version__
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import dumps

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temp file in the same folder, fsync, rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the source tree when available."""
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return f"{__version__}+{sha}" if sha else __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


# --------------------------------------------------------------------------------------------
# Manifest and "what is still missing"
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    """One unit of work of a stage. `id` is stable across relaunches."""

    id: str
    index: int
    meta: dict[str, Any] = field(default_factory=dict)


def shard_id(index: int) -> str:
    return f"{index:05d}"


def plan_shards(n: int) -> list[ShardSpec]:
    """`n` deterministic shards, ids 00000..n-1."""
    return [ShardSpec(id=shard_id(i), index=i) for i in range(n)]


def write_manifest(paths: StagePaths, *, stage: str, stage_hash: str, shards: Sequence[ShardSpec],
                   upstream: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the manifest once; a relaunch checks it instead of rewriting it."""
    manifest = {
        "stage": stage,
        "stage_hash": stage_hash,
        "shards": [{"id": s.id, "index": s.index, "meta": s.meta} for s in shards],
        "upstream": upstream,
        "code_version": code_version(),
        "created": time.time(),
        **(extra or {}),
    }
    if paths.manifest.exists():
        old = read_json(paths.manifest)
        if old.get("stage_hash") != stage_hash or [s["id"] for s in old["shards"]] != [s.id for s in shards]:
            raise RuntimeError(f"{paths.manifest} belongs to another plan (stage hash "
                               f"{old.get('stage_hash')} != {stage_hash}); remove the folder to replan")
        return old
    paths.make_dirs()
    atomic_write_json(paths.manifest, manifest)
    return manifest


def load_manifest(paths: StagePaths) -> dict[str, Any]:
    return read_json(paths.manifest)


def manifest_shards(manifest: dict[str, Any]) -> list[ShardSpec]:
    return [ShardSpec(id=s["id"], index=s["index"], meta=s.get("meta", {})) for s in manifest["shards"]]


def done_ids(paths: StagePaths) -> set[str]:
    """Shard ids with a done marker (one directory listing, fast for 100k shards)."""
    try:
        names = os.listdir(paths.done_dir)
    except FileNotFoundError:
        return set()
    return {n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")}


def failed_ids(paths: StagePaths) -> set[str]:
    try:
        names = os.listdir(paths.failed_dir)
    except FileNotFoundError:
        return set()
    return {n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")}


def missing_shards(shards: Sequence[ShardSpec], paths: StagePaths) -> list[ShardSpec]:
    """Shards of the plan without a done marker, in plan order."""
    done = done_ids(paths)
    return [s for s in shards if s.id not in done]


def group_tasks(shards: Sequence[ShardSpec], per_task: int) -> list[tuple[str, ...]]:
    """Split shards into array tasks of at most `per_task` shards each."""
    ids = [s.id for s in shards]
    return [tuple(ids[i:i + per_task]) for i in range(0, len(ids), per_task)]


# --------------------------------------------------------------------------------------------
# Resumable shard writer
# --------------------------------------------------------------------------------------------


def _cut_to(path: Path, size: int) -> None:
    """Truncate `path` to `size` bytes (create it empty when missing)."""
    with open(path, "ab") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


class ShardWriter:
    """Chunked, crash-safe output of one shard (see the module docstring)."""

    def __init__(self, paths: StagePaths, shard: str, *, stage: str, stage_hash: str) -> None:
        self.paths = paths
        self.shard = shard
        self.stage = stage
        self.stage_hash = stage_hash
        paths.make_dirs()
        self._state = self._load_bookmark()
        self._undo_interrupted_finish()
        _cut_to(paths.partial(shard), self._state["out_bytes"])
        _cut_to(paths.quarantine_partial(shard), self._state["quarantine_bytes"])
        self._started = time.monotonic()

    def _load_bookmark(self) -> dict[str, Any]:
        path = self.paths.progress(self.shard)
        if path.exists():
            state = read_json(path)
            if state.get("stage_hash") == self.stage_hash:
                log.info("event=shard_resume stage=%s shard=%s consumed=%d", self.stage, self.shard,
                         state["consumed"])
                return state
        return {"stage_hash": self.stage_hash, "consumed": 0, "out_bytes": 0, "quarantine_bytes": 0,
                "counts": {"records_in": 0, "records_out": 0, "quarantined": 0}, "seconds": 0.0,
                "resumes": 0}

    def _undo_interrupted_finish(self) -> None:
        """A kill between `finish`'s renames and its done marker: move the outputs back to partial."""
        for final, partial in ((self.paths.out(self.shard), self.paths.partial(self.shard)),
                               (self.paths.quarantine(self.shard), self.paths.quarantine_partial(self.shard))):
            if final.exists() and not partial.exists():
                os.replace(final, partial)

    @property
    def consumed(self) -> int:
        """Inputs already committed; the stage skips this many on resume."""
        return int(self._state["consumed"])

    @property
    def counts(self) -> dict[str, float]:
        return dict(self._state["counts"])

    def commit(self, records: Iterable[Any], quarantined: Iterable[Any] = (), *, consumed: int,
               counts: dict[str, float] | None = None) -> None:
        """Append one chunk's outputs, fsync, then move the bookmark past `consumed` inputs."""
        out_bytes = self._append(self.paths.partial(self.shard), records)
        q_bytes = self._append(self.paths.quarantine_partial(self.shard), quarantined)
        state = self._state
        n_out = out_bytes[1]
        n_q = q_bytes[1]
        state["consumed"] += consumed
        state["out_bytes"] = out_bytes[0]
        state["quarantine_bytes"] = q_bytes[0]
        c = state["counts"]
        c["records_in"] += consumed
        c["records_out"] += n_out
        c["quarantined"] += n_q
        for key, value in (counts or {}).items():
            c[key] = c.get(key, 0) + value
        now = time.monotonic()
        state["seconds"] += now - self._started
        self._started = now
        atomic_write_json(self.paths.progress(self.shard), state)

    def _append(self, path: Path, records: Iterable[Any]) -> tuple[int, int]:
        n = 0
        with open(path, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(dumps(rec) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
            return fh.tell(), n

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rename the partial files into place and write the done marker last."""
        self.commit((), consumed=0)
        os.replace(self.paths.partial(self.shard), self.paths.out(self.shard))
        os.replace(self.paths.quarantine_partial(self.shard), self.paths.quarantine(self.shard))
        fsync_dir(self.paths.out_dir)
        state = self._state
        seconds = max(state["seconds"], 1e-9)
        counts = state["counts"]
        marker = {
            "stage": self.stage,
            "shard": self.shard,
            "stage_hash": self.stage_hash,
            "config_hash": self.stage_hash,
            "code_version": code_version(),
            "counts": counts,
            "seconds": round(seconds, 3),
            "records_per_s": round(counts["records_in"] / seconds, 3),
            "host": socket.gethostname(),
            "finished_at": time.time(),
            **(extra or {}),
        }
        if counts.get("generated_tokens"):
            marker["tokens_per_s"] = round(counts["generated_tokens"] / seconds, 2)
        atomic_write_json(self.paths.done(self.shard), marker)
        self.paths.progress(self.shard).unlink(missing_ok=True)
        self.paths.failed(self.shard).unlink(missing_ok=True)
        return marker


class FollowerWriter:
    """The writer non-zero ranks of a multi-rank task get: rank 0 alone writes shared files."""

    consumed = 0

    def commit(self, records: Iterable[Any], quarantined: Iterable[Any] = (), *, consumed: int,
               counts: dict[str, float] | None = None) -> None:
        """Ignored: rank 0 commits."""

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}


def process_rank() -> int:
    """Global rank of this process in a multi-rank task (torchrun's RANK, else Slurm's SLURM_PROCID)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def mark_failed(paths: StagePaths, shard: str, *, error: str, traceback_text: str, log_path: str) -> None:
    """Record why a shard failed (status shows it; the next success removes it)."""
    atomic_write_json(paths.failed(shard), {
        "shard": shard, "error": error, "traceback": traceback_text[-8000:], "log": log_path,
        "host": socket.gethostname(), "time": time.time(),
    })
