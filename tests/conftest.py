"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline tiny model: $RLHI_TINY_MODEL or .cache/tiny-model when built, else built into a tmp dir."""
    from rlhi_hpc.tools.tiny_model import build_tiny_model, is_complete

    env = os.environ.get("RLHI_TINY_MODEL", "").strip()
    for candidate in ([Path(env)] if env else []) + [REPO_ROOT / ".cache" / "tiny-model"]:
        if is_complete(candidate):
            return candidate
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-model")


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline tiny reward model: $RLHI_TINY_RM or .cache/tiny-rm when built, else built into a tmp dir."""
    from rlhi_hpc.tools.tiny_model import build_tiny_reward_model, is_complete

    env = os.environ.get("RLHI_TINY_RM", "").strip()
    for candidate in ([Path(env)] if env else []) + [REPO_ROOT / ".cache" / "tiny-rm"]:
        if is_complete(candidate):
            return candidate
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "tiny-rm")


@pytest.fixture(scope="session")
def stage_chain(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_rm_dir: Path):  # noqa: ANN201
    """A runs root for the stage tests (see tests/stage_chain.py), with `tiny`/`tiny-rm` resolving to the fixtures."""
    from stage_chain import StageChain

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLHI_TINY_MODEL", str(tiny_model_dir))
        mp.setenv("RLHI_TINY_RM", str(tiny_rm_dir))
        yield StageChain(out=tmp_path_factory.mktemp("stage-runs"))
