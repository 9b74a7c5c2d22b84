"""scripts/ship_default_model.py: the model card carries earlier stages over without counting any twice."""

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


def _chain(init: Path, *runs: str) -> list:
    """Stages as `stages()` gives them: (run dir, seconds, train_config, metrics rows); 30 min each."""
    return [(Path(run), 1800.0, {"init": str(init)}, [{"step": 500}]) for run in runs]


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


def test_a_handover_from_a_copied_shipped_model_names_its_stage(ship, tmp_path: Path) -> None:
    """A recording made by a copy of a shipped model is named by the stage and run its card gives, not by the copy's path
    (which `make default-model` never creates); a run's checkpoint is named by its path."""
    (tmp_path / "README.md").write_text(CARD)
    assert ship.handover_name(tmp_path, "x") == "<stage 2, the final checkpoint of runs/second>"
    assert ship.handover_name(tmp_path / "elsewhere", "x") == str(tmp_path / "elsewhere")
    assert ship.handover_name(ship.DEFAULT_MODEL, "stage 9, the previous default model") == "<stage 9, the previous default model>"


def _run(path: Path, init: str) -> None:
    path.mkdir(parents=True)
    (path / "train_config.json").write_text(json.dumps({"init": init, "batch_size": 8}))
    (path / "metrics.jsonl").write_text(json.dumps({"step": 800, "samples_per_s": 8.0}) + "\n")


def test_stages_follow_inits_back_to_a_shipped_model_dir(ship, tmp_path: Path, monkeypatch) -> None:
    """A chain started from a copied model directory (`--init base`, a path with no RUN/checkpoints/step-N above
    it) ends there; a stage started from a run's checkpoint is followed back into that run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    _run(tmp_path / "first", "base")
    (tmp_path / "first" / "checkpoints" / "step-00000800" / "model").mkdir(parents=True)
    _run(tmp_path / "second", "first/checkpoints/step-00000800/model")
    chain = ship.stages(Path("second"))
    assert [str(run) for run, *_ in chain] == ["first", "second"]
    assert chain[0][1] == 800  # seconds: 800 steps at 1 step/s


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
