"""Planning 100,000 shards and finding the missing ones.

    .venv/bin/python bench/shards.py [n_shards]

Creates a manifest of N shards with done markers for 90% of them in a temp folder, then times
planning + "what is still missing" (one directory listing) against the naive peer that checks
each shard's marker with its own `stat` call (what a per-task existence check does). Prints one
result line with the ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rlhi_hpc.paths import StagePaths
from rlhi_hpc.shards import group_tasks, missing_shards, plan_shards, write_manifest


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        paths = StagePaths(Path(tmp) / "stage")
        shards = plan_shards(n)
        write_manifest(paths, stage="bench", stage_hash="h", shards=shards, upstream={})
        for s in shards:
            if s.index % 10:
                paths.done(s.id).write_text("{}")
        t0 = time.perf_counter()
        planned = plan_shards(n)
        missing = missing_shards(planned, paths)
        tasks = group_tasks(missing, 4)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = [s for s in plan_shards(n) if not paths.done(s.id).exists()]
        peer = time.perf_counter() - t0
        assert [s.id for s in naive] == [s.id for s in missing]
        print(f"shards n={n} missing={len(missing)} tasks={len(tasks)} ours_s={ours:.4f} "
              f"per_file_stat_s={peer:.4f} ratio={peer / ours:.2f}")


if __name__ == "__main__":
    main()
