"""Iterative RLHI (`rounds=K`): planning, and two real rounds on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rlhi_hpc.errors import ConfigError
from rlhi_hpc.launch import main as launch
from rlhi_hpc.launch import resolve
from rlhi_hpc.records import Candidates, read_records
from rlhi_hpc.rounds import plan_rounds

ALL_LABELS = ("[new_request,continuation,reattempt_with_feedback,reattempt_without_feedback,clarification,"
              "positive_feedback,negative_feedback,other]")
ARGS = ("job=demo", "cluster=inprocess", "log_level=WARNING", "data.max_users=4", "data.num_shards=2",
        "persona.max_new_tokens=8", "rewrite.max_new_tokens=8", "sample.max_new_tokens=8", "sample.n=2",
        f"classify.actionable={ALL_LABELS}", "dpo.max_steps=2", "eval.max_new_tokens=8")


def test_round_plans_share_early_stages_and_chain_models(tmp_path: Path) -> None:
    cfg, job = resolve(["job=demo", "rounds=3", f"out={tmp_path}"])
    plans = plan_rounds(cfg, job)
    assert len({p.pipeline_id for p in plans}) == 3
    for name in ("ingest", "classify", "persona", "rewrite"):  # computed once, read by every round
        assert len({p.get(name).paths.root for p in plans}) == 1
    for name in cfg.round_stages:
        assert len({p.get(name).paths.root for p in plans}) == 3
    for prev, cur in zip(plans, plans[1:]):
        rcfg = cur.get("sample").cfg
        assert rcfg is not None and rcfg.model.name == str(prev.get("dpo").paths.root / "model")
        assert cur.get("reflogp").cfg.reflogp.model == "tiny"  # round_reference=base: the fixed base model
        assert cur.get("eval").cfg.eval.baseline_model == "tiny"
    assert plans[0].get("sample").cfg is None  # round 1 is the plain job (same stage dirs)
    previous = plan_rounds(*resolve(["job=demo", "rounds=2", "round_reference=previous", f"out={tmp_path}"]))
    assert previous[1].get("reflogp").cfg.reflogp.model == ""  # = the round's policy, the previous model
    with pytest.raises(ConfigError, match="round_stages"):
        plan_rounds(*resolve(["job=reasoning_demo", "rounds=2", "round_stages=[nope]", f"out={tmp_path}"]))


@pytest.mark.slow
def test_two_rounds_round_two_samples_from_round_one_model(tmp_path: Path, tiny_model_dir: Path, tiny_rm_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RLHI_TINY_RM", str(tiny_rm_dir))
    args = [*ARGS, "rounds=2", f"out={tmp_path}"]
    assert launch(args) == 0
    r1, r2 = plan_rounds(*resolve(args))
    model1 = r1.get("dpo").paths.root / "model"
    assert (model1 / "config.json").exists()

    def policies(plan) -> set[str]:  # noqa: ANN001
        paths = plan.get("sample").paths
        return {c.provenance.models["policy"] for p in sorted(paths.out_dir.glob("*.jsonl"))
                for c in read_records(p, Candidates)}

    assert policies(r1) == {"tiny"}
    assert policies(r2) == {str(model1)}  # round 2 sampled from round 1's DPO model
    dpo2 = yaml.safe_load((r2.get("dpo").paths.config).read_text())
    assert dpo2["model"]["name"] == str(model1) and dpo2["reflogp"]["model"] == "tiny"
    assert (r2.get("dpo").paths.root / "model" / "config.json").exists()
    for plan in (r1, r2):
        assert (plan.get("report").paths.root / "report.md").exists()
    index = json.loads(next(tmp_path.glob("demo-rounds-*.json")).read_text())
    assert index["rounds"] == [r1.pipeline_id, r2.pipeline_id]
    # A relaunch resumes: everything is done, nothing runs again.
    done = sorted(p.stat().st_mtime for p in r2.get("dpo").paths.done_dir.glob("*.json"))
    assert launch(args) == 0
    assert sorted(p.stat().st_mtime for p in r2.get("dpo").paths.done_dir.glob("*.json")) == done
