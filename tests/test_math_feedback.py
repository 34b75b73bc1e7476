"""The reasoning track: first-wrong-step selection, simulated-user feedback, the final-answer filter, and
the `inputs` substitution that lets the rewrite stage read the track's records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlhi_hpc.config import MathCheckConfig, MathConfig
from rlhi_hpc.data.prm800k import MathConversation, MathFeedback
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.launch import main as launch
from rlhi_hpc.launch import resolve
from rlhi_hpc.pipeline import plan_pipeline
from rlhi_hpc.records import Conversation, Provenance, Quarantined, RewritePair, Turn, TurnLabel, read_jsonl, \
    read_records
from rlhi_hpc.stages.math_check import check_pair, check_pairs, final_answer
from rlhi_hpc.stages.math_feedback import feedback_check, reveals_answer, select_flawed, template_feedback
from rlhi_hpc.stages.rewrite import RewriteJob, resolve as resolve_rewrite

PROV = Provenance(stage="t", config_hash="h", code_version="v")


def _sol(ratings: tuple[int, ...], *, split: str = "train", cid: str = "c1") -> MathConversation:
    steps = ("Subtract 3 from both sides.", "That gives $4x = 14$.", "So $x = 3.5$.", "# Answer\n\n3.5")
    return MathConversation(
        conversation_id=cid, user=cid, timestamp=0.0, model="m", language="English", split=split,
        turns=(Turn(role="user", content="Solve $4x + 3 = 11$."), Turn(role="assistant", content="\n\n".join(steps))),
        problem="Solve $4x + 3 = 11$.", ground_truth="2", steps=steps, ratings=ratings,
        first_wrong_step=next((i for i, r in enumerate(ratings) if r == -1), -1), finish_reason="found_error")


def test_first_wrong_step_selection() -> None:
    sols = [_sol((1, -1), cid="a"), _sol((1, 1, 1, 1), cid="b"), _sol((0, 1, -1), cid="c"),
            _sol((-1,), cid="d", split="eval"), _sol((1, 0, -1, -1), cid="e")]
    picked = select_flawed(sols)
    assert [s.conversation_id for s in picked] == ["a", "c", "e"]
    assert [s.steps[s.first_wrong_step] for s in picked] == ["That gives $4x = 14$.", "So $x = 3.5$.", "So $x = 3.5$."]


def test_template_fallback_names_the_step_and_cuts_it() -> None:
    cfg = MathConfig()
    text = template_feedback(_sol((1, -1)), cfg)
    assert "step 2" in text and "That gives $4x = 14$." in text
    long = dataclasses.replace(_sol((-1,)), steps=("x" * 1000,))
    assert len(template_feedback(long, dataclasses.replace(cfg, step_max_chars=50))) < 200


def test_feedback_check_rejects_empty_short_and_answer_revealing_messages() -> None:
    sol = _sol((1, -1))
    check = feedback_check(sol, MathConfig())
    assert check("   ") == "empty_output"
    assert check("wrong?") == "too_short"
    assert check("Step 2 looks off to me, shouldn't x be 2 in the end?") == "reveals_answer"
    assert not reveals_answer("Step 2 says 4x = 14 but where does the 14 come from?", sol)  # numbers of the text
    assert check("I don't get step 2, where does the 14 come from?") is None


def _pair(chosen: str, cid: str = "c1") -> RewritePair:
    return RewritePair(key=f"u:{cid}:2", prompt=({"role": "user", "content": "Solve $4x + 3 = 11$."},), persona="p",
                       chosen=chosen, rejected="regenerated reply", feedback="step 2?", with_feedback=True,
                       provenance=dataclasses.replace(PROV, conversation_id=cid, user=cid))


def _feedback(cid: str = "c1") -> MathFeedback:
    sol = _sol((1, -1), cid=cid)
    fields = {f.name: getattr(sol, f.name) for f in dataclasses.fields(MathConversation)}
    return MathFeedback(**fields, feedback="step 2?", scores={}, provenance=PROV)


def test_a_rewrite_with_the_wrong_final_answer_is_dropped_with_that_reason() -> None:
    fb = {"c1": _feedback("c1"), "c2": _feedback("c2")}
    pairs = [_pair("Subtract 3: $2x = 4$, so $x = \\boxed{2}$."),
             _pair("Subtract 3: $2x = 10$, so $x = \\boxed{5}$.", "c2"),
             _pair("no final answer, only a stray 2", "c1"),
             _pair("$x = \\boxed{2}$", "unknown")]
    kept, dropped, counts = check_pairs(pairs, fb, "original")
    assert [p.provenance.conversation_id for p in kept] == ["c1"]
    assert kept[0].rejected == fb["c1"].turns[1].content  # the flawed solution the user pointed at
    assert [q.reason for q in dropped] == ["wrong_final_answer", "wrong_final_answer", "missing_conversation"]
    assert counts == {"kept": 1, "dropped_wrong_final_answer": 2, "dropped_missing_conversation": 1}
    # Non-strict extraction accepts the stray last number; `regenerated` keeps the rewrite stage's rejected side.
    loose = check_pair(pairs[2], fb["c1"], "regenerated", strict=False)
    assert isinstance(loose, RewritePair) and loose.rejected == "regenerated reply"


def test_final_answer_equivalent_forms() -> None:
    assert final_answer("so $x = \\boxed{\\frac{1}{2}}$") == "\\frac{1}{2}"
    assert final_answer("Steps.\n\n# Answer\n\n$\\frac{2}{9}$") == "\\frac{2}{9}"
    assert final_answer("The answer is 0.5.") == "0.5"
    assert final_answer("I think 12 or 13") is None and final_answer("I think 12 or 13", strict=False) == "13"
    wrong = check_pair(_pair("$x=\\boxed{0.5}$"), dataclasses.replace(_feedback(), ground_truth="\\frac{1}{2}"),
                       "original")
    assert isinstance(wrong, RewritePair)  # 0.5 matches \frac{1}{2}


def test_math_feedback_record_reads_as_conversation_and_turn_label_for_rewrite() -> None:
    rec = json.loads(json.dumps(dataclasses.asdict(_feedback())))
    rec["turns"] = [*rec["turns"], {"role": "user", "content": "step 2?"}]
    from rlhi_hpc.records import from_dict
    conv, label = from_dict(Conversation, rec), from_dict(TurnLabel, rec)
    assert label.actionable and label.turn_index == 2 and label.feedback == "step 2?"
    persona = type("P", (), {"user": "c1", "text": "", "provenance": PROV})()
    job = resolve_rewrite(label, {conv.conversation_id: conv}, {"c1": persona})  # type: ignore[dict-item]
    assert isinstance(job, RewriteJob) and job.response.startswith("Subtract 3") and job.feedback == "step 2?"


def test_inputs_substitution_routes_needs_and_is_validated(tmp_path: Path) -> None:
    cfg, job = resolve(["job=reasoning_demo", f"out={tmp_path}"])
    plan = plan_pipeline(cfg, job)
    rewrite, check, pairs = plan.get("rewrite"), plan.get("math_check"), plan.get("pairs")
    assert rewrite.upstream["ingest"] == plan.get("math_feedback").paths
    assert rewrite.upstream["classify"] == plan.get("math_feedback").paths
    assert rewrite.sources == {"ingest": "math_feedback", "classify": "math_feedback"}
    assert check.upstream["rewrite"] == rewrite.paths  # the substitute reads the real stage
    assert pairs.upstream["rewrite"] == check.paths
    with pytest.raises(ConfigError, match="inputs.ingest"):
        plan_pipeline(*resolve(["job=reasoning_demo", f"out={tmp_path}", "inputs={ingest: nope}"]))
    with pytest.raises(ConfigError, match="inputs.nostage"):
        plan_pipeline(*resolve(["job=reasoning_demo", f"out={tmp_path}", "inputs={nostage: prm_ingest}"]))


ARGS = ("job=reasoning_demo", "cluster=inprocess", "log_level=WARNING", "math.max_new_tokens=12",
        "persona.max_new_tokens=8", "rewrite.max_new_tokens=12")


def test_reasoning_chain_to_math_check_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
    # min_feedback_chars=10000: every generated follow-up is unusable, so the template fallback is used.
    args = [*ARGS, f"out={tmp_path}", "math.min_feedback_chars=10000", "math.max_retries=0"]
    for stage in ("prm_ingest", "math_feedback", "persona", "rewrite", "math_check"):
        assert launch([*args, f"stage={stage}"]) == 0, stage
    plan = plan_pipeline(*resolve(args))
    ingest, feedback, check = (plan.get(n).paths for n in ("prm_ingest", "math_feedback", "math_check"))
    solutions = [s for p in sorted(ingest.out_dir.glob("*.jsonl")) for s in read_records(p, MathConversation)]
    quarantined = [q for p in sorted(ingest.quarantine_dir.glob("*.jsonl")) for q in read_jsonl(p)]
    assert len(quarantined) == 6 and len(solutions) == 38
    records = [r for p in sorted(feedback.out_dir.glob("*.jsonl")) for r in read_records(p, MathFeedback)]
    assert len(records) == sum(1 for s in solutions if s.first_wrong_step >= 0) >= 20
    for rec in records:
        assert rec.feedback_source == "template" and f"step {rec.first_wrong_step + 1}" in rec.feedback
        assert rec.turns[2].content == rec.feedback and rec.actionable
    counts: dict[str, int] = {}
    for done in check.done_dir.glob("*.json"):
        for key, value in json.loads(done.read_text())["counts"].items():
            counts[key] = counts.get(key, 0) + value
    # Every rewrite was checked; the random tiny model's rewrites state no right answer.
    assert counts["records_in"] == len(records)
    assert counts.get("dropped_wrong_final_answer", 0) + counts.get("kept", 0) == len(records)
    dropped = [q for p in sorted(check.quarantine_dir.glob("*.jsonl")) for q in read_records(p, Quarantined)]
    assert len(dropped) == counts.get("dropped_wrong_final_answer", 0)
    assert {q.reason for q in dropped} <= {"wrong_final_answer"}


def test_reasoning_demo_end_to_end_reports_math_accuracy(tmp_path: Path, tiny_model_dir: Path, tiny_rm_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RLHI_TINY_RM", str(tiny_rm_dir))
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # eval.math_files are relative to the repo root
    assert launch([*ARGS, "dpo.max_steps=2", f"out={tmp_path}"]) == 0
    report = (plan_pipeline(*resolve([*ARGS, "dpo.max_steps=2", f"out={tmp_path}"])).get("report").paths.root
              / "report.md").read_text()
    section = report.split("## Math accuracy", 1)[1].split("\n## ", 1)[0]
    for bench in ("minerva", "olympiad", "mc", "average"):
        assert f"| {bench} |" in section, section
    assert "candidate:" in section and "baseline:" in section
