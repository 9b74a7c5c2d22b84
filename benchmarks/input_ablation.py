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

Run: .venv/bin/python benchmarks/input_ablation.py --checkpoint RUN/checkpoints/step-N/model --dataset DIR
     [--val-fraction 0.02 --seed 0 --batches 6]   ->  benchmarks/results/input_ablation.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

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
    """(mean first-action L1, per-dimension first-action L1 [A] for chunk models, else None)."""
    inputs = model_inputs(batch, vla)
    out = vla(**inputs)
    per_dim = None
    if vla.config.action_chunk:
        per_dim = (out.actions[:, 0].float() - inputs["actions"][:, 0].float()).abs().mean(0).numpy()
    return step_metrics(out, inputs, vla.action_tokenizer)["action_l1"], per_dim


@torch.no_grad()
def ablate(vla: VLA, batches) -> tuple[dict[str, float], dict[str, list[float]]]:
    """-> ({condition: mean first-action L1}, {condition: per-dimension L1} for chunk models, with median_constant)."""
    conditions = {"plain": lambda b: b, "shuffled_images": lambda b: {**b, "pixel_values": b["pixel_values"].roll(1, 0)}}
    if vla.config.proprio_dim:
        conditions["zeroed_proprio"] = lambda b: {**b, "proprio": torch.zeros_like(b["proprio"])}
    errors: dict[str, list[float]] = {name: [] for name in conditions}
    per_dim: dict[str, list[np.ndarray]] = {name: [] for name in conditions}
    targets = []
    for batch in batches:
        for name, change in conditions.items():
            mean, dims = first_action_l1(vla, change(batch))
            errors[name].append(mean)
            if dims is not None:
                per_dim[name].append(dims)
        if vla.config.action_chunk:
            targets.append(batch["actions"][:, 0].float().numpy())
    dims_out: dict[str, list[float]] = {}
    if targets:
        first = np.concatenate(targets)
        dims_out = {name: np.mean(values, axis=0).round(4).tolist() for name, values in per_dim.items()}
        dims_out["median_constant"] = np.abs(first - np.median(first, axis=0)).mean(0).round(4).tolist()
    return {name: float(np.mean(values)) for name, values in errors.items()}, dims_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outlier-k", type=float, default=10.0)
    parser.add_argument("--batches", type=int, default=6, help="validation batches of 32 frames")
    parser.add_argument("--threads", type=int, default=1)
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
        errors, per_dimension = ablate(vla, batches)
    print(f"{args.checkpoint}: first-action L1 {errors}")
    for name, values in per_dimension.items():
        print(f"  per dimension, {name}: {values}")
    path = write_result("input_ablation", {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset),
                                           "batches": args.batches, "first_action_l1": errors,
                                           "first_action_l1_per_dimension": per_dimension})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
