"""Handover recording: a policy acts first, the expert finishes from wherever it left the arm, and only the
expert's part is written."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.errors import ConfigError
from clearvla.models.vla import VLA
from clearvla.sim import record, suites
from clearvla.sim.env import WorkcellEnv
from clearvla.sim.expert import DEFAULT_STEP_NOISE, ScriptedExpert
from clearvla.sim.handover import Handover, HandoverPolicy
from clearvla.sim.rollout import run_episode
from clearvla.sim.tasks import STEP_LIMITS

STATS = {"workcell": {"action": {"q01": [-0.02] * 3 + [-0.1] * 3 + [0.0], "q99": [0.02] * 3 + [0.1] * 3 + [1.0],
                                 "mask": [True] * 6 + [False]}}}


def _drift(obs, info) -> np.ndarray:
    """A poor first policy: slides the open gripper sideways."""
    return np.array([0.0, 0.015, 0.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)


def test_the_expert_keeps_a_part_it_finds_in_the_jaws() -> None:
    env = WorkcellEnv("train", images=False)
    spec = next(s for s in suites.episodes("train") if s.task == "place")
    first = ScriptedExpert(env, seed=0)
    obs, info = env.reset(options={"episode": spec})
    first.reset()
    obj = env.setup.task.obj
    while not env.world.held(obj):
        obs, *_ = env.step(first(obs, info))
    for _ in range(3):  # jaws closed on the part
        obs, *_ = env.step(first(obs, info))
    taking_over = ScriptedExpert(env, seed=1)
    taking_over.reset()
    done = False
    for step in range(env.setup.max_steps):
        action = taking_over(obs, info)
        if step < 5:
            assert action[6] == 0.0  # keeps the jaws closed instead of opening to grasp again
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            done = True
            break
    assert done and info["success"]


def test_the_expert_takes_over_at_a_seeded_step_and_finishes() -> None:
    env = WorkcellEnv("train", images=False)
    handover = Handover("unused", 0.2, 0.4)
    steps = []
    for spec in suites.episodes("train")[:4]:  # one of each task
        policy = HandoverPolicy(_drift, ScriptedExpert(env, seed=0), handover)
        rollout = run_episode(env, policy, spec)
        assert rollout.success, spec.task
        assert int(0.2 * STEP_LIMITS[spec.task]) <= policy.handover_step <= int(0.4 * STEP_LIMITS[spec.task])
        assert all(a[1] == 0.015 for a in rollout.actions[: policy.handover_step])  # the first policy's steps
        expert_part = rollout.since(policy.handover_step)
        assert len(expert_part) == len(rollout) - policy.handover_step and expert_part.actions[0][1] != 0.015
        steps.append(policy.handover_step)
    again = HandoverPolicy(_drift, ScriptedExpert(env, seed=0), handover)
    run_episode(env, again, suites.episodes("train")[0])
    assert again.handover_step == steps[0]  # drawn from the episode's seed


def test_window_must_be_ordered_fractions() -> None:
    for first, last in ((0.5, 0.2), (-0.1, 0.2), (0.0, 1.0)):
        with pytest.raises(ConfigError, match="handover fractions"):
            Handover("x", first, last)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = VLA.from_config("tiny", image_size=32, norm_stats=STATS, seed=0)
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny32")


def test_record_writes_the_experts_part_after_a_checkpoints_steps(checkpoint, tmp_path) -> None:
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    args = ["sim", "record", "--suite", "train", "--episodes", "2", "--image-size", "32", "--no-wrist"]
    assert main([*args, "--out", str(tmp_path / "expert")]) == 0
    assert main([*args, "--out", str(tmp_path / "at0"), "--handover", str(checkpoint), "--handover-window", "0", "0"]) == 0
    assert main([*args, "--out", str(tmp_path / "late"), "--handover", str(checkpoint),
                 "--handover-window", "0.3", "0.4"]) == 0  # fmt: skip
    expert, at0, late = (list(lerobot.read_lerobot(tmp_path / name)) for name in ("expert", "at0", "late"))
    for a, b in zip(expert, at0):  # handing over at step 0 is the expert alone
        np.testing.assert_array_equal(a.actions, b.actions)
        assert b.metadata["handover_step"] == 0 and b.metadata["handover_checkpoint"] == str(checkpoint)
    for ep in late:
        limit = STEP_LIMITS[ep.metadata["task"]]
        assert int(0.3 * limit) <= ep.metadata["handover_step"] <= int(0.4 * limit)
        assert len(ep) + ep.metadata["handover_step"] <= limit and ep.metadata["success"]
        assert ep.metadata["handover_window"] == [0.3, 0.4]
    assert not np.array_equal(late[0].proprio[0], expert[0].proprio[0])  # starts where the checkpoint left the arm


def test_record_handover_errors_exit_2(checkpoint, tmp_path, capsys) -> None:
    args = ["sim", "record", "--episodes", "1", "--image-size", "32", "--no-wrist"]
    assert main([*args, "--out", str(tmp_path / "a"), "--handover", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--handover", str(checkpoint), "--handover-window", "0.6", "0.2"]) == 2
    wrist = VLA.from_config("tiny", image_size=32, norm_stats=STATS, cameras=("image", "wrist_image"))
    wrist_checkpoint = wrist.save_pretrained(tmp_path / "wrist")
    assert main([*args, "--out", str(tmp_path / "c"), "--handover", str(wrist_checkpoint)]) == 2
    assert "wrist_image" in capsys.readouterr().err


def test_a_first_episode_the_first_policy_finishes_alone_is_skipped(monkeypatch) -> None:
    """A worker whose very first episode the first policy finishes before the handover (so the expert never planned
    one) skips it and records the next, as it does for any later episode."""
    envs: list[WorkcellEnv] = []

    class SeenExpert(ScriptedExpert):
        def __init__(self, env, **kwargs) -> None:
            super().__init__(env, **kwargs)
            envs.append(env)

    capable: list[ScriptedExpert] = []

    def first(obs, info) -> np.ndarray:
        """Another expert in episode 0 (a 22-step pick, done before the handover at 24-27); then holds still."""
        if envs[0].setup.spec.index != 0:
            return np.array([0.0] * 6 + [1.0], dtype=np.float32)
        if not capable:
            capable.append(ScriptedExpert(envs[0], seed=0))
            capable[0].reset()
        return capable[0](obs, info)

    monkeypatch.setattr(record, "ScriptedExpert", SeenExpert)
    monkeypatch.setattr(Handover, "load_policy", lambda self, cameras: first)
    player = record._Player("train", 32, ("image",), 10.0, 0, None, True, Handover("ckpt", 0.4, 0.45))
    played = list(player.play([0, 2]))
    assert played[0] == (0, None)
    index, episode = played[1]
    assert index == 2 and episode is not None and episode.metadata["handover_step"] >= 40
    assert episode.metadata["expert_step_noise"] == DEFAULT_STEP_NOISE
