"""Process-level guarantees: SIGKILL loses at most one checkpoint interval; torchrun DDP on CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearvla.models.vla import VLA
from clearvla.train.checkpointing import checkpoint_dirs, final_checkpoint

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
SCRIPT = HELPERS / "train_synthetic.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}


def test_sigkill_mid_training_then_resume(tmp_path):
    run = tmp_path / "run"
    save_every = 3
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(run), "400", str(save_every)],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    last_step, deadline = 0, time.time() + 120
    for line in proc.stdout:  # kill once a few checkpoints exist, at whatever point training has reached
        last_step = int(line.split()[1])
        if last_step >= 3 * save_every + 1 or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    dirs = checkpoint_dirs(run)
    assert dirs, "no checkpoint survived"
    for d in dirs:  # every visible checkpoint is complete and loads
        VLA.from_pretrained(d / "model")
    saved = int(dirs[-1].name.split("-")[1])
    assert last_step - saved <= save_every  # at most one interval lost
    assert final_checkpoint(run) is None  # an interrupted run has no final checkpoint

    out = subprocess.run([sys.executable, str(SCRIPT), str(run), str(saved + 2), str(save_every), "--resume"],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() [:4] == ["step", str(saved + 1), "step", str(saved + 2)]
    assert not list((run / "checkpoints").glob(".tmp*"))  # half-written saves are cleaned up
    assert final_checkpoint(run) == run / "checkpoints" / f"step-{saved + 2:08d}"


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_cpu_processes_see_different_data_and_end_identical(tmp_path, strategy):
    record = tmp_path / "ddp.json"
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(tmp_path / "run"), "4", "4", "--record", str(record), "--strategy", strategy],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"ddp-rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["samples"]) == len(ranks[1]["samples"]) == 16
    assert not set(ranks[0]["samples"]) & set(ranks[1]["samples"])  # different data
    assert ranks[0]["weights"] == ranks[1]["weights"]  # identical weights after all-reduced steps
    dirs = checkpoint_dirs(tmp_path / "run")
    assert len(dirs) == 1  # only rank 0 writes, full (unsharded) weights even under FSDP
    VLA.from_pretrained(dirs[0] / "model")
