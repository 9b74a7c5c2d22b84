"""OpenVLA's training image augmentation, in torch, vectorised over a batch and seedable.

OpenVLA (dlimp's `augment_image`, in this order, clipping to [0, 1] after each op):
random resized crop (scale 0.9, ratio 1, resized back to the input size), brightness +-0.2 (additive),
contrast x0.8..1.2 (about each channel's mean), saturation x0.8..1.2, hue +-0.05 of the colour circle.

Differences, for speed on CPU (the loader's budget is ~1 ms per frame):
- the crop takes whole-pixel offsets and is resized with uint8 bilinear interpolation;
- saturation and hue are one 3x3 colour matrix per image (Rec. 709 luma-preserving saturate and hue-rotate, as
  SVG's feColorMatrix), a linear stand-in for TF's HSV round trip, which is ~10x slower in torch;
- contrast is folded into that matrix, so values are clipped after the crop, after brightness and at the end,
  but not between contrast and saturation.
The parameter ranges are OpenVLA's. Models trained with the crop are evaluated on the centre crop of area 0.9
(`ImageProcessor(images, center_crop=True)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from clearvla.errors import InputError

_LUMA = torch.tensor([0.213, 0.715, 0.072])
_HUE_SIN = torch.tensor([[-0.213, -0.715, 0.928], [0.143, 0.140, -0.283], [-0.787, 0.715, 0.072]])


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges as OpenVLA's `image_augment_kwargs`; a range (a, a) or 0 makes that op deterministic."""

    crop_scale: tuple[float, float] = (0.9, 0.9)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.2
    contrast: tuple[float, float] = (0.8, 1.2)
    saturation: tuple[float, float] = (0.8, 1.2)
    hue: float = 0.05


@dataclass(frozen=True)
class AugmentParams:
    """Random draws for B images: crop boxes in pixels [B] (top, left, height, width), brightness deltas [B],
    contrast factors [B] and colour matrices [B, 3, 3] (saturation, then hue)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    colour: torch.Tensor

    def __getitem__(self, index: slice) -> "AugmentParams":
        return AugmentParams(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def colour_matrices(saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """[B] saturation factors and hue shifts (fractions of a turn) -> [B, 3, 3] = hue-rotate @ saturate."""
    luma = _LUMA.expand(3, 3)
    away = torch.eye(3) - luma
    sat = luma + saturation[:, None, None] * away
    angle = hue * (2.0 * math.pi)
    rot = luma + torch.cos(angle)[:, None, None] * away + torch.sin(angle)[:, None, None] * _HUE_SIN
    return rot @ sat


def sample_params(n: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw the random parameters for n images of height x width."""
    scale = _uniform(n, *config.crop_scale, generator)
    ratio = torch.exp(_uniform(n, math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]), generator))
    ch = (torch.sqrt(scale / ratio).clamp(max=1.0) * height).round().long().clamp(min=1)
    cw = (torch.sqrt(scale * ratio).clamp(max=1.0) * width).round().long().clamp(min=1)
    top = (torch.rand(n, generator=generator) * (height - ch + 1)).long().clamp(max=height - ch)
    left = (torch.rand(n, generator=generator) * (width - cw + 1)).long().clamp(max=width - cw)
    brightness = _uniform(n, -config.brightness, config.brightness, generator)
    contrast = _uniform(n, *config.contrast, generator)
    colour = colour_matrices(_uniform(n, *config.saturation, generator), _uniform(n, -config.hue, config.hue, generator))
    return AugmentParams(top, left, ch, cw, brightness, contrast, colour)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [0, 1] (contiguous NCHW)."""
    return frames.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).mul_(1.0 / 255.0)


def crop_resize(frames: torch.Tensor | Sequence[torch.Tensor], params: AugmentParams) -> torch.Tensor:
    """uint8 [B, H, W, 3] (or B tensors [H, W, 3]) -> uint8 [B, H, W, 3]: each crop box resized back to H x W."""
    h, w, _ = frames[0].shape
    boxes = zip(params.top.tolist(), params.left.tolist(), params.height.tolist(), params.width.tolist())
    crops = [frame[t : t + y, l : l + x] for frame, (t, l, y, x) in zip(frames, boxes)]
    if len({c.shape for c in crops}) == 1:
        # One crop size for all (OpenVLA's fixed scale and ratio): one batched uint8 channels-last resize.
        stacked = torch.stack(crops).permute(0, 3, 1, 2)
        return F.interpolate(stacked, size=(h, w), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    resized = [F.interpolate(c.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False) for c in crops]
    return torch.cat(resized).permute(0, 2, 3, 1)


def crop_masks(masks: torch.Tensor, params: AugmentParams, image_size: int) -> torch.Tensor:
    """uint8 [B, r, r] masks of [image_size, image_size] images -> uint8 [B, r, r] masks of the images after
    `crop_resize` with the same params: a cell is 1 when any masked pixel lands in it. Without this an attention
    target points up to a tenth of the image away from the part the cropped image shows."""
    b, r, _ = masks.shape
    if image_size % r:
        raise InputError(f"attention masks of side {r} do not tile images of side {image_size}")
    cell = image_size // r
    pixels = masks.repeat_interleave(cell, 1).repeat_interleave(cell, 2)
    boxes = zip(params.top.tolist(), params.left.tolist(), params.height.tolist(), params.width.tolist())
    out = torch.empty_like(masks)
    for i, (t, l, y, x) in enumerate(boxes):
        crop = pixels[i, t : t + y, l : l + x].to(torch.float32)
        out[i] = F.adaptive_max_pool2d(crop[None, None], r)[0, 0].to(torch.uint8)
    return out


class Workspace:
    """Reusable float buffers for `apply_255`, so a loader worker does not allocate megabytes per chunk (fresh
    large allocations cost more in page faults than the arithmetic done in them)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 buffer of `shape` (leading dimension may shrink between calls; contents are garbage)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
            buffer = self._buffers[name] = torch.empty(shape, dtype=torch.float32)
        return buffer[: shape[0]]


def apply_255(
    frames: torch.Tensor | Sequence[torch.Tensor], params: AugmentParams, workspace: Workspace | None = None
) -> torch.Tensor:
    """uint8 [B, H, W, 3] (or B tensors [H, W, 3]) -> augmented float32 [B, 3, H, W] on the 0..255 scale (clipped).
    With a workspace the result lives in its buffer and is valid until the next call."""
    b = len(frames)
    h, w, _ = frames[0].shape
    workspace = workspace or Workspace()
    x = workspace.get("x", (b, 3, h, w))
    x.copy_(crop_resize(frames, params).permute(0, 3, 1, 2).contiguous())  # permute on uint8: 4x fewer bytes
    x.add_(params.brightness.view(b, 1, 1, 1) * 255.0).clamp_(0.0, 255.0)
    # contrast then colour, as one affine map: y = C (f x + (1 - f) m) = (f C) x + (1 - f) C m
    f = params.contrast.view(b, 1, 1)
    mean = x.mean(dim=(2, 3)).unsqueeze(-1)  # [B, 3, 1]
    bias = (1.0 - f) * torch.bmm(params.colour, mean)
    y = workspace.get("y", (b, 3, h, w))
    torch.baddbmm(bias, params.colour * f, x.view(b, 3, -1), out=y.view(b, 3, -1))
    return y.clamp_(0.0, 255.0)


def apply(frames: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> augmented float32 [B, 3, H, W] in [0, 1] with the given draws."""
    return apply_255(frames, params).mul_(1.0 / 255.0)


def augment(frames: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, H, W, 3] frames -> augmented float32 [B, 3, H, W] in [0, 1], ready for `ImageProcessor.normalize`."""
    return apply(frames, sample_params(frames.shape[0], frames.shape[1], frames.shape[2], config, generator))
