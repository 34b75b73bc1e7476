"""DPO step throughput on one CUDA GPU: a ~1B Llama-shaped model (random init) in bf16.

    python bench/gpu_dpo.py [--steps 10] [--warmup 2] [--pairs-per-step 16] [--max-length 2048]
    python bench/gpu_dpo.py --device cpu --preset tiny --steps 2     # smoke run of the same code path

Each step packs ``--pairs-per-step`` synthetic pairs (long-tailed log-normal prompt and response
lengths, like chat data) into micro-batches of at most ``--max-tokens`` tokens, computes summed
response log-probs with the packed varlen path (FlashAttention-2 when installed, per-sequence sdpa
otherwise) and the chunked LM head (Liger's fused kernel when installed), the sigmoid DPO loss
against cached reference log-probs, backward and a fused AdamW update (bf16 weights, no ZeRO: one
GPU). Prints tokens/s (real tokens), MFU against the card's bf16 peak (rlhi_hpc.train.metrics) and
peak memory, and as its last line::

    gpu_dpo model=<params>B tok_s=<x> mfu=<m> peak_mem_gb=<g> attn=<impl> liger=<bool>
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRESETS = {
    # Llama-3.2-1B shape (untied here), ~1.5B parameters with the untied 128k vocabulary head
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256},
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 1024},
}


def synthetic_pairs(n: int, vocab: int, max_length: int, rng: random.Random) -> list:
    from rlhi_hpc.train.data import TokenizedPair

    def length(median: float) -> int:
        return max(1, min(max_length // 2, int(rng.lognormvariate(math.log(median), 0.9))))

    def ids(k: int) -> tuple[int, ...]:
        return tuple(rng.randrange(3, vocab) for _ in range(k))

    return [TokenizedPair(key=f"s{rng.random()}", source="rewards", prompt_ids=ids(length(max_length / 8)),
                          chosen_ids=ids(length(max_length / 6)), rejected_ids=ids(length(max_length / 6)))
            for _ in range(n)]


def build_model(preset: str, device, dtype, attn: str):  # noqa: ANN001, ANN201
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**PRESETS[preset], max_position_embeddings=8192, tie_word_embeddings=False,
                      attention_dropout=0.0)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.config.use_cache = False
    return model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="bf16 DPO step throughput on one GPU")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--pairs-per-step", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=16384, help="token budget of one micro-batch")
    ap.add_argument("--chunk-tokens", type=int, default=4096)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    return ap.parse_args(argv)


def run_step(wrapper, opt, pairs: list, args: argparse.Namespace, device) -> tuple[float, float, int, float]:  # noqa: ANN001
    """One optimizer step; returns (real tokens, FLOPs, micro-batches, last micro-batch loss)."""
    import torch

    from rlhi_hpc.train.loss import LossSpec, microbatch_loss
    from rlhi_hpc.train.metrics import step_flops
    from rlhi_hpc.train.packing import build_microbatch, plan_step

    cfg = wrapper.model.config
    n_params = sum(p.numel() for p in wrapper.parameters())
    plan = plan_step([p.n_tokens for p in pairs], 1, args.max_tokens)[0]
    n_chosen = sum(len(p.chosen_ids) for p in pairs)
    tokens = flops = 0.0
    for bin_ in plan:
        mb = build_microbatch([pairs[i] for i in bin_], packed=True, pad_id=0)
        logps = wrapper(**mb.model_kwargs(device))
        ref = logps.detach().float() - 0.5 + torch.rand_like(logps, dtype=torch.float32)  # stands in for the cache
        loss, _ = microbatch_loss(logps, ref, mb.response_lens, LossSpec(kind="sigmoid", beta=0.1),
                                  n_pairs_total=len(pairs), n_chosen_tokens_total=n_chosen)
        loss.backward()
        tokens += mb.real_tokens
        flops += step_flops(n_params, cfg.num_hidden_layers, cfg.hidden_size, mb.seq_lens)
    torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return tokens, flops, len(plan), loss.item()


def main(argv: list[str] | None = None) -> int:
    import torch

    from rlhi_hpc.train.attention import resolve_attn_implementation
    from rlhi_hpc.train.logps import SequenceLogps, liger_available
    from rlhi_hpc.train.metrics import peak_flops

    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU node, or use --device cpu --preset tiny for a smoke run")
    cuda = device.type == "cuda"
    attn = resolve_attn_implementation("auto", device.type)
    model = build_model(args.preset, device, torch.bfloat16 if cuda else torch.float32, attn)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    use_liger = cuda and liger_available()
    wrapper = SequenceLogps(model, chunk_tokens=args.chunk_tokens, use_liger=use_liger).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=cuda)
    rng = random.Random(0)
    peak = peak_flops(torch.cuda.get_device_name(device)) if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    tokens = flops = elapsed = 0.0
    for step in range(args.warmup + args.steps):
        pairs = synthetic_pairs(args.pairs_per_step, model.config.vocab_size, args.max_length, rng)
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step_tokens, step_fl, n_micro, loss = run_step(wrapper, opt, pairs, args, device)
        if cuda:
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - start
        if step >= args.warmup:
            tokens, flops, elapsed = tokens + step_tokens, flops + step_fl, elapsed + dt
        print(f"step={step + 1} tokens={int(step_tokens)} micro_batches={n_micro} seconds={dt:.3f} "
              f"last_micro_batch_loss={loss:.4f}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    mfu = flops / elapsed / peak if peak else float("nan")
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    print(f"gpu_dpo model={n_params / 1e9:.2f}B tok_s={tokens / elapsed:.0f} mfu={mfu:.3f} peak_mem_gb={mem:.1f} "
          f"attn={attn} liger={use_liger}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
