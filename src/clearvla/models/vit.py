"""A Vision Transformer with timm's parameter names and semantics (DINOv2 with registers, SigLIP).

Written here rather than imported from `timm` because timm needs torchvision, which has no CPU build on
our package registry, and OpenVLA checkpoints store these weights under timm's names, so we must match
them exactly anyway (`blocks.i.attn.qkv`, `ls1.scale_factor`, `reg_token`, `attn_pool.latent`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """Sizes and switches of one ViT. Positional embeddings cover patches only (timm `no_embed_class`).

    width / depth / heads / mlp_hidden: transformer sizes; patch_size: square patch side in pixels.
    class_token / reg_tokens: prefix tokens prepended after the position embedding (DINOv2: 1 + 4).
    layerscale: per-channel residual scales `ls1`/`ls2` (DINOv2). attn_pool: SigLIP's MAP head, whose
    weights a checkpoint carries but feature extraction never uses.
    mean / std: the per-channel image normalisation this backbone was trained with.
    """

    width: int
    depth: int
    heads: int
    mlp_hidden: int
    patch_size: int = 14
    class_token: bool = False
    reg_tokens: int = 0
    layerscale: bool = False
    attn_pool: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, width]


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        assert width % heads == 0, f"width {width} must divide into {heads} heads"
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """timm calls the parameter `gamma`; OpenVLA renamed it `scale_factor` (HF loaders rewrite "gamma")."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((width,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()  # exact erf GELU, as both OpenVLA backbones use (timm_override_act_layers null)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.attn = Attention(cfg.width, cfg.heads)
        self.ls1 = LayerScale(cfg.width) if cfg.layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.mlp = Mlp(cfg.width, cfg.mlp_hidden)
        self.ls2 = LayerScale(cfg.width) if cfg.layerscale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """SigLIP's multi-head attention pooling head. Kept so checkpoints load and save whole; OpenVLA never
    runs it (features come from inside the trunk), so it has no forward."""

    def __init__(self, width: int, mlp_hidden: int) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.zeros(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_hidden)


def sincos_position_table(grid: int, width: int) -> torch.Tensor:
    """[grid * grid, width] 2-D sin-cos table (MAE's init, row-major patches): half the channels code the row,
    half the column, each as sin/cos at geometric frequencies. Values in [-1, 1], so a position is as loud as a
    patch's content from the first step (timm's N(0, 0.02) is ~50x quieter); with the patch loss it lets a model
    trained from scratch learn where things are (benchmarks/vision_probe.py). Checkpoints overwrite it."""
    quarter = width // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / max(quarter, 1))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    codes = [torch.cat([(axis.flatten()[:, None] * frequencies).sin(), (axis.flatten()[:, None] * frequencies).cos()], 1)
             for axis in (rows, cols)]
    table = torch.cat(codes, dim=1)
    return F.pad(table, (0, width - table.shape[1])).float()  # widths not divisible by 4: zero tail


def resample_position_table(table: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, g*g, width] position table of a g x g patch grid -> [1, grid*grid, width] for a grid x grid one, by
    bicubic interpolation over the grid (timm's way of moving a ViT to a new image size). Same dtype."""
    old = round(table.shape[1] ** 0.5)
    if old * old != table.shape[1]:
        raise ValueError(f"position table of {table.shape[1]} patches is not a square grid")
    square = table.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    resampled = F.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False)
    return resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(table.dtype)


class VisionTransformer(nn.Module):
    """timm-named ViT. `forward(pixels [B,3,S,S]) -> patch features [B, (S/patch)^2, width]`: the output of
    the second-to-last block, without the final norm, prefix tokens dropped (OpenVLA's featurizer)."""

    def __init__(self, cfg: ViTConfig, image_size: int) -> None:
        super().__init__()
        assert image_size % cfg.patch_size == 0, f"image size {image_size} is not a multiple of patch {cfg.patch_size}"
        assert cfg.depth >= 2, "features are taken from the second-to-last block, so depth must be >= 2"
        self.cfg = cfg
        self.image_size = image_size
        num_patches = (image_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, cfg.width)) if cfg.reg_tokens else None
        self.pos_embed = nn.Parameter(sincos_position_table(image_size // cfg.patch_size, cfg.width)[None])
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)  # in the checkpoint, unused by feature extraction
        self.attn_pool = AttentionPoolLatent(cfg.width, cfg.mlp_hidden) if cfg.attn_pool else None

    @property
    def num_patches(self) -> int:
        return self.pos_embed.shape[1]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels) + self.pos_embed
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = torch.cat([*prefix, x], dim=1)
        for block in self.blocks[:-1]:  # the last block's output is never used
            x = block(x)
        return x[:, self.cfg.num_prefix_tokens :]
