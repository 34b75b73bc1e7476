"""The reference log-prob cache: content-addressed key, atomic file, reuse across runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest
import torch
from dpo_helpers import make_pairs, run_config

from rlhi_hpc.train import TrainError
from rlhi_hpc.train.data import RenderSpec, pairs_fingerprint
from rlhi_hpc.train.reference import (ensure_reference_cache, lookup, read_cache, reference_cache_key,
                                      write_cache)

RENDER = RenderSpec(system_prompt="sys", persona_template=" {persona}", persona=True, max_length=128)


def _key(model_dir, render=RENDER, pairs=None, dtype="fp32", template="T"):  # noqa: ANN001, ANN202
    return reference_cache_key(model_path=str(model_dir), chat_template=template, render=render, dtype=dtype,
                               pairs_fingerprint=pairs_fingerprint(pairs or make_pairs(3)))


def test_cache_key_changes_with_everything_the_values_depend_on(tiny_model_dir, tmp_path) -> None:  # noqa: ANN001
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    base = _key(model)
    assert _key(model) == base and len(base) == 64
    changed = {
        "persona": _key(model, render=dataclasses.replace(RENDER, persona=False)),
        "max_length": _key(model, render=dataclasses.replace(RENDER, max_length=64)),
        "system": _key(model, render=dataclasses.replace(RENDER, system_prompt="other")),
        "template": _key(model, template="U"),
        "dtype": _key(model, dtype="bf16"),
        "pairs": _key(model, pairs=make_pairs(3, seed=1)),
    }
    (model / "model.safetensors").touch()
    os.utime(model / "model.safetensors", ns=(1, 1))
    changed["weights"] = _key(model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5
    (model / "config.json").write_text(json.dumps(cfg))
    changed["config"] = _key(model)
    assert len(set(changed.values()) | {base}) == len(changed) + 1, changed
    # pair order does not matter; content does
    pairs = make_pairs(4)
    assert _key(model, pairs=pairs) == _key(model, pairs=list(reversed(pairs)))


def test_cache_file_roundtrip_is_exact(tmp_path) -> None:  # noqa: ANN001
    values = {"a": (float(torch.tensor(-123.456789, dtype=torch.float32)), -1e-7), "b": (0.0, -5.5)}
    path = tmp_path / "c" / "k.json"
    write_cache(path, values)
    assert read_cache(path) == values
    assert json.loads(path.read_text()) == {k: list(v) for k, v in values.items()}
    assert not [p for p in path.parent.iterdir() if p.name != "k.json"]  # no temporary left behind
    with pytest.raises(TrainError, match="reflogp"):
        read_cache(tmp_path / "missing.json")


def test_ensure_reference_cache_computes_once_and_is_reused(tiny_model_dir, tmp_path) -> None:  # noqa: ANN001
    from transformers import AutoModelForCausalLM

    from rlhi_hpc.train.data import tokenize_pairs
    from rlhi_hpc.train.model import load_tokenizer

    cfg = run_config(tiny_model_dir, "dpo.max_length=128", "reflogp.max_tokens_per_microbatch=300")
    pairs = make_pairs(5, seed=3)
    path = ensure_reference_cache(cfg, pairs, tmp_path, show_progress=False)
    values = read_cache(path)
    assert sorted(values) == sorted(p.key for p in pairs)
    mtime = path.stat().st_mtime_ns
    # a different beta (a sweep point) reuses the same file
    cfg_beta = run_config(tiny_model_dir, "dpo.max_length=128", "dpo.beta=0.5")
    assert ensure_reference_cache(cfg_beta, pairs, tmp_path, show_progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    # the persona ablation renders different prompts: another file
    cfg_np = run_config(tiny_model_dir, "dpo.max_length=128", "dpo.persona=false")
    assert ensure_reference_cache(cfg_np, pairs, tmp_path, show_progress=False) != path
    # the cached values are the reference model's summed response log-probs
    tok = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenized = tokenize_pairs(pairs, tok, RenderSpec.from_config(cfg.dpo), show_progress=False)
    tp = tokenized[2]
    ids = torch.tensor([tp.prompt_ids + tp.chosen_ids])
    with torch.no_grad():
        lp = model(input_ids=ids).logits[0].log_softmax(-1)
    n = len(tp.prompt_ids)
    expected = lp[n - 1:-1].gather(-1, ids[0, n:, None]).sum().item()
    assert values[tp.key][0] == pytest.approx(expected, rel=1e-6, abs=1e-4)
    lookup(values, tokenized)
    with pytest.raises(TrainError, match="lacks 1 of"):
        lookup({k: v for k, v in values.items() if k != tp.key}, tokenized)
