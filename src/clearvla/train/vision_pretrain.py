"""Vision pretraining (`clearvla pretrain-vision`): the VLA's vision backbone trained alone on labelled frames, our
analogue of OpenVLA's DINOv2 + SigLIP pretraining, and `load_vision_init`, which puts the result into a VLA.

The backbone is the very `VisionBackbone` a preset builds, so its state dict loads into `vla.vision_backbone` name for
name. Linear heads on its patch features [B, P, D] (what the projector reads) learn the per-patch labels
(sim/vision_labels.py): cross-entropy for object-vs-background, kind, colour and size class; L1 for the object's table
position and BCE for "larger of a same-kind pair" (both on the patches that have them); plus the MAE-style patch
reconstruction of `objectives.patch_loss`. Object heads read each object's mean patch feature (train/object_pool.py):
cross-entropy for its kind and size class, and a ranking loss that scores the bigger of every same-kind pair above
the smaller, so that size, a property of the whole object, is asked of the object's patches together. The frames
come in as arrays: this module never reads the simulator.

A pretrained backbone is a directory: vision.safetensors (the backbone's state dict, names as under
`vla.vision_backbone`) and vision.json (the preset, image size, label vocabulary and training settings).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clearvla.errors import CheckpointError, ConfigError
from clearvla.models.heads import PatchDecoder
from clearvla.models.presets import get_config
from clearvla.models.processor import ImageProcessor
from clearvla.models.vision import VisionBackbone
from clearvla.train.object_pool import object_labels, pool_objects, size_pairs
from clearvla.train.objectives import patch_loss
from clearvla.train.optim import build_scheduler

WEIGHTS = "vision.safetensors"
META = "vision.json"
RECONSTRUCTION = 4  # pixels per patch side the reconstruction head predicts, as the VLA's patch decoder
CLASS_HEADS = ("kind", "colour", "size")


@dataclass(frozen=True)
class PretrainSettings:
    """What `pretrain_vision` trains with; saved in vision.json."""

    preset: str = "tiny"
    image_size: int = 128
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    reconstruction_weight: float = 1.0
    object_weight: float = 1.0
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be positive, got {self.steps} and "
                              f"{self.batch_size}")


class PatchHeads(nn.Module):
    """Linear heads on patch features [B, P, D]: logits per label vocabulary, object-vs-background, xy, larger,
    and the patch reconstruction (PatchDecoder); on pooled object features [B, K, D]: kind and size logits and a
    scalar size score."""

    def __init__(self, dim: int, vocab: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.classes = nn.ModuleDict({k: nn.Linear(dim, len(vocab[k])) for k in CLASS_HEADS})
        self.foreground = nn.Linear(dim, 2)
        self.xy = nn.Linear(dim, 2)
        self.larger = nn.Linear(dim, 1)
        self.decoder = PatchDecoder(dim, RECONSTRUCTION)
        self.object_kind = nn.Linear(dim, len(vocab["kind"]))
        self.object_size = nn.Linear(dim, len(vocab["size"]))
        self.object_rank = nn.Linear(dim, 1)


def build_backbone(settings: PretrainSettings) -> tuple[VisionBackbone, ImageProcessor]:
    """The preset's vision backbone at `image_size` (seeded init) and its image processor."""
    config = get_config(settings.preset, image_size=settings.image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        backbone = VisionBackbone(config.vision, config.image_sizes)
    processor = ImageProcessor(config.image_sizes[0], tuple(v.mean for v in config.vision), tuple(v.std for v in config.vision))
    return backbone, processor


def pixel_values(images: np.ndarray, processor: ImageProcessor) -> torch.Tensor:
    """uint8 images [B, S, S, 3] at the processor's size -> normalised pixel_values [B, 3n, S, S] float32."""
    scale, offset = processor.uint8_affine()
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = x.repeat(1, len(scale) // 3, 1, 1)
    return x * torch.from_numpy(scale).view(1, -1, 1, 1) + torch.from_numpy(offset).view(1, -1, 1, 1)


def object_losses(f: torch.Tensor, heads: PatchHeads, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The object heads' losses and accuracies on patch features f [B, P, D] float32 (pooled per object):
    object_kind, object_size (parts only) and object_rank (same-kind pairs of different size classes; zero when
    the batch has none)."""
    pooled, shown = pool_objects(f, batch["object"])
    kind, size = object_labels(batch["kind"], batch["object"]), object_labels(batch["size"], batch["object"])
    out: dict[str, torch.Tensor] = {}
    for name, head, labels, where in (("object_kind", heads.object_kind, kind, shown),
                                      ("object_size", heads.object_size, size, shown & (size > 0))):
        if not where.any():
            out[name] = f.new_zeros(())
            continue
        logits = head(pooled[where])
        out[name] = F.cross_entropy(logits, labels[where])
        out[f"{name}_acc"] = (logits.argmax(-1) == labels[where]).float().mean().detach()
    image, bigger, smaller = size_pairs(kind, size, shown)
    score = heads.object_rank(pooled).squeeze(-1)
    margin = score[image, bigger] - score[image, smaller]
    out["object_rank"] = F.softplus(-margin).mean() if len(image) else f.new_zeros(())
    if len(image):
        out["object_rank_acc"] = (margin > 0).float().mean().detach()
    return out


def pretrain_losses(features: torch.Tensor, heads: PatchHeads, batch: dict[str, torch.Tensor],
                    pixels: torch.Tensor, reconstruction_weight: float,
                    object_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """features [B, P, D]; batch: the `frame_labels` arrays as tensors ([B, P], xy [B, P, 2]) -> named scalar losses
    and accuracies; "loss" is their weighted sum (the object heads' three losses times `object_weight`)."""
    f = features.float()
    fg = batch["object"] > 0
    out: dict[str, torch.Tensor] = {"foreground": F.cross_entropy(heads.foreground(f).flatten(0, 1), fg.long().flatten())}
    for name in CLASS_HEADS:
        logits = heads.classes[name](f)
        out[name] = F.cross_entropy(logits.flatten(0, 1), batch[name].flatten())
        if fg.any():
            out[f"{name}_acc"] = (logits.argmax(-1)[fg] == batch[name][fg]).float().mean().detach()
    zero = f.sum() * 0.0
    out["xy"] = F.l1_loss(heads.xy(f)[fg], batch["xy"][fg]) if fg.any() else zero
    paired = batch["larger"] >= 0
    larger = heads.larger(f).squeeze(-1)
    out["larger"] = F.binary_cross_entropy_with_logits(larger[paired], batch["larger"][paired].float()) if paired.any() else zero
    out["reconstruction"] = patch_loss(heads.decoder(f), pixels, 1, RECONSTRUCTION)
    out.update(object_losses(f, heads, batch))
    terms = ("foreground", *CLASS_HEADS, "xy", "larger")
    objects = out["object_kind"] + out["object_size"] + out["object_rank"]
    out["loss"] = sum(out[k] for k in terms) + reconstruction_weight * out["reconstruction"] + object_weight * objects
    return out


def _batch(frames: dict[str, np.ndarray], index: np.ndarray) -> dict[str, torch.Tensor]:
    keys = ("object", *CLASS_HEADS, "larger", "xy")
    return {k: torch.from_numpy(np.ascontiguousarray(frames[k][index])) for k in keys}


def pretrain_vision(frames: dict[str, np.ndarray], vocab: dict[str, tuple[str, ...]], settings: PretrainSettings,
                    callback: Callable[[int, dict[str, float]], None] | None = None) -> tuple[VisionBackbone, list[dict[str, float]]]:
    """Train the preset's backbone on `frames` (sim/vision_labels.render_labelled_frames: image [N, S, S, 3] uint8
    and the per-patch labels) with AdamW, batches drawn with the settings' seed. Returns (backbone, per-step metrics)."""
    from clearvla.train.loop import bf16_autocast

    n = len(frames.get("image", ()))
    if n == 0:
        raise ConfigError("vision pretraining got no frames")
    if frames["image"].shape[1] != settings.image_size:
        raise ConfigError(f"frames are {frames['image'].shape[1]} px but image_size is {settings.image_size}")
    backbone, processor = build_backbone(settings)
    if frames["object"].shape[1] != backbone.num_patches:
        raise ConfigError(f"frames carry {frames['object'].shape[1]} patch labels, the backbone has {backbone.num_patches} patches")
    torch.manual_seed(settings.seed)
    heads = PatchHeads(backbone.embed_dim, vocab)
    params = list(backbone.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = build_scheduler(optimizer, "cosine", max(1, settings.steps // 20), settings.steps)
    rng = np.random.default_rng(settings.seed)
    bf16 = bf16_autocast(settings.precision, torch.device("cpu"))
    history: list[dict[str, float]] = []
    for step in range(1, settings.steps + 1):
        index = rng.choice(n, size=min(settings.batch_size, n), replace=False)
        pixels = pixel_values(frames["image"][index], processor)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = backbone(pixels)
        losses = pretrain_losses(features, heads, _batch(frames, index), pixels, settings.reconstruction_weight,
                                 settings.object_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        history.append({"step": step, **{k: float(v.detach()) for k, v in losses.items()}})
        if callback is not None:
            callback(step, history[-1])
    return backbone.eval(), history


def save_vision(directory: Path, backbone: VisionBackbone, settings: PretrainSettings,
                vocab: dict[str, tuple[str, ...]], extra: dict[str, Any] | None = None) -> Path:
    """Write directory/vision.safetensors and vision.json, each atomically (a temporary file, then os.replace)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    tmp = directory / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, directory / WEIGHTS)
    meta = {"settings": asdict(settings), "vocab": {k: list(v) for k, v in vocab.items()}, **(extra or {})}
    tmp = directory / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / META)
    return directory / WEIGHTS


def read_vision(directory: Path) -> dict[str, torch.Tensor]:
    """The backbone state dict in directory/vision.safetensors; CheckpointError when it is missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"vision_init {directory}: no {WEIGHTS} there (write one with `clearvla pretrain-vision`)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"vision_init {path}: cannot read it: {e}") from None


def load_vision_init(backbone: nn.Module, directory: Path) -> list[str]:
    """Copy a pretrained backbone (directory/vision.safetensors) into `backbone` (a VLA's `vision_backbone`), every
    tensor by name. CheckpointError naming the tensor on any missing, unexpected or differently shaped one. Returns
    the names loaded."""
    state = read_vision(directory)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"vision_init {directory}: the VLA's vision backbone has no tensor {unexpected[0]!r}"
                              if unexpected else f"vision_init {directory}: tensor {missing[0]!r} is missing "
                              f"({len(missing)} missing in all)")
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"vision_init {directory}: tensor {name!r} has shape {tuple(tensor.shape)}, the VLA's "
                                  f"vision backbone needs {tuple(own[name].shape)} (pretrain at the run's preset and "
                                  "image size)")
    backbone.load_state_dict(state)
    return sorted(state)
