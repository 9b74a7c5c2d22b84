"""Labelled frames for vision pretraining (`clearvla pretrain-vision`): simulator renders with per-patch ground truth
from the segmentation render and the scene.

Per image (one camera of one scene, right after reset) and per patch of the model's grid (patch x patch pixels,
row-major, as the ViT's tokens): the scene object covering most of the patch, if it covers at least
`MIN_COVER` of it, else background (0; the arm, table and walls are background too: they are not scene objects).
That object's kind, colour and size class as vocabulary ids (0 = background / none), its table position (x, y)
in metres, and whether it is the larger of a same-kind pair of parts (1 larger, 0 smaller, -1 no same-kind partner
or background). Only train-suite scenes 0..TRAIN_SCENES-1 are rendered: the later ones are the unseen evaluation
scenes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from clearvla.errors import ConfigError
from clearvla.scene.objects import SceneObject
from clearvla.scene.vocab import (DISTRACTOR_COLOURS, DISTRACTOR_KINDS, PART_COLOURS, PART_KINDS, SIZES,
                                  TARGET_COLOURS, TARGET_KINDS)

TRAIN_SCENES = 4000  # train-suite episodes 0..3999 may be rendered; 4000..4999 are held out for evaluation
MIN_COVER = 0.1  # the fraction of a patch an object must cover to label it (a 16 px patch: 26 pixels)
# Label vocabularies: index 0 is background / none in each.
VOCAB: dict[str, tuple[str, ...]] = {
    "kind": ("none", *PART_KINDS, *TARGET_KINDS, *DISTRACTOR_KINDS),
    "colour": ("none", *PART_COLOURS, *TARGET_COLOURS, *DISTRACTOR_COLOURS),
    "size": ("none", *SIZES),
}


def _vocab_id(field: str, word: str) -> int:
    words = VOCAB[field]
    return words.index(word) if word in words else 0


def larger_of_pair(objects: list[SceneObject]) -> np.ndarray:
    """[n] int8 per object: 1 if it is the larger (bounding-box volume) of two or more same-kind parts, 0 if a
    smaller one, -1 if it has no same-kind partner or is not a part."""
    out = np.full(len(objects), -1, dtype=np.int8)
    for i, o in enumerate(objects):
        if o.category != "part":
            continue
        volumes = [float(np.prod(p.dims)) for p in objects if p.category == "part" and p.kind == o.kind]
        if len(volumes) > 1:
            out[i] = int(np.prod(o.dims) >= max(volumes))
    return out


def object_table(objects: list[SceneObject]) -> dict[str, np.ndarray]:
    """Per-object label rows, row 0 for background: kind / colour / size [n + 1] int64, larger [n + 1] int8,
    xy [n + 1, 2] float32 (metres, world frame)."""
    return {
        "kind": np.array([0] + [_vocab_id("kind", o.kind) for o in objects], dtype=np.int64),
        "colour": np.array([0] + [_vocab_id("colour", o.colour) for o in objects], dtype=np.int64),
        "size": np.array([0] + [_vocab_id("size", o.size) for o in objects], dtype=np.int64),
        "larger": np.concatenate([[-1], larger_of_pair(objects)]).astype(np.int8),
        "xy": np.array([(0.0, 0.0)] + [o.position[:2] for o in objects], dtype=np.float32),
    }


def patch_objects(segmentation: np.ndarray, bodies: np.ndarray, patch: int, min_cover: float = MIN_COVER) -> np.ndarray:
    """segmentation [S, S] body id per pixel; bodies [n] the scene objects' body ids -> [(S/patch)^2] int64: per
    patch (row-major) 1 + the index of the object covering most of it (at least `min_cover` of it), else 0."""
    s = segmentation.shape[0]
    assert segmentation.shape == (s, s) and s % patch == 0, f"need a square segmentation divisible by {patch}"
    g = s // patch
    cells = segmentation.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, patch * patch)
    counts = np.stack([(cells == b).sum(axis=1) for b in bodies], axis=1) if len(bodies) else np.zeros((g * g, 0))
    out = np.zeros(g * g, dtype=np.int64)
    if counts.shape[1]:
        best = counts.argmax(axis=1)
        covered = counts[np.arange(g * g), best] >= min_cover * patch * patch
        out[covered] = best[covered] + 1
    return out


def frame_labels(objects: list[SceneObject], patch_object: np.ndarray) -> dict[str, np.ndarray]:
    """The per-patch labels of one image from its `patch_objects`: object [P], kind / colour / size [P] int64,
    larger [P] int8, xy [P, 2] float32."""
    table = object_table(objects)
    return {"object": patch_object, **{k: v[patch_object] for k, v in table.items()}}


def check_scenes(scenes: Iterable[int]) -> list[int]:
    """The scene indices as a list; ConfigError for any outside the train scenes 0..TRAIN_SCENES-1."""
    scenes = [int(i) for i in scenes]
    bad = [i for i in scenes if not 0 <= i < TRAIN_SCENES]
    if bad:
        raise ConfigError(f"vision pretraining renders train-suite scenes 0..{TRAIN_SCENES - 1} only (the later ones "
                          f"are the unseen evaluation scenes), got {bad[:5]}")
    return scenes


def render_labelled_frames(scenes: Iterable[int], *, image_size: int = 128, patch: int = 16,
                           cameras: tuple[str, ...] | None = None,
                           progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Render each camera in `cameras` (None: the front and wrist cameras, sim.env.DEFAULT_CAMERAS) of each
    train-suite scene (after reset: random arm start) with per-patch labels.

    Returns arrays over the N = len(scenes) * len(cameras) images: image [N, S, S, 3] uint8, camera [N] int64
    (index into `cameras`), scene [N] int64, and the `frame_labels` stacked ([N, P] and xy [N, P, 2]).
    `progress(1)` is called after each scene."""
    from clearvla.sim.env import DEFAULT_CAMERAS, WorkcellEnv

    scenes = check_scenes(scenes)
    if image_size % patch:
        raise ConfigError(f"image_size {image_size} is not a multiple of the patch size {patch}")
    env = WorkcellEnv("train", image_size=image_size, cameras=cameras or DEFAULT_CAMERAS)
    rows: list[dict[str, np.ndarray]] = []
    try:
        for scene in scenes:
            obs, _ = env.reset(seed=scene, options={"index": scene})
            assert env.world is not None
            objects = env.scene_objects()
            bodies = np.array([env.world.body_id(o.name) for o in objects], dtype=np.int64)
            for c, key in enumerate(env.cameras):
                labels = frame_labels(objects, patch_objects(env.segmentation(key), bodies, patch))
                rows.append({"image": obs[key], "camera": np.int64(c), "scene": np.int64(scene), **labels})
            if progress is not None:
                progress(1)
    finally:
        env.close()
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}
