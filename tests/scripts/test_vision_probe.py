"""benchmarks/vision_probe.py --vision-init: the synthetic probes start from a pretrained backbone when given one."""

from __future__ import annotations

import pytest

from clearvla.cli import main
from clearvla.errors import CheckpointError

BENCHMARK = "vision_probe"  # the `bench` fixture (conftest.py) imports benchmarks/vision_probe.py


def test_the_size_probe_trains_from_a_pretrained_backbone(bench, tmp_path, monkeypatch) -> None:
    out = tmp_path / "vision"
    assert main(["pretrain-vision", "--out", str(out), "--scenes", "1", "--steps", "1", "--batch-size", "2"]) == 0
    loaded = []
    real = bench.load_vision_init
    monkeypatch.setattr(bench, "load_vision_init", lambda backbone, d: loaded.append(real(backbone, d)))
    history = bench.run("size", "chunk", steps=1, lr=1e-3, log_every=1, seed=0, patch_size=16, batch_size=2,
                        vision_init=out)
    assert len(history) == 2 and all(0 <= row["held_out_xy_l1"] < 10 for row in history)
    assert loaded and any(name.startswith("featurizer.") for name in loaded[0])
    with pytest.raises(CheckpointError, match="patch_embed"):  # pretrained at 16 px patches, the probe asks for 8
        bench.run("size", "chunk", steps=1, lr=1e-3, log_every=1, seed=0, patch_size=8, batch_size=2, vision_init=out)
