"""`clearvla predict`: one action from a checkpoint, an image file and an instruction."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clearvla.actions.normalize import select_stats
from clearvla.errors import InputError

DTYPES = ("float32", "bfloat16")
QUANTIZE = ("none", "int8", "int4")  # clearvla.infer.quantize.QUANTIZE_MODES (not imported: it pulls in torch)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict one action from an image and an instruction")
    p.add_argument("--checkpoint", required=True, type=Path, help="OpenVLA-format checkpoint directory")
    p.add_argument("--image", required=True, type=Path, help="RGB image file (PNG/JPEG): the model's first camera")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=FILE",
                   help="another camera's image, e.g. wrist_image=wrist.png (repeat for each camera the model reads)")
    p.add_argument("--proprio", type=float, nargs="+", default=None, metavar="X",
                   help="robot state in raw units, for models with a proprio input (e.g. 13 numbers)")
    p.add_argument("--instruction", required=True, help='e.g. "pick up the red block"')
    p.add_argument("--unnorm-key", default=None, help="dataset key of norm_stats (needed when there are several)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weights and compute dtype (bfloat16 on CPU, never float16)")
    p.add_argument("--center-crop", action="store_true", help="centre crop of area 0.9 (models trained with crop augmentation)")
    add_inference_options(p)
    p.add_argument("--json", action="store_true", help='print exactly one JSON object {"action": [...], "token_ids": [...]}')
    p.set_defaults(func=run)


def add_inference_options(p: argparse.ArgumentParser) -> None:
    """--quantize and --action-tokens-only, shared by predict and eval."""
    p.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="weight quantisation of the LLM and projector linears (bitsandbytes; pip install 'clearvla[quantize]')")
    p.add_argument("--action-tokens-only", action="store_true",
                   help="argmax over the 256 action tokens only (OpenVLA: over the whole vocabulary)")


def load_image(path: Path) -> np.ndarray:
    """An image file -> uint8 HxWx3 RGB; unreadable files are an InputError naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def run(args: argparse.Namespace) -> int:
    import torch

    from clearvla.models.vla import VLA

    model = VLA.from_pretrained(args.checkpoint, dtype=getattr(torch, args.dtype), quantize=args.quantize)
    select_stats(model.norm_stats, args.unnorm_key)  # a bad key fails before any compute
    observation = {model.config.cameras[0]: load_image(args.image)}
    for item in args.camera:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--camera takes NAME=FILE (e.g. wrist_image=wrist.png), got {item!r}")
        observation[name] = load_image(Path(path))
    token_ids = model.predict_action_tokens(
        observation, args.instruction, args.unnorm_key, center_crop=args.center_crop,
        proprio=None if args.proprio is None else np.asarray(args.proprio), action_tokens_only=args.action_tokens_only,
    )
    action = model.decode_actions(token_ids, args.unnorm_key)
    if args.json:
        print(json.dumps({"action": [float(a) for a in action], "token_ids": [int(t) for t in token_ids]}))
    else:
        print("action   :", " ".join(f"{a:+.5f}" for a in action))
        print("token ids:", " ".join(str(int(t)) for t in token_ids))
    return 0
