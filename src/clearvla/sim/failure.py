"""Why an episode failed, from the simulator's ground truth: where the arm first came down, and what it held.

Call `GripperTrace.observe(world)` after reset and after every step; `failure_mode(task, success)` then names
the first mode of `FAILURE_MODES` that fits (None for a success). The modes separate grounding errors (the arm
went for the wrong part) from control errors (it found the part but fumbled it), which success rates alone hide.
The part the arm went for is the first movable object the grip site comes down at: within REACH of its footprint
circle in the table plane and at most ABOVE_TOP over its top face (every grasp and push of the scripted expert
does so at its own part; parts stand at least `sampling.GAP` apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clearvla.sim.tasks import TaskSpec, top_z
from clearvla.sim.world import Workcell

# mode -> what it means; checked in this order.
FAILURE_MODES: dict[str, str] = {
    "not_finished": "held the named part, but did not lift, place or stack it",
    "no_approach": "never brought the gripper down at any object",
    "wrong_part": "first came down at another object, and never held the named part",
    "no_grasp": "came down at the named part, never held it in both fingers",
    "short_push": "came down at the named part, did not push it far enough the named way",
}
REACH = 0.03  # m, grip site beyond the object's footprint circle in the table plane
ABOVE_TOP = 0.02  # m, grip site over the object's top face


@dataclass
class GripperTrace:
    """What the arm did so far: `reached_for`, the movable object (part or distractor) it first came down at (None
    until it does), and `held`, the objects it has held in both fingers."""

    reached_for: str | None = None
    held: set[str] = field(default_factory=set)

    def observe(self, world: Workcell) -> None:
        """Record the current state of `world`."""
        movable = [name for name, spec in world.specs.items() if spec.category != "target"]
        if self.reached_for is None:
            grip = world.arm.ee_pose(world.data)[0]
            distance = {name: float(np.linalg.norm((world.position(name) - grip)[:2])) for name in movable}
            nearest = min(distance, key=distance.__getitem__)
            near = distance[nearest] < world.specs[nearest].footprint_radius + REACH
            if near and grip[2] < top_z(world, nearest) + ABOVE_TOP:
                self.reached_for = nearest
        self.held.update(name for name in movable if world.held(name))

    def failure_mode(self, task: TaskSpec, success: bool) -> str | None:
        """A key of FAILURE_MODES for a failed episode of `task`, None for a success."""
        if success:
            return None
        if task.obj in self.held and task.task != "push":
            return "not_finished"
        if self.reached_for is None:
            return "no_approach"
        if self.reached_for != task.obj:
            return "wrong_part"
        return "short_push" if task.task == "push" else "no_grasp"
