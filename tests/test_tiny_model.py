"""The offline tiny model builder: loadable, deterministic, atomic and idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rlhi_hpc.tools import tiny_model
from rlhi_hpc.tools.tiny_model import build_tiny_model, is_complete


def test_tiny_model_loads_with_chat_template(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert cfg.hidden_size // cfg.num_attention_heads >= 32 and not cfg.tie_word_embeddings
    assert cfg.vocab_size == len(tok) and 2000 <= len(tok) <= 4000
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3
    assert tok.decode(ids, skip_special_tokens=True) == "system\nBe brief.\nuser\nHi!\nassistant\n"
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, len(ids), cfg.vocab_size)
    tok_cfg = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" in tok_cfg


def test_build_is_deterministic_idempotent_and_atomic(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = build_tiny_model(tmp_path / "m", hidden=64, layers=1, vocab_size=2500, seed=3)
    assert is_complete(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no temporary folder left behind"
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(out, hidden=64, layers=1, vocab_size=2500, seed=3) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp, "an identical build is kept"
    twin = build_tiny_model(tmp_path / "twin", hidden=64, layers=1, vocab_size=2500, seed=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (out / name).read_bytes() == (twin / name).read_bytes()
    rebuilt = build_tiny_model(out, hidden=64, layers=1, vocab_size=2500, seed=4)
    assert json.loads((rebuilt / "tiny_model.json").read_text())["seed"] == 4
    assert (out / "model.safetensors").read_bytes() != (twin / "model.safetensors").read_bytes()


def test_command_line(tmp_path: Path, capsys) -> None:
    assert tiny_model.main([f"out={tmp_path / 'cli'}", "hidden=64", "layers=1", "vocab=2200"]) == 0
    assert "ready" in capsys.readouterr().out
    spec = json.loads((tmp_path / "cli" / "tiny_model.json").read_text())
    assert spec["layers"] == 1 and spec["vocab_size"] == 2200
