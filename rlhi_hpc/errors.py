"""Typed exceptions. Messages say what went wrong and what to do about it."""


class RlhiError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RlhiError):
    """A config key or value is invalid. The launcher exits with status 2 before any work."""

    exit_code = 2


class StageError(RlhiError):
    """A stage cannot run (missing upstream output, bad plan, ...)."""


class ShardError(RlhiError):
    """One shard failed; its task fails and the relaunch retries it."""


class PromptTooLongError(RlhiError):
    """Prompts do not fit the model's context. Check `engine.fits(...)` first, or truncate them."""

    def __init__(self, message: str, indices: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.indices = indices
