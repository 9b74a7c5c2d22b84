"""The model a run starts from: a preset (random init from the run's seed) or a pretrained checkpoint, with the
run's inputs (cameras, proprio) and image size. Deterministic, so `clearvla merge` can rebuild a LoRA run's base exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from clearvla.errors import ConfigError
from clearvla.models.config import VLAConfig
from clearvla.models.vit import VisionTransformer, resample_position_table
from clearvla.models.vla import VLA
from clearvla.train.config import TrainConfig
from clearvla.train.modes import INPUT_MODULE_NAMES

PATCH_DECODER_RESOLUTION = 4  # pixels per patch side the patch decoder reconstructs (16 px patches -> 4 x 4)


def proprio_width(norm_stats: dict[str, Any]) -> int:
    """The robot-state width every dataset of the run shares (from its proprio statistics)."""
    widths = {name: len(block["proprio"]["q01"]) for name, block in norm_stats.items() if "proprio" in block}
    if not widths or len(set(widths.values())) != 1:
        raise ConfigError(f"proprio needs every dataset to have robot-state statistics of one width, got {widths or 'none'}")
    return next(iter(widths.values()))


def action_width(norm_stats: dict[str, Any]) -> int:
    """The action width every dataset of the run shares (a chunk head has one output width)."""
    widths = {name: len(block["action"]["q01"]) for name, block in norm_stats.items()}
    if len(set(widths.values())) != 1:
        raise ConfigError(f"an action-chunk head needs every dataset to have one action width, got {widths}")
    return next(iter(widths.values()))


def build_model(cfg: TrainConfig, norm_stats: dict[str, Any], device: str | torch.device = "cpu", **preset_knobs: Any) -> VLA:
    """fp32 master weights on `device`; norm_stats of the training data replace any the checkpoint had.
    `preset_knobs`: further builder knobs for a preset init (e.g. `fused=False` for tiny with one vision backbone)."""
    m, weights = cfg.model, cfg.objectives
    inputs: dict[str, Any] = {}
    if m.cameras:
        inputs["cameras"] = tuple(m.cameras)
    if m.proprio:
        inputs["proprio_dim"] = proprio_width(norm_stats)
        inputs["proprio_indices"] = tuple(m.proprio_indices)
    if m.action_chunk:
        inputs["action_chunk"] = m.action_chunk
        inputs["action_dim"] = action_width(norm_stats)
    if weights.patch_loss > 0:
        inputs["patch_decoder"] = PATCH_DECODER_RESOLUTION
    if m.prefix_attention != "causal":
        inputs["prefix_attention"] = m.prefix_attention
    if cfg.slot_embeddings:
        inputs["slot_embeddings"] = True
    if weights.focus_loss > 0:
        inputs["focus_head"] = True
    if m.execute_actions:
        inputs["execute_actions"] = m.execute_actions
    if m.action_tokens:
        inputs.update(action_chunk=0, prefix_attention="causal", slot_embeddings=False, focus_head=False, execute_actions=0)
    if preset_knobs and Path(m.init).is_dir():
        raise ConfigError(f"builder knobs {sorted(preset_knobs)} apply to a preset init, not the checkpoint {m.init}")
    if Path(m.init).is_dir():
        model = VLA.from_pretrained(m.init, dtype=torch.float32)
        if m.action_tokens and not model.config.action_chunk:
            raise ConfigError(f"action_tokens turns a chunk checkpoint into a token model, but {m.init} already "
                              "decodes action tokens: leave action_tokens off")
        model = with_inputs(model, replace(model.config, **inputs), cfg.run.seed)
        if m.image_size is not None:
            model = with_image_size(model, m.image_size)
    elif m.action_tokens:
        raise ConfigError(f"action_tokens needs a chunk checkpoint directory as init; preset {m.init!r} is "
                          "already a token model")
    else:
        overrides = {} if m.image_size is None else {"image_size": m.image_size}
        model = VLA.from_config(m.init, seed=cfg.run.seed, **overrides, **inputs, **preset_knobs)
    if m.vision_init:
        from clearvla.train.vision_pretrain import load_vision_init

        load_vision_init(model.vision_backbone, Path(m.vision_init))
    model.norm_stats = dict(norm_stats)
    return model.to(device)


def with_inputs(model: VLA, config: VLAConfig, seed: int) -> VLA:
    """`model` with new cameras / proprio input / chunk head: the same weights, fresh (seeded) camera embeddings,
    proprio MLP and action head (OpenVLA-OFT's way of adding a wrist camera, the robot state and parallel decoding
    to a single-image checkpoint). An input module whose shapes change (the proprio MLP under new proprio_indices)
    starts fresh as a whole, but for the per-camera rows of the camera embedding and the focus head: when the
    number of cameras changes, each camera both configs read keeps its rows (by name) and only a new camera's start
    fresh (a list of the same length keeps its rows in order). One the new config leaves out (a chunk head, for
    action_tokens) is dropped."""
    if config == model.config:
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = VLA(config, tokenizer=model.tokenizer, norm_stats=model.norm_stats, processor=model.processor)
    shapes = {k: v.shape for k, v in new.state_dict().items()}
    old = model.state_dict()
    reshaped = {k.split(".")[0] for k, v in old.items()
                if k.split(".")[0] in INPUT_MODULE_NAMES and k in shapes and shapes[k] != v.shape}
    missing, unexpected = new.load_state_dict({k: v for k, v in old.items() if k.split(".")[0] not in reshaped}, strict=False)
    fresh = [k for k in missing if k.split(".")[0] not in INPUT_MODULE_NAMES]
    unexpected = [k for k in unexpected
                  if not (k.split(".")[0] in INPUT_MODULE_NAMES and getattr(new, k.split(".")[0], None) is None)]
    if fresh or unexpected:
        raise ConfigError(f"cannot move the checkpoint to inputs {config.cameras} / proprio {config.proprio_dim} / "
                          f"chunk {config.action_chunk}: "
                          f"missing {fresh[:3]}, unexpected {unexpected[:3]}")
    _carry_camera_rows(new, old, model.config.cameras)
    return new


# Per-camera parameters: rows per camera (camera-major), so a camera's rows are [c * rows, (c + 1) * rows).
_CAMERA_ROWS = {"camera_embedding.weight": 1, "focus_head.proj.weight": 2, "focus_head.proj.bias": 2}


def _carry_camera_rows(new: VLA, old: dict[str, torch.Tensor], old_cameras: tuple[str, ...]) -> None:
    """Copy into `new` (in place) the per-camera rows of `old`'s state for the cameras both read, where the camera
    count changed (the tensors' shapes differ); a same-shaped tensor was loaded whole already."""
    state = new.state_dict()
    with torch.no_grad():
        for name, rows in _CAMERA_ROWS.items():
            if name not in state or name not in old or state[name].shape == old[name].shape:
                continue
            for c, camera in enumerate(new.config.cameras):
                if camera in old_cameras:
                    k = old_cameras.index(camera)
                    state[name][c * rows:(c + 1) * rows] = old[name][k * rows:(k + 1) * rows]


def with_image_size(model: VLA, size: int) -> VLA:
    """`model` reading size x size images: every ViT's position table resampled to the new patch grid, every other
    weight unchanged, the image processor rebuilt for the new size. The same model when it reads that size."""
    if all(s == size for s in model.config.image_sizes):
        return model
    config = replace(model.config, image_sizes=(size,) * len(model.config.image_sizes))  # checks patch multiples
    new = VLA(config, tokenizer=model.tokenizer, norm_stats=model.norm_stats)
    state = model.state_dict()
    for name, vit in model.named_modules():
        if isinstance(vit, VisionTransformer):
            state[f"{name}.pos_embed"] = resample_position_table(state[f"{name}.pos_embed"], size // vit.cfg.patch_size)
    new.load_state_dict(state)
    return new
