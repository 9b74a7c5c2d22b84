"""Can the tiny preset learn to read *where* something is in the image? A diagnostic for issue #6.

Synthetic tasks on 128² images, same model, optimiser and batches (32 per step unless --batch-size), trained from
scratch:
  brightness  the whole image is one grey level g; target x = g mapped to [-1, 1] (a global feature)
  location    one 10 px red square on grey at a random place; targets (x, y) = its centre in [-1, 1]
  binding     a red and a blue square; the instruction names one ("pick up the blue block"), whose centre is the
              target: the workcell's problem in small (find the part the words name). Not run unless asked (--tasks)
  size        two red squares, `--sides SMALL LARGE` px (default 8 10: the workcell's medium and large parts differ
              by 1.2x in width); the instruction names one by size ("pick up the large block"). Asked for by --tasks
Reported every `--log-every` steps: the L1 error of (x, y) on that step's batch and (chunk head) on a fixed held-out
batch of 128 frames, against 0.44, the error of the best constant prediction for a uniform target. In `binding`,
finding both squares but not the named one gives about 0.29 (their midpoint). A model that reads the image position drives `location` well below
it; the shipped recipe's failure (identical first actions in every scene) is this task failing.

With --llm-only gated|additive the vision backbone and projector are replaced by hand-made patch tokens (the
`location` task only): every token is a fixed "grey" vector, the square's a "red" one, plus a fixed random
position code of the same scale — on every token ("additive", what a ViT's position embedding gives) or on the
square's token only ("gated", what a trained encoder gives). It tells whether the LLM can read a position at all.

With --patch-loss W the model gets the training-only patch decoder (models/heads.py) and W times its
reconstruction error joins the loss, as `clearvla train --patch-loss W` does; the default model's recipe.

With --attention-loss W (chunk head only) the model gets learned slot embeddings and W times the attention
supervision loss (train/objectives.py): the slots should look at the patches of the square the instruction
names. It is what the simulator's ground truth gives the workcell.

With --prefix-attention bidirectional (chunk head only) the patches and the instruction attend to each other (a
prefix-LM; VLAConfig.prefix_attention): with --attention-loss, `binding` then learns within a few hundred steps.

With --vision-init DIR the vision backbone starts from `clearvla pretrain-vision`'s weights (trained on workcell
renders, not on these squares) instead of random ones: pretrained against from scratch at equal steps.

With --batch-size N the steps take N frames: the plateau before attention finds the square is counted in steps, not
frames, so small batches get past it in less time (the default model's recipe trains with 8).

Run: .venv/bin/python benchmarks/vision_probe.py [--steps 300] [--head chunk|tokens] [--llm-only gated|additive]
     [--patch-loss 1.0] [--attention-loss 1.0] [--prefix-attention bidirectional] [--batch-size 8] [--vision-init DIR]
  ->  benchmarks/results/vision_probe_<tasks>[_patch_loss][_attention_loss][_bidirectional][_bsN][_sidesA-B]
      [_vision_init].json (vision_probe_llm_only_*.json with --llm-only)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common import write_result

from clearvla.data.batching import Sample, VLACollator
from clearvla.models.presets import get_config
from clearvla.models.vla import VLA
from clearvla.train import objectives
from clearvla.train.build import PATCH_DECODER_RESOLUTION
from clearvla.train.config import ObjectiveOptions
from clearvla.train.metrics import action_metrics
from clearvla.train.vision_pretrain import load_vision_init

SIZE = 128
STATS = {"probe": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}
HELD_OUT = 128  # frames of a fixed held-out batch, scored at every log (chunk head): far less noisy than one batch
CONSTANT_L1 = 0.44  # targets are uniform on +-0.875 (8 px margins): the best constant, 0, is off by 0.44 on average


COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}


def make_sample(task: str, rng: np.random.Generator, chunk: int, sides: tuple[int, int] = (8, 10)) -> Sample:
    image = np.full((SIZE, SIZE, 3), 180, np.uint8)
    colour = "red"
    if task == "size":  # two red squares; the instruction names one by size
        named, other = ("large", "small") if rng.random() < 0.5 else ("small", "large")
        side = dict(zip(("small", "large"), sides))
        x, y = rng.integers(8, SIZE - 8, 2)
        while True:
            ox, oy = rng.integers(8, SIZE - 8, 2)
            if max(abs(ox - x), abs(oy - y)) > 14:
                break
        for (cx, cy), name in (((ox, oy), other), ((x, y), named)):
            half = side[name] // 2
            image[cy - half : cy - half + side[name], cx - half : cx - half + side[name]] = COLOURS["red"]
        action = np.zeros(7, np.float32)
        action[:2] = (x / SIZE * 2 - 1, y / SIZE * 2 - 1)
        return Sample(image, f"pick up the {named} block", action[None] if chunk else action, "probe")
    if task == "brightness":
        level = int(rng.integers(0, 256))
        image[:] = level
        x = y = level / 255 * SIZE
    else:
        x, y = rng.integers(8, SIZE - 8, 2)
        if task == "binding":  # a second square of the other colour elsewhere; the instruction names the target
            colour, other = ("red", "blue") if rng.random() < 0.5 else ("blue", "red")
            while True:
                ox, oy = rng.integers(8, SIZE - 8, 2)
                if max(abs(ox - x), abs(oy - y)) > 14:
                    break
            image[oy - 5 : oy + 5, ox - 5 : ox + 5] = COLOURS[other]
        image[y - 5 : y + 5, x - 5 : x + 5] = COLOURS[colour]
    action = np.zeros(7, np.float32)
    action[:2] = (x / SIZE * 2 - 1, y / SIZE * 2 - 1)
    return Sample(image, f"pick up the {colour} block", action[None] if chunk else action, "probe")


def held_out_error(vla: VLA, batch: dict) -> float:
    """xy L1 of a chunk model on a fixed held-out batch (eval mode, no gradients)."""
    vla.eval()
    with torch.no_grad():
        actions = vla(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).actions
    vla.train()
    return float((actions[:, 0, :2] - batch["actions"][:, 0, :2]).abs().mean())


def target_patches(actions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Targets [B, K, A] (the named square's centre in x, y) -> [B, 1, G, G] attention masks: 1 on the patches the
    10 px square touches."""
    grid = SIZE // patch_size
    centres = ((actions[:, 0, :2] + 1) / 2 * SIZE).round().long().tolist()
    mask = torch.zeros(len(centres), grid, grid)
    for row, (x, y) in enumerate(centres):
        mask[row, (y - 5) // patch_size : (y + 4) // patch_size + 1, (x - 5) // patch_size : (x + 4) // patch_size + 1] = 1
    return mask[:, None]


def synthetic_prefix(vla: VLA, mode: str, seed: int):
    """A stand-in for `vla.prefix`: [B, G*G, D] tokens, grey everywhere but the red square's cell, whose position
    code is added to every token ("additive") or to the square's only ("gated")."""
    grid, width = SIZE // vla.config.vision[0].patch_size, vla.config.llama_config.hidden_size
    generator = torch.Generator().manual_seed(seed + 1)
    codes, red, grey = (torch.randn(*shape, generator=generator) for shape in ((grid * grid, width), (width,), (width,)))

    def prefix(pixel_values: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        is_red = (pixel_values[:, 0] - pixel_values[:, 1]) > 1.0  # the DINO copy of the image: red is far above green
        cells = torch.nn.functional.avg_pool2d(is_red[:, None].float(), SIZE // grid).flatten(1).argmax(1)
        tokens = grey.expand(len(cells), grid * grid, width).clone()
        if mode == "additive":
            tokens += codes
        rows = torch.arange(len(cells))
        tokens[rows, cells] = red + codes[cells]
        return tokens

    return prefix


def run(task: str, head: str, steps: int, lr: float, log_every: int, seed: int, patch_size: int,
        llm_only: str | None = None, patch_loss: float = 0.0, batch_size: int = 32,
        attention_loss: float = 0.0, prefix_attention: str = "causal", sides: tuple[int, int] = (8, 10),
        vision_init: Path | None = None) -> list[dict]:
    torch.manual_seed(seed)
    chunk = 1 if head == "chunk" else 0
    if (attention_loss or prefix_attention != "causal") and not chunk:
        raise SystemExit("--attention-loss and --prefix-attention need action slots: use --head chunk")
    vision = tuple(replace(v, patch_size=patch_size) for v in get_config("tiny", image_size=SIZE).vision)
    decoder = PATCH_DECODER_RESOLUTION if patch_loss else 0
    vla = VLA.from_config("tiny", image_size=SIZE, seed=seed, norm_stats=STATS, action_chunk=chunk, vision=vision,
                          patch_decoder=decoder, slot_embeddings=bool(attention_loss),
                          prefix_attention=prefix_attention).train()
    if vision_init is not None:
        load_vision_init(vla.vision_backbone, vision_init)
    if llm_only:
        vla.prefix = synthetic_prefix(vla, llm_only, seed)
    weights = ObjectiveOptions(patch_loss=patch_loss, attention_loss=attention_loss)
    if attention_loss:
        vla.language_model.set_attn_implementation("eager")  # only eager attention computes the weights it supervises
    collator = VLACollator(vla.tokenizer, vla.processor)
    optimizer = torch.optim.AdamW(vla.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    held_out = collator([make_sample(task, np.random.default_rng(seed + 12345), chunk, sides) for _ in range(HELD_OUT)])
    history, start = [], time.perf_counter()
    for step in range(steps + 1):
        batch = collator([make_sample(task, rng, chunk, sides) for _ in range(batch_size)])
        inputs = {"actions": batch["actions"]} if chunk else {"labels": batch["labels"]}
        targets = {"attention_target": target_patches(batch["actions"], patch_size)} if attention_loss else {}
        out = vla(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], **inputs,
                  **objectives.forward_options(weights, targets))
        optimizer.zero_grad()
        loss = objectives.total(out.loss, objectives.losses(vla, out, batch, targets), weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vla.parameters(), 1.0)
        optimizer.step()
        if step % log_every == 0:
            if chunk:
                error = float((out.actions[:, 0, :2] - batch["actions"][:, 0, :2]).abs().mean().detach())
            else:  # token models: the L1 of decoded argmax actions, all 7 dims (5 are constant 0) -> rescale to x, y
                error = action_metrics(out.logits, batch["labels"], vla.action_tokenizer)["action_l1"] * 7 / 2
            row = {"step": step, "xy_l1": round(error, 3), "seconds": round(time.perf_counter() - start, 1)}
            if chunk:
                row["held_out_xy_l1"] = round(held_out_error(vla, held_out), 3)
            history.append(row)
            print(task, head, history[-1], flush=True)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--head", choices=("chunk", "tokens"), default="chunk")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch-size", type=int, default=16, help="ViT patch side (the tiny preset's is 16)")
    parser.add_argument("--llm-only", choices=("gated", "additive"), default=None,
                        help="replace vision + projector by hand-made patch tokens (location task only)")
    parser.add_argument("--tasks", nargs="+", choices=("brightness", "location", "binding", "size"), default=["brightness", "location"])
    parser.add_argument("--attention-loss", type=float, default=0.0,
                        help="weight of the slots' attention supervision (0: off; chunk head, learned slot embeddings)")
    parser.add_argument("--prefix-attention", choices=("causal", "bidirectional"), default="causal",
                        help="chunk head: how patches and instruction attend to each other")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per step")
    parser.add_argument("--sides", type=int, nargs=2, default=(8, 10), metavar=("SMALL", "LARGE"),
                        help="size task: the two squares' sides in px (default 8 10)")
    parser.add_argument("--patch-loss", type=float, default=0.0, help="weight of the patch-reconstruction loss (0: off)")
    parser.add_argument("--vision-init", type=Path, default=None,
                        help="start the vision backbone from a `clearvla pretrain-vision` directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = ("location",) if args.llm_only else tuple(args.tasks)
    results = {task: run(task, args.head, args.steps, args.lr, args.log_every, args.seed, args.patch_size, args.llm_only,
                         args.patch_loss, args.batch_size, args.attention_loss, args.prefix_attention, tuple(args.sides),
                         args.vision_init)
               for task in tasks}
    summary = {task: float(np.mean([h.get("held_out_xy_l1", h["xy_l1"]) for h in rows[-4:]])) for task, rows in results.items()}
    name = f"vision_probe_llm_only_{args.llm_only}" if args.llm_only else "_".join(["vision_probe", *tasks] + (["patch_loss"] if args.patch_loss else []))
    name += "_attention_loss" if args.attention_loss else ""
    name += f"_{args.prefix_attention}" if args.prefix_attention != "causal" else ""
    name += f"_bs{args.batch_size}" if args.batch_size != 32 else ""
    name += f"_sides{args.sides[0]}-{args.sides[1]}" if "size" in tasks else ""
    name += "_vision_init" if args.vision_init else ""
    path = write_result(name, {"preset": "tiny", "image_size": SIZE, "patch_size": args.patch_size, "head": args.head,
                               "lr": args.lr, "llm_only": args.llm_only, "patch_loss": args.patch_loss, "attention_loss": args.attention_loss, "prefix_attention": args.prefix_attention, "batch_size": args.batch_size, "sides": list(args.sides), "vision_init": str(args.vision_init or ""), "constant_l1": CONSTANT_L1, "final_xy_l1": summary, **results})
    print(f"\nfinal xy L1 (held-out when logged; mean of the last 4 logs; constant prediction ~{CONSTANT_L1}): {summary}\nwrote {path}")


if __name__ == "__main__":
    main()
