"""The scripted expert succeeds on a few episodes of every suite and task (the full measurement lives in
benchmarks/expert_success.py)."""

from __future__ import annotations

import pytest

from clearvla.errors import InputError
from clearvla.sim import suites
from clearvla.sim.env import WorkcellEnv
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.rollout import evaluate, run_episode


@pytest.mark.parametrize("suite", suites.SUITES)
def test_expert_succeeds_on_every_task(suite: str) -> None:
    env = WorkcellEnv(suite, images=False)
    report = evaluate(env, ScriptedExpert(env, seed=0), suites.episodes(suite)[:8])  # two of each task
    assert set(report.per_task) == {"pick", "place", "stack", "push"}
    assert report.rate == 1.0, report.to_dict()


def test_expert_is_deterministic_and_varies_with_seed() -> None:
    env = WorkcellEnv("train", images=False)
    spec = suites.episode("train", 1)
    a = run_episode(env, ScriptedExpert(env, seed=0), spec)
    b = run_episode(env, ScriptedExpert(env, seed=0), spec)
    c = run_episode(env, ScriptedExpert(env, seed=1), spec)
    assert a.success and b.success and c.success
    assert len(a) == len(b) and all((x == y).all() for x, y in zip(a.actions, b.actions))
    assert len(a) != len(c) or any((x != y).any() for x, y in zip(a.actions, c.actions))


def test_expert_actions_are_sensible_per_step() -> None:
    env = WorkcellEnv("train", images=False)
    out = run_episode(env, ScriptedExpert(env, seed=0), suites.episode("train", 2))
    assert out.success and 15 <= len(out) <= 60
    for action in out.actions:
        assert abs(action[:3]).max() <= 0.03 and action[6] in (0.0, 1.0)


def test_step_noise_disturbs_the_path_and_the_expert_still_recovers() -> None:
    env = WorkcellEnv("train", images=False)
    quiet, noisy = ScriptedExpert(env, seed=0), ScriptedExpert(env, seed=0, step_noise=0.004)
    report = evaluate(env, noisy, suites.episodes("train")[:8])  # two of each task
    assert noisy.style.noise == 0.004 and report.rate == 1.0, report.to_dict()
    lengths = [len(run_episode(env, expert, suites.episode("train", 1))) for expert in (quiet, noisy)]
    assert lengths[1] > lengths[0]  # corrections take steps
    with pytest.raises(InputError, match="step_noise"):
        ScriptedExpert(env, step_noise=0.5)
