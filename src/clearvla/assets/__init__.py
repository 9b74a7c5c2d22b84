"""Files shipped inside the package: the trained default model (an OpenVLA-format checkpoint)."""

from __future__ import annotations

from pathlib import Path

from clearvla.errors import CheckpointError

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"


def default_model_dir() -> Path:
    """The shipped default checkpoint directory; an error says how to rebuild it if it is missing."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        raise CheckpointError(f"the default model is missing from {DEFAULT_MODEL}; rebuild it with `make default-model`")
    return DEFAULT_MODEL
