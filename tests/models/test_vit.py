"""The ViT follows timm's semantics that OpenVLA checkpoints rely on."""

import torch

from clearvla.models.vit import VisionTransformer, ViTConfig

CFG = ViTConfig(width=32, depth=3, heads=4, mlp_hidden=64, patch_size=8, class_token=True, reg_tokens=4, layerscale=True)


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(CFG, image_size=32).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(0, 0.2)
    return vit


def test_timm_parameter_names_and_shapes():
    sd = VisionTransformer(CFG, 32).state_dict()
    assert sd["pos_embed"].shape == (1, 16, 32)  # patches only: prefix tokens get no position
    assert sd["cls_token"].shape == (1, 1, 32) and sd["reg_token"].shape == (1, 4, 32)
    assert sd["blocks.0.attn.qkv.weight"].shape == (96, 32) and "blocks.0.attn.qkv.bias" in sd
    assert sd["blocks.2.ls2.scale_factor"].shape == (32,)
    assert sd["patch_embed.proj.weight"].shape == (32, 3, 8, 8) and "norm.weight" in sd


def test_features_come_from_second_to_last_block_without_final_norm():
    vit, x = _vit(), torch.randn(2, 3, 32, 32)
    out = vit(x)
    assert out.shape == (2, 16, 32)  # prefix tokens dropped
    with torch.no_grad():
        vit.blocks[-1].mlp.fc2.weight.mul_(3)
        vit.norm.weight.mul_(3)
    torch.testing.assert_close(vit(x), out)
    with torch.no_grad():
        vit.blocks[-2].mlp.fc2.weight.mul_(3)
    assert not torch.allclose(vit(x), out)


def test_prefix_tokens_take_part_in_attention():
    vit, x = _vit(), torch.randn(1, 3, 32, 32)
    out = vit(x)
    with torch.no_grad():
        vit.reg_token.add_(torch.randn_like(vit.reg_token))  # not a constant: LayerNorm would cancel it
    assert not torch.allclose(vit(x), out)
