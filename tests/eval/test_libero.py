"""LIBERO evaluation: the protocol's pure parts, and the harness playing a stand-in for LIBERO, run everywhere;
the rollouts in LIBERO itself need the `libero` extra (`make libero-env`, its own venv) and are skipped in the main
environment."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.errors import CheckpointError, ConfigError, MissingExtraError, UnnormKeyError
from clearvla.eval import libero
from clearvla.models.vla import VLA

needs_libero = pytest.mark.skipif(importlib.util.find_spec("libero") is None,
                                  reason="LIBERO extra not installed: make libero-env")

ACTION = {"q01": [-0.9] * 6 + [0.0], "q99": [0.9] * 6 + [1.0], "mask": [True] * 6 + [False]}


# --- protocol constants and pure pre/post-processing ---------------------------------------------------
def test_protocol_constants_match_openvla_run_libero_eval():
    assert libero.MAX_STEPS == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300,
                                "libero_10": 520, "libero_90": 400}
    assert libero.NUM_STEPS_WAIT == 10 and libero.DUMMY_ACTION == (0, 0, 0, 0, 0, 0, -1)
    assert (libero.TRIALS_PER_TASK, libero.RESOLUTION, libero.POLICY_SEED) == (50, 256, 7)


@pytest.mark.parametrize("gripper, expected", [(1.0, -1.0), (0.9, -1.0), (0.1, 1.0), (0.0, 1.0), (0.5, 0.0)])
def test_gripper_is_binarised_to_plus_minus_one_and_inverted(gripper, expected):
    # Ours: 1 = open, 0 = closed. LIBERO: -1 = open, +1 = close (normalize_gripper_action + invert_gripper_action).
    action = np.array([0.01, -0.02, 0.03, 0.1, -0.2, 0.3, gripper])
    out = libero.to_libero_action(action)
    assert out[6] == expected and np.array_equal(out[:6], action[:6])
    assert action[6] == gripper  # the input is not modified


def test_action_of_the_wrong_size_is_named():
    with pytest.raises(ValueError, match="7-D actions"):
        libero.to_libero_action(np.zeros(8))


def test_images_are_rotated_180_degrees_then_resized():
    image = np.zeros((256, 256, 3), np.uint8)
    image[:128, :128] = (255, 0, 0)  # red top-left in the raw render ...
    assert np.array_equal(libero.rotate_180(image), np.rot90(image, 2))
    out = libero.preprocess_image(image, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[28, 28, 0] > 200 and out[28, 28, 1] < 50  # ... is bottom-right for the model
    assert out[4, 4].max() < 50


def test_state_is_eef_position_axis_angle_and_gripper():
    quarter_turn_z = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # (x, y, z, w)
    assert np.allclose(libero.quat_to_axis_angle(quarter_turn_z), [0, 0, np.pi / 2])
    assert np.array_equal(libero.quat_to_axis_angle(np.array([0.0, 0, 0, 1])), np.zeros(3))
    obs = {"robot0_eef_pos": np.array([0.1, 0.2, 0.3]), "robot0_eef_quat": quarter_turn_z,
           "robot0_gripper_qpos": np.array([0.04, -0.04])}
    assert np.allclose(libero.robot_state(obs), [0.1, 0.2, 0.3, 0, 0, np.pi / 2, 0.04, -0.04])


def fake_obs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"agentview_image": rng.integers(0, 256, (256, 256, 3), np.uint8),
            "robot0_eye_in_hand_image": rng.integers(0, 256, (256, 256, 3), np.uint8),
            "robot0_eef_pos": np.zeros(3), "robot0_eef_quat": np.array([0.0, 0, 0, 1]), "robot0_gripper_qpos": np.zeros(2)}


def test_policy_gets_front_image_only_unless_it_reads_wrist_and_state():
    front_only = libero.policy_observation(fake_obs(), ("image",), 32, proprio=False)
    assert list(front_only) == ["image"] and front_only["image"].shape == (32, 32, 3)
    full = libero.policy_observation(fake_obs(), ("image", "wrist_image"), 32, proprio=True)
    assert sorted(full) == ["image", "proprio", "wrist_image"] and full["proprio"].shape == (8,)
    assert np.array_equal(full["wrist_image"], libero.preprocess_image(fake_obs()["robot0_eye_in_hand_image"], 32))


def test_models_libero_cannot_feed_are_refused():
    with pytest.raises(CheckpointError, match="front and a wrist camera"):
        libero.check_inputs(("image", "left_image"), 0)
    with pytest.raises(CheckpointError, match="13-D robot state"):
        libero.check_inputs(("image",), 13)


def test_unnorm_key_defaults_to_the_suite_then_no_noops_then_the_only_key():
    assert libero.resolve_unnorm_key({"libero_goal": {}, "bridge": {}}, "libero_goal", None) == "libero_goal"
    assert libero.resolve_unnorm_key({"libero_10_no_noops": {}, "bridge": {}}, "libero_10", None) == "libero_10_no_noops"
    assert libero.resolve_unnorm_key({"workcell": {}}, "libero_10", None) == "workcell"
    assert libero.resolve_unnorm_key({"a": {}, "b": {}}, "libero_10", "b") == "b"
    with pytest.raises(UnnormKeyError, match="pass --unnorm-key, one of: a, b"):
        libero.resolve_unnorm_key({"a": {}, "b": {}}, "libero_10", None)
    with pytest.raises(UnnormKeyError, match="unknown unnorm_key 'c'"):
        libero.resolve_unnorm_key({"a": {}}, "libero_10", "c")


def test_missing_extra_names_make_libero_env(monkeypatch):
    for name in ("libero", "libero.libero", "libero.libero.envs"):  # importing them -> ImportError, installed or not
        monkeypatch.setitem(sys.modules, name, None)
    libero.task_suite.cache_clear()
    with pytest.raises(MissingExtraError, match="make libero-env"):
        libero.episode_plan("libero_spatial")
    libero.task_suite.cache_clear()


# --- CLI argument validation (no LIBERO, no checkpoint needed) -------------------------------------------
def test_unknown_benchmark_lists_the_valid_ones(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path), "--benchmark", "libero_spatail"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'libero_spatial'" in err
    assert "libero_spatial, libero_object, libero_goal, libero_10, libero_90" in err


def test_benchmark_and_suite_together_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(tmp_path), "--suite", "train", "--benchmark", "libero_10"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "libero_10", "--episodes", "3"], "--episodes apply to --suite"),
    (["--benchmark", "libero_10", "--image-size", "128"], "--image-size apply to --suite"),
    (["--suite", "train", "--tasks", "0"], "unknown task(s) '0'; tasks: pick, place, stack, push"),  # names here
    (["--trials-per-task", "5"], "--trials-per-task apply to --benchmark"),
])
def test_options_of_the_other_mode_are_errors(tmp_path, capsys, argv, message):
    assert main(["eval", "--checkpoint", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_benchmark_requests_fail_before_any_worker(tmp_path):
    with pytest.raises(ConfigError, match="unknown LIBERO benchmark"):
        libero.evaluate_benchmark(tmp_path, "libero_100")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        libero.evaluate_benchmark(tmp_path, "libero_10")


# --- the harness with a stand-in for LIBERO (runs everywhere) --------------------------------------------
class FakeLiberoEnv:
    """LIBERO's env interface for task 0 (done on the policy step `trial + 1`) and task 1 (never done)."""

    def __init__(self, task) -> None:
        self.task, self.steps, self.actions = task, 0, []

    def seed(self, seed: int) -> None:
        pass

    def reset(self) -> None:
        self.steps = 0

    def set_init_state(self, state: np.ndarray) -> dict:
        self.trial = int(state[0])
        return fake_obs()

    def step(self, action: list[float]) -> tuple:
        self.steps += 1
        self.actions.append(action)
        return fake_obs(), 0.0, self.task.id == 0 and self.steps == libero.NUM_STEPS_WAIT + self.trial + 1, {}

    def close(self) -> None:
        pass


def test_the_harness_plays_libero_episodes_with_the_protocol(tmp_path, monkeypatch):
    """Episode index = task * trials + trial, LIBERO's `done` is success, the wait steps are not counted, the
    policy reads the wrist camera and state it was trained on, and videos are named by task and trial."""
    from types import SimpleNamespace

    tasks = [SimpleNamespace(id=i, name=f"task{i}", language=f"do task {i}") for i in range(2)]
    suite = SimpleNamespace(n_tasks=2, get_task=tasks.__getitem__,
                            get_task_init_states=lambda i: [np.array([trial]) for trial in range(3)])
    envs = []
    monkeypatch.setattr(libero, "task_suite", lambda name: suite)
    monkeypatch.setattr(libero, "make_env", lambda task: envs.append(FakeLiberoEnv(task)) or envs[-1])
    stats = {"libero_goal_no_noops": {"action": ACTION, "proprio": {"q01": [-1.0] * 8, "q99": [1.0] * 8}},
             "bridge": {"action": ACTION}}
    checkpoint = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=8,
                                 norm_stats=stats).save_pretrained(tmp_path / "ckpt")
    report = libero.evaluate_benchmark(checkpoint, "libero_goal", trials_per_task=3, tasks=[1, 0], max_steps=4,
                                       workers=1, out_dir=tmp_path / "out", videos="all")
    results = sorted(report.episodes, key=lambda r: r.index)
    assert [(r.index, r.task, r.success, r.steps) for r in results] == [
        (0, "00_task0", True, 1), (1, "00_task0", True, 2), (2, "00_task0", True, 3),
        (3, "01_task1", False, 4), (4, "01_task1", False, 4), (5, "01_task1", False, 4)]
    assert all(r.failure is None and r.instruction == f"do task {r.index // 3}" for r in results)
    assert [env.task.id for env in envs] == [0, 1]  # one environment per task and worker
    assert all(a[6] in (-1.0, 1.0) for env in envs for a in env.actions)  # LIBERO's gripper convention
    assert sorted(p.name for p in (tmp_path / "out" / "videos").glob("*.mp4")) == [
        "libero_goal_00_00_success.mp4", "libero_goal_00_01_success.mp4", "libero_goal_00_02_success.mp4",
        "libero_goal_01_00_failure.mp4", "libero_goal_01_01_failure.mp4", "libero_goal_01_02_failure.mp4"]


# --- rollouts in LIBERO (the extra's venv only) --------------------------------------------------------
@needs_libero
def test_cli_runs_libero_episodes_in_workers_and_writes_reports(tmp_path, capsys):
    stats = {"libero_spatial_no_noops": {"action": ACTION}, "bridge": {"action": ACTION}}
    checkpoint = VLA.from_config("tiny", image_size=32, norm_stats=stats).save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "eval"
    code = main(["eval", "--checkpoint", str(checkpoint), "--benchmark", "libero_spatial", "--tasks", "3",
                 "--trials-per-task", "2", "--max-steps", "3", "--workers", "2", "--out", str(out), "--videos", "all"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())["suites"][0]
    assert report["suite"] == "libero_spatial" and report["episodes"] == 2
    assert [r["index"] for r in report["results"]] == [6, 7]  # task 3, trials 0 and 1
    assert all(r["task"].startswith("03_") and 1 <= r["steps"] <= 3 for r in report["results"])
    assert sorted(p.name.rsplit("_", 1)[0] for p in (out / "videos").glob("*.mp4")) == \
        ["libero_spatial_03_00", "libero_spatial_03_01"]
    assert "| libero_spatial | 2 |" in capsys.readouterr().out


@needs_libero
def test_wrist_camera_and_state_are_fed_to_models_that_read_them(tmp_path):
    proprio = {"q01": [-1.0] * 8, "q99": [1.0] * 8}
    stats = {"libero_goal": {"action": ACTION, "proprio": proprio}}
    checkpoint = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=8,
                                 norm_stats=stats).save_pretrained(tmp_path / "ckpt")
    report = libero.evaluate_benchmark(checkpoint, "libero_goal", tasks=[0], trials_per_task=1, max_steps=2,
                                       workers=1, videos="none")
    (episode,) = report.episodes
    assert episode.index == 0 and episode.instruction and 1 <= episode.steps <= 2 and episode.video is None
