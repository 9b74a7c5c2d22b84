"""Training-only objectives beyond the action loss, each weighted from the config (`TrainConfig.objectives`). The
model's forward returns what they read (`patch_predictions`, `focus`, `attentions`: models/vla.py); the batch brings
the targets (`pixel_values` themselves, and `attention_target` masks from the simulator's ground truth).

Patch loss (`patch_loss`): each camera patch token (the LLM's input) decodes its own patch's pixels. Trained from
scratch, the tiny model's patch tokens do know what each patch holds, but that signal is one token in 64 per camera,
and neither mean pooling nor the LLM's initially uniform attention finds it, so the policy never learns *where* a
part is (benchmarks/vision_probe.py). Reconstructing each patch (MAE's target without the masking) makes every
part's tokens distinct and loud from the first steps; attention can then select them. It needs no labels.

Attention supervision (`attention_loss`): the action slots should look at the patches of the part the instruction
names. Trained from scratch, the slots find *a* salient part within a hundred steps but take thousands to learn which
one the words name, and the action loss gives no gradient towards that until the readout already works
(`binding`). With learned slot embeddings (which attention_loss > 0 gives the model), the slots' attention at
`SUPERVISED_LAYER` points at the named part after ~100 steps. The loss is -log of the attention mass (averaged over
the supervised heads) on the target patches, averaged over slots. Only the first half of the layer's heads are
supervised: supervising all of them left the slots no head to read the robot state with in that layer, and the
workcell model stopped using its state for thousands of steps. Only eager attention computes the weights, so a run
with this loss trains under eager attention (`attention_implementation`).

Focus loss (`focus_loss`): the slots must know *where* the object the arm heads for is, in every camera. Attention
supervision makes them look at the right part, but the workcell model still did not read its position: its y
actions were no better than a constant (normalised L1 0.39 vs 0.40), while the centre of the part in the wrist camera
alone explains 67% of the expert's y actions linearly. The focus head regresses that centre, per camera, from the
slots' final states; the target is the centroid of the same attention masks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from clearvla.errors import InputError
from clearvla.models.heads import ChunkOutput
from clearvla.models.vla import VLA

if TYPE_CHECKING:
    from clearvla.train.config import ObjectiveOptions

# The second LLM layer: in the first, each slot's query is its own embedding (it has read nothing yet); by the second
# it has read the instruction, so its query can name the part.
SUPERVISED_LAYER = 1
SUPERVISED_HEADS = 0.5  # fraction of the layer's heads (the first ones, at least one) that get the target
NAMES = ("patch_loss", "attention_loss", "focus_loss")  # the loss names, as logged and as weighted in the config
_EPS = 1e-6


# --- the losses ---------------------------------------------------------------------------------------------------
def patch_targets(pixel_values: torch.Tensor, cameras: int, num_tokens: int, resolution: int) -> torch.Tensor:
    """pixel_values [B, C * 3k, S, S] (each camera's first three channels: the first backbone's normalised image)
    -> [B, num_tokens, 3 r^2]: every patch of every camera, row-major, average-pooled to r x r, channel-major."""
    b = pixel_values.shape[0]
    grid = round((num_tokens // cameras) ** 0.5)
    if cameras * grid * grid != num_tokens:
        raise ValueError(f"{num_tokens} patch tokens do not split into {cameras} square grids")
    r = resolution
    images = pixel_values.reshape(b, cameras, -1, *pixel_values.shape[-2:])[:, :, :3].flatten(0, 1)
    small = F.adaptive_avg_pool2d(images.float(), grid * r)  # [B*C, 3, G*r, G*r]
    return small.reshape(b, cameras, 3, grid, r, grid, r).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, num_tokens, 3 * r * r)


def patch_loss(predictions: torch.Tensor, pixel_values: torch.Tensor, cameras: int, resolution: int) -> torch.Tensor:
    """The patch decoder's predictions [B, C * G^2, 3 r^2] against `patch_targets` of the pixel_values they came
    from: mean squared error (scalar)."""
    return F.mse_loss(predictions.float(), patch_targets(pixel_values, cameras, predictions.shape[1], resolution))


def patch_mask(masks: torch.Tensor, cameras: int, grid: int) -> torch.Tensor:
    """Attention masks [B, cameras, h, w] at any resolution (1 = the named part shows there) -> [B, cameras, grid²]:
    1 on every patch of the model's grid x grid that any masked pixel falls in (row-major, as the patch tokens)."""
    if masks.ndim != 4 or masks.shape[1] != cameras:
        raise InputError(f"attention_target must be [B, {cameras} cameras, h, w] masks, got {tuple(masks.shape)}")
    return F.adaptive_max_pool2d(masks.float(), grid).flatten(2)


def attention_loss(weights: torch.Tensor, target: torch.Tensor, first_patch: int, n_slots: int) -> torch.Tensor:
    """weights [B, H, T, T] (the last `n_slots` rows are the action slots); target [B, C, P] (1 where camera c's
    patch p shows the named part; patches sit at sequence positions first_patch .. first_patch + C*P - 1, camera
    by camera) -> scalar: mean over slots of rows with any target patch of -log(the slot's attention mass on the
    target patches, averaged over the supervised heads, the first max(1, H * SUPERVISED_HEADS)).
    Rows whose target is empty (the part is out of every camera's view) are left out; all empty gives 0."""
    b, h, t, _ = weights.shape
    if target.ndim != 3 or target.shape[0] != b:
        raise InputError(f"attention_target must be [B={b}, cameras, patches], got {tuple(target.shape)}")
    n_patches = target.shape[1] * target.shape[2]
    if first_patch + n_patches > t - n_slots:
        raise InputError(f"attention_target covers {n_patches} patches but the sequence has room for {t - n_slots - first_patch}")
    heads = max(1, int(h * SUPERVISED_HEADS))
    slots = weights[:, :heads, t - n_slots :, first_patch : first_patch + n_patches].float().mean(dim=1)  # [B, S, C*P]
    mask = target.reshape(b, 1, n_patches).to(slots.dtype)
    has_target = mask.sum((1, 2)) > 0
    if not bool(has_target.any()):
        return slots.new_zeros(())
    mass = (slots * mask).sum(2)  # [B, S]: each slot must look, not just the slots on average
    return -torch.log(mass[has_target] + _EPS).mean()


def mask_centroids(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """masks [B, C, h, w] (non-zero = the object shows there) -> (centroids [B, C, 2], visible [B, C] bool).

    A centroid is (u, v): the mean column and row of the masked pixels' centres, scaled so the image's left / top
    edge is -1 and its right / bottom edge +1. Cameras whose mask is empty get (0, 0) and visible False."""
    if masks.ndim != 4:
        raise InputError(f"focus masks must be [B, cameras, h, w], got {tuple(masks.shape)}")
    h, w = masks.shape[-2:]
    weights = (masks > 0).float()
    mass = weights.sum((-2, -1))
    visible = mass > 0
    cols = (torch.arange(w, dtype=torch.float32, device=masks.device) + 0.5) / w * 2 - 1
    rows = (torch.arange(h, dtype=torch.float32, device=masks.device) + 0.5) / h * 2 - 1
    safe = mass.clamp(min=1.0)
    u = (weights.sum(-2) * cols).sum(-1) / safe
    v = (weights.sum(-1) * rows).sum(-1) / safe
    return torch.stack([u, v], dim=-1), visible


def focus_loss(predicted: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The focus head's centroids [B, C, 2] against the masks' [B, C, h, w]: mean L1 over the (sample, camera) pairs
    where the object shows; 0 when it shows nowhere in the batch."""
    if masks.ndim != 4 or masks.shape[:2] != predicted.shape[:2]:
        raise InputError(f"focus masks must be [B={predicted.shape[0]}, {predicted.shape[1]} cameras, h, w], "
                         f"got {tuple(masks.shape)}")
    target, visible = mask_centroids(masks)
    if not bool(visible.any()):
        return predicted.sum() * 0.0  # keeps the graph, so every rank's backward sees the head
    return (predicted - target).abs()[visible].mean()


# --- what the trainer calls ---------------------------------------------------------------------------------------
def needs_masks(weights: "ObjectiveOptions") -> bool:
    """Whether training batches must carry `attention_target` masks."""
    return weights.attention_loss > 0 or weights.focus_loss > 0


@contextmanager
def attention_implementation(vla: VLA, weights: "ObjectiveOptions") -> Iterator[None]:
    """Within the block the LLM runs eager attention when attention supervision is on (sdpa never materialises the
    weights), and its own implementation again afterwards."""
    previous = vla.language_model.config._attn_implementation
    if weights.attention_loss > 0 and previous != "eager":
        vla.language_model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if vla.language_model.config._attn_implementation != previous:
            vla.language_model.set_attn_implementation(previous)


def forward_options(weights: "ObjectiveOptions", targets: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Extra forward arguments a batch's objectives need: the attention weights, when supervising them."""
    return {"output_attentions": True} if weights.attention_loss > 0 and "attention_target" in targets else {}


def losses(vla: VLA, out: Any, inputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The objectives one forward allows: `out` (what `vla`, possibly wrapped, returned for `inputs`) and `targets`
    (the batch's `attention_target` masks, when it has them) -> {name: scalar loss} of those that apply."""
    config, cameras = vla.config, len(vla.config.cameras)
    found: dict[str, torch.Tensor] = {}
    predictions = out.patch_predictions if isinstance(out, ChunkOutput) else out.get("patch_predictions")
    if predictions is not None:
        found["patch_loss"] = patch_loss(predictions, inputs["pixel_values"], cameras, config.patch_decoder)
    masks = targets.get("attention_target")
    if masks is None:
        return found
    if not isinstance(out, ChunkOutput):
        raise InputError("attention_target supervises action slots: it needs a chunk model (action_chunk > 0)")
    if out.attentions is not None:
        grid = config.image_sizes[0] // config.vision[0].patch_size
        n_slots = config.action_chunk * config.action_dim
        found["attention_loss"] = attention_loss(out.attentions[SUPERVISED_LAYER], patch_mask(masks, cameras, grid), 1, n_slots)
    if out.focus is not None:
        found["focus_loss"] = focus_loss(out.focus, masks)
    return found


def total(action_loss: torch.Tensor, found: Mapping[str, torch.Tensor], weights: "ObjectiveOptions") -> torch.Tensor:
    """The loss to minimise: the action loss plus each objective times its weight from the config."""
    for name, value in found.items():
        action_loss = action_loss + getattr(weights, name) * value
    return action_loss
