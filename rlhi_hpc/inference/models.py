"""Model name resolution: the special name ``tiny`` and everything else (hub ids, local paths)."""

from __future__ import annotations

import os
from pathlib import Path

from rlhi_hpc.errors import ConfigError

TINY_NAME = "tiny"
TINY_ENV = "RLHI_TINY_MODEL"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TINY_DIR = REPO_ROOT / ".cache" / "tiny-model"
#: Offline tiny models by name: (environment variable, default folder, build command).
TINY_MODELS = {
    TINY_NAME: (TINY_ENV, DEFAULT_TINY_DIR, "python -m rlhi_hpc.tools.tiny_model out={path}"),
    "tiny-rm": ("RLHI_TINY_RM", REPO_ROOT / ".cache" / "tiny-rm",
                "python -m rlhi_hpc.tools.tiny_model out={path} kind=reward"),
}


def tiny_model_dir() -> Path:
    """Where the tiny model lives: ``$RLHI_TINY_MODEL`` if set, else ``<repo>/.cache/tiny-model``."""
    env = os.environ.get(TINY_ENV, "").strip()
    return Path(env).expanduser() if env else DEFAULT_TINY_DIR


def resolve_model_path(name: str) -> str:
    """Map a model name to what ``from_pretrained`` / vLLM take.

    ``"tiny"`` (and ``"tiny-rm"``, the tiny reward model: ``$RLHI_TINY_RM`` or ``<repo>/.cache/tiny-rm``)
    becomes the tiny model folder (raising :class:`ConfigError` with the command that builds it when it
    is missing); any other name (hub id or path) is returned unchanged.
    """
    if name not in TINY_MODELS:
        return name
    env_name, default, command = TINY_MODELS[name]
    env = os.environ.get(env_name, "").strip()
    path = Path(env).expanduser() if env else default
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise ConfigError(
            f"model {name!r} is not built at {path}: run `make tiny-model` (or "
            f"`{command.format(path=path)}`), or point {env_name} at a built copy"
        )
    return str(path)
