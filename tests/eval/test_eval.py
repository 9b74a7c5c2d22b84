import json

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.errors import ConfigError
from clearvla.eval.report import EpisodeResult, SuiteReport
from clearvla.eval.stats import exact_mcnemar, wilson_interval
from clearvla.eval.workcell import evaluate_suite
from clearvla.models.vla import VLA
from clearvla.sim.failure import FAILURE_MODES

STATS = {"workcell": {"action": {"q01": [-0.03] * 6 + [0.0], "q99": [0.03] * 6 + [1.0], "mask": [True] * 6 + [False]}}}


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 4) == (0.0, pytest.approx(0.4899, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_known_values():
    assert exact_mcnemar(5, 0) == pytest.approx(2 / 32)  # five discordant pairs, all one way
    assert exact_mcnemar(6, 1) == exact_mcnemar(1, 6) == pytest.approx(2 * 8 / 128)
    assert exact_mcnemar(10, 10) == 1.0 and exact_mcnemar(0, 0) == 1.0
    assert exact_mcnemar(20, 2) < 0.001


def test_report_summarises_per_task_with_intervals():
    report = SuiteReport("ckpt", "train", [
        EpisodeResult("train", 0, "pick", "pick up the red block", True, 12),
        EpisodeResult("train", 1, "pick", "pick up the blue block", False, 60, "videos/x.mp4", "wrong_part"),
        EpisodeResult("train", 2, "push", "push the nut left", True, 20),
        EpisodeResult("train", 3, "push", "push the bolt left", False, 60, None, "short_push"),
    ])
    s = report.summary()
    assert s["successes"] == 2 and s["episodes"] == 4 and s["per_task"]["pick"]["success_rate"] == 0.5
    assert s["ci95"] == list(wilson_interval(2, 4))
    assert s["failure_modes"] == {"short_push": 1, "wrong_part": 1} and s["per_task"]["pick"]["failure_modes"] == {"wrong_part": 1}
    md = report.markdown()
    assert "| pick | 2 | 50.0% |" in md and "[video](videos/x.mp4)" in md
    assert "| failures by mode | wrong_part | short_push |" in md and "| push | 0 | 1 |" in md and "| all | 1 | 1 |" in md
    assert '#1 pick: "pick up the blue block" — wrong_part' in md


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = VLA.from_config("tiny", image_size=32, norm_stats=STATS)
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny32")


def test_eval_cli_runs_episodes_in_worker_processes_and_writes_reports(checkpoint, tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(checkpoint), "--suite", "train", "--episodes", "2",
                 "--workers", "2", "--out", str(tmp_path), "--videos", "all"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())["suites"][0]
    assert report["episodes"] == 2 and [r["index"] for r in report["results"]] == [0, 1]
    assert len(list((tmp_path / "videos").glob("train_000*.mp4"))) == 2
    # Every failure is named (a random model fails both), in the report, the console and the video's file name.
    assert all(r["failure"] in FAILURE_MODES for r in report["results"] if not r["success"])
    assert all(f"failure_{r['failure']}.mp4" in r["video"] for r in report["results"] if not r["success"])
    out = capsys.readouterr().out
    assert "| train | 2 |" in out and ("train failures: " in out) == (report["successes"] < 2)
    assert (tmp_path / "report.md").read_text().startswith("# Evaluation of")
    # Results do not depend on how episodes are spread over workers.
    alone = evaluate_suite(checkpoint, "train", 1, workers=1, videos="none").episodes[0]
    assert (alone.index, alone.success, alone.steps) == (0, report["results"][0]["success"], report["results"][0]["steps"])


def test_bad_requests_are_named(checkpoint, tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown suite|valid|suite"):
        evaluate_suite(checkpoint, "kitchen", 1)
    with pytest.raises(ConfigError, match=r"has episodes 0\.\.4999; asked for 100000 from 0"):
        evaluate_suite(checkpoint, "train", 100000)
    with pytest.raises(ConfigError, match="asked for 2 from 4999"):
        evaluate_suite(checkpoint, "train", 2, start=4999)
    assert main(["eval", "--checkpoint", str(checkpoint), "--benchmark", "libero_spatial", "--start", "3"]) == 2
    assert "--start apply to --suite" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--episodes", "1"]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_start_picks_episodes_past_the_recorded_ones(checkpoint, tmp_path):
    assert main(["eval", "--checkpoint", str(checkpoint), "--suite", "train", "--episodes", "1", "--start", "4321",
                 "--workers", "1", "--out", str(tmp_path), "--videos", "none"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())["suites"][0]
    assert [r["index"] for r in report["results"]] == [4321]


def test_tasks_plays_only_those_tasks_episodes(checkpoint, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "--suite", "train", "--episodes", "2", "--start", "4000",
                 "--tasks", "stack", "--workers", "1", "--out", str(tmp_path), "--videos", "none"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())["suites"][0]
    assert [(r["index"], r["task"]) for r in report["results"]] == [(4002, "stack"), (4006, "stack")]
    with pytest.raises(ConfigError, match=r"has episodes 0\.\.4999 \(249 of them stack from 4003\); asked for 250"):
        evaluate_suite(checkpoint, "train", 250, start=4003, tasks=["stack"])
    assert main(["eval", "--checkpoint", str(checkpoint), "--suite", "train", "--tasks", "lift"]) == 2
    assert "unknown task(s) 'lift'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "--benchmark", "libero_spatial", "--tasks", "stack"]) == 2
    assert "--benchmark --tasks takes task ids (integers), got stack" in capsys.readouterr().err


def test_video_frames_keep_one_size_before_and_after_the_first_action():
    import numpy as np

    from clearvla.eval.rollout import overlay

    frame = np.zeros((128, 128, 3), np.uint8)
    first = overlay(frame, "put the small red bolt in the tray on the left", None)
    later = overlay(frame, "put the small red bolt in the tray on the left", np.array([0.012, -0.003, -0.025, 0, 0, 0.1, 1.0]))
    assert first.shape == later.shape and first.shape[1] == 256


@pytest.fixture(scope="module")
def chunk_checkpoint(tmp_path_factory):
    model = VLA.from_config("tiny", image_size=32, norm_stats=STATS, action_chunk=4, seed=1, execute_actions=3)
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny32-chunk")


@pytest.fixture
def served(chunk_checkpoint):
    """`clearvla serve`'s app for the chunk checkpoint on a free loopback port, in a thread of this process."""
    import socket
    import threading
    import time

    import uvicorn

    from clearvla.serve.app import ServeConfig, create_app, load_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(load_model(chunk_checkpoint, device="cpu"), ServeConfig(token="t"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_eval_through_a_server_matches_the_checkpoint_played_locally(chunk_checkpoint, served, tmp_path):
    """`clearvla eval --server`: the same model behind `clearvla serve` plays the same episodes step for step (its
    chunks run open loop through client.RemotePolicy's queue, as VLAPolicy's locally, both re-planning after the
    3 actions the checkpoint's `execute_actions` names)."""
    assert main(["eval", "--server", served, "--token", "t", "--suite", "train", "--episodes", "2", "--workers", "1",
                 "--out", str(tmp_path), "--videos", "none"]) == 0
    remote = json.loads((tmp_path / "report.json").read_text())["suites"][0]["results"]
    local = evaluate_suite(chunk_checkpoint, "train", 2, workers=1, videos="none", execute=3).episodes
    assert [(r["success"], r["steps"]) for r in remote] == [(e.success, e.steps) for e in local]
    from clearvla.client import PolicyClient, RemotePolicy

    policy = RemotePolicy(PolicyClient(served, token="t"))
    obs = {"image": np.zeros((32, 32, 3), np.uint8)}
    first = [policy.select_action(obs, {"instruction": "pick up the nut"}) for _ in range(4)]
    assert len(policy.queue) == 2  # the 4th action came from a second request, whose chunk has 2 left
    chunk = VLA.from_pretrained(chunk_checkpoint).predict_action_chunk(obs, "pick up the nut")
    np.testing.assert_allclose(first[:3], chunk[:3].astype(np.float32))


def test_eval_server_errors_are_named(served, chunk_checkpoint, capsys):
    assert main(["eval", "--server", served, "--token", "wrong", "--episodes", "1"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["eval", "--server", served, "--token", "t", "--episodes", "1", "--quantize", "int8"]) == 2
    assert "quantize: set on the server" in capsys.readouterr().err
    assert main(["eval", "--server", served, "--token", "t", "--episodes", "1", "--execute", "5"]) == 2
    assert "between 1 and the served model's chunk size 4, got 5" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(chunk_checkpoint), "--token", "t", "--episodes", "1"]) == 2
    assert "--token goes with --server" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="exactly one"):
        evaluate_suite(chunk_checkpoint, "train", 1, server=served)
