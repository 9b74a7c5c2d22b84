"""benchmarks/finetune_modes.py reads each mode's cost and validation from the training run it started."""

from __future__ import annotations

import pytest

BENCHMARK = "finetune_modes"  # the `bench` fixture (conftest.py) imports benchmarks/finetune_modes.py


def test_the_trainable_count_is_read_from_the_training_log(bench) -> None:
    log = "loading...\nmode lora: 678,331 of 2,366,714 parameters trainable (28.66%)\nstep 1\n"
    assert bench.trainable_count(log) == (678331, 28.66)
    with pytest.raises(SystemExit, match="parameters trainable"):
        bench.trainable_count("a log of a run that failed before it built the model")


def test_the_last_validation_step_is_reported_not_the_last_training_step(bench) -> None:
    history = [{"step": 250, "loss": 1.0, "val_action_l1": 0.2, "val_chunk_l1": 0.3},
               {"step": 480, "loss": 0.5},
               {"step": 500, "loss": 0.4, "val_action_l1": 0.1, "val_chunk_l1": 0.15}, {"step": 501, "loss": 0.4}]
    assert bench.last_validation(history) == {"val_action_l1": 0.1, "val_chunk_l1": 0.15}
    with pytest.raises(SystemExit, match="no validation"):
        bench.last_validation([{"step": 1, "loss": 1.0}])
