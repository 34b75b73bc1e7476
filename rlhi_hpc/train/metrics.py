"""Throughput accounting: FLOPs of a DPO step, GPU peak FLOPs, MFU, and the metrics.jsonl writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Dense bf16 tensor-core peak FLOP/s per GPU (no sparsity), matched by substring of the device name.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2.5e15), ("B200", 2.25e15), ("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12),
    ("H100", 989e12), ("H800", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12),
    ("L40", 181e12), ("A10G", 70e12), ("A10", 125e12), ("L4", 121e12), ("A6000", 155e12),
    ("V100", 125e12), ("MI300X", 1307e12), ("MI250X", 383e12),
)


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of one GPU named `device_name` (None when unknown)."""
    for key, value in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def step_flops(n_params: int, n_layers: int, hidden: int, seq_lens: list[int]) -> float:
    """Training FLOPs (forward + backward) of the sequences: 6 N per token plus causal attention."""
    tokens = sum(seq_lens)
    attention = 6.0 * n_layers * hidden * sum(n * n for n in seq_lens)
    return 6.0 * n_params * tokens + attention


class MetricsLog:
    """Append-only metrics.jsonl (rank 0); on resume, lines after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        kept = []
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= resume_step:
                    kept.append(line)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        tmp.replace(path)
        self._fh = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
