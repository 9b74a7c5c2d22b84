"""Do a vision backbone's patch features say what a patch shows? A linear probe of kind, colour and size class on
frozen workcell patch features, per backbone and per camera.

The backbones compared are `clearvla pretrain-vision` directories (`--vision-init`, repeatable: e.g. with and without
the object heads) against a random-init one, and
the vision backbones of VLA checkpoints (`--checkpoint`, repeatable: e.g. runs trained with and without
`--vision-init` for the same steps, or on different cameras). Renders train-suite scenes none of them trained on
(--first-scene, default 3000; never the evaluation scenes 4000+) from each camera in --cameras, takes each
backbone's patch features [P, D] (what the VLA's projector reads) on the patches that show an object, fits a linear
softmax probe on the first --fit-fraction of the scenes and reports held-out accuracy on the rest, per label, with
the majority-class rate as the floor. Size is also scored on parts only (targets and distractors carry no size).
The same probes are run on objects (`object_kind`, `object_size_parts`): each object's patch features averaged, the
read-out `pretrain-vision`'s object heads train, since a patch shows only part of an object.

Run: .venv/bin/python benchmarks/patch_probe.py --vision-init runs/vision [--vision-init B] [--scenes 300]
     .venv/bin/python benchmarks/patch_probe.py --checkpoint A --checkpoint B --cameras image image_top
  ->  benchmarks/results/patch_probe.json (or --name)
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
from clearvla.train.object_pool import object_labels, pool_objects
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


def scored(x: torch.Tensor, y: torch.Tensor, fit: np.ndarray, test: np.ndarray, classes: int, steps: int) -> dict:
    """Probe accuracy and the majority-class rate on the `test` rows, fitted on the `fit` rows."""
    m_fit, m_test = torch.from_numpy(fit), torch.from_numpy(test)
    acc = probe(x[m_fit], y[m_fit], x[m_test], y[m_test], classes, steps)
    majority = float((y[m_test] == torch.mode(y[m_fit]).values).float().mean())
    return {"accuracy": round(acc, 4), "majority": round(majority, 4)}


def backbones(args: argparse.Namespace) -> tuple[dict[str, tuple], int, dict, tuple[str, ...]]:
    """{name: (backbone, processor)} to compare, their image size, what they are (for the result) and the cameras
    to render (--cameras, else the pretraining's, else the front view)."""
    found: dict[str, tuple] = {}
    about: dict = {}
    cameras = tuple(args.cameras or ("image",))
    if len(set(args.vision_init + args.checkpoint)) < len(args.vision_init + args.checkpoint):
        raise SystemExit("a backbone is given twice; give each --vision-init and --checkpoint once")
    for n, directory in enumerate(args.vision_init):
        meta = json.loads((directory / "vision.json").read_text())
        settings = PretrainSettings(**meta["settings"])
        about.setdefault("pretrain", {})[str(directory)] = meta["settings"]
        if n == 0:  # the first pretraining's cameras, and its preset at its init seed untrained: the floor
            cameras = tuple(args.cameras or meta["cameras"])
            untrained, processor = build_backbone(settings)
            found["random"] = (untrained.eval(), processor)
        backbone, processor = build_backbone(settings)
        load_vision_init(backbone, directory)
        found[str(directory)] = (backbone.eval(), processor)
    from clearvla.models.vla import VLA

    for directory in args.checkpoint:
        vla = VLA.from_pretrained(directory)
        found[str(directory)] = (vla.vision_backbone.eval(), vla.processor)
    sizes = {p.image_size for _, p in found.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the backbones read different image sizes {sorted(sizes)}; probe them separately")
    return found, sizes.pop(), about, cameras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vision-init", type=Path, action="append", default=[],
                    help="a `clearvla pretrain-vision` directory (repeatable; the first's random init is probed too)")
    ap.add_argument("--checkpoint", type=Path, action="append", default=[], help="a VLA checkpoint (repeatable)")
    ap.add_argument("--cameras", nargs="+", help="cameras to render (default: the pretraining's, else image)")
    ap.add_argument("--first-scene", type=int, default=3000)
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--fit-fraction", type=float, default=0.7)
    ap.add_argument("--steps", type=int, default=300, help="probe optimiser steps")
    ap.add_argument("--name", default="patch_probe", help="result file name")
    args = ap.parse_args()
    if not args.vision_init and not args.checkpoint:
        ap.error("give --vision-init, --checkpoint or both")
    found, image_size, about, cameras = backbones(args)
    frames = render_labelled_frames(range(args.first_scene, args.first_scene + args.scenes),
                                    image_size=image_size, cameras=cameras)
    split = int(args.fit_fraction * args.scenes) + args.first_scene
    fit = np.repeat((frames["scene"] < split)[:, None], frames["object"].shape[1], 1)
    part_kinds = [VOCAB["kind"].index(k) for k in PART_KINDS]
    part = np.isin(frames["kind"], part_kinds)
    objects = torch.from_numpy(frames["object"])
    kind_o = object_labels(torch.from_numpy(frames["kind"]), objects)
    size_o = object_labels(torch.from_numpy(frames["size"]), objects)
    part_object = np.isin(kind_o.numpy(), part_kinds)
    result: dict = {**about, "scenes": [args.first_scene, args.first_scene + args.scenes], "cameras": list(cameras)}
    for name, (backbone, processor) in found.items():
        feats = features(backbone, frames["image"], processor).float()
        pooled, shown_t = pool_objects(feats, objects)
        shown = shown_t.numpy()
        result[name] = {}
        for c, camera in enumerate(cameras):
            own = np.repeat((frames["camera"] == c)[:, None], frames["object"].shape[1], 1)
            shows = (frames["object"] > 0) & own
            scores = {"patches": {"fit": int((shows & fit).sum()), "test": int((shows & ~fit).sum())}}
            for label, where in (("kind", shows), ("size", shows), ("size_parts", part & own), ("colour", shows)):
                field = label.split("_")[0]
                scores[label] = scored(feats, torch.from_numpy(frames[field]), where & fit, where & ~fit,
                                       len(VOCAB[field]), args.steps)
            in_view = shown & np.repeat((frames["camera"] == c)[:, None], shown.shape[1], 1)
            obj_fit = np.repeat((frames["scene"] < split)[:, None], shown.shape[1], 1)
            scores["objects"] = {"fit": int((in_view & obj_fit).sum()), "test": int((in_view & ~obj_fit).sum())}
            for label, where in (("object_kind", in_view), ("object_size_parts", in_view & part_object)):
                y = kind_o if label == "object_kind" else size_o
                scores[label] = scored(pooled, y, where & obj_fit, where & ~obj_fit,
                                       len(VOCAB[label.split("_")[1]]), args.steps)
            result[name][camera] = scores
            print(name, camera, {k: v for k, v in scores.items() if k not in ("patches", "objects")})
    write_result(args.name, result)


if __name__ == "__main__":
    main()
