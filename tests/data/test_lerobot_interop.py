"""LeRobot round trip against the real `lerobot` package (0.6.1), which lives in its own environment
(`make lerobot-env`: Python 3.12, torch < 2.12); tests/data/lerobot_interop.py runs there as a subprocess. LeRobot
opens our simulator recordings; datasets LeRobot's own writer made (AV1, H.264, PNG) inspect, convert and train."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clearvla.cli import main
from clearvla.data.formats.lerobot import LeRobotSource

LEROBOT_VENV = Path(__file__).resolve().parents[2] / ".venv-lerobot"
LEROBOT_PY = LEROBOT_VENV / "bin" / "python"
SCRIPT = Path(__file__).with_name("lerobot_interop.py")
# the stamp `make lerobot-env` writes last: a half-built environment is not built
pytestmark = pytest.mark.skipif(not (LEROBOT_VENV / ".installed").is_file(), reason="lerobot env not built: make lerobot-env")


def _lerobot(tmp: Path, *args: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Run the lerobot-side script; returns its OUT.json and OUT.npz (the last argument is OUT)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp / "hf_lerobot"), "PYTHONPATH": ""}
    done = subprocess.run([str(LEROBOT_PY), str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"lerobot side failed:\n{done.stderr[-4000:]}"
    out = Path(args[-1])
    with np.load(out.with_suffix(".npz")) as frames:
        return json.loads(out.with_suffix(".json").read_text()), dict(frames)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Two simulator episodes at 64 px: two cameras, proprio, attention masks (64 is a multiple of 32)."""
    out = tmp_path_factory.mktemp("sim") / "workcell"
    assert main(["sim", "record", "--suite", "train", "--episodes", "2", "--out", str(out), "--image-size", "64"]) == 0
    return out


@pytest.fixture(scope="module")
def lerobot_view(recording, tmp_path_factory) -> tuple[dict, dict[str, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("lerobot")
    return _lerobot(tmp, "read", str(recording), str(tmp / "ours"))


def test_lerobot_reads_our_recording_as_we_do(recording, lerobot_view):
    report, frames = lerobot_view
    source = LeRobotSource(recording)
    episodes = [source.load(i) for i in range(len(source))]
    info = json.loads((recording / "meta/info.json").read_text())
    assert report["features"] == {k: {"dtype": f["dtype"], "shape": f["shape"]} for k, f in info["features"].items()}
    assert report["fps"] == source.fps and report["total_episodes"] == len(episodes)
    ends = np.cumsum([len(e) for e in episodes]).tolist()
    assert report["bounds"] == [[a, b] for a, b in zip([0, *ends[:-1]], ends)] and report["total_frames"] == ends[-1]
    assert report["episode_tasks"] == [[e.instruction] for e in episodes]
    assert report["frame_tasks"] == [episodes[0].instruction, episodes[-1].instruction]
    assert report["camera_keys"] == [f"observation.images.{c}" for c in source.cameras] and len(source.cameras) == 2
    for camera in source.cameras:  # the same decoder output, pixel for pixel
        np.testing.assert_array_equal(frames[f"observation.images.{camera}"], np.concatenate([e.images[camera] for e in episodes]))
    assert report["sample_shapes"]["observation.attention.image"] == [32 * 32]  # one more vector to LeRobot ...
    assert episodes[0].attention["image"].shape == (len(episodes[0]), 32, 32)  # ... masks to us
    assert report["delta"] == {"shape": [3, 7], "pad": [False, True, True]}  # delta_timestamps stop at the episode end


def test_lerobot_aggregates_our_recordings(recording, lerobot_view):
    report, frames = lerobot_view
    source = LeRobotSource(recording)
    last = source.load(len(source) - 1).images[source.cameras[0]][-1]
    n = int(json.loads((recording / "meta/info.json").read_text())["total_frames"])
    assert report["aggregated"] == {"total_episodes": 2 * len(source), "total_frames": 2 * n, "last_index": 2 * n - 1}
    np.testing.assert_array_equal(frames["aggregated_last"], last)


def test_our_statistics_are_lerobots(recording, lerobot_view):
    """Per-episode stats columns match lerobot's compute_episode_stats on the same frames; stats.json covers every
    feature LeRobot has stats for but the attention masks (clearvla/data/formats/lerobot_stats.py says why)."""
    report, _ = lerobot_view
    row = pq.read_table(recording / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[0]
    theirs = {k: v for k, v in report["episode_stats"].items() if not k.startswith("observation.attention.")}
    ours = {k for k in json.loads((recording / "meta/stats.json").read_text())}
    assert set(report["stats_keys"]) == ours and set(theirs) <= ours
    assert {c.split("/")[1] for c in row if c.startswith("stats/")} == ours
    for key, stats in theirs.items():
        low, high = np.asarray(stats["min"]), np.asarray(stats["max"])
        count = int(stats["count"][0])
        for name, value in stats.items():
            if key == "next.done" and name.startswith("q"):
                continue  # 0/1 values: between the two there is no agreeing on where q99 lies
            mine = np.asarray(row[f"stats/{key}/{name}"], dtype=np.float64).reshape(np.shape(value))
            # Moments: LeRobot sums in float32 (a std of 1.5e-4 beside values of 0.04 came out 0 there; ours is
            # float64). Quantiles: LeRobot reads them off a 5,000-bin histogram, numpy interpolates between order
            # statistics; on few frames the two differ by up to a sample gap, ~2/count of the range.
            tol = (np.maximum(0.01, 2 / count) * (high - low) if name.startswith("q") else 1e-3 * np.maximum(abs(low), abs(high)))
            assert np.all(np.abs(mine - np.asarray(value)) <= tol + 1e-6), f"stats/{key}/{name}: {mine} vs {value}"


@pytest.mark.parametrize("mode", ["av1", "h264", "png"])
def test_lerobot_written_dataset_inspects_converts_and_trains(mode, tmp_path, capsys):
    root = tmp_path / f"so100_{mode}"
    report, frames = _lerobot(tmp_path, "write", str(root), mode, str(tmp_path / "written"))
    assert report["total_episodes"] == 2 and report["codec"] == {"av1": "av1", "h264": "h264", "png": None}[mode]
    source = LeRobotSource(root)
    assert source.cameras == ["front"] and source.fps == report["fps"]
    episodes = [source.load(i) for i in range(len(source))]
    np.testing.assert_array_equal(np.concatenate([e.images["front"] for e in episodes]), frames["decoded"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in episodes]), frames["actions"])
    assert [e.instruction for e in episodes] == ["push the block left", "push the block right"]

    assert main(["data", "inspect", str(root)]) == 0
    assert "cameras [front 48x64]" in capsys.readouterr().out
    assert main(["data", "convert", str(root), str(tmp_path / "converted")]) == 0
    converted = LeRobotSource(tmp_path / "converted")
    assert converted.cameras == ["front"] and len(converted) == 2
    error = converted.load(1).images["front"].astype(float) - episodes[1].images["front"]
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 35  # PSNR in dB: re-encoded as H.264, CRF 18
    # one camera `front`: it feeds the model's only camera, `image`, with no flag
    assert main(["train", "--datasets", str(root), "--run-dir", str(tmp_path / "run"), "--image-size", "32",
                 "--batch-size", "4", "--max-steps", "2", "--save-every", "2", "--num-workers", "0"]) == 0
    assert "done: step 2" in capsys.readouterr().out
