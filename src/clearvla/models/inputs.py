"""Observations to model inputs: camera images (uint8 HxWx3, one per camera in the config's order) and the raw robot
state become pixel_values and a normalised proprio vector; with instructions, the prefix embeddings and prompt ids
that decoding starts from. The VLA's `observation_inputs` / `inference_inputs` methods are these functions (the VLA
is their first argument)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from clearvla.actions.normalize import stream_stats
from clearvla.errors import InputError
from clearvla.models.processor import ImageLike
from clearvla.models.tokenizer import prompt_ids

if TYPE_CHECKING:
    from clearvla.models.vla import VLA

Observation = ImageLike | dict[str, ImageLike]  # one image (single-camera models) or {camera name: image}
Observations = Observation | Sequence[Observation]  # one observation, or a list of B
Instructions = str | Sequence[str]  # one instruction, or one per observation
Proprio = np.ndarray | Sequence[float] | None  # raw robot state: [P] for one observation, [B, P] for B


def observation_inputs(
    vla: "VLA", images: Observations, proprio: Proprio = None, unnorm_key: str | None = None, center_crop: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Observations -> (pixel_values [B, n_cameras*3*n_backbones, S, S], normalised proprio [B, P] or None).

    `images`: one observation or a list of B. An observation is a dict {camera name: uint8 HxWx3} holding every
    camera in `config.cameras` (other keys are ignored), or, for single-camera models, just the image.
    `proprio`: raw robot state [P] (one observation) or [B, P], normalised with `norm_stats[unnorm_key]["proprio"]`;
    required exactly when the model has a proprio input.
    """
    batch = [images] if isinstance(images, dict) or _is_single_image(images) else list(images)
    if not batch:
        raise InputError("got an empty list of observations")
    cameras = vla.config.cameras
    frames = []
    for i, obs in enumerate(batch):
        if not isinstance(obs, dict):
            if len(cameras) > 1:
                raise InputError(f"this model reads cameras {list(cameras)}: pass a dict {{camera name: image}} per observation")
            obs = {cameras[0]: obs}
        missing = [c for c in cameras if c not in obs]
        if missing:
            raise InputError(f"observation {i} lacks camera(s) {missing}; the model needs {list(cameras)}, got {sorted(obs)}")
        frames.extend(obs[c] for c in cameras)
    pixel_values = vla.processor(frames, center_crop=center_crop)
    pixel_values = pixel_values.reshape(len(batch), -1, *pixel_values.shape[2:]).to(vla.device)
    if vla.proprio_projector is None:
        if proprio is not None:
            raise InputError("this model has no proprio input (config proprio_dim = 0); pass proprio=None")
        return pixel_values, None
    if proprio is None:
        raise InputError(f"this model reads the robot state: pass proprio, [{vla.config.proprio_dim}] per observation")
    state = np.asarray(proprio, dtype=np.float64)
    state = state[None] if state.ndim == 1 else state
    if state.shape != (len(batch), vla.config.proprio_dim) or not np.isfinite(state).all():
        raise InputError(f"proprio must be {len(batch)} x {vla.config.proprio_dim} finite numbers, got shape {np.shape(proprio)}")
    normalised = stream_stats(vla.norm_stats, unnorm_key, "proprio").normalize(state)
    return pixel_values, torch.as_tensor(normalised, dtype=torch.float32, device=vla.device)


def inference_inputs(
    vla: "VLA", images: Observations, instruction: Instructions, unnorm_key: str | None, center_crop: bool,
    proprio: Proprio,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Observation(s) + instruction(s) -> (prefix embeddings [B, N, D], B prompt id vectors on the device)."""
    if vla.tokenizer is None:
        raise InputError("this model has no tokenizer (build the tiny preset or load a checkpoint)")
    instructions = [instruction] if isinstance(instruction, str) else list(instruction)
    pixel_values, state = observation_inputs(vla, images, proprio, unnorm_key, center_crop)
    if len(pixel_values) != len(instructions):
        raise InputError(f"got {len(pixel_values)} observations but {len(instructions)} instructions")
    prompts = [torch.tensor(prompt_ids(vla.tokenizer, text), device=vla.device) for text in instructions]
    return vla.prefix(pixel_values, state), prompts


def _is_single_image(images: Any) -> bool:
    """One image (not a list of observations): a PIL image or an HxWx3 array."""
    from PIL import Image

    return isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim == 3)
