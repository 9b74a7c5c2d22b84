"""scripts/ship_default_model.py: the model card is written from the stages' manifests and carries earlier stages
over without counting any twice."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship_default_model.py"


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_default_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CARD = """# clearvla default model

- **Data**: `clearvla sim record --suite train --episodes 10 --out runs/data/a --image-size 128 --seed 0`.
- **Training**: mode `full`, 500 steps × batch 8, AdamW lr 0.0002
  (cosine, 100 warmup), seed 0; about 90 min on a
  2-core CPU (all 2 stages). Final train loss 0.1.
- **Stage 1** (runs/first): 1000 steps from scratch on runs/data/a, all state entries, lr 0.001.
- **Stage 2** (runs/second), this model: fine-tuned from stage 1, as above.
- **Reproduce**: `make default-model`.
"""


def _manifest(run: str, init: str, init_run: str | None = None, datasets: dict | None = None) -> dict:
    """A stage manifest as `clearvla recipe run` writes it (the fields the card reads); 30 min of training."""
    return {"init": init, "init_run": init_run, "wall_s": 1800.0, "steps": 500, "datasets": datasets or {},
            "config": {"run_dir": run, "datasets": [d["path"] for d in (datasets or {}).values()], "lr": 0.0002,
                       "proprio": True, "proprio_indices": [5, 6]}}


def _chain(init: Path, *runs: str) -> list:
    return [_manifest(run, str(init)) for run in runs]


def test_a_new_stage_continues_the_card(ship, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(CARD)
    chain = _chain(tmp_path, "runs/third")
    lines, commands, minutes = ship.inherited(chain)
    assert lines == ["- **Stage 1** (runs/first): 1000 steps from scratch on runs/data/a, all state entries, lr 0.001.",
                     "- **Stage 2** (runs/second): 500 steps from stage 1, lr 0.0002."]
    assert minutes == 90 and len(chain) == 1
    assert commands == ["clearvla sim record --suite train --episodes 10 --out runs/data/a --image-size 128 --seed 0"]


def test_shipping_the_same_run_again_counts_it_once(ship, tmp_path: Path) -> None:
    """The card of the shipped model already names the run being shipped: its stage and minutes are not added twice."""
    (tmp_path / "README.md").write_text(CARD)
    lines, _, minutes = ship.inherited(_chain(tmp_path, "runs/second"))
    assert lines == ["- **Stage 1** (runs/first): 1000 steps from scratch on runs/data/a, all state entries, lr 0.001."]
    assert minutes == 60


def _write(path: Path, manifest: dict) -> None:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_stages_follow_manifests_back_and_the_card_lists_their_data(ship, tmp_path: Path, monkeypatch) -> None:
    """A chain is followed back through each manifest's init_run to the stage that started from a preset; the Stage
    lines and recording commands come from the manifests, one command per dataset."""
    monkeypatch.chdir(tmp_path)
    demos = {"demos": {"path": "runs/data/demos", "record": "clearvla sim record --episodes 2 --out runs/data/demos"}}
    round1 = {**demos, "round1": {"path": "runs/data/round1", "record": "clearvla sim record --out runs/data/round1 "
                                                                      "--handover runs/r/first/checkpoints/step-00000500/model"}}
    _write(tmp_path / "runs" / "r" / "first", _manifest("runs/r/first", "tiny", datasets=demos))
    _write(tmp_path / "runs" / "r" / "second", _manifest("runs/r/second", "runs/r/first/checkpoints/step-00000500/model",
                                                         "runs/r/first", round1))
    chain = ship.stages(Path("runs/r/second"))
    assert [m["config"]["run_dir"] for m in chain] == ["runs/r/first", "runs/r/second"]
    earlier, recordings = ship.stage_lines(chain, [], [])
    assert earlier == ("\n- **Stage 1** (runs/r/first): 500 steps from scratch on runs/data/demos, state entries 5, 6, "
                       "lr 0.0002.\n- **Stage 2** (runs/r/second), this model: fine-tuned from stage 1, as above.")
    assert recordings.count("`clearvla sim record") == 2 and "--handover runs/r/first" in recordings
    with pytest.raises(SystemExit, match="manifest.json does not exist"):
        ship.stages(Path("runs/r/third"))


def test_train_report_is_reused_only_for_the_final_checkpoint_and_episodes(ship, tmp_path: Path) -> None:
    from clearvla.eval.report import EpisodeResult, SuiteReport, write_reports

    final = tmp_path / "run" / "checkpoints" / "step-00000010" / "model"
    final.mkdir(parents=True)
    played = [EpisodeResult("train", i, "lift", "lift the bolt", i % 2 == 0, 5) for i in range(4000, 4004)]
    write_reports([SuiteReport(str(final), "train", played)], tmp_path / "eval")
    report = ship.train_report(tmp_path / "eval" / "report.json", final, 4000, 4)
    assert [e.index for e in report.episodes] == [4000, 4001, 4002, 4003]
    assert report.summary()["successes"] == 2
    with pytest.raises(SystemExit, match="not exactly 4000..4009"):
        ship.train_report(tmp_path / "eval", final, 4000, 10)
    with pytest.raises(SystemExit, match="not the run's final checkpoint"):
        ship.train_report(tmp_path / "eval", tmp_path / "other", 4000, 4)


def test_the_card_says_how_a_chunk_model_was_played(ship) -> None:
    """The Output line names the checkpoint's `execute_actions` when the scores re-planned mid-chunk."""
    assert ship.output_line({}) == "OpenVLA's 7 action tokens, 256 bins each"
    whole = ship.output_line({"clearvla": {"action_chunk": 8, "execute_actions": 0}})
    assert whole.endswith("each whole chunk runs before the next forward")
    replans = ship.output_line({"clearvla": {"action_chunk": 8, "execute_actions": 4}})
    assert "8-step action chunks" in replans and "the first 4 actions of each chunk run" in replans
