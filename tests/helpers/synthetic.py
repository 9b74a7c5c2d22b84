"""A synthetic, learnable task for trainer tests: the arm action follows the instruction and the gripper
the image brightness, so a tiny VLA fits it in a few dozen steps. Also used by the subprocess scripts here."""

from __future__ import annotations

import numpy as np
import torch

from clearvla.models.tokenizer import prompt_ids

INSTRUCTIONS = ("push the block left", "push the block right")


def sample(index: int, image_size: int = 32) -> tuple[np.ndarray, str, np.ndarray]:
    """(image uint8 [S, S, 3], instruction, normalised action [7]) for a global sample index."""
    rng = np.random.default_rng(index)
    brightness = rng.uniform(0, 1)
    image = np.full((image_size, image_size, 3), int(brightness * 255), dtype=np.uint8)
    side = index % 2
    action = np.full(7, 0.5 if side else -0.5)
    action[6] = float(brightness > 0.5)  # the gripper follows the image
    return image, INSTRUCTIONS[side], action


def batches(vla, start_sample: int, batch_size: int, rank: int = 0, world_size: int = 1):
    """Infinite batches; rank r takes global samples r, r + W, ... starting at `start_sample` per rank."""
    i = start_sample
    while True:
        items = [sample((i + k) * world_size + rank, vla.processor.image_size) for k in range(batch_size)]
        i += batch_size
        batch = _collate(vla, [(text, action) for _, text, action in items])
        batch["pixel_values"] = vla.processor([img for img, _, _ in items])
        batch["sample_ids"] = torch.tensor([(i - batch_size + k) * world_size + rank for k in range(batch_size)])
        yield batch


def _collate(vla, items):
    """Right-padded ids with labels on the action tokens and </s> only (spec section 5)."""
    rows = [prompt_ids(vla.tokenizer, t) + vla.action_tokenizer.encode(a).tolist() + [vla.tokenizer.eos_token_id] for t, a in items]
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), vla.tokenizer.pad_token_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        labels[r, len(row) - 8 : len(row)] = torch.tensor(row[-8:])
        mask[r, : len(row)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
