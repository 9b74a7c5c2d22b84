"""clearvla: OpenVLA-compatible vision-language-action models for robot arms, at any size.

Public API (imported lazily, so `import clearvla.sim` does not pay for transformers):
    VLA, VLAConfig, get_config, ActionTokenizer, NormStats, ImageProcessor, errors
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "VLA": "clearvla.models.vla",
    "VLAConfig": "clearvla.models.config",
    "get_config": "clearvla.models.presets",
    "ActionTokenizer": "clearvla.actions.tokenizer",
    "NormStats": "clearvla.actions.normalize",
    "ImageProcessor": "clearvla.models.processor",
}

__all__ = [*_EXPORTS, "errors", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "errors":
        return importlib.import_module("clearvla.errors")
    raise AttributeError(f"module 'clearvla' has no attribute {name!r}")
