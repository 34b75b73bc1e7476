"""Atomic, resumable training checkpoints (DeepSpeed state + RNG + sampler + trainer state).

Layout under ``<out>/checkpoints/``::

    step_00000040/            one checkpoint (a DeepSpeed tag folder)
      ...                     DeepSpeed model/optimizer/scheduler shards (every rank writes its own)
      rng_rank<r>.pt          python, numpy, torch (and CUDA) RNG states of rank r
      meta.json               written LAST, by rank 0, after a barrier: step, sampler state, ...

A checkpoint counts only once its ``meta.json`` exists, so a job killed in the middle of a save
resumes from the previous one. Every rank takes part in every save and load; barriers are
time-bounded (gloo: ``monitored_barrier`` names the ranks that did not arrive).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

META = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def barrier(name: str, timeout_s: float) -> None:
    """A barrier across all ranks that fails (naming the late ranks on gloo) instead of hanging."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    start = time.perf_counter()
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
    else:
        dist.barrier()
    waited = time.perf_counter() - start
    if waited > 10:
        log.warning("event=slow_barrier name=%s rank=%d waited_s=%.1f", name, dist.get_rank(), waited)


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint whose meta.json exists, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / META).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[-1][1] if done else None


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(engine: Any, root: Path, step: int, meta: dict[str, Any], *, rank: int, keep: int,
                    timeout_s: float) -> Path:
    """Collective: every rank saves its shards and RNG; rank 0 then writes meta.json and prunes."""
    import torch

    folder = step_dir(root, step)
    start = time.perf_counter()
    log.info("event=checkpoint_save_start step=%d rank=%d", step, rank)
    engine.save_checkpoint(str(root), tag=folder.name, save_latest=False)
    rng_tmp = folder / f".rng_rank{rank}.pt.tmp"
    torch.save(rng_state(), rng_tmp)
    os.replace(rng_tmp, folder / f"rng_rank{rank}.pt")
    barrier(f"checkpoint_{step}", timeout_s)
    if rank == 0:
        atomic_write_text(folder / META, json.dumps({**meta, "step": step, "saved_at": time.time()}, indent=2))
        prune(root, keep)
    barrier(f"checkpoint_{step}_meta", timeout_s)
    log.info("event=checkpoint_saved step=%d rank=%d seconds=%.2f path=%s", step, rank,
             time.perf_counter() - start, folder)
    return folder


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints, and incomplete ones older than them."""
    done = complete_checkpoints(root)
    for _, folder in done[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
    newest = done[-1][0] if done else -1
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and not (child / META).is_file() and int(m.group(1)) < newest:
            shutil.rmtree(child, ignore_errors=True)


def remove_incomplete(root: Path) -> None:
    """Rank 0 at start-up: drop checkpoint folders a killed save left without meta.json."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if _STEP_DIR.match(child.name) and not (child / META).is_file():
            log.warning("event=checkpoint_incomplete_removed path=%s", child)
            shutil.rmtree(child, ignore_errors=True)


def load_checkpoint(engine: Any, folder: Path, *, rank: int, world_size: int) -> dict[str, Any]:
    """Collective: restore model, optimizer, scheduler and this rank's RNG; return meta.json."""
    import torch

    meta = json.loads((folder / META).read_text())
    path, _ = engine.load_checkpoint(str(folder.parent), tag=folder.name, load_optimizer_states=True,
                                     load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {folder}")
    rng_file = folder / f"rng_rank{rank}.pt"
    if meta.get("world_size") == world_size and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        log.warning("event=rng_not_restored rank=%d reason=world_size_changed saved=%s now=%d",
                    rank, meta.get("world_size"), world_size)
    log.info("event=checkpoint_loaded step=%d rank=%d path=%s", meta["step"], rank, folder)
    return meta
