"""Does a trained model use its images? Validation action L1 with each input taken away (issue #6's diagnostic).

On held-out frames of a dataset (the same episode split training used: --val-fraction and --seed as in the run's
config), the L1 error of the first action (normalised units; token models: decoded argmax tokens) is measured:
  plain              the inputs as recorded
  shuffled_images    every camera's images rolled by one frame across the batch (another scene, same instruction
                     and state): a model that reads *where* the parts are gets much worse
  zeroed_proprio     the robot state set to zero (models with a state input only)
A model whose `shuffled_images` error equals its `plain` error acts on the instruction and state alone.

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


def first_action_l1(vla: VLA, batch: dict[str, torch.Tensor]) -> float:
    inputs = model_inputs(batch, vla)
    return step_metrics(vla(**inputs), inputs, vla.action_tokenizer)["action_l1"]


@torch.no_grad()
def ablate(vla: VLA, batches) -> dict[str, float]:
    errors: dict[str, list[float]] = {"plain": [], "shuffled_images": []}
    if vla.config.proprio_dim:
        errors["zeroed_proprio"] = []
    for batch in batches:
        errors["plain"].append(first_action_l1(vla, batch))
        errors["shuffled_images"].append(first_action_l1(vla, {**batch, "pixel_values": batch["pixel_values"].roll(1, 0)}))
        if "zeroed_proprio" in errors:
            errors["zeroed_proprio"].append(first_action_l1(vla, {**batch, "proprio": torch.zeros_like(batch["proprio"])}))
    return {name: float(np.mean(values)) for name, values in errors.items()}


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
        errors = ablate(vla, batches)
    print(f"{args.checkpoint}: first-action L1 {errors}")
    path = write_result("input_ablation", {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset),
                                           "batches": args.batches, "first_action_l1": errors})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
