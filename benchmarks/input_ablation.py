"""Does a trained model use its images? Validation action L1 with each input taken away (issue #6's diagnostic).

On held-out frames of a dataset (the same episode split training used: --val-fraction and --seed as in the run's
config), the L1 error of the first action (normalised units; token models: decoded argmax tokens) is measured:
  plain              the inputs as recorded
  shuffled_images    every camera's images rolled by one frame across the batch (another scene, same instruction
                     and state): a model that reads *where* the parts are gets much worse
  zeroed_proprio     the robot state set to zero (models with a state input only)
A model whose `shuffled_images` error equals its `plain` error acts on the instruction and state alone.
Chunk models also get the error per action dimension, next to `median_constant`, the error of always predicting
each dimension's median: a dimension at the constant's error (say y) is one the model has not learned at all.
With `--gripper-state-index I` (the robot state's gripper opening, e.g. 6 in the simulator) chunk models also get
`gripper_agreement`: on frames whose jaws are fully open, how often the first action's gripper command (the last
action dimension, < 0.5 = close) matches the label, where the label starts closing them (`closes`, the grasp) and
where it keeps them open (`stays_open`).

Run: .venv/bin/python benchmarks/input_ablation.py --checkpoint RUN/checkpoints/step-N/model --dataset DIR
     [--val-fraction 0.02 --seed 0 --batches 6 --gripper-state-index 6] [--name N]
  ->  benchmarks/results/input_ablation.json (or N.json)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import write_result

from clearvla.data.cleaning import CleaningConfig
from clearvla.data.loader import make_dataloader
from clearvla.data.mixture import DatasetSpec, Mixture
from clearvla.models.vla import VLA
from clearvla.train.loop import model_inputs
from clearvla.train.metrics import step_metrics


def first_action_l1(vla: VLA, batch: dict[str, torch.Tensor]) -> tuple[float, np.ndarray | None]:
    """(mean first-action L1, the predicted first actions [B, A] for chunk models, else None)."""
    inputs = model_inputs(batch, vla)
    out = vla(**inputs)
    first = out.actions[:, 0].float().numpy() if vla.config.action_chunk else None
    return step_metrics(out, inputs, vla.action_tokenizer)["action_l1"], first


FULLY_OPEN = 0.9  # normalised gripper opening above which the jaws count as fully open (1 = the q99 opening)


def gripper_agreement(predicted: np.ndarray, target: np.ndarray, state: np.ndarray) -> dict[str, list[int]]:
    """First-action gripper commands predicted and labelled [N] (< 0.5 = close) and the state's normalised gripper
    opening [N] -> {"closes": [right, frames], "stays_open": [right, frames]} over frames whose jaws are fully open:
    those whose label starts closing them (the grasp), and those whose label keeps them open."""
    right = (predicted < 0.5) == (target < 0.5)
    open_jaws = state > FULLY_OPEN
    groups = {"closes": open_jaws & (target < 0.5), "stays_open": open_jaws & (target >= 0.5)}
    return {name: [int(right[frames].sum()), int(frames.sum())] for name, frames in groups.items()}


@torch.no_grad()
def ablate(vla: VLA, batches, gripper_state_index: int | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """-> ({condition: mean first-action L1}, chunk models: {condition: per-dimension L1, "median_constant": ...,
    and with gripper_state_index "gripper": gripper_agreement on the plain inputs})."""
    conditions = {"plain": lambda b: b, "shuffled_images": lambda b: {**b, "pixel_values": b["pixel_values"].roll(1, 0)}}
    if vla.config.proprio_dim:
        conditions["zeroed_proprio"] = lambda b: {**b, "proprio": torch.zeros_like(b["proprio"])}
    errors: dict[str, list[float]] = {name: [] for name in conditions}
    predicted: dict[str, list[np.ndarray]] = {name: [] for name in conditions}
    targets, states = [], []
    for batch in batches:
        for name, change in conditions.items():
            mean, first = first_action_l1(vla, change(batch))
            errors[name].append(mean)
            if first is not None:
                predicted[name].append(first)
        if vla.config.action_chunk:
            targets.append(batch["actions"][:, 0].float().numpy())
            if gripper_state_index is not None:
                states.append(batch["proprio"][:, gripper_state_index].float().numpy())
    chunk_out: dict[str, Any] = {}
    if targets:
        target = np.concatenate(targets)
        chunk_out = {name: np.abs(np.concatenate(values) - target).mean(0).round(4).tolist() for name, values in predicted.items()}
        chunk_out["median_constant"] = np.abs(target - np.median(target, axis=0)).mean(0).round(4).tolist()
        if states:
            chunk_out["gripper"] = gripper_agreement(np.concatenate(predicted["plain"])[:, -1], target[:, -1], np.concatenate(states))
    return {name: float(np.mean(values)) for name, values in errors.items()}, chunk_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outlier-k", type=float, default=10.0)
    parser.add_argument("--batches", type=int, default=6, help="validation batches of 32 frames")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gripper-state-index", type=int, default=None,
                        help="the robot state's gripper opening (6 in the simulator): adds the gripper agreement")
    parser.add_argument("--name", default="input_ablation", help="result file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vla = VLA.from_pretrained(args.checkpoint).eval()
    with tempfile.TemporaryDirectory() as cache:
        mixture = Mixture.build([DatasetSpec(str(args.dataset), 1.0)], cleaning=CleaningConfig(outlier_k=args.outlier_k),
                                val_fraction=args.val_fraction, seed=args.seed, cache_dir=Path(cache))
        loader = make_dataloader(mixture, vla.tokenizer, vla.processor, split="val", batch_size=32, num_workers=0,
                                 seed=args.seed, augment=False, action_vocab_size=vla.config.base_vocab_size,
                                 cameras=vla.config.cameras, proprio=vla.config.proprio_dim > 0,
                                 action_chunk=vla.config.action_chunk)
        batches = (batch for _, batch in zip(range(args.batches), loader))
        errors, per_dimension = ablate(vla, batches, args.gripper_state_index)
    gripper = per_dimension.pop("gripper", None)
    print(f"{args.checkpoint}: first-action L1 {errors}")
    for name, values in per_dimension.items():
        print(f"  per dimension, {name}: {values}")
    if gripper is not None:
        print("  gripper command right: " + ", ".join(f"{name} {right} of {n}" for name, (right, n) in gripper.items()))
    result = {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset), "batches": args.batches,
              "first_action_l1": errors, "first_action_l1_per_dimension": per_dimension}
    path = write_result(args.name, result if gripper is None else {**result, "gripper_agreement": gripper})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
