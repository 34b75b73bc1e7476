"""DPO step throughput: rlhi_hpc's trainer against TRL's DPOTrainer, on CPU.

    python bench/dpo_vs_trl.py [--steps 8] [--batch 8] [--pairs 96] [--hidden 256] [--layers 4]

Both sides train the same offline tiny Llama-shaped model (hidden 256, 4 layers: big enough that
compute dominates) in fp32 on the same pairs, whose prompt and response lengths are long-tailed
(log-normal, like real chat data), with the same global batch (``--batch`` pairs), the same number
of steps and the same batches in the same order (TRL reads the pairs in our sampler's order with
sequential sampling). Each side runs in its own process, one after the other, with the same
threads. Throughput counts real (non-padding) tokens, prompt and response of chosen and rejected,
from the end of step 1 to the end of the last step (step 1 is warm-up). The sides alternate for
``--repeats`` rounds and the best round of each is reported (other work on the machine only ever
slows a round down).

What differs is what each does per step. TRL in its default configuration keeps a reference model
and runs its forward pass in every step, pads each batch to its longest sequence, and (on CPU)
projects every position through the LM head. rlhi_hpc computes the reference log-probs once,
upfront, in the ``reflogp`` stage (its time is printed separately, and not counted: that is the
design — the cached values serve every epoch and every sweep point), packs sequences without
padding, projects only response positions, and on CPU flushes denormal floats to zero (tiny
gradients otherwise take the slow denormal path). TRL's gradient checkpointing (on by default) is
turned off so that neither side recomputes activations; bf16 (TRL's default) is off because this
is a CPU fp32 comparison and the losses must match.

Both sides' step-1 losses are printed; with the reference equal to the initial policy they are
both log 2, and ``loss_max_abs_diff`` is the largest difference between them. Exact loss and
gradient parity on batches where the reference differs from the policy is a test
(tests/test_dpo_parity.py). Prints the peak resident memory of each side, and as its LAST line::

    dpo_vs_trl ours_tok_s=<x> trl_tok_s=<y> ratio=<x/y> loss_max_abs_diff=<d>

The machine should be otherwise idle: other work only ever slows a round down, most of all ours
(many small per-sequence attention calls suffer more from oversubscribed cores than TRL's few
large padded ones). ``BENCH_VERBOSE=1`` prints TRL's per-step times; ours are in each run's
metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = ("the user asks for a short poem about python code and the assistant writes it clearly with "
         "examples because my friend needs the report for tomorrow please explain the main idea of "
         "this function in simple steps then fix the bug in line twelve").split()
SYSTEM = "You are a helpful assistant."


def make_pairs(n: int, seed: int, max_words: int) -> list[dict[str, Any]]:
    """Pair records (as dicts) with long-tailed prompt and response lengths."""
    from rlhi_hpc.records import Pair, Provenance, to_dict

    rng = random.Random(seed)
    prov = Provenance(stage="bench", config_hash="bench", code_version="bench")

    def text(median: float, sigma: float) -> str:
        k = max(1, min(max_words, int(rng.lognormvariate(__import__("math").log(median), sigma))))
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [to_dict(Pair(key=f"b{i}", prompt=({"role": "user", "content": text(30, 1.0)},), persona=text(12, 0.5),
                         chosen=text(45, 1.0), rejected=text(45, 1.0), source="rewrites" if i % 2 else "rewards",
                         margin=None, provenance=prov)) for i in range(n)]


def bench_config(model_dir: Path, args: argparse.Namespace) -> Any:
    from rlhi_hpc.config import load_config

    return load_config([
        "model=tiny", f"model.name={model_dir}", "dpo.loss=sigmoid", "dpo.beta=0.1", "dpo.lr=1e-6",
        f"dpo.global_batch_size={args.batch}", f"dpo.max_steps={args.steps}", f"dpo.max_length={args.max_length}",
        f"dpo.max_tokens_per_microbatch={args.microbatch_tokens}", "dpo.zero_stage=0", "dpo.checkpoint_every=0",
        "dpo.warmup_ratio=0", "dpo.lr_schedule=constant", f"dpo.system_prompt={SYSTEM}", "dpo.persona=true",
        "log_level=WARNING",
    ])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(times: list[float], tokens: list[int]) -> float:
    """Tokens of steps 2..n over the time from the end of step 1 to the end of step n."""
    return sum(tokens[1:]) / (times[-1] - times[0])


# --------------------------------------------------------------------------------------------- sides


def side_reflogp(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rlhi_hpc.records import Pair, read_records
    from rlhi_hpc.train.reference import ensure_reference_cache

    cfg = bench_config(Path(args.model_dir), args)
    start = time.perf_counter()
    path = ensure_reference_cache(cfg, list(read_records(work / "pairs.jsonl", Pair)), work / "cache",
                                  show_progress=False)
    return {"path": str(path), "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def side_ours(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rlhi_hpc.train.metrics import read_metrics
    from rlhi_hpc.train.trainer import Trainer

    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(args.port)})
    cfg = bench_config(Path(args.model_dir), args)
    Trainer(cfg, [work / "pairs.jsonl"], [args.reflogp], work / "ours").run()
    rec = read_metrics(work / "ours" / "metrics.jsonl")
    return {"tok_s": rate([r["time"] for r in rec], [r["tokens"] for r in rec]), "losses": [r["loss"] for r in rec],
            "padding_fraction": sum(r["padding_fraction"] for r in rec) / len(rec), "peak_rss_mb": peak_rss_mb(),
            }


def _trl_rows(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The pairs as TRL conversational rows, in the order our sampler visits them."""
    from rlhi_hpc.records import Pair, read_records
    from rlhi_hpc.train.data import PairSampler, RenderSpec, prompt_messages

    pairs = list(read_records(work / "pairs.jsonl", Pair))
    cfg = bench_config(Path(args.model_dir), args)
    order = PairSampler([p.source for p in pairs], cfg.dpo.mix, seed=cfg.seed, epochs=None).next_batch(
        args.steps * args.batch)
    spec = RenderSpec.from_config(cfg.dpo)
    return [{"prompt": prompt_messages(pairs[i], spec), "chosen": [{"role": "assistant", "content": pairs[i].chosen}],
             "rejected": [{"role": "assistant", "content": pairs[i].rejected}]} for i in order]


def side_trl(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    times: list[float] = []
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter())
            tokens.append(state.num_input_tokens_seen)
            if os.environ.get("BENCH_VERBOSE"):
                print(f"trl step={state.global_step} t={times[-1]:.3f} tokens={tokens[-1]}", file=sys.stderr)

    rows = _trl_rows(work, args)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, attn_implementation="sdpa")
    targs = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=args.batch, max_steps=args.steps,
                      learning_rate=1e-6, lr_scheduler_type="constant", beta=0.1, loss_type=["sigmoid"],
                      max_length=args.max_length, bf16=False, use_cpu=True, gradient_checkpointing=False,
                      train_sampling_strategy="sequential", logging_steps=1, report_to="none", save_strategy="no",
                      include_num_input_tokens_seen="non_padding", seed=0, dataloader_num_workers=0)
    trainer = DPOTrainer(model=model, args=targs, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         callbacks=[Clock()])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    seen = [0] + tokens
    return {"tok_s": rate(times, [b - a for a, b in zip(seen[:-1], seen[1:])]), "losses": losses,
            "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------------------------- driver


def run_side(side: str, work: Path, args: argparse.Namespace, extra: list[str] = ()) -> dict[str, Any]:
    import shutil

    shutil.rmtree(work / side, ignore_errors=True)
    cmd = [sys.executable, __file__, "--side", side, "--work", str(work), "--model-dir", str(args.model_dir),
           "--steps", str(args.steps), "--batch", str(args.batch), "--max-length", str(args.max_length),
           "--microbatch-tokens", str(args.microbatch_tokens), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"{side} side failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="rlhi_hpc DPO vs TRL DPOTrainer throughput on CPU")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8, help="pairs per optimizer step (both sides)")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--microbatch-tokens", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2,
                    help="alternating rounds (ours, TRL); the best round of each side is reported")
    ap.add_argument("--side", choices=("reflogp", "ours", "trl"), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--reflogp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=29611, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        fn = {"reflogp": side_reflogp, "ours": side_ours, "trl": side_trl}[args.side]
        print(json.dumps(fn(args.work, args)))
        return 0
    from rlhi_hpc.records import dumps
    from rlhi_hpc.tools.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="dpo_vs_trl-") as tmp:
        work = Path(tmp)
        args.model_dir = build_tiny_model(REPO / ".cache" / f"bench-tiny-h{args.hidden}-l{args.layers}",
                                          hidden=args.hidden, layers=args.layers, heads=max(1, args.hidden // 64),
                                          kv_heads=max(1, args.hidden // 64))
        pairs = make_pairs(args.pairs, args.seed, max_words=args.max_length // 4)
        (work / "pairs.jsonl").write_text("".join(dumps(p) + "\n" for p in pairs))
        ref = run_side("reflogp", work, args)
        rounds = []
        for r in range(args.repeats):
            ours = run_side("ours", work, args, ["--reflogp", ref["path"], "--port", str(args.port + r)])
            trl = run_side("trl", work, args)
            print(f"round {r + 1}: ours_tok_s={ours['tok_s']:.1f} trl_tok_s={trl['tok_s']:.1f}", flush=True)
            rounds.append((ours, trl))
    ours = max((o for o, _ in rounds), key=lambda x: x["tok_s"])
    trl = max((t for _, t in rounds), key=lambda x: x["tok_s"])
    d = max(abs(o["losses"][0] - t["losses"][0]) for o, t in rounds)
    print(f"model hidden={args.hidden} layers={args.layers} pairs={args.pairs} batch={args.batch} steps={args.steps}")
    print(f"reflogp (upfront, not counted): {ref['seconds']:.2f} s  peak_rss_mb={ref['peak_rss_mb']:.0f}")
    print(f"ours: peak_rss_mb={ours['peak_rss_mb']:.0f} padding_fraction={ours['padding_fraction']:.3f} "
          f"first_losses={[round(x, 6) for x in ours['losses'][:3]]}")
    print(f"trl:  peak_rss_mb={trl['peak_rss_mb']:.0f} first_losses={[round(x, 6) for x in trl['losses'][:3]]}")
    ratio = ours["tok_s"] / trl["tok_s"]
    print(f"dpo_vs_trl ours_tok_s={ours['tok_s']:.1f} trl_tok_s={trl['tok_s']:.1f} ratio={ratio:.2f} "
          f"loss_max_abs_diff={d:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
