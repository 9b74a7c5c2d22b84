"""Scoring interpretations with the VLA itself: how the policy would act under each reading of an instruction.

For an instruction, the VLA's distributions over the action bins of its first `n_dims` action tokens (each
conditioned on its own greedy choice for the earlier ones) say where it is about to move. An interpretation
whose distributions agree with those under the original instruction is what the policy "heard":

    score_k ∝ exp(-JS_k / temperature),   JS_k = mean over the dims of the Jensen-Shannon divergence (nats)
                                                 between p_d(original) and p_d(interpretation k)

and the plain uncertainty of an instruction is the mean entropy of those distributions over log(n_bins), in [0, 1].

Chunk models (OpenVLA-OFT's L1 head) have no distribution over actions: an interpretation scores by how close the
chunk the policy would execute is to the one under the original instruction (JS_k above becomes the mean absolute
difference of the normalised chunks' first `n_dims` dimensions, in [0, 2]). Their uncertainty is the spread of the
chunk under test-time augmentation: the chunk for `views` draws of the training augmentation of the cameras (random
0.9 crop, colour jitter: views the model learned to act the same on), and the mean over steps and the first
`n_dims` dimensions of the normalised actions' standard deviation across views, in [0, 1]. A policy torn between
two parts flips between them under small changes of the view; one that knows its target does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from clearvla.data.augment import AugmentConfig, augment
from clearvla.errors import ConfigError, InputError
from clearvla.infer.policy import STATE_KEY
from clearvla.models.tokenizer import prompt_ids
from clearvla.models.vla import VLA


@torch.inference_mode()
def action_distributions(
    vla: VLA, observation: Mapping[str, Any], instruction: str, *, unnorm_key: str | None = None, n_dims: int = 3
) -> np.ndarray:
    """[n_dims, n_bins] float64: the VLA's probabilities over the action bins of its first `n_dims` action
    tokens for `instruction` in `observation` ({camera: uint8 HxWx3, ..., "proprio": [P]}), each step fed its
    greedy token, as decoding does. Only the action tokens' logits enter the softmax."""
    if vla.tokenizer is None:
        raise ConfigError("scoring needs a model with a tokenizer")
    images = {k: v for k, v in observation.items() if k != STATE_KEY}
    proprio = observation.get(STATE_KEY) if vla.config.proprio_dim else None
    pixel_values, state = vla.observation_inputs(images, proprio, unnorm_key)
    embed = vla.language_model.get_input_embeddings()
    ids = torch.tensor(prompt_ids(vla.tokenizer, instruction), device=vla.device)
    sequence = torch.cat([embed(ids[:1]), vla.prefix(pixel_values, state)[0], embed(ids[1:])])[None]
    first = vla.action_tokenizer.first_token_id
    last = vla.action_tokenizer.vocab_size
    rows = []
    for _ in range(n_dims):
        logits = vla.language_model(inputs_embeds=sequence, logits_to_keep=1).logits[0, -1, first:last].float()
        probs = torch.softmax(logits, -1)
        rows.append(probs.cpu().numpy().astype(np.float64))
        token = torch.tensor([first + int(probs.argmax())], device=vla.device)
        sequence = torch.cat([sequence, embed(token)[None]], dim=1)
    return np.stack(rows)


@torch.inference_mode()
def predicted_chunks(
    vla: VLA, observation: Mapping[str, Any], instructions: Sequence[str], *, unnorm_key: str | None = None
) -> np.ndarray:
    """Chunk models: [len(instructions), K, A] normalised chunks for one observation under each instruction, in one
    batched forward."""
    images = {k: v for k, v in observation.items() if k != STATE_KEY}
    proprio = observation.get(STATE_KEY) if vla.config.proprio_dim else None
    states = None if proprio is None else [proprio] * len(instructions)
    prefix, prompts = vla.inference_inputs([images] * len(instructions), list(instructions), unnorm_key, False, states)
    return vla.decode_chunk(prefix, prompts).float().cpu().numpy().astype(np.float64)


@torch.inference_mode()
def augmented_chunks(
    vla: VLA, observation: Mapping[str, Any], instruction: str, *, views: int = 8, seed: int = 0,
    unnorm_key: str | None = None,
) -> np.ndarray:
    """Chunk models: [views, K, A] normalised chunks for `instruction` under `views` draws of the training
    augmentation of every camera (data/augment.py, OpenVLA's ranges), in one batched forward. The draws come from
    `seed`, so one observation always gives the same chunks."""
    generator = torch.Generator().manual_seed(seed)
    images = {k: v for k, v in observation.items() if k != STATE_KEY and k in vla.config.cameras}
    if len(images) != len(vla.config.cameras):
        raise InputError(f"the observation lacks camera(s) {sorted(set(vla.config.cameras) - set(images))}")
    augmented = {}
    for camera, image in images.items():
        frames = torch.tensor(image, dtype=torch.uint8)[None].expand(views, *image.shape)
        views_01 = augment(frames, AugmentConfig(), generator)  # [views, 3, H, W] in [0, 1]
        augmented[camera] = (views_01 * 255.0).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    batch = [{camera: augmented[camera][v] for camera in images} for v in range(views)]
    proprio = observation.get(STATE_KEY) if vla.config.proprio_dim else None
    states = None if proprio is None else [proprio] * views
    prefix, prompts = vla.inference_inputs(batch, [instruction] * views, unnorm_key, False, states)
    return vla.decode_chunk(prefix, prompts).float().cpu().numpy().astype(np.float64)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats, in [0, log 2]) between distributions along the last axis."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(np.where(a > 0, a * (np.log(np.maximum(a, 1e-300)) - np.log(np.maximum(b, 1e-300))), 0.0), axis=-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class VLAScorer:
    """The `Scorer` of `clearvla.clarify.Clarifier` backed by a VLA (see the module docstring).

    temperature: sharpness of the softmax over -JS (smaller: more peaked scores).
    n_dims:      action tokens compared (the first three are the translation: where the arm heads); for chunk
                 models, the action dimensions compared.
    views:       chunk models: augmented views behind the uncertainty (one batched forward of this size).
    """

    def __init__(
        self, vla: VLA, *, unnorm_key: str | None = None, temperature: float = 0.05, n_dims: int = 3, views: int = 8
    ) -> None:
        if temperature <= 0 or not 1 <= n_dims <= vla.action_dim(unnorm_key) or views < 2:
            raise ConfigError(f"need temperature > 0, 1 <= n_dims <= action dim and views >= 2, got {temperature}, "
                              f"{n_dims}, {views}")
        self.vla = vla.eval()
        self.unnorm_key = unnorm_key
        self.temperature = temperature
        self.n_dims = n_dims
        self.views = views

    def _dists(self, observation: Mapping[str, Any] | None, instruction: str) -> np.ndarray:
        if observation is None:
            raise ConfigError("the VLA scorer needs the observation (camera images and, for some models, proprio)")
        return action_distributions(self.vla, observation, instruction, unnorm_key=self.unnorm_key, n_dims=self.n_dims)

    def score(self, observation: Mapping[str, Any] | None, instruction: str, interpretations: Sequence[str]) -> np.ndarray:
        if self.vla.action_head is not None:
            if observation is None:
                raise ConfigError("the VLA scorer needs the observation (camera images and, for some models, proprio)")
            chunks = predicted_chunks(self.vla, observation, [instruction, *interpretations], unnorm_key=self.unnorm_key)
            divergence = np.abs(chunks[1:, :, : self.n_dims] - chunks[:1, :, : self.n_dims]).mean(axis=(1, 2))
        else:
            original = self._dists(observation, instruction)
            divergence = np.array([js_divergence(original, self._dists(observation, text)).mean() for text in interpretations])
        logits = -divergence / self.temperature
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def uncertainty(self, observation: Mapping[str, Any] | None, instruction: str) -> float:
        if self.vla.action_head is not None:
            if observation is None:
                raise ConfigError("the VLA scorer needs the observation (camera images and, for some models, proprio)")
            chunks = augmented_chunks(self.vla, observation, instruction, views=self.views, unnorm_key=self.unnorm_key)
            return float(chunks[:, :, : self.n_dims].std(axis=0).mean())
        dists = self._dists(observation, instruction)
        entropy = -np.sum(np.where(dists > 0, dists * np.log(np.maximum(dists, 1e-300)), 0.0), axis=-1)
        return float(entropy.mean() / np.log(dists.shape[-1]))
