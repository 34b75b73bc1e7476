"""Reference log-probs of every pair, computed once and cached on disk by content.

The cache file ``<cache_dir>/<key>.json`` holds ``{pair_key: [chosen_logp, rejected_logp]}``;
``key`` is :func:`reference_cache_key`, the sha256 of everything the values depend on: the
reference model's identity (path, config, tokenizer files and the weights files' names, sizes and
modification times — or their content hashes with ``hash_weights=True``), the chat template, the
rendering (system prompt, persona on/off, max_length), the forward dtype and the pairs' content.
Every sweep point over β, loss or data mix with the same reference and pairs reuses one file, and
training only reads it: the reference model is never loaded during training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhi_hpc.train import TrainError
from rlhi_hpc.train.data import RenderSpec, TokenizedPair

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "chat_template.jinja", "generation_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(path: str, *, hash_weights: bool = False) -> dict[str, Any]:
    """What identifies a model folder: config/tokenizer hashes and weights (stat or hash)."""
    folder = Path(path)
    if not folder.is_dir():
        return {"id": path}
    ident: dict[str, Any] = {"path": str(folder.resolve()), "files": {}, "weights": {}}
    for name in _SMALL_FILES:
        if (folder / name).is_file():
            ident["files"][name] = _sha256_file(folder / name)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES):
            st = f.stat()
            ident["weights"][f.name] = _sha256_file(f) if hash_weights else [st.st_size, st.st_mtime_ns]
    return ident


def reference_cache_key(*, model_path: str, chat_template: str, render: RenderSpec, dtype: str,
                        pairs_fingerprint: str, hash_weights: bool = False) -> str:
    """sha256 naming the cache file of one (reference model, rendering, pairs) combination."""
    blob = {
        "format": CACHE_FORMAT,
        "model": model_identity(model_path, hash_weights=hash_weights),
        "chat_template": hashlib.sha256(chat_template.encode()).hexdigest(),
        "render": render.as_dict(),
        "dtype": dtype,
        "pairs": pairs_fingerprint,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def write_cache(path: Path, values: Mapping[str, Sequence[float]]) -> None:
    """Write the cache atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({k: [float(v[0]), float(v[1])] for k, v in values.items()}, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_cache(path: Path | str) -> dict[str, tuple[float, float]]:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"reference log-prob cache {path} does not exist; run the reflogp stage first "
                         "(python -m rlhi_hpc.launch stage=reflogp)")
    data = json.loads(path.read_text())
    return {k: (float(v[0]), float(v[1])) for k, v in data.items()}


def lookup(cache: Mapping[str, tuple[float, float]], pairs: Sequence[TokenizedPair]) -> None:
    """Raise unless every pair has reference log-probs."""
    missing = [p.key for p in pairs if p.key not in cache]
    if missing:
        raise TrainError(f"the reference cache lacks {len(missing)} of {len(pairs)} pairs (e.g. {missing[0]!r}); "
                         "it was computed for other pairs or settings: rerun the reflogp stage")


def compute_reference_logps(model: Any, pairs: Sequence[TokenizedPair], *, max_tokens: int, chunk_tokens: int,
                            pad_id: int, device: Any, show_progress: bool = True) -> dict[str, tuple[float, float]]:
    """Summed response log-probs of every pair under a frozen `model` (packed, no gradients)."""
    import torch
    from tqdm import tqdm

    from rlhi_hpc.train.logps import SequenceLogps
    from rlhi_hpc.train.packing import build_microbatch, plan_step

    wrapper = SequenceLogps(model, chunk_tokens=chunk_tokens).eval()
    bins = plan_step([p.n_tokens for p in pairs], 1, max_tokens)[0]
    out: dict[str, tuple[float, float]] = {}
    start, tokens = time.perf_counter(), 0
    with torch.no_grad():
        for b in tqdm(bins, desc="reference log-probs", unit="batch", disable=not show_progress, mininterval=2.0):
            mb = build_microbatch([pairs[i] for i in b], packed=True, pad_id=pad_id)
            logps = wrapper(**mb.model_kwargs(device)).float().cpu().tolist()
            for j, key in enumerate(mb.keys):
                out[key] = (logps[2 * j], logps[2 * j + 1])
            tokens += mb.real_tokens
    seconds = time.perf_counter() - start
    log.info("event=reference_logps pairs=%d tokens=%d seconds=%.2f tokens_per_s=%.0f", len(out), tokens, seconds,
             tokens / max(seconds, 1e-9))
    return out


def reference_model_path(cfg: Any) -> str:
    """The reference model: reflogp.model, or the policy (model.name) when empty."""
    from rlhi_hpc.inference.models import resolve_model_path

    return resolve_model_path(cfg.reflogp.model or cfg.model.name)


def ensure_reference_cache(cfg: Any, pairs: Sequence[Any], cache_dir: Path, *, device: str = "auto",
                           show_progress: bool = True) -> Path:
    """The cache file for `pairs` under `cfg` (a RunConfig), computing it if it is not there yet."""
    import torch

    from rlhi_hpc.inference.models import resolve_model_path
    from rlhi_hpc.train.data import pairs_fingerprint, tokenize_pairs
    from rlhi_hpc.train.ds_config import resolve_precision
    from rlhi_hpc.train.model import load_causal_lm, load_tokenizer

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    ref_path = reference_model_path(cfg)
    tok_path = resolve_model_path(cfg.model.tokenizer or cfg.model.name)
    tokenizer = load_tokenizer(tok_path)
    render = RenderSpec.from_config(cfg.dpo)
    dtype = resolve_precision({"auto": "auto", "float32": "fp32", "bfloat16": "bf16"}[cfg.reflogp.dtype], dev.type)
    key = reference_cache_key(model_path=ref_path, chat_template=str(tokenizer.chat_template), render=render,
                              dtype=dtype, pairs_fingerprint=pairs_fingerprint(pairs)
                              + ("" if tok_path == ref_path else json.dumps(model_identity(tok_path))))
    path = Path(cache_dir) / f"{key}.json"
    if path.is_file():
        log.info("event=reference_cache_hit path=%s", path)
        return path
    tokenized = tokenize_pairs(pairs, tokenizer, render, show_progress=show_progress)
    model = load_causal_lm(ref_path, precision=dtype, attn_implementation=cfg.reflogp.attn_implementation,
                           device_type=dev.type, trust_remote_code=cfg.model.trust_remote_code).to(dev).eval()
    values = compute_reference_logps(model, tokenized, max_tokens=cfg.reflogp.max_tokens_per_microbatch,
                                     chunk_tokens=cfg.reflogp.logp_chunk_tokens, pad_id=tokenizer.pad_token_id,
                                     device=dev, show_progress=show_progress)
    write_cache(path, values)
    log.info("event=reference_cache_written path=%s pairs=%d", path, len(values))
    return path
