"""Ingest throughput on a generated 100k-conversation WildChat-format file.

    .venv/bin/python bench/ingest.py [n_conversations]

Builds the file by re-keying the bundled sample's valid rows (new conversation hashes, users and
timestamps), then runs the real ingest stage in-process with one shard (parse, validate,
quarantine, filter, group by user, sort, split, write). The named peer is the floor of any JSONL
reader: `json.loads` of every line with nothing else done. Prints one result line with the ratio
(ingest rows/s divided by json.loads rows/s).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from rlhi_hpc.data.wildchat import sample_path
from rlhi_hpc.launch import main as launch


def make_file(path: Path, n: int) -> None:
    rows = []
    for line in sample_path().read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("conversation"), list):
            rows.append(row)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["conversation_hash"] = f"bench{i:08d}"
            row["hashed_ip"] = f"user{i % (n // 5):07d}"
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wildchat.jsonl"
        make_file(data, n)
        t0 = time.perf_counter()
        with open(data, encoding="utf-8") as fh:
            parsed = sum(1 for line in fh if json.loads(line))
        peer = time.perf_counter() - t0
        t0 = time.perf_counter()
        rc = launch(["stage=ingest", f"data.path={data}", "data.num_shards=1", "cluster=inprocess",
                     f"out={tmp}/runs", "log_level=WARNING"])
        ours = time.perf_counter() - t0
        assert rc == 0 and parsed == n
        print(f"ingest rows={n} ours_rows_s={n / ours:.0f} json_loads_rows_s={n / peer:.0f} "
              f"ratio={(n / ours) / (n / peer):.3f} seconds={ours:.1f}")


if __name__ == "__main__":
    main()
