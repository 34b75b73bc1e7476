"""What a runs root contains: per pipeline and stage, shards and records done, failed and missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rlhi_hpc.paths import RunLayout, StagePaths
from rlhi_hpc.shards import done_ids, failed_ids, read_json

COLUMNS = ("stage", "shards", "done", "failed", "missing", "in", "out", "quarantined", "rec/s", "tok/s")


def stage_summary(paths: StagePaths) -> dict[str, Any]:
    """Counts aggregated over the done markers of one stage directory."""
    row: dict[str, Any] = {"stage": paths.root.name.rsplit("-", 1)[0], "dir": str(paths.root)}
    if not paths.manifest.exists():
        return {**row, "shards": 0, "done": 0, "failed": 0, "missing": 0, "in": 0, "out": 0,
                "quarantined": 0, "rec/s": 0.0, "tok/s": 0.0}
    ids = [s["id"] for s in read_json(paths.manifest)["shards"]]
    done = done_ids(paths) & set(ids)
    failed = (failed_ids(paths) & set(ids)) - done
    totals = {"records_in": 0, "records_out": 0, "quarantined": 0, "generated_tokens": 0}
    seconds = 0.0
    for sid in done:
        marker = read_json(paths.done(sid))
        for key in totals:
            totals[key] += marker["counts"].get(key, 0)
        seconds += marker.get("seconds", 0.0)
    seconds = max(seconds, 1e-9)
    return {**row, "shards": len(ids), "done": len(done), "failed": len(failed),
            "missing": len(ids) - len(done), "in": totals["records_in"], "out": totals["records_out"],
            "quarantined": totals["quarantined"], "rec/s": round(totals["records_in"] / seconds, 2) if done else 0.0,
            "tok/s": round(totals["generated_tokens"] / seconds, 1) if done else 0.0}


def stage_rows(out: Path, pipeline_dir: Path) -> list[dict[str, Any]]:
    info = read_json(pipeline_dir / "pipeline.json")
    return [stage_summary(StagePaths(out / info["stages"][name])) for name in info["order"]]


def render_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of stage rows."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines)


def print_status(out: str | Path) -> int:
    """Print every pipeline under `out`; exit status 0 when readable, 1 when there is nothing."""
    layout = RunLayout(Path(out))
    pipelines = layout.pipelines()
    if not pipelines:
        print(f"no pipelines under {out}", file=sys.stderr)
        return 1
    for pdir in pipelines:
        rows = stage_rows(layout.root, pdir)
        complete = all(r["missing"] == 0 and r["shards"] > 0 for r in rows)
        print(f"\n## {pdir.name} ({'complete' if complete else 'incomplete'})")
        print(render_table(rows))
        for r in rows:
            for sid in sorted(failed_ids(StagePaths(Path(r["dir"]))) - done_ids(StagePaths(Path(r["dir"])))):
                info = read_json(StagePaths(Path(r["dir"])).failed(sid))
                print(f"  failed {r['stage']} shard {sid}: {info['error']} (log: {info.get('log') or r['dir'] + '/logs'})")
    return 0
