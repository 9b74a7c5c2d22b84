"""Errors a user can hit. Each says what was wrong and what is allowed; the CLI prints one line and exits 2."""


class ClearVLAError(Exception):
    """Base of every user-facing clearvla error."""


class ConfigError(ClearVLAError, ValueError):
    """A config field, preset name or CLI option is invalid."""


class CheckpointError(ClearVLAError, ValueError):
    """A checkpoint directory is missing files, is corrupt, or disagrees with its config."""


class InputError(ClearVLAError, ValueError):
    """An observation (image, instruction, state) has the wrong type, shape, dtype or value."""


class UnnormKeyError(ClearVLAError, KeyError):
    """The requested normalisation key is unknown, or several exist and none was given."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class DataError(ClearVLAError, ValueError):
    """A dataset file, record or field is missing, truncated or malformed."""


class MissingExtraError(ClearVLAError, ImportError):
    """An optional feature needs a package from an install extra that is not installed; the message names it."""
