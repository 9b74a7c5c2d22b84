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
        assert all(scores[n]["fit"] > 0 and scores[n]["test"] > 0 for n in ("patches", "objects")), camera
        assert all(0.0 <= scores[k]["accuracy"] <= 1.0 for k in ("kind", "size", "size_parts", "colour",
                                                                 "object_kind", "object_size_parts")), camera


def test_compares_pretrained_backbones_with_their_random_init(bench, tmp_path, monkeypatch) -> None:
    from clearvla.cli import main

    dirs = [tmp_path / "objects", tmp_path / "patches"]
    for directory, weight in zip(dirs, ("1", "0")):
        assert main(["pretrain-vision", "--out", str(directory), "--scenes", "2", "--steps", "2", "--batch-size", "4",
                     "--cameras", "image", "--object-weight", weight]) == 0
    written: dict = {}
    monkeypatch.setattr(bench, "write_result", lambda name, payload: written.update({name: payload}))
    monkeypatch.setattr(sys, "argv", ["patch_probe.py", "--vision-init", str(dirs[0]), "--vision-init", str(dirs[1]),
                                      "--scenes", "4", "--steps", "5"])
    bench.main()
    result = written["patch_probe"]
    assert result["cameras"] == ["image"]  # the pretraining's cameras
    assert {str(d) for d in dirs} | {"random"} <= set(result)
    assert result["pretrain"][str(dirs[1])]["object_weight"] == 0.0
    objects, patches = (result[str(d)]["image"]["object_kind"]["accuracy"] for d in dirs)
    assert 0.0 <= objects <= 1.0 and 0.0 <= patches <= 1.0
