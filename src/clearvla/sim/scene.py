"""Builds the workcell MJCF for one episode: table, lights, cameras, the arm and the episode's objects.

The model is rebuilt for each episode (objects differ in kind and size); a build takes a few milliseconds.
Physics choices that keep the model cheap: primitive collision geoms only, arm links that do not collide,
static targets, the implicit-fast integrator, pyramidal friction cones (elliptic cones with a high impratio made squeezed parts explode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clearvla.sim.arm import ARM_DEFAULTS, WRIST_CAMERA, arm_mjcf
from clearvla.scene.objects import ObjectSpec
from clearvla.sim.objects import object_assets, object_body

FRONT_CAMERA = "front"
TABLE_CENTRE = (0.45, 0.0)
TABLE_HALF = (0.55, 0.7)  # the table top spans x in [-0.1, 1.0], y in [-0.7, 0.7]
# The front camera faces the robot over the workspace; image right is world +y.
FRONT_CAMERA_POS = (1.0, 0.0, 0.55)
FRONT_CAMERA_LOOKAT = (0.45, 0.0, 0.05)
FRONT_CAMERA_FOVY = 44.0
# The overhead camera is orthographic: a part's apparent size is its true size whatever its distance, which the front
# camera's perspective confounds (a near small part can look larger than a far large one). It looks down at the
# table centre TOP_CAMERA_TILT off vertical, from the side facing the robot: straight down, the arm hovering over
# the parts at an episode's start hides 5% of them outright and more in part (benchmarks/camera_views.py). It frames
# MOTION_REGION (x 0.27..0.67, y -0.30..0.30, the widest part and distractor region of any suite) with at least
# 5 cm to spare for the parts' own extent: TOP_CAMERA_VIEW metres per image side, across (world y) and up the image
# (world x, foreshortened by cos(tilt) on the table). Image right is world +y, image up towards the robot base.
TOP_CAMERA = "top"
TOP_CAMERA_LOOKAT = (0.47, 0.0, 0.0)
TOP_CAMERA_TILT = 40.0  # degrees from vertical, towards +x
TOP_CAMERA_DISTANCE = 1.6  # m from the look-at point (orthographic: it sets only what can come between)
TOP_CAMERA_POS = (
    TOP_CAMERA_LOOKAT[0] + TOP_CAMERA_DISTANCE * float(np.sin(np.radians(TOP_CAMERA_TILT))),
    TOP_CAMERA_LOOKAT[1],
    TOP_CAMERA_LOOKAT[2] + TOP_CAMERA_DISTANCE * float(np.cos(np.radians(TOP_CAMERA_TILT))),
)
TOP_CAMERA_VIEW = 0.72  # m, the orthographic view's height (and width: images are square)
# Observation key -> MuJoCo camera. Every camera is in every model; an env renders only the keys it is asked for.
CAMERAS: dict[str, str] = {"image": FRONT_CAMERA, "wrist_image": WRIST_CAMERA, "image_top": TOP_CAMERA}


@dataclass(frozen=True)
class Appearance:
    """What the visual suite varies. Colours are RGB in [0, 1]; `table_texture` is "plain" or a MuJoCo
    builtin 2-D texture ("checker", "gradient"); the key light comes from `light_dir` (unit vector, pointing from the light to the table)."""

    table_rgb: tuple[float, float, float] = (0.62, 0.60, 0.56)
    table_texture: str = "plain"
    table_rgb2: tuple[float, float, float] = (0.5, 0.5, 0.5)
    light_dir: tuple[float, float, float] = (0.0, 0.3, -1.0)
    light_diffuse: float = 0.7
    light_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.35


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to build one episode's model."""

    objects: tuple[ObjectSpec, ...]
    appearance: Appearance = field(default_factory=Appearance)
    # Grip-site pose (x, y, z in metres, yaw in radians; gripper pointing down, jaws open) the arm starts the
    # episode in; None starts it at the home posture (`arm.HOME_QPOS`).
    arm_start: tuple[float, float, float, float] | None = None


def _look_at_xyaxes(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    forward = np.subtract(target, pos)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.5f}" for v in (*right, *up))


def _fmt(v: tuple[float, ...]) -> str:
    return " ".join(f"{x:.4f}" for x in v)


def build_mjcf(scene: SceneSpec, *, image_size: int, physics_dt: float) -> str:
    """The full MJCF string. `image_size` sizes the offscreen buffer; `physics_dt` is the timestep (s)."""
    app = scene.appearance
    arm_body, arm_act = arm_mjcf()
    buffer = max(image_size, 64)
    if app.table_texture == "plain":
        table_tex = ""
        table_mat = f'<material name="table" rgba="{_fmt(app.table_rgb)} 1" specular="0.1"/>'
    else:
        table_tex = (
            f'<texture name="table_tex" type="2d" builtin="{app.table_texture}" width="256" height="256" '
            f'rgb1="{_fmt(app.table_rgb)}" rgb2="{_fmt(app.table_rgb2)}" mark="edge" markrgb="{_fmt(app.table_rgb2)}"/>'
        )
        table_mat = '<material name="table" texture="table_tex" texrepeat="6 6" specular="0.1"/>'
    light_dir = np.asarray(app.light_dir, dtype=float)
    light_dir /= np.linalg.norm(light_dir)
    light_pos = np.array([0.45, 0.0, 0.0]) - 2.0 * light_dir
    diffuse = tuple(app.light_diffuse * c for c in app.light_rgb)
    assets = "\n    ".join(a for a in (object_assets(o) for o in scene.objects) if a)
    bodies = "\n    ".join(object_body(o) for o in scene.objects)
    return f"""<mujoco model="clearvla_workcell">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{physics_dt}" integrator="implicitfast" impratio="10" iterations="30"
          ls_iterations="10"/>
  <visual>
    <global offwidth="{buffer}" offheight="{buffer}"/>
    <quality shadowsize="1024"/>
    <headlight ambient="{app.ambient} {app.ambient} {app.ambient}" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
    <map znear="0.01"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.6 0.65" rgb2="0.2 0.22 0.25" width="64" height="64"/>
    {table_tex}
    {table_mat}
    <material name="floor" rgba="0.25 0.25 0.27 1"/>
    <material name="arm_light" rgba="0.78 0.80 0.82 1" specular="0.3"/>
    <material name="arm_dark" rgba="0.16 0.25 0.42 1" specular="0.3"/>
    <material name="gripper" rgba="0.25 0.25 0.27 1"/>
    <material name="finger" rgba="0.12 0.12 0.12 1"/>
    {assets}
  </asset>
  <default>
    {ARM_DEFAULTS}
    <default class="part"><geom contype="1" conaffinity="1" density="600" condim="4" friction="1.0 0.01 0.001" solref="0.01 1"/></default>
    <default class="visual"><geom contype="0" conaffinity="0" group="1" mass="0"/></default>
    <default class="target"><geom contype="1" conaffinity="1" condim="3" friction="0.8 0.01 0.001"/></default>
  </default>
  <worldbody>
    <light name="key" pos="{_fmt(tuple(light_pos))}" dir="{_fmt(tuple(light_dir))}" directional="true"
           diffuse="{_fmt(diffuse)}" specular="0.1 0.1 0.1" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="{TABLE_HALF[0]} {TABLE_HALF[1]} 0.02" pos="{TABLE_CENTRE[0]} {TABLE_CENTRE[1]} -0.02"
          material="table" contype="1" conaffinity="1" friction="0.6 0.01 0.001"/>
    <camera name="{FRONT_CAMERA}" pos="{_fmt(FRONT_CAMERA_POS)}" xyaxes="{_look_at_xyaxes(FRONT_CAMERA_POS, FRONT_CAMERA_LOOKAT)}"
            fovy="{FRONT_CAMERA_FOVY}"/>
    <camera name="{TOP_CAMERA}" pos="{_fmt(TOP_CAMERA_POS)}" xyaxes="{_look_at_xyaxes(TOP_CAMERA_POS, TOP_CAMERA_LOOKAT)}"
            projection="orthographic" fovy="{TOP_CAMERA_VIEW}"/>
{arm_body}
    {bodies}
  </worldbody>
  <actuator>
{arm_act}
  </actuator>
</mujoco>
"""
