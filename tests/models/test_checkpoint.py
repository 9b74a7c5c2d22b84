import json
import os
import shutil
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from clearvla.models.presets import get_config
from clearvla.errors import CheckpointError
from clearvla.models.checkpoint import config_from_json, config_to_json
from clearvla.models.vla import VLA


def _copy(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def test_save_load_gives_identical_actions(tiny_vla, tiny_checkpoint, rgb_image):
    loaded = VLA.from_pretrained(tiny_checkpoint)
    for a, b in zip(tiny_vla.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    text = "put the blue nut in the tray"
    np.testing.assert_array_equal(loaded.predict_action(rgb_image, text), tiny_vla.predict_action(rgb_image, text))


def test_layout_is_openvla(tiny_checkpoint):
    files = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "preprocessor_config.json", "processor_config.json",
            "dataset_statistics.json", "tokenizer.model", "tokenizer_config.json"} <= files
    assert sum(name.startswith("model-0000") for name in files) > 1  # sharded
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "openvla" and cfg["architectures"] == ["OpenVLAForActionPrediction"]
    assert cfg["text_config"]["vocab_size"] == 1024 + 64 and cfg["n_action_bins"] == 256
    assert "num_hidden_layers" in cfg["text_config"] and "rms_norm_eps" not in cfg["text_config"]  # diff vs defaults


def test_checkpoints_get_umask_permissions_not_private_ones(tiny_vla, tmp_path):
    old = os.umask(0o022)
    try:
        ckpt = tiny_vla.save_pretrained(tmp_path / "shared")
    finally:
        os.umask(old)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in ckpt.iterdir()} == {0o644}


def test_dataset_statistics_json_overrides_config(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    override = {"my_robot": {"action": {"q01": [0.0] * 7, "q99": [1.0] * 7}}}
    (ckpt / "dataset_statistics.json").write_text(json.dumps(override))
    assert VLA.from_pretrained(ckpt).norm_stats == override


def test_bfloat16_load(tiny_checkpoint, rgb_image):
    model = VLA.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert model.predict_action(rgb_image, "pick up the red block").shape == (7,)


def test_single_file_checkpoint_loads(tiny_vla, tmp_path, rgb_image):
    ckpt = tiny_vla.save_pretrained(tmp_path / "single")
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "model.safetensors.index.json").exists()
    np.testing.assert_array_equal(VLA.from_pretrained(ckpt).predict_action_tokens(rgb_image, "go"),
                                  tiny_vla.predict_action_tokens(rgb_image, "go"))


def test_save_replaces_an_existing_checkpoint_and_refuses_other_dirs(tiny_vla, tmp_path):
    ckpt = tiny_vla.save_pretrained(tmp_path / "c")
    tiny_vla.save_pretrained(ckpt)  # overwrite in place, atomically
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        tiny_vla.save_pretrained(other)
    assert (other / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "config.json").unlink(), "missing config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "corrupt config.json"),
        (lambda d: (d / "preprocessor_config.json").unlink(), "missing preprocessor_config.json"),
        (lambda d: (d / "model-00002-of-00004.safetensors").unlink(), "missing weight shard model-00002-of-00004"),
        (lambda d: (d / "tokenizer.model").unlink(), "tokenizer"),
    ],
)
def test_missing_or_corrupt_files_are_named(tiny_vla, tmp_path, breakage, message):
    ckpt = tiny_vla.save_pretrained(tmp_path / "c", max_shard_size="2MB")
    assert (ckpt / "model-00002-of-00004.safetensors").is_file()
    breakage(ckpt)
    with pytest.raises(CheckpointError, match=message):
        VLA.from_pretrained(ckpt)


def test_truncated_shard_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    shard = ckpt / "model-00001-of-00008.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt weight file .*model-00001-of-00008"):
        VLA.from_pretrained(ckpt)


def test_shape_disagreement_names_the_tensor(tiny_vla, tmp_path):
    ckpt = tiny_vla.save_pretrained(tmp_path / "c")
    state = load_file(ckpt / "model.safetensors")
    state["projector.fc3.weight"] = torch.zeros(128, 64)
    save_file(state, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'projector.fc3.weight' has shape \[128, 64\] but the config implies \[128, 128\]"):
        VLA.from_pretrained(ckpt)


def test_missing_and_unexpected_tensors_are_named(tiny_vla, tmp_path):
    ckpt = tiny_vla.save_pretrained(tmp_path / "c")
    state = load_file(ckpt / "model.safetensors")
    del state["language_model.lm_head.weight"]
    save_file(state, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="lack 1 tensors: language_model.lm_head.weight"):
        VLA.from_pretrained(ckpt)
    state["language_model.lm_head.weight"] = tiny_vla.language_model.lm_head.weight.detach()
    state["action_head.weight"] = torch.zeros(2)
    save_file(state, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected tensor 'action_head.weight'"):
        VLA.from_pretrained(ckpt)


def test_pickled_weights_are_refused(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    for shard in ckpt.glob("model*.safetensors*"):
        shard.unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: clearvla reads safetensors only"):
        VLA.from_pretrained(ckpt)


# --- the openvla-7b preset ----------------------------------------------------------------------------
SPEC_SHAPES = {  # ../shared/spec/openvla-format.md, section 3
    "vision_backbone.featurizer.cls_token": (1, 1, 1024),
    "vision_backbone.featurizer.reg_token": (1, 4, 1024),
    "vision_backbone.featurizer.pos_embed": (1, 256, 1024),
    "vision_backbone.featurizer.patch_embed.proj.weight": (1024, 3, 14, 14),
    "vision_backbone.featurizer.blocks.23.ls1.scale_factor": (1024,),
    "vision_backbone.featurizer.blocks.23.ls2.scale_factor": (1024,),
    "vision_backbone.featurizer.blocks.0.attn.qkv.weight": (3072, 1024),
    "vision_backbone.featurizer.blocks.0.attn.qkv.bias": (3072,),
    "vision_backbone.featurizer.blocks.0.mlp.fc1.weight": (4096, 1024),
    "vision_backbone.featurizer.norm.weight": (1024,),
    "vision_backbone.fused_featurizer.pos_embed": (1, 256, 1152),
    "vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight": (4304, 1152),
    "vision_backbone.fused_featurizer.blocks.26.attn.proj.weight": (1152, 1152),
    "vision_backbone.fused_featurizer.attn_pool.latent": (1, 1, 1152),
    "projector.fc1.weight": (8704, 2176),
    "projector.fc2.weight": (4096, 8704),
    "projector.fc3.weight": (4096, 4096),
    "language_model.model.embed_tokens.weight": (32064, 4096),
    "language_model.model.layers.31.self_attn.q_proj.weight": (4096, 4096),
    "language_model.model.layers.31.mlp.gate_proj.weight": (11008, 4096),
    "language_model.model.norm.weight": (4096,),
    "language_model.lm_head.weight": (32064, 4096),
}


def test_openvla_7b_preset_matches_spec_on_meta_device():
    with torch.device("meta"):
        model = VLA.from_config("openvla-7b")
    state = model.state_dict()
    assert all(t.is_meta for t in model.parameters())  # nothing allocated
    for name, shape in SPEC_SHAPES.items():
        assert tuple(state[name].shape) == shape, name
    assert "vision_backbone.featurizer.blocks.24.norm1.weight" not in state
    assert "vision_backbone.fused_featurizer.cls_token" not in state
    assert sum(p.numel() for p in model.parameters()) == 7_541_237_184  # OpenVLA-7B's published size
    assert model.vision_backbone.num_patches == 256 and model.vision_backbone.embed_dim == 2176


def test_reference_config_json_parses_to_the_7b_architecture():
    reference = {  # the fields of openvla-7b's config.json (spec section 2), no clearvla block
        "model_type": "openvla", "vision_backbone_id": "dinosiglip-vit-so-224px", "llm_backbone_id": "llama2-7b-pure",
        "arch_specifier": "no-align+fused-gelu-mlp", "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive",
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_override_act_layers": [None, None], "image_sizes": [224, 224], "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "llm_max_length": 2048, "pad_token_id": 32000, "pad_to_multiple_of": 64, "n_action_bins": 256,
        "norm_stats": {"bridge_orig": {}},
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
    }
    config, norm_stats = config_from_json(reference, "config.json")
    ours = get_config("openvla-7b")
    assert config.vision == ours.vision and config.base_vocab_size == 32000
    llama = config.llama_config
    assert (llama.hidden_size, llama.num_hidden_layers, llama.intermediate_size, llama.rms_norm_eps) == (4096, 32, 11008, 1e-6)
    assert norm_stats == {"bridge_orig": {}}
    round_trip, _ = config_from_json(config_to_json(ours, {}, torch.bfloat16), "config.json")
    assert round_trip.vision == ours.vision and round_trip.llama_config.to_dict() == ours.llama_config.to_dict()


def test_unknown_timm_id_lists_supported():
    with pytest.raises(CheckpointError, match="unsupported timm_model_ids.*vit_so400m_patch14_siglip_224"):
        config_from_json({"use_fused_vision_backbone": False, "timm_model_ids": ["vit_huge_patch14_clip_224"]}, "config.json")
