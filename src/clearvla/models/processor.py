"""Image preprocessing, bit-compatible with OpenVLA's `PrismaticImageProcessor` (spec section 4)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from clearvla.errors import CheckpointError, InputError

ImageLike = np.ndarray | Image.Image
CENTER_CROP_AREA = 0.9  # models trained with random-resized-crop (scale 0.9) are evaluated on this centre crop


@dataclass(frozen=True)
class ImageProcessor:
    """uint8 RGB images -> `pixel_values [B, 3*n, S, S]` float32, one normalisation per backbone.

    Resizing is PIL bicubic (antialiased) to S x S without keeping the aspect ratio ("resize-naive"):
    OpenVLA resizes with PIL, and a torch resize differs enough to flip near-tied action tokens.
    """

    image_size: int
    means: tuple[tuple[float, float, float], ...]
    stds: tuple[tuple[float, float, float], ...]
    resize_strategy: str = "resize-naive"

    def __post_init__(self) -> None:
        if self.resize_strategy != "resize-naive":
            raise InputError(f"image_resize_strategy {self.resize_strategy!r} is not supported; use 'resize-naive'")

    def __call__(self, images: ImageLike | Sequence[ImageLike], center_crop: bool = False) -> torch.Tensor:
        batch = [images] if isinstance(images, (np.ndarray, Image.Image)) and _is_single(images) else list(images)
        if not batch:
            raise InputError("got an empty list of images")
        pixels = torch.stack([self.to_unit_tensor(self.resize(image, center_crop)) for image in batch])
        return self.normalize(pixels)

    def resize(self, image: ImageLike, center_crop: bool = False) -> Image.Image:
        """Validated RGB PIL image resized to S x S (after an optional centre crop of area 0.9)."""
        pil = _to_pil(image)
        if center_crop:
            w, h = pil.size
            cw, ch = w * math.sqrt(CENTER_CROP_AREA), h * math.sqrt(CENTER_CROP_AREA)
            left, top = (w - cw) / 2, (h - ch) / 2
            return pil.resize((self.image_size, self.image_size), Image.BICUBIC, box=(left, top, left + cw, top + ch))
        return pil.resize((self.image_size, self.image_size), Image.BICUBIC)

    @staticmethod
    def to_unit_tensor(pil: Image.Image) -> torch.Tensor:
        """PIL RGB -> [3, H, W] float32 in [0, 1] (uint8 / 255, as torchvision's to_tensor)."""
        return torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1] -> [B, 3*n, S, S]: one (x - mean) / std per backbone, stacked on channels."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InputError(f"normalize expects pixels [B, 3, H, W], got {tuple(pixels.shape)}")
        out = []
        for mean, std in zip(self.means, self.stds):
            m = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
            s = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
            out.append((pixels - m) / s)
        return torch.cat(out, dim=1)

    def uint8_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """`normalize(x / 255)` for uint8 pixels x as `x * scale + offset`, per output channel ([3*n] float32
        each; equal up to float rounding), so a loader can normalise batches in place."""
        mean = np.asarray(self.means, dtype=np.float64).reshape(-1)
        std = np.asarray(self.stds, dtype=np.float64).reshape(-1)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)

    # --- OpenVLA's preprocessor_config.json ---------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        n = len(self.means)
        size = [self.image_size, self.image_size]
        return {
            "auto_map": {
                "AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
                "AutoProcessor": "processing_prismatic.PrismaticProcessor",
            },
            "image_processor_type": "PrismaticImageProcessor",
            "processor_class": "PrismaticProcessor",
            "image_resize_strategy": self.resize_strategy,
            "use_fused_vision_backbone": n == 2,
            "input_sizes": [[3, *size]] * n,
            "interpolations": ["bicubic"] * n,
            "means": [list(m) for m in self.means],
            "stds": [list(s) for s in self.stds],
            "tvf_resize_params": [{"antialias": True, "interpolation": 3, "max_size": None, "size": size}] * n,
            "tvf_crop_params": [{"output_size": size}] * n,
            "tvf_normalize_params": [{"inplace": False, "mean": list(m), "std": list(s)} for m, s in zip(self.means, self.stds)],
            "tvf_do_letterbox": False,
            "tvf_letterbox_fill": None,
        }

    @classmethod
    def from_json_dict(cls, cfg: dict[str, Any], where: str = "preprocessor_config.json") -> "ImageProcessor":
        """Reads the file OpenVLA writes. The normalisation actually applied by the reference is
        `tvf_normalize_params` (which may differ from `means`/`stds` in the last bits), so it wins."""
        try:
            if "tvf_normalize_params" in cfg:
                means = tuple(tuple(p["mean"]) for p in cfg["tvf_normalize_params"])
                stds = tuple(tuple(p["std"]) for p in cfg["tvf_normalize_params"])
            else:
                means = tuple(tuple(m) for m in cfg["means"])
                stds = tuple(tuple(s) for s in cfg["stds"])
            size = int(cfg["input_sizes"][0][-1])
        except (KeyError, IndexError, TypeError) as e:
            raise CheckpointError(f"{where}: malformed image processor config ({type(e).__name__}: {e})") from None
        return cls(size, means, stds, cfg.get("image_resize_strategy", "resize-naive"))

    def save(self, directory: Path) -> None:
        (directory / "preprocessor_config.json").write_text(json.dumps(self.to_json_dict(), indent=2))


def _is_single(images: np.ndarray | Image.Image) -> bool:
    return isinstance(images, Image.Image) or images.ndim == 3


def _to_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a uint8 HxWx3 numpy array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image must have dtype uint8 (0..255 RGB), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must have shape HxWx3 (RGB), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image is empty: shape {image.shape}")
    return Image.fromarray(image)  # HxWx3 uint8 -> mode "RGB"
