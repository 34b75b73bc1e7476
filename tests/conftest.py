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
