"""Run the demo chain's stages through the real launcher on a small slice of the bundled sample.

Used by the stage tests through the session fixture ``stage_chain`` (tests/conftest.py): every
test launches the stages it needs with its own overrides; stages whose config did not change are
content-addressed, so the upstream ones (ingest, classify, persona) run once per session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhi_hpc.launch import main as launch
from rlhi_hpc.launch import resolve
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.pipeline import plan_pipeline
from rlhi_hpc.records import read_jsonl
from rlhi_hpc.registry import get_stage
from rlhi_hpc.shards import ShardWriter, load_manifest, manifest_shards, read_json
from rlhi_hpc.stage import StageContext
from rlhi_hpc.worker import make_context

ALL_LABELS = ("[new_request,continuation,reattempt_with_feedback,reattempt_without_feedback,clarification,"
              "positive_feedback,negative_feedback,other]")

# A few users, short generations: the whole chain runs in about a minute on two cores. Every
# follow-up counts as actionable and as a request, so rewrite and sample always have work whatever
# labels the (random) tiny classifier picks.
BASE_ARGS = (
    "job=demo", "cluster=inprocess", "log_level=WARNING", "data.max_users=6", "data.num_shards=2",
    "persona.max_new_tokens=16", "rewrite.max_new_tokens=12", "sample.max_new_tokens=12", "sample.n=3",
    f"classify.actionable={ALL_LABELS}", f"sample.labels={ALL_LABELS}",
)


@dataclass
class StageChain:
    """Launch stages of the demo job into one runs root and find their stage directories."""

    out: Path
    base: tuple[str, ...] = BASE_ARGS
    launched: list[tuple[str, ...]] = field(default_factory=list)

    def args(self, extra: Sequence[str] = ()) -> list[str]:
        return [*self.base, *extra, f"out={self.out}"]

    def run(self, *stages: str, extra: Sequence[str] = ()) -> dict[str, StagePaths]:
        """Launch `stages` in order (each must succeed); return every stage directory of that config."""
        for stage in stages:
            rc = launch([*self.args(extra), f"stage={stage}"])
            assert rc == 0, f"stage {stage} failed with {extra}"
            self.launched.append((stage, *extra))
        return self.dirs(extra)

    def dirs(self, extra: Sequence[str] = ()) -> dict[str, StagePaths]:
        cfg, job = resolve(self.args(extra))
        return {ps.name: ps.paths for ps in plan_pipeline(cfg, job).stages}


def rows(paths: StagePaths, kind: str = "out") -> list[dict]:
    """Every JSON row of a finished stage's outputs (`out`) or quarantine files (`quarantine`)."""
    folder = paths.out_dir if kind == "out" else paths.quarantine_dir
    return [r for p in sorted(folder.glob("*.jsonl")) for r in read_jsonl(p)]


def markers(paths: StagePaths) -> list[dict]:
    return [read_json(p) for p in sorted(paths.done_dir.glob("*.json"))]


def context_for(finished: StagePaths, out: Path, *, wrap: Callable[[Any], Any] | None = None,
                upstream: dict[str, StagePaths] | None = None, **changes: dict[str, Any]) -> StageContext:
    """A context for the finished stage `finished` that reads the same upstream outputs and writes into `out`.

    `changes` edits config sections (``sample={"n": 2}``, ``model={"max_model_len": 64}``) for this
    context only, so upstream stages are not recomputed; `wrap` wraps the engines the stage loads;
    `upstream` replaces some upstream stage directories.
    """
    ctx = make_context(finished)
    cfg = ctx.cfg
    for section, fields in changes.items():
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **fields)})
    ctx = dataclasses.replace(ctx, cfg=cfg, paths=StagePaths(out), _engines={},
                              upstream={**ctx.upstream, **(upstream or {})})
    if wrap is not None:
        ctx.engine()
        ctx._engines = {key: wrap(engine) for key, engine in ctx._engines.items()}
    return ctx


def run_one(ctx: StageContext, finished: StagePaths, shard_index: int = 0) -> None:
    """Run (or resume) shard `shard_index` of the plan of `finished` in `ctx`, up to its done marker."""
    shard = manifest_shards(load_manifest(finished))[shard_index]
    writer = ShardWriter(ctx.paths, shard.id, stage=ctx.stage, stage_hash="rerun")
    writer.finish(get_stage(ctx.stage).run_shard(ctx, shard, writer))


def rerun_shard(finished: StagePaths, out: Path, *, shard_index: int = 0, **kwargs: Any) -> StageContext:
    """Run one shard of a finished stage again (see :func:`context_for`), then close its engines."""
    ctx = context_for(finished, out, **kwargs)
    try:
        run_one(ctx, finished, shard_index)
    finally:
        ctx.close()
    return ctx


class RecordingEngine:
    """A real engine that also keeps every chat it was asked to complete or score."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chats: list[list[dict[str, str]]] = []
        self.params: list[Any] = []

    def generate(self, chats: Sequence[Any], params: Any) -> list[Any]:
        self.chats.extend(list(c) for c in chats)
        self.params.append(params)
        return self.inner.generate(chats, params)

    def choose(self, chats: Sequence[Any], options: Sequence[str]) -> list[Any]:
        self.chats.extend(list(c) for c in chats)
        return self.inner.choose(chats, options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def recording(store: list[Any], cls: type = RecordingEngine, **kwargs: Any) -> Callable[[Any], Any]:
    """An engine wrapper for `context_for`: wraps with ``cls(engine, **kwargs)`` and keeps it in `store`."""
    def wrap(engine: Any) -> Any:
        store.append(cls(engine, **kwargs))
        return store[-1]
    return wrap
