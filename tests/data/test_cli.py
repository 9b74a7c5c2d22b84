"""`clearvla data inspect|stats|clean|convert` end to end, and user errors as one line with exit code 2."""

from __future__ import annotations

import json

import numpy as np

from clearvla.cli import main
from clearvla.data.formats.hdf5 import write_hdf5
from clearvla.data.formats.lerobot import read_lerobot


def _libero_hdf5(tmp_path, synth, noops=2):
    episodes = []
    for k in range(3):
        episode = synth.make_episode(10, seed=k, instruction="open the drawer")
        raw = episode.actions.copy()
        raw[:noops, :6] = 0.0  # robot waits at the start: LIBERO no-ops
        raw[:, 6] = 1.0 - 2.0 * raw[:, 6]  # -1 open, +1 close
        episode.actions = raw
        episodes.append(episode)
    path = tmp_path / "libero_demo.hdf5"
    write_hdf5(path, episodes)
    return path


def test_convert_rlds_to_lerobot(tmp_path, synth, capsys):
    action = np.random.default_rng(0).normal(0, 0.01, size=(5, 7)).astype(np.float32)
    action[:, 6] = [-1, -1, 1, 1, 1]
    steps = synth.rlds_steps(5, 0, instruction="pick up the bowl", action=action, state=np.zeros((5, 8), np.float32),
                             cameras=("image", "wrist_image"))
    directory = synth.write_rlds(tmp_path, "libero_object_no_noops", [{"steps": steps}] * 2)
    assert main(["data", "convert", str(directory), str(tmp_path / "out")]) == 0
    assert "wrote 2 episodes, 10 frames" in capsys.readouterr().out
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert info["fps"] == 20  # LIBERO's control rate
    back = list(read_lerobot(tmp_path / "out"))
    np.testing.assert_array_equal(back[0].actions[:, 6], [1, 1, 0, 0, 0])


def test_clean_drops_noops_into_a_new_dataset(tmp_path, synth, capsys):
    path = _libero_hdf5(tmp_path, synth)
    before = path.read_bytes()
    assert main(["data", "clean", str(path), str(tmp_path / "clean"), "--fps", "20"]) == 0
    out = capsys.readouterr().out
    assert "noop 6" in out and "30 -> 24" in out
    assert [len(e) for e in read_lerobot(tmp_path / "clean")] == [8, 8, 8]
    assert path.read_bytes() == before  # nothing rewritten in place


def test_stats_writes_dataset_statistics(tmp_path, synth, capsys):
    path = _libero_hdf5(tmp_path, synth, noops=0)
    out = tmp_path / "dataset_statistics.json"
    assert main(["data", "stats", str(path), "--name", "libero_toy", "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    stats = json.loads(out.read_text())
    assert stats["libero_toy"]["num_trajectories"] == 3 and stats["libero_toy"]["num_transitions"] == 30
    assert stats["libero_toy"]["action"]["mask"] == [True] * 6 + [False]
    assert "libero_toy" in capsys.readouterr().out


def test_inspect(lerobot_dataset, capsys):
    root = lerobot_dataset(3)
    assert main(["data", "inspect", str(root), "--verify", "--sample", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 episodes" in out and "cameras [image 32x32, wrist_image 32x32]" in out and "33 in 3 readable" in out


def test_user_errors_are_one_line_and_exit_2(tmp_path, lerobot_dataset, capsys):
    root = lerobot_dataset(2)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["data", "convert", str(root), str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clearvla data: error:") and "not empty" in err and "\n" not in err
    assert main(["data", "inspect", str(tmp_path / "nowhere")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_on_error_skip_counts_unreadable_episodes(lerobot_dataset, tmp_path, capsys, caplog):
    root = lerobot_dataset(3, video_files_size_in_mb=0)
    video = root / "videos/observation.images.image/chunk-000/file-001.mp4"
    video.write_bytes(video.read_bytes()[:200])
    assert main(["data", "convert", str(root), str(tmp_path / "a")]) == 2
    assert "episode 1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["data", "convert", str(root), str(tmp_path / "b"), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 episodes" in captured.out and "1 unreadable episodes skipped" in captured.out
    assert "file-001.mp4" in caplog.text and "episode 1" in caplog.text  # the skip is logged with file and episode
