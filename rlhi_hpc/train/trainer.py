"""The DPO training loop on DeepSpeed: packed micro-batches, cached reference log-probs, exact resume.

One optimizer step takes ``dpo.global_batch_size`` pairs from the sampler, spreads them over the
ranks and packs each rank's share into the same number of micro-batches (see
:mod:`rlhi_hpc.train.packing`), runs forward/backward on each, and lets DeepSpeed reduce and update
once. Checkpoints (every ``dpo.checkpoint_every`` steps, and at the next step boundary after
SIGUSR2/SIGTERM or before ``dpo.time_limit_min``) restore model, optimizer, scheduler, RNG and
sampler exactly; after a signal the process exits with :data:`PREEMPT_EXIT_CODE` so the job is
requeued and resumes mid-epoch. Rank 0 writes ``metrics.jsonl`` and, at the end, a consolidated
Hugging Face model folder ``final/`` (loadable by transformers and vLLM).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from rlhi_hpc.config import DPOConfig, RunConfig, output_view, stable_hash
from rlhi_hpc.train import TrainError
from rlhi_hpc.train import checkpoint as ckpt
from rlhi_hpc.train.data import PairSampler, RenderSpec, TokenizedPair, load_pairs, pairs_fingerprint, tokenize_pairs
from rlhi_hpc.train.ds_config import deepspeed_config, deepspeed_supports_unmanaged_accumulation, resolve_precision
from rlhi_hpc.train.logps import SequenceLogps, liger_available
from rlhi_hpc.train.loss import METRIC_KEYS, LossSpec, finalize_metrics, microbatch_loss
from rlhi_hpc.train.metrics import MetricsLog, peak_flops, step_flops
from rlhi_hpc.train.packing import MicroBatch, build_microbatch, dummy_pair, plan_step
from rlhi_hpc.train.reference import lookup, read_cache

log = logging.getLogger(__name__)

#: Exit status of a run that checkpointed because of SIGUSR2/SIGTERM or its time limit: requeue it.
PREEMPT_EXIT_CODE = 75
FINAL_DIR = "final"
SUMMARY = "train_summary.json"


class Preempted(Exception):
    """Raised after the preemption checkpoint; the entry point exits with PREEMPT_EXIT_CODE."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"checkpointed at step {step} ({reason}); requeue to resume")
        self.step, self.reason = step, reason


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(timeout_min: float) -> Dist:
    """Join the process group (gloo on CPU, nccl on CUDA) with time-bounded collectives."""
    import torch.distributed as dist

    os.environ.setdefault("RANK", os.environ.get("SLURM_PROCID", "0"))
    os.environ.setdefault("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1"))
    os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(_free_port()) if os.environ["WORLD_SIZE"] == "1" else "29511"
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_min))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StopFlag:
    """Set by SIGUSR2/SIGTERM handlers; acted upon at the next step boundary (never inside a handler)."""

    def __init__(self) -> None:
        self.reason = ""
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGUSR2, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum, self.reason = signum, signal.Signals(signum).name

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def forward(self) -> bool:
        """After the checkpoint: hand the signal to the handler installed before ours (e.g. submitit's
        requeue). Returns False when there was none to call."""
        handler = self._previous.get(self.signum) if self.signum is not None else None
        if not callable(handler):
            return False
        handler(self.signum, None)
        return True


class WarmupDecay:
    """LR multiplier: linear warmup to 1, then cosine/linear decay to min_ratio (or constant)."""

    def __init__(self, total: int, warmup: int, schedule: str, min_ratio: float) -> None:
        self.total, self.warmup, self.schedule, self.min_ratio = total, warmup, schedule, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1 - progress
        return self.min_ratio + (1 - self.min_ratio) * shape


def build_optimizer(model: torch.nn.Module, dpo: DPOConfig, device_type: str) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights (DeepSpeed's CPU Adam when offloading)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": dpo.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"lr": dpo.lr, "betas": (dpo.adam_beta1, dpo.adam_beta2), "eps": dpo.adam_eps}
    if dpo.offload_optimizer and dpo.zero_stage > 0:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kwargs)
    return torch.optim.AdamW(groups, fused=device_type == "cuda", **kwargs)


def count_steps(sampler: PairSampler, dpo: DPOConfig) -> int:
    if dpo.max_steps > 0:
        return dpo.max_steps
    total = sampler.total_items() or 0
    return math.ceil(total / dpo.global_batch_size)


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_speedups(device_type: str) -> None:
    """On CPU, flush denormal floats to zero: tiny DPO gradients (a confident policy, sigmoid near 0)
    otherwise hit the slow denormal path and a step can take ten times longer; values below
    1e-38 change nothing else."""
    if device_type == "cpu":
        torch.set_flush_denormal(True)


class Trainer:
    """One DPO run in `out_dir`; construct on every rank, then call :meth:`run`."""

    def __init__(self, cfg: RunConfig, pairs_paths: Sequence[Path | str], reflogp_paths: Sequence[Path | str],
                 out_dir: Path | str, final_dir: Path | str | None = None) -> None:
        self.cfg, self.dpo = cfg, cfg.dpo
        self.pairs_paths = [Path(p) for p in pairs_paths]
        self.reflogp_paths = [Path(p) for p in reflogp_paths]
        self.out = Path(out_dir)
        self.final = Path(final_dir) if final_dir is not None else self.out / FINAL_DIR
        self.ckpt_root = self.out / "checkpoints"
        self.spec = LossSpec.from_config(cfg.dpo)
        self.stop = StopFlag()
        self.start_time = time.time()
        self.max_step_s = 0.0
        self.last_record: dict[str, Any] = {}
        self.tokens_seen, self.train_seconds = 0, 0.0

    # ---------------------------------------------------------------- setup

    def setup(self) -> None:
        if not deepspeed_supports_unmanaged_accumulation():
            raise TrainError("this DeepSpeed lacks managed_gradient_accumulation=false; install deepspeed>=0.19")
        self.dist = init_distributed(self.dpo.comm_timeout_min)
        self.stop.install()
        seed_everything(self.cfg.seed)
        cpu_speedups(self.dist.device.type)
        self._setup_data()
        self._setup_engine()
        self.step = self._resume()
        if self.dist.rank == 0:
            self.metrics = MetricsLog(self.out / "metrics.jsonl", self.step)

    def _setup_data(self) -> None:
        from rlhi_hpc.inference.models import resolve_model_path
        from rlhi_hpc.train.model import load_tokenizer

        self.model_path = resolve_model_path(self.cfg.model.name)
        self.tokenizer = load_tokenizer(resolve_model_path(self.cfg.model.tokenizer or self.cfg.model.name))
        pairs = load_pairs(self.pairs_paths)
        if not pairs:
            raise TrainError(f"no pairs in {[str(p) for p in self.pairs_paths]}")
        self.tokenized: list[TokenizedPair] = tokenize_pairs(pairs, self.tokenizer, RenderSpec.from_config(self.dpo),
                                                             show_progress=self.dist.rank == 0)
        self.ref = {}
        for path in self.reflogp_paths:
            self.ref.update(read_cache(path))
        lookup(self.ref, self.tokenized)
        self.sampler = PairSampler([p.source for p in pairs], self.dpo.mix, seed=self.cfg.seed,
                                   epochs=None if self.dpo.max_steps > 0 else self.dpo.epochs,
                                   fingerprint=pairs_fingerprint(pairs))
        self.total_steps = count_steps(self.sampler, self.dpo)
        self.pad_id = self.tokenizer.pad_token_id
        log.info("event=data_ready pairs=%d epoch_items=%d total_steps=%d global_batch=%d rank=%d", len(pairs),
                 self.sampler.epoch_length, self.total_steps, self.dpo.global_batch_size, self.dist.rank)

    def _setup_engine(self) -> None:
        import deepspeed

        from rlhi_hpc.train.model import load_causal_lm

        dev = self.dist.device.type
        self.precision = resolve_precision(self.dpo.precision, dev)
        ds_cfg = deepspeed_config(self.dpo, world_size=self.dist.world_size, device_type=dev)
        keep_alive = None
        if self.dpo.zero_stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            keep_alive = HfDeepSpeedConfig(ds_cfg)  # from_pretrained then partitions weights while loading
        model = load_causal_lm(self.model_path, precision=self.precision,
                               attn_implementation=self.dpo.attn_implementation, device_type=dev,
                               gradient_checkpointing=self.dpo.gradient_checkpointing,
                               trust_remote_code=self.cfg.model.trust_remote_code)
        self.n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
        use_liger = dev == "cuda" and self.dpo.zero_stage < 3 and liger_available()
        wrapper = SequenceLogps(model, chunk_tokens=self.dpo.logp_chunk_tokens, use_liger=use_liger)
        optimizer = build_optimizer(wrapper, self.dpo, dev)
        warmup = max(1, math.ceil(self.dpo.warmup_ratio * self.total_steps)) if self.dpo.warmup_ratio > 0 else 0
        schedule = WarmupDecay(self.total_steps, warmup, self.dpo.lr_schedule, self.dpo.min_lr_ratio)
        # A callable: DeepSpeed builds the scheduler on the optimizer it ends up with (ZeRO regroups params).
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=wrapper, optimizer=optimizer, config=ds_cfg, dist_init_required=False,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))
        self.engine.train()
        self._hf_ds_config = keep_alive
        self.model_cfg = model.config
        gpu = torch.cuda.get_device_name(self.dist.device) if dev == "cuda" else ""
        self.peak = peak_flops(gpu) if gpu else None
        log.info("event=engine_ready zero=%d precision=%s world=%d liger=%s gpu=%s peak_flops=%s", self.dpo.zero_stage,
                 self.precision, self.dist.world_size, use_liger, gpu or "none", self.peak)

    def _resume(self) -> int:
        if self.dist.rank == 0:
            ckpt.remove_incomplete(self.ckpt_root)
        ckpt.barrier("resume_scan", self._timeout_s())
        folder = ckpt.latest_checkpoint(self.ckpt_root)
        if folder is None:
            return 0
        meta = ckpt.load_checkpoint(self.engine, folder, rank=self.dist.rank, world_size=self.dist.world_size)
        if meta.get("config_hash") != self._config_hash():
            raise TrainError(f"checkpoint {folder} was written with another dpo config; use a new output folder")
        self.sampler.load_state_dict(meta["sampler"])
        log.info("event=resumed step=%d epoch=%d position=%d rank=%d", meta["step"], self.sampler.epoch,
                 self.sampler.position, self.dist.rank)
        return int(meta["step"])

    def _config_hash(self) -> str:
        return stable_hash({"dpo": output_view(self.dpo), "model": output_view(self.cfg.model), "seed": self.cfg.seed})

    def _timeout_s(self) -> float:
        return self.dpo.comm_timeout_min * 60

    # ---------------------------------------------------------------- loop

    def run(self) -> dict[str, Any]:
        """Train to the end (or until preempted); return the summary written to train_summary.json."""
        from tqdm import tqdm

        done = self.out / SUMMARY
        if done.is_file() and (self.final / "config.json").is_file():
            log.info("event=already_trained out=%s", self.out)
            return json.loads(done.read_text())
        self.setup()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="dpo", unit="step", disable=self.dist.rank != 0,
                   dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                record = self.train_step()
                self.step += 1
                self._after_step(record, bar)
            return self._finish()
        finally:
            bar.close()
            self.stop.uninstall()

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over `global_batch_size` pairs; returns its (global) metrics."""
        t0 = time.perf_counter()
        idx = self.sampler.next_batch(self.dpo.global_batch_size)
        pairs = [self.tokenized[i] for i in idx]
        plan = plan_step([p.n_tokens for p in pairs], self.dist.world_size, self.dpo.max_tokens_per_microbatch)
        micro = [(build_microbatch([pairs[i] for i in b], packed=self.dpo.packing, pad_id=self.pad_id), 1.0) if b
                 else (build_microbatch([dummy_pair(self.pad_id)], packed=self.dpo.packing, pad_id=self.pad_id), 0.0)
                 for b in plan[self.dist.rank]]
        data_s = time.perf_counter() - t0
        n_chosen = sum(len(p.chosen_ids) for p in pairs)
        sums: dict[str, float] = defaultdict(float)
        for mb, weight in micro:
            self._forward_backward(mb, weight, len(pairs), n_chosen, sums)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.engine.step()
        sums["stop"] = 1.0 if self._want_stop() else 0.0
        totals = self._all_reduce(sums)
        step_s = time.perf_counter() - t0
        self.max_step_s = max(self.max_step_s, step_s)
        return self._record(totals, lr, data_s, step_s, len(pairs), len(micro), n_chosen)

    def _forward_backward(self, mb: MicroBatch, weight: float, n_pairs: int, n_chosen: int,
                          sums: dict[str, float]) -> None:
        logps = self.engine(**mb.model_kwargs(self.dist.device))
        ref = torch.tensor([v for k in mb.keys for v in (self.ref[k] if weight else (0.0, 0.0))],
                           dtype=torch.float32, device=logps.device)
        loss, metrics = microbatch_loss(logps, ref, mb.response_lens, self.spec, n_pairs_total=n_pairs,
                                        n_chosen_tokens_total=n_chosen, weight=weight)
        # DeepSpeed averages gradients over ranks; our loss is already the global mean, so undo that.
        self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)
        for key, value in metrics.items():
            sums[key] += value
        if weight:
            sums["tokens"] += mb.real_tokens
            sums["slots"] += mb.slots
            sums["flops"] += step_flops(self.n_params, self.model_cfg.num_hidden_layers, self.model_cfg.hidden_size,
                                        mb.seq_lens)

    def _want_stop(self) -> bool:
        if self.stop.reason:
            return True
        limit = self.dpo.time_limit_min * 60
        if limit > 0 and time.time() - self.start_time + 2 * self.max_step_s + 60 > limit:
            self.stop.reason = self.stop.reason or "time_limit"
            return True
        return False

    def _all_reduce(self, sums: dict[str, float]) -> dict[str, float]:
        import torch.distributed as dist

        keys = sorted(set(sums) | set(METRIC_KEYS) | {"tokens", "slots", "flops", "stop"})
        vec = torch.tensor([sums.get(k, 0.0) for k in keys], dtype=torch.float64)
        if self.dist.world_size > 1:
            vec = vec.to(self.dist.device) if self.dist.device.type == "cuda" else vec
            dist.all_reduce(vec)
        return dict(zip(keys, vec.cpu().tolist()))

    def _record(self, totals: dict[str, float], lr: float, data_s: float, step_s: float, n_pairs: int,
                n_micro: int, n_chosen: int) -> dict[str, Any]:
        epoch = self.sampler.epoch + self.sampler.position / self.sampler.epoch_length
        record: dict[str, Any] = {"step": self.step + 1, "epoch": epoch, "time": time.time(), "lr": lr,
                                  "pairs": n_pairs,
                                  "micro_batches": n_micro, "tokens": int(totals["tokens"]),
                                  "tokens_per_s": totals["tokens"] / step_s, "step_time_s": step_s,
                                  "data_time_s": data_s,
                                  "padding_fraction": 1 - totals["tokens"] / max(totals["slots"], 1.0)}
        record.update(finalize_metrics(totals, self.spec, n_chosen))
        gn = self.engine.get_global_grad_norm()
        record["grad_norm"] = float(gn) if gn is not None else None
        if self.peak:
            record["mfu"] = totals["flops"] / (step_s * self.peak * self.dist.world_size)
        record["stop"] = totals["stop"] > 0
        return record

    def _after_step(self, record: dict[str, Any], bar: Any) -> None:
        stop = record.pop("stop")
        self.last_record = record
        self.tokens_seen += record["tokens"]
        self.train_seconds += record["step_time_s"]
        if self.dist.rank == 0:
            if self.step % self.dpo.log_every == 0 or self.step == self.total_steps:
                self.metrics.write(record)
                log.info("event=step " + " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in record.items()))
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
        periodic = self.dpo.checkpoint_every > 0 and self.step % self.dpo.checkpoint_every == 0
        if stop or (periodic and self.step < self.total_steps):
            self.save()
        if stop:
            reason = self.stop.reason or "signal on another rank"
            log.warning("event=preempted step=%d reason=%s rank=%d exit_code=%d", self.step, reason, self.dist.rank,
                        PREEMPT_EXIT_CODE)
            raise Preempted(self.step, reason)

    # ---------------------------------------------------------------- saving

    def save(self) -> Path:
        meta = {"sampler": self.sampler.state_dict(), "world_size": self.dist.world_size,
                "config_hash": self._config_hash(), "total_steps": self.total_steps}
        return ckpt.save_checkpoint(self.engine, self.ckpt_root, self.step, meta, rank=self.dist.rank,
                                    keep=self.dpo.keep_checkpoints, timeout_s=self._timeout_s())

    def _finish(self) -> dict[str, Any]:
        final = self.final
        save_hf_model(self.engine, self.tokenizer, final, rank=self.dist.rank, zero_stage=self.dpo.zero_stage,
                      timeout_s=self._timeout_s())
        summary = {"steps": self.step, "total_steps": self.total_steps, "final_model": str(final),
                   "seconds": time.time() - self.start_time, "world_size": self.dist.world_size,
                   "tokens": self.tokens_seen, "tokens_per_s": self.tokens_seen / max(self.train_seconds, 1e-9),
                   "last_step": self.last_record}
        if self.dist.rank == 0:
            self.metrics.close()
            ckpt.atomic_write_text(self.out / SUMMARY, json.dumps(summary, indent=2))
        ckpt.barrier("finish", self._timeout_s())
        return summary


def save_hf_model(engine: Any, tokenizer: Any, out: Path, *, rank: int, zero_stage: int, timeout_s: float) -> None:
    """Collective: gather the full weights and write a Hugging Face model folder atomically (rank 0)."""
    import shutil

    hf_model = engine.module.model
    state = None
    if zero_stage == 3:
        full = engine._zero3_consolidated_16bit_state_dict()  # collective; full tensors on rank 0 only
        if rank == 0:
            state = {k.removeprefix("model."): v for k, v in full.items()}
    if rank == 0:
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        impl = hf_model.config._attn_implementation
        hf_model.config._attn_implementation = "sdpa"
        try:
            hf_model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        finally:
            hf_model.config._attn_implementation = impl
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        log.info("event=final_model_saved path=%s", out)
    ckpt.barrier("final_model", timeout_s)
