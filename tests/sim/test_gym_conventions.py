"""gymnasium conventions: the registry's TimeLimit, `RecordEpisodeStatistics` (plain and vectorised), `check_env`
with no warnings, and finite proprio bounds that every observation lies inside."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from clearvla.sim import ENV_ID, ENV_IDS, MAX_EPISODE_STEPS, suites
from clearvla.sim.arm import GRIP_SITE, JOINT_RANGE, JOINTS
from clearvla.sim.env import ARM_REACH, JOINT_SLACK, PROPRIO_HIGH, PROPRIO_KEYS, PROPRIO_LOW, SHOULDER, WorkcellEnv
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.tasks import STEP_LIMITS

HOLD = np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)  # stay put with the jaws open: never succeeds
SEEDS = [4, 0]  # reset(seed=...) draws a pick (60-step limit) and a place (100), both of which the expert solves


def make(**kwargs) -> gym.Env:
    """The registered env through `gymnasium.make` (its wrappers included), proprio-only for speed."""
    return gym.make(ENV_ID, images=False, **kwargs)


def play(env: gym.Env, options: dict) -> tuple[int, bool, bool, dict]:
    """Hold still for one episode; (steps, terminated, truncated, last info)."""
    env.reset(options=options)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(HOLD)
        steps += 1
        if terminated or truncated:
            return steps, terminated, truncated, info
        assert "episode" not in info  # the statistics key appears only at the end, and only if a wrapper adds it


def test_registered_time_limit_agrees_with_the_env_s_own_truncation() -> None:
    assert MAX_EPISODE_STEPS == max(STEP_LIMITS.values()) == 100
    assert all(gym.spec(i).max_episode_steps == MAX_EPISODE_STEPS for i in [ENV_ID, *ENV_IDS.values()])
    env = make()
    assert isinstance(env, gym.wrappers.TimeLimit)
    steps, terminated, truncated, info = play(env, {"index": 1})  # place: both the env and TimeLimit end it here
    assert (steps, terminated, truncated, info["task"]) == (100, False, True, "place")
    assert env.unwrapped.steps == env.get_wrapper_attr("_elapsed_steps") == info["step"] == 100
    steps, _, truncated, info = play(env, {"index": 0})  # pick: the env's own limit ends it first
    assert (steps, truncated, info["task"], info["max_steps"]) == (60, True, "pick", 60)
    steps, _, truncated, _ = play(make(max_episode_steps=30), {"index": 1})  # a shorter TimeLimit wins
    assert (steps, truncated) == (30, True)


def test_record_episode_statistics_plain() -> None:
    env = gym.wrappers.RecordEpisodeStatistics(make())
    expert = ScriptedExpert(env, seed=0)
    env.reset(options={"index": 2})
    expert.reset()
    steps = 0
    while True:
        _, reward, terminated, truncated, info = env.step(expert())
        steps += 1
        if terminated or truncated:
            break
    assert terminated and reward == 1.0 and info["task"] == "stack"
    assert info["episode"]["r"] == 1.0 and info["episode"]["l"] == steps == info["step"]
    assert info["episode_spec"] == asdict(suites.episode("train", 2))  # our own episode info, under its own key
    _, _, truncated, info = play(env, {"index": 0})
    assert truncated and (info["episode"]["r"], info["episode"]["l"]) == (0.0, 60)
    assert list(env.length_queue) == [steps, 60] and list(env.return_queue) == [1.0, 0.0]


def test_record_episode_statistics_sync_vector() -> None:
    """Each sub-env solved by its own expert: at its first episode end the stats hold its return and length."""
    vec = gym.wrappers.vector.RecordEpisodeStatistics(gym.vector.SyncVectorEnv([make, make]))
    _, info = vec.reset(seed=SEEDS)
    assert list(info["task"]) == ["pick", "place"]
    pick, place = info["instruction_parse"]  # batched whole per sub-env, though only the place has a target
    assert pick["target"] is None and place["target"]["kind"] and place == vec.unwrapped.envs[1].unwrapped.setup.parse
    experts = [ScriptedExpert(env, seed=0) for env in vec.unwrapped.envs]
    for expert in experts:
        expert.reset()
    steps, done, stats = np.zeros(2, dtype=int), np.zeros(2, dtype=bool), {}
    while not done.all():
        actions = np.stack([HOLD if d else e() for e, d in zip(experts, done)])
        _, rewards, terminated, truncated, info = vec.step(actions)
        steps += ~done
        for i in np.flatnonzero((terminated | truncated) & ~done):
            assert terminated[i] and rewards[i] == 1.0 and info["_episode"][i]
            stats[i] = (info["episode"]["r"][i], info["episode"]["l"][i], info["step"][i])
        done |= terminated | truncated
    assert [stats[0][0], stats[1][0]] == [1.0, 1.0]
    assert [stats[i][1] for i in (0, 1)] == [stats[i][2] for i in (0, 1)] == list(steps)
    assert steps[0] != steps[1]  # per-env lengths, not a shared counter
    vec.close()


def test_record_episode_statistics_async_vector() -> None:
    vec = gym.wrappers.vector.RecordEpisodeStatistics(gym.vector.AsyncVectorEnv([make, make]))
    try:
        _, info = vec.reset(seed=SEEDS)
        ends = {}
        for t in range(1, MAX_EPISODE_STEPS + 1):
            _, _, terminated, truncated, info = vec.step(np.stack([HOLD, HOLD]))
            for i in np.flatnonzero(truncated):
                ends[int(i)] = (t, info["episode"]["r"][i], info["episode"]["l"][i])
            assert not terminated.any()
        assert ends == {0: (60, 0.0, 60), 1: (100, 0.0, 100)}
    finally:
        vec.close(timeout=10)  # terminates the workers if a failed call left them waiting


@pytest.mark.parametrize("kwargs", [{"images": False}, {"image_size": 32}], ids=["proprio_only", "cameras"])
def test_check_env_passes_without_warnings(kwargs: dict) -> None:
    env = gym.make(ENV_ID, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)  # through gymnasium.make's wrappers: only gymnasium's notice that it checks a wrapped env
    assert all("different from the unwrapped version" in str(w.message) for w in caught) and len(caught) == 1
    env.close()


def test_proprio_bounds_follow_from_the_arm() -> None:
    """The position bound is the reach (link offsets summed, triangle inequality) around the fixed shoulder;
    random postures across the joint ranges put the grip site inside it."""
    env = WorkcellEnv("train", images=False)
    env.reset(seed=0)
    model = env.world.model
    space = env.observation_space["proprio"]
    assert np.isfinite(space.low).all() and np.isfinite(space.high).all()
    np.testing.assert_array_equal(space.low, PROPRIO_LOW)
    chain = ["upper_arm_link", "forearm_link", "wrist_1_link", "wrist_2_link", "wrist_3_link", "tool"]
    reach = sum(np.linalg.norm(model.body(b).pos) for b in chain) + np.linalg.norm(model.site(GRIP_SITE).pos)
    assert ARM_REACH - 0.01 < reach <= ARM_REACH
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    np.testing.assert_allclose(data.body("shoulder_link").xpos, SHOULDER)
    np.testing.assert_array_equal(model.jnt_range[[model.joint(j).id for j in JOINTS]], JOINT_RANGE)
    qadr = [model.jnt_qposadr[model.joint(j).id] for j in JOINTS]
    rng = np.random.default_rng(0)
    for q in rng.uniform(JOINT_RANGE[:, 0], JOINT_RANGE[:, 1], (500, 6)):
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        grip = data.site(GRIP_SITE).xpos
        assert np.linalg.norm(grip - SHOULDER) <= ARM_REACH
        assert (PROPRIO_LOW[:3] <= grip).all() and (grip <= PROPRIO_HIGH[:3]).all()


def test_observations_stay_inside_the_space_over_episodes() -> None:
    """Random actions and runs into the workspace corners (which drive joints onto their soft limits)."""
    env = WorkcellEnv("train", images=False)
    rng = np.random.default_rng(0)
    corners = [np.array([sx, sy, sz]) * 0.03 for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    overshoot = -np.inf  # the furthest any joint got past its nominal range (rad)
    for episode in range(12):
        obs, _ = env.reset(options={"index": 4 * episode + 1})  # place tasks: 100 steps each
        assert env.observation_space.contains(obs)
        for t in range(100):
            if episode < len(corners):  # the corner, then twist and tilt the gripper as far as allowed
                twist = np.zeros(3) if t < 50 else np.array([0.25 * (-1) ** episode, 0.25, 0.25])
                action = np.concatenate([corners[episode], twist, [float(t < 50)]])
            else:
                action = rng.uniform(env.action_space.low, env.action_space.high)
            obs, *_ = env.step(action.astype(np.float32))
            assert env.observation_space.contains(obs), dict(zip(PROPRIO_KEYS, obs["proprio"]))
            q = obs["proprio"][7:]
            overshoot = max(overshoot, (JOINT_RANGE[:, 0] - q).max(), (q - JOINT_RANGE[:, 1]).max())
    assert 0 < overshoot < JOINT_SLACK  # joints went past their nominal limits, and the slack covers it
