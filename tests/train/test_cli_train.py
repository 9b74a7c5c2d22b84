"""`clearvla train` and `clearvla merge` on a small LeRobot dataset the test writes itself."""

import json

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.train.config import TrainConfig
from clearvla.errors import ConfigError
from clearvla.data.episode import Episode
from clearvla.data.formats.lerobot import LeRobotWriter
from clearvla.models.vla import VLA
from clearvla.train.checkpointing import final_checkpoint


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "pushes"
    rng = np.random.default_rng(0)
    with LeRobotWriter(root, fps=10, robot_type="synthetic") as writer:
        for e in range(8):
            side, brightness = e % 2, rng.uniform(0, 1)
            actions = np.zeros((12, 7), np.float32)
            actions[:, 0] = 0.01 if side else -0.01
            actions[:, 6] = float(brightness > 0.5)
            writer.add_episode(Episode(
                images={"image": np.full((12, 32, 32, 3), int(brightness * 255), np.uint8)}, actions=actions,
                instruction=("push the block left", "push the block right")[side], dataset_name="pushes"))
    return root


def test_train_from_a_yaml_config_with_overrides_then_resume(dataset, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    run = tmp_path / "run"
    config.write_text(f"datasets: [{dataset}]\nrun_dir: {run}\nimage_size: 32\nbatch_size: 4\nmax_steps: 50\n"
                      f"num_workers: 0\nlog_every: 2\nsave_every: 4\neval_every: 4\nlr: 0.001\n")
    assert main(["train", "--config", str(config), "--max-steps", "4"]) == 0  # the override wins
    out = capsys.readouterr().out
    assert "parameters trainable" in out and "done: step 4" in out
    assert json.loads((run / "train_config.json").read_text())["max_steps"] == 4
    assert final_checkpoint(run) == run / "checkpoints" / "step-00000004"
    assert main(["train", "--config", str(config), "--max-steps", "6", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    assert final_checkpoint(run) == run / "checkpoints" / "step-00000006"  # the pointer follows the finished run
    model = VLA.from_pretrained(run / "checkpoints" / "step-00000006" / "model")
    assert set(model.norm_stats) == {"pushes"}


def test_lora_train_then_merge_then_predict(dataset, tmp_path, capsys):
    run = tmp_path / "lora"
    assert main(["train", "--datasets", str(dataset), "--run-dir", str(run), "--image-size", "32", "--mode", "lora",
                 "--lora-rank", "4", "--batch-size", "4", "--max-steps", "2", "--save-every", "2", "--num-workers", "0"]) == 0
    assert main(["merge", "--run", str(run), "--out", str(tmp_path / "merged")]) == 0
    merged = VLA.from_pretrained(tmp_path / "merged")
    assert merged.predict_action(np.zeros((32, 32, 3), np.uint8), "push the block left").shape == (7,)
    assert (tmp_path / "merged" / "dataset_statistics.json").is_file()


def test_bad_config_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [x]\nlearning_rate: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown field(s) learning_rate" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path)]) == 2
    assert "no datasets given" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_camera_dataset(tmp_path_factory):
    """The pushes again, with a wrist view and a 4-D robot state whose first entry says the side."""
    root = tmp_path_factory.mktemp("data2") / "wrist_pushes"
    with LeRobotWriter(root, fps=10, robot_type="synthetic") as writer:
        for e in range(6):
            side = e % 2
            actions = np.zeros((10, 7), np.float32)
            actions[:, 0] = 0.01 if side else -0.01
            state = np.zeros((10, 4), np.float32)
            state[:, 0], state[:, 1] = side, np.arange(10)
            writer.add_episode(Episode(
                images={"image": np.full((10, 32, 32, 3), 90, np.uint8), "wrist_image": np.full((10, 32, 32, 3), 30 + side, np.uint8)},
                actions=actions, proprio=state, instruction="push the block", dataset_name="wrist_pushes"))
    return root


def test_train_with_wrist_camera_and_proprio_then_add_them_to_a_single_image_checkpoint(two_camera_dataset, dataset, tmp_path):
    run = tmp_path / "multi"
    assert main(["train", "--datasets", str(two_camera_dataset), "--run-dir", str(run), "--image-size", "32", "--cameras",
                 "image", "wrist_image", "--proprio", "--proprio-indices", "0", "2", "--batch-size", "4", "--max-steps",
                 "2", "--save-every", "2", "--num-workers", "0"]) == 0
    model = VLA.from_pretrained(run / "checkpoints" / "step-00000002" / "model")
    assert model.config.cameras == ("image", "wrist_image") and model.config.proprio_dim == 4
    assert model.config.proprio_indices == (0, 2)
    with pytest.raises(ConfigError, match="need proprio=True"):
        TrainConfig(datasets=(str(two_camera_dataset),), proprio_indices=(0,))
    views = {"image": np.zeros((32, 32, 3), np.uint8), "wrist_image": np.zeros((32, 32, 3), np.uint8)}
    assert model.predict_action(views, "push the block", proprio=np.zeros(4)).shape == (7,)

    # OpenVLA-OFT's path: a single-image checkpoint fine-tuned (LoRA) with the new inputs, then merged
    single = tmp_path / "single"
    assert main(["train", "--datasets", str(dataset), "--run-dir", str(single), "--image-size", "32", "--batch-size", "4",
                 "--max-steps", "1", "--save-every", "1", "--num-workers", "0"]) == 0
    lora = tmp_path / "lora_multi"
    assert main(["train", "--init", str(single / "checkpoints" / "step-00000001" / "model"), "--datasets",
                 str(two_camera_dataset), "--run-dir", str(lora), "--mode", "lora", "--lora-rank", "4", "--cameras",
                 "image", "wrist_image", "--proprio", "--batch-size", "4", "--max-steps", "2", "--save-every", "2",
                 "--num-workers", "0"]) == 0
    assert main(["merge", "--run", str(lora), "--out", str(tmp_path / "merged")]) == 0
    merged = VLA.from_pretrained(tmp_path / "merged")
    assert merged.config.cameras == ("image", "wrist_image") and merged.proprio_projector is not None
    assert merged.predict_action(views, "push the block", proprio=np.zeros(4)).shape == (7,)


def test_attention_supervision_trains_a_bidirectional_chunk_model(tmp_path, capsys):
    """`--attention-loss` and `--focus-loss` read the datasets' attention masks, log their losses and save slot
    embeddings and the focus head; token models cannot have them."""
    root = tmp_path / "masked_pushes"
    with LeRobotWriter(root, fps=10, robot_type="synthetic") as writer:
        for e in range(4):
            masks = np.zeros((10, 8, 8), np.uint8)
            masks[:, e % 2 * 4 : e % 2 * 4 + 2, 3] = 1
            actions = np.zeros((10, 7), np.float32)
            actions[:, 0] = 0.01 if e % 2 else -0.01
            writer.add_episode(Episode(
                images={"image": np.full((10, 32, 32, 3), 90, np.uint8)}, actions=actions,
                instruction="push the block", dataset_name="masked_pushes", attention={"image": masks}))
    run = tmp_path / "supervised"
    assert main(["train", "--datasets", str(root), "--run-dir", str(run), "--image-size", "32", "--action-chunk", "2",
                 "--prefix-attention", "bidirectional", "--attention-loss", "1.0", "--focus-loss", "0.5", "--batch-size", "4", "--max-steps", "2",
                 "--save-every", "2", "--log-every", "1", "--num-workers", "0", "--val-fraction", "0"]) == 0
    assert "done: step 2, loss" in (out := capsys.readouterr().out) and "action L1" in out  # chunk models: no token accuracy
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["attention_loss"] > 0 and row["focus_loss"] > 0 for row in logged if "loss" in row)
    model = VLA.from_pretrained(run / "checkpoints" / "step-00000002" / "model")
    assert model.config.slot_embeddings and model.config.prefix_attention == "bidirectional" and model.config.focus_head
    with pytest.raises(ConfigError, match="need an action-chunk model"):
        TrainConfig(datasets=(str(root),), attention_loss=1.0)
    with pytest.raises(ConfigError, match="need an action-chunk model"):
        TrainConfig(datasets=(str(root),), focus_loss=1.0)


def test_a_second_dataset_normalised_like_the_first_adds_no_key(dataset, tmp_path):
    import shutil

    more = shutil.copytree(dataset, tmp_path / "pushes_more")
    run = tmp_path / "run"
    assert main(["train", "--datasets", str(dataset), str(more), "--normalize-like", "", "pushes", "--run-dir", str(run),
                 "--image-size", "32", "--batch-size", "4", "--max-steps", "1", "--save-every", "1",
                 "--num-workers", "0"]) == 0
    model = VLA.from_pretrained(run / "checkpoints" / "step-00000001" / "model")
    assert set(model.norm_stats) == {"pushes"}  # predict and eval need no --unnorm-key
    with pytest.raises(ConfigError, match="normalize_like entries"):
        TrainConfig(datasets=(str(dataset), str(more)), normalize_like=("",))


def test_help_into_a_closed_pipe_stops_quietly():
    """`clearvla train --help | head` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "clearvla.cli", "train", "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the help is written (start-up takes over a second)
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
