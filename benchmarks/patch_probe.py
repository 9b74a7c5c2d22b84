"""Does vision pretraining (`clearvla pretrain-vision`) make the patch features say what a patch shows? A linear
probe of size class and kind on frozen workcell patch features, a pretrained backbone against a random-init one.

Renders train-suite scenes the pretraining did not see (--first-scene, default 3000; never the evaluation scenes
4000+), takes each backbone's patch features [P, D] (what the VLA's projector reads) on the patches that show an
object, fits a linear softmax probe on the first --fit-fraction of the scenes and reports held-out accuracy on the
rest, per label, with the majority-class rate as the floor. Size is also scored on parts only (targets and
distractors carry no size).

Run: .venv/bin/python benchmarks/patch_probe.py --vision-init runs/vision [--scenes 300] [--steps 300]
  ->  benchmarks/results/patch_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import write_result

from clearvla.scene.vocab import PART_KINDS
from clearvla.sim.vision_labels import VOCAB, render_labelled_frames
from clearvla.train.vision_pretrain import PretrainSettings, build_backbone, load_vision_init, pixel_values


def features(backbone, images: np.ndarray, processor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([backbone(pixel_values(images[i:i + 64], processor)) for i in range(0, len(images), 64)])


def probe(x_fit, y_fit, x_test, y_test, classes: int, steps: int) -> float:
    """Held-out accuracy of a linear softmax probe (full-batch AdamW on standardised features)."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    x_fit, x_test = (x_fit - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(x_fit.shape[1], classes)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(x_fit), y_fit).backward()
        opt.step()
    with torch.no_grad():
        return float((head(x_test).argmax(-1) == y_test).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vision-init", required=True, type=Path, help="a `clearvla pretrain-vision` directory")
    ap.add_argument("--first-scene", type=int, default=3000)
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--fit-fraction", type=float, default=0.7)
    ap.add_argument("--steps", type=int, default=300, help="probe optimiser steps")
    args = ap.parse_args()
    meta = json.loads((args.vision_init / "vision.json").read_text())
    settings = PretrainSettings(**meta["settings"])
    frames = render_labelled_frames(range(args.first_scene, args.first_scene + args.scenes),
                                    image_size=settings.image_size, cameras=tuple(meta["cameras"]))
    split = int(args.fit_fraction * args.scenes) + args.first_scene
    fit = np.repeat((frames["scene"] < split)[:, None], frames["object"].shape[1], 1)
    shows = frames["object"] > 0
    part = np.isin(frames["kind"], [VOCAB["kind"].index(k) for k in PART_KINDS])
    result: dict = {"vision_init": str(args.vision_init), "pretrain": meta["settings"], "scenes": [args.first_scene, args.first_scene + args.scenes],
                    "patches": {"fit": int((shows & fit).sum()), "test": int((shows & ~fit).sum())}}
    for name in ("pretrained", "random"):
        backbone, processor = build_backbone(settings)
        if name == "pretrained":
            load_vision_init(backbone, args.vision_init)
        feats = features(backbone.eval(), frames["image"], processor).float()
        scores = {}
        for label, where in (("kind", shows), ("size", shows), ("size_parts", part), ("colour", shows)):
            y = torch.from_numpy(frames[label.split("_")[0]])
            m_fit, m_test = torch.from_numpy(where & fit), torch.from_numpy(where & ~fit)
            acc = probe(feats[m_fit], y[m_fit], feats[m_test], y[m_test], len(VOCAB[label.split("_")[0]]), args.steps)
            majority = float((y[m_test] == torch.mode(y[m_fit]).values).float().mean())
            scores[label] = {"accuracy": round(acc, 4), "majority": round(majority, 4)}
        result[name] = scores
        print(name, scores)
    write_result("patch_probe", result)


if __name__ == "__main__":
    main()
