"""Fixtures of the data tests: small datasets written on the fly, the tiny tokenizer, a fused-layout processor."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest


def _load_synth() -> ModuleType:
    # Loaded by path: a test folder without __init__.py is not importable under every pytest import mode.
    name = "clearvla_tests_data_synth"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("synth_data.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_synth = _load_synth()
SIZE, make_episode = _synth.SIZE, _synth.make_episode


@pytest.fixture(scope="session")
def synth() -> ModuleType:
    """Helpers: frames, make_episode, write_rlds, rlds_steps, encode_image (tests/data/synth_data.py)."""
    return _synth


@pytest.fixture
def lerobot_dataset(tmp_path) -> Callable[..., Path]:
    """Factory: write n episodes (lengths 10, 11, ...) to a new LeRobot v3 dataset and return its path."""
    from clearvla.data.formats.lerobot import LeRobotWriter

    def build(n: int = 4, name: str = "toy_lerobot", fps: int = 10, **kwargs) -> Path:
        root = tmp_path / name
        with LeRobotWriter(root, fps=fps, **kwargs) as writer:
            for k in range(n):
                writer.add_episode(make_episode(10 + k, seed=k, instruction=f"task {k % 2}"))
        return root

    return build


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from clearvla.models.tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def processor():
    """OpenVLA's fused layout (DINOv2 + SigLIP normalisations, 6 channels) at the test image size."""
    from clearvla.models.processor import ImageProcessor
    from clearvla.models.vision import IMAGENET_MEAN, IMAGENET_STD

    return ImageProcessor(SIZE, (IMAGENET_MEAN, (0.5, 0.5, 0.5)), (IMAGENET_STD, (0.5, 0.5, 0.5)))
