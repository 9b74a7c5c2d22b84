"""`clearvla sim ...`: record writes a LeRobot v3 dataset that reads back; video writes files; errors exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.sim.arm import HOME_QPOS


def test_record_writes_a_dataset_that_reads_back(tmp_path) -> None:
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    out = tmp_path / "demos"
    assert main(["sim", "record", "--suite", "train", "--episodes", "2", "--out", str(out), "--image-size", "32", "--seed", "1"]) == 0
    episodes = list(lerobot.read_lerobot(out))
    assert len(episodes) == 2
    for i, ep in enumerate(episodes):
        assert ep.cameras == ["image", "wrist_image"]
        assert ep.images["image"].shape[1:] == (32, 32, 3)
        assert ep.actions.shape == (len(ep), 7) and ep.proprio.shape == (len(ep), 13)
        assert ep.instruction and ep.is_terminal[-1]
        assert ep.metadata["suite"] == "train" and ep.metadata["task"] in ("pick", "place")
        assert ep.metadata["success"] is True
        assert np.isin(ep.actions[:, 6], (0.0, 1.0)).all()
        assert ep.metadata["random_start"] is True
    # an existing non-empty directory is never overwritten
    assert main(["sim", "record", "--episodes", "1", "--out", str(out)]) == 2


def test_home_start_records_every_episode_from_the_home_posture(tmp_path) -> None:
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    out = tmp_path / "home"
    args = ["sim", "record", "--episodes", "2", "--out", str(out), "--image-size", "32", "--no-wrist", "--home-start"]
    assert main(args) == 0
    episodes = list(lerobot.read_lerobot(out))
    assert all(ep.metadata["random_start"] is False for ep in episodes)
    np.testing.assert_allclose(episodes[0].proprio[0], episodes[1].proprio[0], atol=1e-4)  # one start pose
    np.testing.assert_allclose(episodes[0].proprio[0, 7:], HOME_QPOS, atol=1e-3)


def test_recording_in_worker_processes_writes_the_same_dataset(tmp_path) -> None:
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    args = ["sim", "record", "--suite", "train", "--episodes", "3", "--image-size", "32", "--start", "5"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert len(list(lerobot.read_lerobot(tmp_path / "one"))) == 3
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for name in files:  # byte for byte, videos included
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert main([*args, "--out", str(tmp_path / "none"), "--workers", "0"]) == 2


def test_stop_bounds_the_episodes_played(tmp_path, caplog) -> None:
    """--stop keeps a recording out of the scenes it must not see (train 4000-4999 are the evaluation's): it writes
    fewer than asked rather than play past it."""
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    out = tmp_path / "bounded"
    args = ["sim", "record", "--episodes", "5", "--start", "3", "--stop", "5", "--image-size", "32", "--no-wrist"]
    assert main([*args, "--out", str(out)]) == 0
    assert [ep.metadata["index"] for ep in lerobot.read_lerobot(out)] == [3, 4]
    assert "ran out of episodes before 5" in caplog.text
    assert main([*args[:-5], "--stop", "3", "--out", str(tmp_path / "empty")]) == 2  # stop must come after start


def test_the_cli_task_choices_are_the_simulators_tasks() -> None:
    from clearvla.commands.sim import TASK_CHOICES
    from clearvla.sim.tasks import TASKS

    assert TASK_CHOICES == TASKS


def test_tasks_records_only_those_tasks_episodes(tmp_path) -> None:
    """--tasks holds the other tasks out, e.g. a model's data without stack to fine-tune on stack later."""
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    out = tmp_path / "push"
    args = ["sim", "record", "--episodes", "2", "--tasks", "push", "--image-size", "32", "--no-wrist"]
    assert main([*args, "--out", str(out)]) == 0
    assert [(ep.metadata["index"], ep.metadata["task"]) for ep in lerobot.read_lerobot(out)] == [(3, "push"), (7, "push")]
    with pytest.raises(SystemExit, match="2"):  # not a task: argparse lists the choices
        main([*args[:-5], "--tasks", "lift", "--out", str(tmp_path / "bad")])
    assert main([*args, "--start", "4", "--stop", "6", "--out", str(tmp_path / "none")]) == 2  # no push in 4..5


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_video(tmp_path, suffix: str) -> None:
    out = tmp_path / f"ep{suffix}"
    assert main(["sim", "video", "--suite", "physical", "--episode", "0", "--out", str(out), "--image-size", "64"]) == 0
    assert out.stat().st_size > 1000


def test_user_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["sim", "video", "--suite", "nope", "--out", str(tmp_path / "x.gif")]) == 2
    assert "valid suites" in capsys.readouterr().err
    assert main(["sim", "video", "--out", str(tmp_path / "x.avi")]) == 2
    assert main(["sim", "video", "--episode", "99999", "--out", str(tmp_path / "x.gif")]) == 2
    assert main(["sim", "record", "--suite", "train", "--episodes", "0", "--out", str(tmp_path / "d")]) == 2


def test_expert_and_suites_commands(capsys) -> None:
    assert main(["sim", "expert", "--suite", "train", "--episodes", "4"]) == 0
    assert "| train | 4 | 100.0% |" in capsys.readouterr().out
    assert main(["sim", "suites"]) == 0
    assert "ambiguous" in capsys.readouterr().out
