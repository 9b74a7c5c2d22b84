"""Does a part's apparent size tell its size class, in the front view and in the overhead view? (issue #33 point 3)

No training: over train-suite scenes, the segmentation render of the front camera ("image", perspective, looking
across the table) and the overhead camera ("image_top", orthographic, looking down 40 degrees off vertical; and the
same camera turned straight down, "top_straight_down", for comparison) gives each task part's pixel
area. A policy can only ground "the large bolt" on what the pixels show, so the measure is how well pixel area
separates the size classes (small / medium / large) of one kind:

  pair order     the fraction of same-kind, different-size part pairs in one scene whose larger part also has the
                 larger pixel area (ties count half; a fully occluded part counts as area 0). What "the larger
                 of the two" needs.
  cross-scene AUC  per kind, the chance that a part of the next size class up has the larger area than one of the
                 class below, drawn from any two scenes: what an absolute "the large bolt" needs.
  CV             the coefficient of variation (std / mean) of pixel area within a (kind, size) class over scenes
                 (visible parts only); the overhead view's comes from the part's yaw and pixel quantisation only.
  mean area      pixels per part: what the vision backbone has to see it with.

Two arm states: "clear" (the arm turned away behind its base: the projection alone) and "start" (the arm at the
episode's start pose, as the first observation shows it: occlusion included).

Run: MUJOCO_GL=egl .venv/bin/python benchmarks/camera_views.py [--scenes 300] [--image-size 128]
  ->  benchmarks/results/camera_views.json and a markdown table
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict

import mujoco
import numpy as np
from common import write_result

from clearvla.sim import suites
from clearvla.sim.arm import HOME_QPOS, ArmLimits
from clearvla.sim.render import CameraRenderer
from clearvla.sim.scene import CAMERAS, TOP_CAMERA, TOP_CAMERA_DISTANCE, TOP_CAMERA_LOOKAT
from clearvla.sim.world import Workcell

VIEWS = ("image", "image_top", "top_straight_down")
# "top_straight_down" is not an env camera: image_top (orthographic, same view size) turned to look straight down,
# the design image_top's tilt replaced; measured to show what the arm's occlusion from straight above costs.
SIZE_ORDER = {"small": 0, "medium": 1, "large": 2}
AWAY_QPOS = HOME_QPOS + np.array([np.pi, 0, 0, 0, 0, 0])  # shoulder pan turned half round: the arm behind its base


def part_areas(world: Workcell, renderer: CameraRenderer) -> dict[str, dict[str, int]]:
    """view -> part name -> pixel count in that view's segmentation render."""
    parts = [o.name for o in world.scene.objects if o.category == "part"]
    out = {}
    for view in VIEWS:
        if view == "top_straight_down":
            cam = world.model.camera(TOP_CAMERA).id
            saved = world.model.cam_pos[cam].copy(), world.model.cam_quat[cam].copy()
            world.model.cam_pos[cam], world.model.cam_quat[cam] = _straight_down_pose()
            mujoco.mj_camlight(world.model, world.data)  # the camera's world pose (data.cam_xpos, cam_xmat)
            seg = renderer.segmentation(world.data, TOP_CAMERA)
            world.model.cam_pos[cam], world.model.cam_quat[cam] = saved
            mujoco.mj_camlight(world.model, world.data)
        else:
            seg = renderer.segmentation(world.data, CAMERAS[view])
        out[view] = {name: int((seg == world.body_id(name)).sum()) for name in parts}
    return out


def _straight_down_pose() -> tuple[np.ndarray, np.ndarray]:
    """Position and quaternion of the top camera looking straight down at its look-at point (image up: -x)."""
    right, up, back = np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, up, back]).flatten())
    return np.array(TOP_CAMERA_LOOKAT) + TOP_CAMERA_DISTANCE * back, quat


def measure(scenes: int, image_size: int) -> dict:
    renderer = CameraRenderer(image_size)
    # per arm state and view: (scene, kind, size, area) rows
    rows: dict[str, dict[str, list[tuple[int, str, str, int]]]] = {s: {v: [] for v in VIEWS} for s in ("clear", "start")}
    try:
        for index in range(scenes):
            setup = suites.setup(suites.episode("train", index))
            world = Workcell(setup.scene, image_size=image_size, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())
            renderer.bind(world.model)
            start_q = world.data.qpos[world.arm.qadr].copy()
            specs = {o.name: o for o in setup.scene.objects}
            for state in ("start", "clear"):
                if state == "clear":
                    world.arm.reset(world.data, AWAY_QPOS)
                    mujoco.mj_forward(world.model, world.data)
                for view, areas in part_areas(world, renderer).items():
                    rows[state][view] += [(index, specs[n].kind, specs[n].size, a) for n, a in areas.items()]
            world.arm.reset(world.data, start_q)
    finally:
        renderer.close()
    return {state: {view: summarise(r) for view, r in by_view.items()} for state, by_view in rows.items()}


def summarise(rows: list[tuple[int, str, str, int]]) -> dict:
    by_scene: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    by_class: dict[tuple[str, str], list[int]] = defaultdict(list)
    for scene, kind, size, area in rows:
        by_scene[scene].append((kind, size, area))
        by_class[kind, size].append(area)
    correct = pairs = 0.0
    for parts in by_scene.values():
        for (k1, s1, a1), (k2, s2, a2) in itertools.combinations(parts, 2):
            if k1 != k2 or s1 == s2:
                continue
            big, small = ((a1, a2) if SIZE_ORDER[s1] > SIZE_ORDER[s2] else (a2, a1))
            pairs += 1
            correct += 1.0 if big > small else 0.5 if big == small else 0.0
    classes = {}
    for (kind, size), areas in sorted(by_class.items(), key=lambda kv: (kv[0][0], SIZE_ORDER[kv[0][1]])):
        seen = np.array([a for a in areas if a > 0], dtype=float)
        classes[f"{kind}/{size}"] = {
            "parts": len(areas), "occluded": len(areas) - len(seen),
            "mean_area": float(seen.mean()) if len(seen) else 0.0,
            "cv": float(seen.std() / seen.mean()) if len(seen) > 1 else float("nan"),
        }
    aucs = {}
    for kind in sorted({k for k, _ in by_class}):
        for lo, hi in (("small", "medium"), ("medium", "large")):
            a, b = np.array(by_class.get((kind, lo), [])), np.array(by_class.get((kind, hi), []))
            if len(a) and len(b):
                diff = b[:, None] - a[None, :]
                aucs[f"{kind} {lo}<{hi}"] = float((diff > 0).mean() + 0.5 * (diff == 0).mean())
    cvs = [c["cv"] for c in classes.values() if np.isfinite(c["cv"])]
    areas = [a for _, _, _, a in rows]
    return {
        "same_kind_pairs": int(pairs),
        "pair_order": correct / pairs if pairs else float("nan"),
        "cross_scene_auc": float(np.mean(list(aucs.values()))),
        "cross_scene_auc_per_pair": aucs,
        "mean_cv": float(np.mean(cvs)),
        "occluded_fraction": float(np.mean([a == 0 for a in areas])),
        "median_area": float(np.median([a for a in areas if a > 0])),
        "classes": classes,
    }


def table(results: dict) -> str:
    lines = ["| arm | view | same-kind pairs | pair order | cross-scene AUC | mean CV in class | median area (px) | parts hidden |",
             "|---|---|---|---|---|---|---|---|"]
    for state in ("clear", "start"):
        for view in VIEWS:
            r = results[state][view]
            lines.append(f"| {state} | {view} | {r['same_kind_pairs']} | {r['pair_order']:.1%} | {r['cross_scene_auc']:.3f} | "
                         f"{r['mean_cv']:.3f} | {r['median_area']:.0f} | {r['occluded_fraction']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=300, help="train-suite episodes 0..N-1 (default 300)")
    parser.add_argument("--image-size", type=int, default=128, help="square render size, pixels (default 128)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = measure(args.scenes, args.image_size)
    path = write_result("camera_views", {"scenes": args.scenes, "image_size": args.image_size, "suite": "train",
                                         "seconds": round(time.perf_counter() - t0, 1), "results": results})
    print(table(results))
    for state in ("clear",):
        print(f"\nper class, arm {state}: mean area px (CV)")
        print("| class | " + " | ".join(VIEWS) + " |\n|---|" + "---|" * len(VIEWS))
        for name in results[state]["image"]["classes"]:
            cells = [results[state][v]["classes"][name] for v in VIEWS]
            print(f"| {name} | " + " | ".join(f"{c['mean_area']:.0f} ({c['cv']:.2f})" for c in cells) + " |")
    print(f"\n{path}")


if __name__ == "__main__":
    main()
