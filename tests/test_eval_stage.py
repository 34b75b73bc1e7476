"""The eval stage on the tiny model: held-out prompts, persona-guided inference, verdicts, local-file evals.

The chain ingest → … → pairs uses the stage-test settings (tests/stage_chain.py), so its stage
directories are shared with the other stage tests; eval and report then run on top of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval_chain import CHAIN, EVAL_ARGS, launch_job, local_files

from rlhi_hpc.config import load_config
from rlhi_hpc.eval.usereval import EvalPrompt, comparisons, model_chat, system_prompt
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import read_jsonl
from rlhi_hpc.shards import read_json


@pytest.fixture(scope="module")
def eval_run(stage_chain, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    files = local_files(tmp_path_factory.mktemp("bench"))
    # The candidate is the tiny model by path: a different model key than the baseline (same weights).
    extra = [*EVAL_ARGS, f"eval.candidate_model={tiny_model_dir}", *files]
    dirs = launch_job(stage_chain.out, (*CHAIN, "eval", "report"), extra)
    return dirs, load_config(extra), extra


def verdicts(paths: StagePaths, task: str = "usereval") -> list[dict]:
    return [r for p in sorted(paths.out_dir.glob("*.jsonl")) for r in read_jsonl(p) if r.get("task") == task]


def split_users(ingest: StagePaths) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {"train": set(), "eval": set()}
    for p in ingest.out_dir.glob("*.jsonl"):
        for row in read_jsonl(p):
            users[row["split"]].add(row["user"])
    return users


def test_eval_users_never_appear_in_training_data(eval_run) -> None:  # noqa: ANN001
    dirs, _, _ = eval_run
    users = split_users(dirs["ingest"])
    assert users["eval"] and not users["eval"] & users["train"]
    evaluated = {r["user"] for r in verdicts(dirs["eval"])}
    assert evaluated and evaluated <= users["eval"]
    training: set[str] = set()
    for stage in ("rewrite", "sample", "reward", "pairs"):
        rows = [r for p in dirs[stage].out_dir.glob("*.jsonl") for r in read_jsonl(p)]
        training |= {r["provenance"]["user"] for r in rows}
    pairs = [r for p in dirs["pairs"].out_dir.glob("*.jsonl") for r in read_jsonl(p)]
    assert pairs, "the chain made no pairs: the check would be vacuous"
    assert training and training <= users["train"]
    assert not training & evaluated


def test_persona_guided_inference_changes_only_the_system_prompt(eval_run) -> None:  # noqa: ANN001
    dirs, cfg, _ = eval_run
    prompt = EvalPrompt(key="c:2", user="u", conversation_id="c", turn_index=2, turn_type="follow_up",
                        context=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}),
                        request="shorter please", persona="Terse engineer.", timestamp=0.0)
    plain, guided = model_chat(prompt, cfg.eval, False), model_chat(prompt, cfg.eval, True)
    assert plain[1:] == guided[1:] and plain[0]["role"] == guided[0]["role"] == "system"
    assert guided[0]["content"] == plain[0]["content"] + cfg.eval.persona_template.format(persona="Terse engineer.")
    # The answers the stage generated: same messages after the system prompt in both conditions.
    answers = {}
    for folder in (dirs["eval"].root / "answers").glob("usereval-*"):
        for p in folder.glob("out/*.jsonl"):
            for row in read_jsonl(p):
                answers.setdefault(row["key"], {})[row["persona_guided"]] = row
    assert answers
    by_key = {r["key"].split("|")[0]: r for r in verdicts(dirs["eval"])}
    checked = 0
    for key, pair in answers.items():
        if len(pair) < 2:
            continue
        checked += 1
        assert pair[False]["chat_sha"] == pair[True]["chat_sha"]
        assert pair[False]["system_prompt"] == cfg.eval.system_prompt
        persona = by_key[key]["persona"]
        assert pair[True]["system_prompt"] == system_prompt(cfg.eval, persona, True)
    assert checked == len(answers) > 0


def test_every_comparison_has_a_verdict(eval_run) -> None:  # noqa: ANN001
    dirs, cfg, _ = eval_run
    names = [c.name for c in comparisons(cfg.eval)]
    assert names == ["candidate vs baseline", "candidate+persona vs baseline"]
    total_prompts = 0
    for sid in ("00000", "00001"):
        marker = read_json(dirs["eval"].done(sid))
        total_prompts += sum(marker["prompts"].values())
        assert marker["comparisons"] == names and marker["task"] == "usereval"
    rows = verdicts(dirs["eval"])
    assert len(rows) == total_prompts * len(names) > 0  # nothing dropped
    for r in rows:
        assert set(r["outcomes"]) == set(cfg.eval.dimensions)
        if r["identical"]:
            assert set(r["outcomes"].values()) == {"tie"} and r["attempts"] == {"ab": 0, "ba": 0}
        else:  # choose mode (demo): one scored verdict per order, always parseable
            assert r["attempts"] == {"ab": 1, "ba": 1}
            assert "unparseable" not in r["outcomes"].values()
    assert {r["turn_type"] for r in rows} == {"initial", "follow_up"}


def test_prompts_come_after_the_persona_cutoff(eval_run) -> None:  # noqa: ANN001
    dirs, _, _ = eval_run
    cutoffs = {r["user"]: r["cutoff_time"] for p in dirs["persona"].out_dir.glob("*.jsonl") for r in read_jsonl(p)}
    convs = {r["conversation_id"]: r for p in dirs["ingest"].out_dir.glob("*.jsonl") for r in read_jsonl(p)}
    for r in verdicts(dirs["eval"]):
        conv = convs[r["conversation_id"]]
        assert conv["role"] == "target" and conv["split"] == "eval"
        assert conv["timestamp"] >= cutoffs[r["user"]]
        assert (r["turn_index"] == 0) == (r["turn_type"] == "initial")


def test_local_file_evaluations(eval_run) -> None:  # noqa: ANN001
    dirs, _, _ = eval_run
    alpaca = verdicts(dirs["eval"], "alpaca")
    assert len(alpaca) == 2 * 2  # two usable rows (one skipped) x candidate and baseline
    marker = read_json(dirs["eval"].done("alpaca"))
    assert marker["skipped_rows"] == {"no_instruction": 1}
    assert {s["role"] for s in marker["alpaca"]} == {"candidate", "baseline"}
    assert all(s["reference_avg_chars"] > 0 and s["avg_chars"] >= 0 for s in marker["alpaca"])
    maths = list(read_jsonl(dirs["eval"].out("math")))
    assert len(maths) == 2 * 2 and {m["benchmark"] for m in maths} == {"toy"}
    table = {(t["role"], t["benchmark"]) for t in read_json(dirs["eval"].done("math"))["math"]}
    assert ("candidate", "average") in table and ("baseline", "toy") in table


def test_relaunch_does_no_work_but_rebuilds_the_report(eval_run, stage_chain) -> None:  # noqa: ANN001
    dirs, _, extra = eval_run
    markers = {sid: dirs["eval"].done(sid).stat().st_mtime_ns for sid in ("00000", "00001", "alpaca", "math")}
    report = dirs["report"].root / "report.md"
    before = report.stat().st_mtime_ns
    again = launch_job(stage_chain.out, (*CHAIN, "eval", "report"), extra)
    assert again["eval"] == dirs["eval"]
    assert {sid: dirs["eval"].done(sid).stat().st_mtime_ns for sid in markers} == markers
    assert report.stat().st_mtime_ns > before  # the report is a view: rebuilt on every launch


@pytest.mark.parametrize("phase", ["answers", "verdicts"])
def test_killed_shard_resumes_to_identical_verdicts(eval_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    phase: str) -> None:
    """Die at the second chunk commit of the answers or of the verdicts, relaunch: same bytes as uninterrupted."""
    from stage_chain import rerun_shard

    from rlhi_hpc.shards import ShardWriter

    dirs, _, _ = eval_run
    commit = ShardWriter.commit
    seen = {"n": 0}

    def dying_commit(self: ShardWriter, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if (self.paths.root == tmp_path) == (phase == "verdicts"):
            seen["n"] += 1
            if seen["n"] == 2:
                raise KeyboardInterrupt("killed")  # the chunk is lost, as with SIGKILL before its fsync
        commit(self, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(ShardWriter, "commit", dying_commit)
        with pytest.raises(KeyboardInterrupt):
            rerun_shard(dirs["eval"], tmp_path)
    written = StagePaths(tmp_path).partial("00000").stat().st_size
    assert (written > 0) == (phase == "verdicts")  # died among the answers, or after one verdict chunk
    rerun_shard(dirs["eval"], tmp_path)
    assert StagePaths(tmp_path).out("00000").read_bytes() == dirs["eval"].out("00000").read_bytes()
