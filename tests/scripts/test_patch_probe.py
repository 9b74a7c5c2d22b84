"""benchmarks/patch_probe.py: a VLA checkpoint's backbone probed per camera on rendered, labelled patches."""

from __future__ import annotations

import sys

BENCHMARK = "patch_probe"  # the `bench` fixture (conftest.py) imports benchmarks/patch_probe.py


def test_probes_a_checkpoints_backbone_on_each_camera(bench, tiny_checkpoint, monkeypatch) -> None:
    written: dict = {}
    monkeypatch.setattr(bench, "write_result", lambda name, payload: written.update({name: payload}))
    monkeypatch.setattr(sys, "argv", ["patch_probe.py", "--checkpoint", str(tiny_checkpoint), "--cameras", "image",
                                      "image_top", "--scenes", "4", "--steps", "5", "--name", "probe_test"])
    bench.main()
    result = written["probe_test"]
    assert result["cameras"] == ["image", "image_top"] and result["scenes"] == [3000, 3004]
    for camera, scores in result[str(tiny_checkpoint)].items():
        assert scores["patches"]["fit"] > 0 and scores["patches"]["test"] > 0, camera
        assert all(0.0 <= scores[k]["accuracy"] <= 1.0 for k in ("kind", "size", "size_parts", "colour")), camera
