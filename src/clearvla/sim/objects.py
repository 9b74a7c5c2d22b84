"""The MJCF of each workcell object (the objects and their size tables: scene/objects.py), and how the gripper
grasps a part."""

from __future__ import annotations

import numpy as np

from clearvla.scene.objects import FIXTURE_POST, WALL, ObjectSpec
from clearvla.scene.vocab import DISTRACTOR_COLOURS, PART_COLOURS, TARGET_COLOURS


def _rgba(spec: ObjectSpec) -> str:
    table = {"part": PART_COLOURS, "target": TARGET_COLOURS, "distractor": DISTRACTOR_COLOURS}[spec.category]
    r, g, b = table[spec.colour]
    return f"{r:.3f} {g:.3f} {b:.3f} 1"


def _hex_mesh(name: str, radius: float, height: float) -> str:
    """A hexagonal prism mesh (corner radius, full height) centred at the origin."""
    verts = []
    for z in (-height / 2, height / 2):
        for k in range(6):
            a = np.pi / 6 + k * np.pi / 3
            verts.append(f"{radius * np.cos(a):.5f} {radius * np.sin(a):.5f} {z:.5f}")
    return f'<mesh name="{name}" vertex="{" ".join(verts)}"/>'


def object_assets(spec: ObjectSpec) -> str:
    """MJCF <asset> children the object needs (hex meshes for bolts and nuts)."""
    if spec.kind == "nut":
        return _hex_mesh(f"{spec.name}_hex", spec.dims[0] / 2, spec.dims[2])
    if spec.kind == "bolt":
        return _hex_mesh(f"{spec.name}_hex", spec.dims[0] / 2, 0.3 * spec.dims[2])
    return ""


def part_body(spec: ObjectSpec) -> str:
    """MJCF <body> of a part with a free joint. Collision uses primitives only; meshes are visual (contype 0)."""
    sx, sy, sz = spec.dims
    rgba = _rgba(spec)
    c, s = np.cos(spec.yaw / 2), np.sin(spec.yaw / 2)
    head = f'<body name="{spec.name}" pos="{spec.xy[0]:.5f} {spec.xy[1]:.5f} {sz / 2 + 0.0005:.5f}" quat="{c:.6f} 0 0 {s:.6f}">'
    geoms = []
    if spec.kind in ("block", "plate", "bar"):
        geoms.append(f'<geom class="part" type="box" size="{sx / 2:.5f} {sy / 2:.5f} {sz / 2:.5f}" rgba="{rgba}"/>')
    elif spec.kind in ("cylinder", "disc"):
        geoms.append(f'<geom class="part" type="cylinder" size="{sx / 2:.5f} {sz / 2:.5f}" rgba="{rgba}"/>')
    elif spec.kind == "nut":
        flat = sx / 2 * np.cos(np.pi / 6)
        # Collide as the hex prism itself: jaws closing on two flats hold it; a cylinder proxy let it squirt out.
        geoms.append(f'<geom class="part" type="mesh" mesh="{spec.name}_hex" rgba="{rgba}"/>')
        geoms.append(
            f'<geom class="visual" type="cylinder" size="{0.45 * flat:.5f} 0.0008" pos="0 0 {sz / 2:.5f}" rgba="0.08 0.08 0.08 1"/>'
        )
    elif spec.kind == "bolt":
        head_h = 0.3 * sz
        shaft_r = 0.24 * sx
        flat = sx / 2 * np.cos(np.pi / 6)
        geoms.append(
            f'<geom class="part" type="cylinder" size="{flat:.5f} {head_h / 2:.5f}" pos="0 0 {-sz / 2 + head_h / 2:.5f}" rgba="0 0 0 0"/>'
        )
        geoms.append(
            f'<geom class="visual" type="mesh" mesh="{spec.name}_hex" pos="0 0 {-sz / 2 + head_h / 2:.5f}" rgba="{rgba}"/>'
        )
        shaft_h = sz - head_h
        geoms.append(
            f'<geom class="part" type="cylinder" size="{shaft_r:.5f} {shaft_h / 2:.5f}" pos="0 0 {sz / 2 - shaft_h / 2:.5f}" rgba="{rgba}"/>'
        )
    else:
        raise ValueError(f"unknown part kind {spec.kind!r}")
    return f"{head}<freejoint name=\"{spec.name}_joint\"/>{''.join(geoms)}</body>"


def target_body(spec: ObjectSpec) -> str:
    """MJCF <body> of a static target: a floor with walls (bin, tray) or a pad with corner posts (fixture)."""
    ix, iy, wall_h = spec.dims
    rgba = _rgba(spec)
    c, s = np.cos(spec.yaw / 2), np.sin(spec.yaw / 2)
    geoms = []
    if spec.kind == "fixture":
        geoms.append(f'<geom class="target" type="box" size="{ix / 2:.5f} {iy / 2:.5f} {wall_h / 2:.5f}" pos="0 0 {wall_h / 2:.5f}" rgba="{rgba}"/>')
        for px in (-1, 1):
            for py in (-1, 1):
                geoms.append(
                    f'<geom class="target" type="cylinder" size="0.008 {FIXTURE_POST / 2}" pos="{px * (ix / 2 - 0.008):.5f} {py * (iy / 2 - 0.008):.5f} {wall_h + FIXTURE_POST / 2:.5f}" rgba="0.85 0.75 0.1 1"/>'
                )
    else:
        geoms.append(f'<geom class="target" type="box" size="{ix / 2 + WALL:.5f} {iy / 2 + WALL:.5f} {WALL / 2:.5f}" pos="0 0 {WALL / 2:.5f}" rgba="{rgba}"/>')
        top = WALL + wall_h
        for sign in (-1, 1):
            geoms.append(
                f'<geom class="target" type="box" size="{WALL / 2:.5f} {iy / 2 + WALL:.5f} {wall_h / 2:.5f}" pos="{sign * (ix / 2 + WALL / 2):.5f} 0 {top - wall_h / 2:.5f}" rgba="{rgba}"/>'
            )
            geoms.append(
                f'<geom class="target" type="box" size="{ix / 2:.5f} {WALL / 2:.5f} {wall_h / 2:.5f}" pos="0 {sign * (iy / 2 + WALL / 2):.5f} {top - wall_h / 2:.5f}" rgba="{rgba}"/>'
            )
    return f'<body name="{spec.name}" pos="{spec.xy[0]:.5f} {spec.xy[1]:.5f} 0" quat="{c:.6f} 0 0 {s:.6f}">{"".join(geoms)}</body>'


def distractor_body(spec: ObjectSpec) -> str:
    """MJCF <body> of static clutter (a ball, a cable spool, a pipe offcut)."""
    sx, sy, sz = spec.dims
    rgba = _rgba(spec)
    c, s = np.cos(spec.yaw / 2), np.sin(spec.yaw / 2)
    if spec.kind == "ball":
        geom = f'<geom class="target" type="sphere" size="{sz / 2:.5f}" pos="0 0 {sz / 2:.5f}" rgba="{rgba}"/>'
    elif spec.kind == "spool":
        geom = f'<geom class="target" type="cylinder" size="{sx / 2:.5f} {sz / 2:.5f}" pos="0 0 {sz / 2:.5f}" rgba="{rgba}"/>'
    else:
        geom = f'<geom class="target" type="capsule" size="{sz / 2:.5f} {(sx - sz) / 2:.5f}" pos="0 0 {sz / 2:.5f}" quat="0.7071068 0 0.7071068 0" rgba="{rgba}"/>'
    return f'<body name="{spec.name}" pos="{spec.xy[0]:.5f} {spec.xy[1]:.5f} 0" quat="{c:.6f} 0 0 {s:.6f}">{geom}</body>'


def object_body(spec: ObjectSpec) -> str:
    """MJCF <body> of any object, by category."""
    return {"part": part_body, "target": target_body, "distractor": distractor_body}[spec.category](spec)


def grasp_yaw(spec: ObjectSpec, object_yaw: float, gripper_yaw: float) -> float:
    """Gripper yaw (rad) that closes the jaws across the part's narrow side, nearest to `gripper_yaw`.
    Jaws close along the grip frame's y axis; boxes are symmetric every pi (pi/2 when square), hex parts every
    pi/3, round parts any angle."""
    if spec.kind in ("cylinder", "disc", "bolt"):
        return gripper_yaw
    base = object_yaw
    if spec.kind == "nut":
        period = np.pi / 3
        base = object_yaw + np.pi / 6  # hex corners sit at pi/6 + k pi/3, so this puts the jaws on two flats
    elif abs(spec.dims[0] - spec.dims[1]) < 1e-3:
        period = np.pi / 2
    else:
        period = np.pi
    # Boxes: the narrow side is the object's y axis (dims are sampled with x >= y), so jaw axis = object y.
    k = np.round((gripper_yaw - base) / period)
    return float(base + k * period)
