"""`clearvla pretrain-vision` writes a backbone that `--vision-init` loads into a VLA, tensor for tensor."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from clearvla.cli import main
from clearvla.errors import CheckpointError
from clearvla.train.build import build_model
from clearvla.train.config import TrainConfig


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vision")
    assert main(["pretrain-vision", "--out", str(out), "--scenes", "2", "--steps", "2", "--batch-size", "4"]) == 0
    return out


def test_pretrain_vision_writes_a_safetensors_backbone_and_its_vocabulary(pretrained):
    meta = json.loads((pretrained / "vision.json").read_text())
    assert meta["settings"]["steps"] == 2 and meta["vocab"]["size"] == ["none", "small", "medium", "large"]
    assert meta["frames"] == 4  # 2 scenes x 2 cameras
    assert any(k.startswith("featurizer.") for k in load_file(str(pretrained / "vision.safetensors")))


def test_vision_init_loads_exactly_those_tensors(pretrained, norm_stats):
    state = load_file(str(pretrained / "vision.safetensors"))
    vla = build_model(TrainConfig(init="tiny", image_size=128, vision_init=str(pretrained)), norm_stats)
    own = vla.vision_backbone.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    fresh = build_model(TrainConfig(init="tiny", image_size=128), norm_stats)
    assert not torch.equal(fresh.vision_backbone.state_dict()["featurizer.patch_embed.proj.weight"],
                           state["featurizer.patch_embed.proj.weight"])


def test_a_mismatched_backbone_is_an_error_naming_the_tensor(pretrained, norm_stats, tmp_path):
    with pytest.raises(CheckpointError, match="pos_embed"):  # pretrained at 128 px, the run reads 224 px
        build_model(TrainConfig(init="tiny", image_size=224, vision_init=str(pretrained)), norm_stats)
    state = load_file(str(pretrained / "vision.safetensors"))
    state["featurizer.extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "vision.safetensors"))
    with pytest.raises(CheckpointError, match="featurizer.extra"):
        build_model(TrainConfig(init="tiny", image_size=128, vision_init=str(tmp_path)), norm_stats)
    with pytest.raises(CheckpointError, match="no vision.safetensors"):
        build_model(TrainConfig(init="tiny", vision_init=str(tmp_path / "nowhere")), norm_stats)
