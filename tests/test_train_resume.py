"""Exact resume in one process: from a checkpoint taken exactly at an epoch boundary, and the
metrics log rewound to the checkpoint (a crash after it must not leave duplicate steps)."""

from __future__ import annotations

import json
import shutil

import pytest
from dpo_helpers import make_pairs, run_config, write_pairs

from rlhi_hpc.train.metrics import read_metrics
from rlhi_hpc.train.trainer import Trainer

OVERRIDES = ("dpo.global_batch_size=4", "dpo.max_length=96", "dpo.max_tokens_per_microbatch=256", "dpo.epochs=3",
             "dpo.checkpoint_every=2", "dpo.keep_checkpoints=5", "dpo.lr=2e-3", "dpo.zero_stage=0",
             "dpo.loss=ipo", "dpo.beta=0.5", "dpo.mix={rewrites: 1.0, rewards: 1.0}")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    from rlhi_hpc.train.reference import ensure_reference_cache

    root = tmp_path_factory.mktemp("resume")
    pairs = make_pairs(8, seed=2)  # 8 pairs, batch 4: every second step ends an epoch
    write_pairs(root / "pairs.jsonl", pairs)
    cfg = run_config(tiny_model_dir, *OVERRIDES)
    ref = ensure_reference_cache(cfg, pairs, root / "cache", show_progress=False)
    full = root / "full"
    Trainer(cfg, [root / "pairs.jsonl"], [ref], full).run()
    return {"root": root, "cfg": cfg, "ref": ref, "full": full}


def test_resume_from_a_checkpoint_at_an_epoch_boundary(setup) -> None:  # noqa: ANN001
    full, root = setup["full"], setup["root"]
    expected = [r["loss"] for r in read_metrics(full / "metrics.jsonl")]
    assert len(expected) == 6
    meta = json.loads((full / "checkpoints" / "step_00000002" / "meta.json").read_text())
    assert meta["sampler"]["epoch"] == 1 and meta["sampler"]["position"] == 0
    # A run that died after its step-2 checkpoint (and after logging step 3): only that checkpoint survives.
    crashed = root / "crashed"
    (crashed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000002", crashed / "checkpoints" / "step_00000002")
    shutil.copytree(full / "checkpoints" / "step_00000004", crashed / "checkpoints" / "step_00000004")
    (crashed / "checkpoints" / "step_00000004" / "meta.json").unlink()  # a save that did not complete
    lines = (full / "metrics.jsonl").read_text().splitlines()
    (crashed / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    summary = Trainer(setup["cfg"], [root / "pairs.jsonl"], [setup["ref"]], crashed).run()
    assert summary["steps"] == 6
    records = read_metrics(crashed / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in records] == pytest.approx(expected, abs=1e-6)
    assert [r["epoch"] for r in records] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_a_finished_run_is_not_trained_again(setup) -> None:  # noqa: ANN001
    full = setup["full"]
    before = (full / "metrics.jsonl").read_text()
    summary = Trainer(setup["cfg"], [setup["root"] / "pairs.jsonl"], [setup["ref"]], full).run()
    assert summary["steps"] == 6 and (full / "metrics.jsonl").read_text() == before


def test_changed_data_refuses_to_resume(setup, tmp_path) -> None:  # noqa: ANN001
    from rlhi_hpc.train import TrainError
    from rlhi_hpc.train.reference import ensure_reference_cache

    out = tmp_path / "changed"
    shutil.copytree(setup["full"] / "checkpoints", out / "checkpoints")
    other = make_pairs(9, seed=2)
    write_pairs(tmp_path / "pairs.jsonl", other)
    ref = ensure_reference_cache(setup["cfg"], other, setup["root"] / "cache", show_progress=False)
    with pytest.raises(TrainError, match="changed since the checkpoint"):
        Trainer(setup["cfg"], [tmp_path / "pairs.jsonl"], [ref], out).run()
