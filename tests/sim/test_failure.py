"""Failure modes name what went wrong: the scripted expert is sent after another goal than the episode's task,
and the trace of what the arm did must say how that fails the task."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clearvla.sim import suites
from clearvla.sim.env import WorkcellEnv
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.failure import GripperTrace
from clearvla.sim.rollout import run_episode
from clearvla.sim.tasks import TaskSpec


class ActsOn:
    """The expert, carrying out `goal(task)` instead of the episode's task (the env's task is swapped after reset)."""

    def __init__(self, env: WorkcellEnv, goal) -> None:
        self.env, self.goal, self.expert = env, goal, ScriptedExpert(env, seed=0)
        self.task: TaskSpec | None = None

    def reset(self) -> None:
        assert self.env.setup is not None
        self.task = self.env.setup.task
        self.env.setup = replace(self.env.setup, task=self.goal(self.task))
        self.expert.reset()

    def __call__(self, obs, info) -> np.ndarray:
        return self.expert(obs, info)


def play(index: int, policy) -> GripperTrace:
    """The contacts of train episode `index` played by `policy`."""
    env = WorkcellEnv("train", images=False)
    trace = GripperTrace()
    run_episode(env, policy(env), suites.episode("train", index), record=False, on_step=lambda o, i: trace.observe(env.world))
    return trace


@pytest.mark.parametrize("suite", ["train", "physical"])
def test_the_expert_comes_down_at_its_own_part_first(suite):
    """The expert always goes for the named part, so the trace must say so (400 of 400 episodes of train,
    physical, motion and semantic did when this was written; 12 here)."""
    env = WorkcellEnv(suite, images=False)
    expert = ScriptedExpert(env, seed=0, step_noise=0.004)
    for spec in suites.episodes(suite)[:12]:
        trace = GripperTrace()
        rollout = run_episode(env, expert, spec, record=False, on_step=lambda o, i: trace.observe(env.world))
        assert rollout.success and trace.reached_for == env.setup.task.obj, (spec, trace)
        assert trace.failure_mode(env.setup.task, rollout.success) is None
        assert trace.held == ({env.setup.task.obj} if env.setup.task.task != "push" else set())


def test_an_arm_that_never_comes_down_is_named():
    trace = play(0, lambda env: lambda obs, info: np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32))
    assert trace.failure_mode(suites.setup(suites.episode("train", 0)).task, False) == "no_approach"
    assert trace.reached_for is None and not trace.held


@pytest.mark.parametrize("index, goal, expected", [
    (0, lambda t: replace(t, obj="part0"), "wrong_part"),  # picks another part
    (1, lambda t: TaskSpec("pick", t.obj), "not_finished"),  # lifts the part it should place, never places it
    (2, lambda t: TaskSpec("push", t.obj, direction="left"), "no_grasp"),  # pushes the part it should stack
    (3, lambda t: replace(t, direction="right"), "short_push"),  # pushes the named part the other way
])
def test_failure_mode_names_what_the_arm_did_instead(index, goal, expected):
    trace = play(index, lambda env: ActsOn(env, goal))
    assert trace.failure_mode(suites.setup(suites.episode("train", index)).task, False) == expected
