"""The run-directory layout, in one place.

::

    <out>/
      stages/<stage>-<stage_hash>/      content-addressed stage directories (shared by pipelines
        manifest.json                   and sweep points whose upstream config is identical)
        config.yaml                     the resolved config that produced this stage
        out/<shard>.jsonl               finished shard outputs
        out/<shard>.jsonl.partial       a shard in progress (never read as output)
        quarantine/<shard>.jsonl        rejected input rows with reasons
        progress/<shard>.json           committed-chunk bookmark of a shard in progress
        done/<shard>.json               completion marker, written last (counts, seconds, hashes)
        failed/<shard>.json             last error of a failed shard (removed when it succeeds)
        logs/                           task logs
        jobs.json                       submitted job ids (Slurm)
        submit.slurm                    rendered sbatch script for manual relaunch
      <pipeline_id>/
        pipeline.json                   job, stages and their stage directories
        <stage> -> ../stages/<stage>-<stage_hash>   one link per stage of the pipeline
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StagePaths:
    """Paths inside one stage directory."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    @property
    def done_dir(self) -> Path:
        return self.root / "done"

    @property
    def failed_dir(self) -> Path:
        return self.root / "failed"

    @property
    def progress_dir(self) -> Path:
        return self.root / "progress"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs.json"

    @property
    def sbatch(self) -> Path:
        return self.root / "submit.slurm"

    def out(self, shard: str, ext: str = "jsonl") -> Path:
        return self.out_dir / f"{shard}.{ext}"

    def partial(self, shard: str, ext: str = "jsonl") -> Path:
        return self.out_dir / f"{shard}.{ext}.partial"

    def quarantine(self, shard: str) -> Path:
        return self.quarantine_dir / f"{shard}.jsonl"

    def quarantine_partial(self, shard: str) -> Path:
        return self.quarantine_dir / f"{shard}.jsonl.partial"

    def done(self, shard: str) -> Path:
        return self.done_dir / f"{shard}.json"

    def failed(self, shard: str) -> Path:
        return self.failed_dir / f"{shard}.json"

    def progress(self, shard: str) -> Path:
        return self.progress_dir / f"{shard}.json"

    def log(self, task: str) -> Path:
        return self.logs_dir / f"{task}.log"

    def make_dirs(self) -> None:
        for d in (self.out_dir, self.done_dir, self.failed_dir, self.progress_dir,
                  self.quarantine_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class RunLayout:
    """Paths under the runs root `out`."""

    root: Path

    def stage(self, stage: str, stage_hash: str) -> StagePaths:
        return StagePaths(self.root / "stages" / f"{stage}-{stage_hash}")

    def pipeline(self, pipeline_id: str) -> Path:
        return self.root / pipeline_id

    def pipeline_file(self, pipeline_id: str) -> Path:
        return self.pipeline(pipeline_id) / "pipeline.json"

    def pipelines(self) -> list[Path]:
        """Every pipeline directory under the root, oldest first."""
        found = [p.parent for p in self.root.glob("*/pipeline.json")]
        return sorted(found, key=lambda p: p.stat().st_mtime)
