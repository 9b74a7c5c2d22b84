"""Per-patch labels of rendered scenes for vision pretraining (sim/vision_labels.py)."""

import numpy as np
import pytest

from clearvla.errors import ConfigError
from clearvla.sim.vision_labels import VOCAB, check_scenes, patch_objects, render_labelled_frames


def test_the_intended_parts_patches_carry_its_kind_colour_and_size():
    from clearvla.sim.env import WorkcellEnv

    frames = render_labelled_frames([3], cameras=("image",))
    env = WorkcellEnv("train", image_size=128, cameras=("image",))
    _, info = env.reset(seed=3, options={"index": 3})
    env.close()
    objects = info["objects"]
    i = [o.name for o in objects].index(info["intended_object"])
    part = objects[i]
    shows = frames["object"][0] == i + 1
    assert shows.any(), "the intended part should cover some patch of the front camera"
    assert (frames["kind"][0][shows] == VOCAB["kind"].index(part.kind)).all()
    assert (frames["colour"][0][shows] == VOCAB["colour"].index(part.colour)).all()
    assert (frames["size"][0][shows] == VOCAB["size"].index(part.size)).all()
    assert np.allclose(frames["xy"][0][shows], part.position[:2], atol=1e-6)
    background = frames["object"][0] == 0
    assert (frames["kind"][0][background] == 0).all() and (frames["larger"][0][background] == -1).all()


def test_patch_objects_takes_the_majority_object_above_the_cover_threshold():
    seg = np.full((32, 32), -1, dtype=np.int32)
    seg[:16, :10] = 7  # 160 of 256 pixels: body 7 labels patch 0
    seg[:16, 10:16] = 9
    seg[16:18, 16:18] = 9  # 4 pixels: below the cover threshold, background
    assert patch_objects(seg, np.array([9, 7]), 16).tolist() == [2, 0, 0, 0]


def test_evaluation_scenes_are_refused():
    with pytest.raises(ConfigError, match="4000"):
        check_scenes([3999, 4000])
