"""`clearvla pretrain-vision`: train the VLA's vision backbone alone on labelled simulator renders (issue #33), for
`clearvla train --vision-init DIR`.

    clearvla pretrain-vision --out runs/vision --scenes 2000 --steps 2000 --batch-size 256 --image-size 128

Frames are pre-rendered into memory first (about 40 ms a scene for two 128 px cameras, far cheaper than a training
step), then batches are drawn from them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from clearvla.errors import ConfigError

if TYPE_CHECKING:
    from clearvla.train.vision_pretrain import PretrainSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain-vision", help="pretrain the vision backbone on labelled workcell renders",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="directory for vision.safetensors + vision.json")
    p.add_argument("--scenes", type=int, default=1000, help="train-suite scenes to render (from --first-scene)")
    p.add_argument("--first-scene", type=int, default=0, help="first train-suite scene (scenes 4000+ are held out)")
    p.add_argument("--cameras", nargs="+", default=None, help="cameras to render, each an image (default: image "
                   "wrist_image, the default model's)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=256, help="images per step")
    p.add_argument("--image-size", type=int, default=128, help="image side (the VLA's image_size)")
    p.add_argument("--preset", default="tiny", help="model preset whose vision backbone is trained")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (warm-up, cosine decay)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--reconstruction-weight", type=float, default=1.0, help="weight of the MAE-style patch loss")
    p.add_argument("--object-weight", type=float, default=1.0,
                   help="weight of the object heads (kind, size, size ranking on pooled object patches; 0 = off)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="autocast precision")
    p.add_argument("--seed", type=int, default=0, help="init and batch-order seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clearvla.sim.env import DEFAULT_CAMERAS
    from clearvla.train.vision_pretrain import PretrainSettings

    if args.scenes < 1:
        raise ConfigError("--scenes must be positive")
    settings = PretrainSettings(preset=args.preset, image_size=args.image_size, steps=args.steps,
                                batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                                precision=args.precision, seed=args.seed,
                                reconstruction_weight=args.reconstruction_weight, object_weight=args.object_weight)
    cameras = tuple(args.cameras or DEFAULT_CAMERAS)
    pretrain_to(args.out, settings, range(args.first_scene, args.first_scene + args.scenes), cameras)
    return 0


def pretrain_to(out: Path, settings: PretrainSettings, scenes: range, cameras: tuple[str, ...]) -> Path:
    """Render `scenes` from `cameras`, pretrain with `settings` (a PretrainSettings), write the backbone to `out`
    (vision.safetensors + vision.json) with progress bars; returns the weights' path. `clearvla recipe` runs a
    recipe's `vision:` entries through this too."""
    from tqdm import tqdm

    from clearvla.sim.env import check_cameras
    from clearvla.sim.vision_labels import MIN_COVER, VOCAB, render_labelled_frames
    from clearvla.train.vision_pretrain import pretrain_vision, save_vision

    cameras = check_cameras(cameras)
    with tqdm(total=len(scenes), desc="render", unit="scene") as bar:
        frames = render_labelled_frames(scenes, image_size=settings.image_size, cameras=cameras, progress=bar.update)
    bar = tqdm(total=settings.steps, desc="pretrain-vision", unit="step")

    def progress(step: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        shown = ("loss", "kind_acc", "size_acc", "object_size_acc", "object_rank_acc")
        bar.set_postfix({k: f"{metrics[k]:.3f}" for k in shown if k in metrics}, refresh=False)

    try:
        backbone, history = pretrain_vision(frames, VOCAB, settings, callback=progress)
    finally:
        bar.close()
    extra = {"scenes": [scenes.start, scenes.stop], "cameras": list(cameras), "min_cover": MIN_COVER,
             "frames": int(len(frames["image"])), "final": history[-1]}
    path = save_vision(out, backbone, settings, VOCAB, extra)
    print(f"wrote {path} ({len(frames['image'])} frames, final loss {history[-1]['loss']:.4f})")
    return path
