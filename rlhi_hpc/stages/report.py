"""report: report.md, CSV tables and PNG plots of a pipeline, or of every point of a sweep.

    python -m rlhi_hpc.launch stage=report out=runs            # the demo pipeline's report
    python -m rlhi_hpc.launch sweep=sweep_demo out=runs        # runs the sweep, then its report

The report reads whichever upstream stages the job has (any may be missing or unfinished: the
section says "not available"), so it is rebuilt on every launch (``always_run``). With
``report.sweep=<name>`` it reads ``<out>/sweeps/<name>/sweep.json`` and covers every grid point.
The files are written into the stage directory; ``<out>/<pipeline>/report/report.md`` links there.
"""

from __future__ import annotations

from typing import Any

from rlhi_hpc.config import RunConfig
from rlhi_hpc.errors import StageError
from rlhi_hpc.eval.report import RunInfo, build_report, sweep_runs
from rlhi_hpc.shards import ShardSpec, ShardWriter
from rlhi_hpc.stage import StageContext


class ReportStage:
    name = "report"
    needs: tuple[str, ...] = ()
    optional_needs = ("ingest", "classify", "persona", "rewrite", "sample", "reward", "pairs", "reflogp", "dpo",
                      "eval")
    sections = ("report",)
    kind = "cpu"
    always_run = True

    def plan(self, cfg: RunConfig) -> list[ShardSpec]:
        return [ShardSpec(id="report", index=0)]

    def run_shard(self, ctx: StageContext, shard: ShardSpec, writer: ShardWriter) -> dict[str, Any]:
        cfg = ctx.cfg.report
        root = ctx.paths.root.parent.parent  # <out>/stages/<dir> -> <out>
        if cfg.sweep:
            runs = sweep_runs(root, cfg.sweep)
            if not runs:
                raise StageError(f"no sweep file {root}/sweeps/{cfg.sweep}/sweep.json; run "
                                 f"`python -m rlhi_hpc.launch sweep={cfg.sweep} out={root}` first")
            source = f"sweep {cfg.sweep}"
        else:
            known = [n for n in self.optional_needs if n in ctx.upstream]
            order = known + sorted(set(ctx.upstream) - set(known))
            runs = [RunInfo(label=ctx.cfg.job, stages={n: ctx.upstream[n].root for n in order})]
            source = f"job {ctx.cfg.job}"
        path = build_report(runs, ctx.paths.root, cfg, source=source)
        writer.commit([{"report": str(path), "runs": [r.label for r in runs]}], consumed=1)
        return {"report": str(path), "runs": len(runs)}
