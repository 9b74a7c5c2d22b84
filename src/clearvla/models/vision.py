"""The (optionally fused) vision backbone: DINOv2 on channels 0-2, SigLIP on 3-5, features concatenated."""

from __future__ import annotations

import torch
from torch import nn

from clearvla.models.vit import VisionTransformer, ViTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The timm ids OpenVLA-format configs name, with the sizes they stand for.
TIMM_VITS: dict[str, ViTConfig] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTConfig(
        width=1024, depth=24, heads=16, mlp_hidden=4096, patch_size=14,
        class_token=True, reg_tokens=4, layerscale=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
    "vit_so400m_patch14_siglip_224": ViTConfig(
        width=1152, depth=27, heads=16, mlp_hidden=4304, patch_size=14, attn_pool=True,
    ),
}


class VisionBackbone(nn.Module):
    """`forward(pixel_values [B, 3*n, S, S]) -> [B, N, sum(widths)]`; the first backbone is `featurizer`,
    the second (fused) one `fused_featurizer`, matching OpenVLA's state-dict names."""

    def __init__(self, vits: tuple[ViTConfig, ...], image_sizes: tuple[int, ...]) -> None:
        super().__init__()
        assert len(vits) in (1, 2) and len(image_sizes) == len(vits), "one or two backbones, one image size each"
        self.featurizer = VisionTransformer(vits[0], image_sizes[0])
        self.fused_featurizer = VisionTransformer(vits[1], image_sizes[1]) if len(vits) == 2 else None
        if self.fused_featurizer is not None:
            assert self.featurizer.num_patches == self.fused_featurizer.num_patches, "fused backbones must agree on patch count"

    @property
    def embed_dim(self) -> int:
        dims = [self.featurizer.cfg.width]
        if self.fused_featurizer is not None:
            dims.append(self.fused_featurizer.cfg.width)
        return sum(dims)

    @property
    def num_patches(self) -> int:
        return self.featurizer.num_patches

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.fused_featurizer is None:
            return self.featurizer(pixel_values)
        img, img_fused = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat([self.featurizer(img), self.fused_featurizer(img_fused)], dim=2)
