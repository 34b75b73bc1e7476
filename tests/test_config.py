"""Config merging, overrides and every error path; every shipped YAML loads and validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlhi_hpc.config import (CONFIG_DIR, JOBS_DIR, RunConfig, build, iter_field_docs, load_config, load_yaml,
                             output_view, parse_override, preset_names, stable_hash)
from rlhi_hpc.errors import ConfigError
from rlhi_hpc.launch import main as launch_main
from rlhi_hpc.pipeline import load_job

REPO = Path(__file__).resolve().parent.parent


def test_defaults_and_overrides_merge() -> None:
    cfg = load_config(["persona.max_history_tokens=800", "data.languages=[English,French]",
                       "classify.chunk_size=5", "model=llama-3.1-8b-instruct", "model.max_model_len=4096"])
    assert cfg.persona.max_history_tokens == 800
    assert cfg.data.languages == ["English", "French"]
    assert cfg.classify.chunk_size == 5
    assert cfg.model.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.model.max_model_len == 4096  # a dotted override edits the chosen preset
    assert cfg.classify.taxonomy[0] == "new_request"  # stage preset merged in


def test_job_overrides_sit_between_defaults_and_command_line() -> None:
    cfg = load_config(["data.num_shards=7"], job_overrides={"data.num_shards": 3, "data.eval_fraction": 0.3})
    assert cfg.data.num_shards == 7
    assert cfg.data.eval_fraction == 0.3


@pytest.mark.parametrize("arg,fragment", [
    ("persona.max_history_tokenz=5", "Did you mean 'persona.max_history_tokens'"),
    ("nosuch=1", "unknown config key 'nosuch'"),
    ("data.num_shards=abc", "'data.num_shards': got 'abc'; allowed: an integer"),
    ("data.eval_fraction=2.0", "'data.eval_fraction': got 2.0; allowed: a number in [0.0, 0.9]"),
    ("cluster.executor=pbs", "allowed: one of inprocess, local, slurm"),
    ("model=gpt-17", "presets in configs/model/"),
    ("data.drop_toxic=maybe", "true or false"),
    ("data.languages=English", "a list"),
    ("classify.actionable=[not_a_label]", "'classify.actionable'"),
    ("persona.prompt=Summarise {nope}", "template fields {history}"),
    ("justtext", "not key=value"),
])
def test_bad_values_name_the_key(arg: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config([arg])
    assert fragment in str(err.value)


def test_launcher_exits_2_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    rc = launch_main(["stage=persona", "persona.max_history_tokenz=5", f"out={out}"])
    assert rc == 2
    assert "persona.max_history_tokenz" in capsys.readouterr().err
    assert not out.exists()


def test_launcher_cli_exit_status_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "rlhi_hpc.launch", "stage=persona", "persona.max_history_tokenz=5"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "persona.max_history_tokenz" in proc.stderr


def test_unknown_stage_and_job() -> None:
    assert launch_main(["stage=nosuch"]) == 2
    assert launch_main(["job=nosuch"]) == 2


def test_parse_override_types() -> None:
    assert parse_override("a=[1,2]") == ("a", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=0.1") == ("a", 0.1)
    assert parse_override("a=hello world") == ("a", "hello world")


def test_every_shipped_yaml_loads_and_validates() -> None:
    for group in ("model", "cluster"):
        for name in preset_names(group):
            cfg = load_config([f"{group}={name}"])
            assert getattr(cfg, group) is not None
    for path in (CONFIG_DIR / "stage").glob("*.yaml"):
        assert isinstance(load_yaml(path), dict)
    for path in JOBS_DIR.glob("*.yaml"):
        job = load_job(path.stem)
        load_config([], job_overrides=job.overrides)


def test_hash_ignores_non_output_fields() -> None:
    a = load_config(["classify.chunk_size=3", "cluster=inprocess"])
    b = load_config(["classify.chunk_size=99"])
    c = load_config(["classify.max_context_chars=10"])
    assert stable_hash(output_view(a.classify)) == stable_hash(output_view(b.classify))
    assert stable_hash(output_view(a.classify)) != stable_hash(output_view(c.classify))


def test_resolved_config_round_trips() -> None:
    import yaml

    cfg = load_config(["data.languages=[English]"])
    again = build(RunConfig, yaml.safe_load(__import__("rlhi_hpc.config", fromlist=["dump_yaml"]).dump_yaml(cfg)))
    assert again == cfg


def test_every_field_is_documented() -> None:
    rows = iter_field_docs()
    missing = [key for key, _, _, doc in rows if not doc.strip()]
    assert not missing, missing


def test_readme_config_reference_is_current() -> None:
    from rlhi_hpc.tools.config_doc import README, render_readme

    text = README.read_text()
    assert render_readme(text) == text, "run: python -m rlhi_hpc.tools.config_doc --write"
