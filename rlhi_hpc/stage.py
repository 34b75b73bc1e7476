"""The `Stage` protocol and the per-process context a stage runs in.

A stage is code with two jobs: `plan` (which shards exist; must not read upstream outputs, so that
a whole chain can be submitted at once) and `run_shard` (turn one shard's inputs into records
through a :class:`~rlhi_hpc.shards.ShardWriter`). Everything else — hashing, manifests, done
markers, executors — is shared runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rlhi_hpc.config import ModelConfig, RunConfig, output_view, stable_hash
from rlhi_hpc.errors import StageError
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import Provenance, read_records
from rlhi_hpc.shards import ShardSpec, ShardWriter, code_version

if TYPE_CHECKING:
    from rlhi_hpc.inference.engine import Engine

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stage(Protocol):
    """What every stage module provides."""

    name: str
    needs: tuple[str, ...]  # upstream stages whose outputs this one reads
    sections: tuple[str, ...]  # config sections that determine its outputs
    kind: str  # "cpu" | "gpu" | "multinode": what a task of it asks the cluster for

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        """The stage's shards, from the config alone."""
        ...

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        """Process one shard, committing chunks to `writer`; return extra done-marker fields."""
        ...

    # Optional: `summary(self, paths: StagePaths) -> str` — statistics the launcher prints after a run.


def stage_hash(stage: Stage, cfg: RunConfig, upstream_hashes: dict[str, str]) -> str:
    """Hash of everything that determines the stage's outputs (its sections + upstream hashes)."""
    return stable_hash({
        "stage": stage.name,
        "seed": cfg.seed,
        "sections": {sec: output_view(getattr(cfg, sec)) for sec in stage.sections},
        "upstream": upstream_hashes,
    })


@dataclass
class StageContext:
    """Everything a stage needs inside a worker process; engines are loaded once per process."""

    cfg: RunConfig
    stage: str
    stage_hash: str
    paths: StagePaths
    upstream: dict[str, StagePaths]
    _engines: dict[str, Any] = field(default_factory=dict)

    def engine(self, model: ModelConfig | None = None) -> Engine:
        """The inference engine for `model` (default: the policy), loaded on first use."""
        from rlhi_hpc.inference.factory import load_engine

        model = model or self.cfg.model
        key = stable_hash(output_view(model)) + model.engine
        if key not in self._engines:
            log.info("event=engine_load stage=%s model=%s engine=%s", self.stage, model.name, model.engine)
            self._engines[key] = load_engine(model)
        return self._engines[key]

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """A model-like object built once per process by `factory` and closed with the engines."""
        if key not in self._engines:
            self._engines[key] = factory()
        return self._engines[key]

    def close(self) -> None:
        for eng in self._engines.values():
            eng.close()
        self._engines.clear()

    def provenance(self, *, models: dict[str, str] | None = None, user: str = "", conversation_id: str = "",
                   turn_index: int = -1) -> Provenance:
        return Provenance(stage=self.stage, config_hash=self.stage_hash, code_version=code_version(),
                          models=models or {}, user=user, conversation_id=conversation_id,
                          turn_index=turn_index)

    def upstream_paths(self, name: str) -> StagePaths:
        if name not in self.upstream:
            raise StageError(f"stage {self.stage} has no upstream stage {name!r}")
        return self.upstream[name]

    def upstream_file(self, name: str, shard: ShardSpec) -> Path:
        """The finished output of the same shard of an upstream stage."""
        paths = self.upstream_paths(name)
        out = paths.out(shard.id)
        if not paths.done(shard.id).exists() or not out.exists():
            raise StageError(f"upstream {name} shard {shard.id} is not finished ({paths.root}); "
                             f"run `python -m rlhi_hpc.launch stage={name}` first")
        return out

    def read_upstream(self, name: str, shard: ShardSpec, cls: type[T]) -> Iterator[T]:
        return read_records(self.upstream_file(name, shard), cls)


def chunked(items: Sequence[T], size: int, start: int = 0) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items` from `start`, `size` at a time."""
    for i in range(start, len(items), size):
        yield items[i:i + size]
