"""The runner with a fake trainer and recorder: a stage whose manifest matches is skipped, an interrupted one
resumes, and a changed config re-runs that stage and every later one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clearvla.train.config import TrainConfig
from clearvla.errors import ConfigError
from clearvla.recipe.runner import Layout, plan, run_recipe
from clearvla.recipe.spec import load_recipe
from clearvla.train.checkpointing import mark_final
from small_recipe import SMALL_RECIPE

RECIPE = SMALL_RECIPE + """\
  second: {init: first, datasets: [demos, round1]}
  third: {init: second, datasets: [demos]}
"""


class Fake:
    """A trainer that writes a run's final checkpoint (or stops part-way once, for `interrupt`) and a recorder that
    writes a dataset's meta; both note what they were asked."""

    def __init__(self) -> None:
        self.trained: list[TrainConfig] = []
        self.recorded: list[tuple[str, Path | None]] = []
        self.interrupt: str | None = None

    def train(self, cfg: TrainConfig) -> None:
        self.trained.append(cfg)
        run = Path(cfg.run_dir)
        stop = 2 if run.name == self.interrupt else cfg.max_steps
        (run / "checkpoints" / f"step-{stop:08d}" / "model").mkdir(parents=True, exist_ok=True)
        if run.name == self.interrupt:
            self.interrupt = None
            raise KeyboardInterrupt
        mark_final(run, run / "checkpoints" / f"step-{stop:08d}")
        (run / "metrics.jsonl").write_text(json.dumps({"step": stop, "loss": 0.5}) + "\n")

    def record(self, spec, out: Path, handover: Path | None) -> None:
        self.recorded.append((out.name, handover))
        (out / "meta").mkdir(parents=True)
        (out / "meta" / "info.json").write_text(json.dumps({"episodes": spec.episodes}))


def _run(tmp_path: Path, fake: Fake, text: str = RECIPE, until: str | None = None) -> dict[str, str]:
    (tmp_path / "r.yaml").write_text(text)
    steps = run_recipe(load_recipe(tmp_path / "r.yaml"), Layout(tmp_path / "runs", "r"), fake.train, fake.record, until)
    return {s.stage: s.action for s in steps}


def test_a_fresh_run_records_then_trains_each_stage_from_the_last(tmp_path: Path) -> None:
    fake = Fake()
    assert _run(tmp_path, fake) == {"first": "run", "second": "run", "third": "run"}
    runs = tmp_path / "runs" / "r"
    assert fake.recorded == [("demos", None), ("round1", runs / "first" / "checkpoints" / "step-00000004" / "model")]
    second = fake.trained[1]
    assert second.init == str(runs / "first" / "checkpoints" / "step-00000004" / "model")
    assert second.datasets == (str(tmp_path / "runs" / "data" / "demos"), str(tmp_path / "runs" / "data" / "round1"))
    assert second.normalize_like == ("", "demos") and second.run_dir == str(runs / "second") and not second.resume
    manifest = json.loads((runs / "second" / "manifest.json").read_text())
    assert manifest["steps"] == 4 and manifest["init_run"] == str(runs / "first") and manifest["metrics"]["loss"] == 0.5
    assert set(manifest["datasets"]) == {"demos", "round1"} and "--handover" in manifest["datasets"]["round1"]["record"]
    assert _run(tmp_path, fake) == {"first": "skip", "second": "skip", "third": "skip"}
    assert len(fake.trained) == 3 and len(fake.recorded) == 2


def test_an_interrupted_stage_resumes_and_until_stops(tmp_path: Path) -> None:
    fake = Fake()
    fake.interrupt = "second"
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, fake)
    layout = Layout(tmp_path / "runs", "r")
    assert [s.action for s in plan(load_recipe(tmp_path / "r.yaml"), layout)] == ["skip", "resume", "run"]
    assert _run(tmp_path, fake, until="second") == {"first": "skip", "second": "resume"}
    assert fake.trained[-1].resume and fake.trained[-1].run_dir.endswith("second")
    assert json.loads((tmp_path / "runs" / "r" / "second" / "manifest.json").read_text())["resumed"] is True
    with pytest.raises(ConfigError, match="no stage 'fourth'; stages: first, second, third"):
        _run(tmp_path, fake, until="fourth")


def test_a_changed_stage_reruns_with_every_later_one(tmp_path: Path, caplog) -> None:
    fake = Fake()
    _run(tmp_path, fake)
    changed = RECIPE.replace("second: {init: first, datasets: [demos, round1]}",
                             "second: {init: first, datasets: [demos, round1], lr: 0.0002}")
    with caplog.at_level("WARNING", logger="clearvla.recipe"):
        assert _run(tmp_path, fake, changed) == {"first": "skip", "second": "rerun", "third": "rerun"}
    assert "stage second: re-running, its config, or a stage before it, changed" in caplog.text
    assert (tmp_path / "runs" / "r" / "second.previous" / "manifest.json").is_file()  # the old run, set aside
    assert fake.trained[-2].lr == 0.0002 and not fake.trained[-1].resume


def test_a_changed_dataset_reruns_the_stages_that_train_on_it(tmp_path: Path) -> None:
    fake = Fake()
    _run(tmp_path, fake)
    (tmp_path / "runs" / "data" / "round1" / "meta" / "info.json").write_text("{}")
    assert _run(tmp_path, fake) == {"first": "skip", "second": "rerun", "third": "rerun"}


VISION_RECIPE = """\
defaults: {lr: 0.001, max_steps: 4, image_size: 64}
datasets:
  demos: {episodes: 2}
vision:
  workcell: {scenes: 3, steps: 5, image_size: 64, object_weight: 0.5}
stages:
  first: {init: tiny, datasets: [demos], vision_init: workcell}
  second: {init: tiny, datasets: [demos], vision_init: workcell}
"""


def _pretrain_into(calls: list):
    def pretrain(spec, out: Path) -> None:
        calls.append((spec.name, out.name))
        (out / "vision.json").write_text(json.dumps({**spec.describe(), "vocab": {}}))
        (out / "vision.safetensors").write_bytes(b"weights")
    return pretrain


def test_a_vision_entry_is_pretrained_once_and_loaded_by_each_stage_that_names_it(tmp_path: Path) -> None:
    fake, calls = Fake(), []
    (tmp_path / "r.yaml").write_text(VISION_RECIPE)
    recipe, layout = load_recipe(tmp_path / "r.yaml"), Layout(tmp_path / "runs", "r")
    steps = run_recipe(recipe, layout, fake.train, fake.record, pretrain=_pretrain_into(calls))
    assert [s.action for s in steps] == ["run", "run"]
    backbone = tmp_path / "runs" / "vision" / "workcell"
    assert [name for name, _ in calls] == ["workcell"] and calls[0][1].startswith(".workcell.")  # written aside
    assert (backbone / "vision.safetensors").is_file() and sorted(p.name for p in backbone.parent.iterdir()) == ["workcell"]
    assert [cfg.vision_init for cfg in fake.trained] == [str(backbone)] * 2
    manifest = json.loads((tmp_path / "runs" / "r" / "first" / "manifest.json").read_text())
    assert "--object-weight 0.5" in manifest["vision"]["workcell"]["command"]
    assert [s.action for s in run_recipe(recipe, layout, fake.train, fake.record, pretrain=_pretrain_into(calls))] == \
        ["skip", "skip"]
    (backbone / "vision.safetensors").write_bytes(b"other weights")  # pretrained again: its stages re-run
    assert [s.action for s in plan(recipe, layout)] == ["rerun", "rerun"]
    (backbone / "vision.safetensors").write_bytes(b"weights")
    (tmp_path / "r.yaml").write_text(VISION_RECIPE.replace("object_weight: 0.5", "object_weight: 1.0"))
    with pytest.raises(ConfigError, match="vision workcell: .* was pretrained with other settings than the recipe "
                                          "gives; delete it to pretrain it again"):
        run_recipe(load_recipe(tmp_path / "r.yaml"), layout, fake.train, fake.record, pretrain=_pretrain_into(calls))
    shutil.rmtree(backbone)  # a missing input is not compared: the stages that loaded it stay done
    (tmp_path / "r.yaml").write_text(VISION_RECIPE)
    assert [s.action for s in run_recipe(recipe, layout, fake.train, fake.record, pretrain=_pretrain_into(calls))] == \
        ["skip", "skip"]
    assert len(calls) == 1 and not backbone.exists()


def test_a_failed_pretraining_leaves_nothing_that_passes_for_a_backbone(tmp_path: Path) -> None:
    def fail(spec, out: Path) -> None:
        (out / "vision.json").write_text("{}")
        raise KeyboardInterrupt

    (tmp_path / "r.yaml").write_text(VISION_RECIPE)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(tmp_path / "r.yaml"), Layout(tmp_path / "runs", "r"), Fake().train, Fake().record,
                   pretrain=fail)
    assert list((tmp_path / "runs" / "vision").iterdir()) == []


def test_a_recipe_that_pretrains_needs_a_pretrainer(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(VISION_RECIPE)
    with pytest.raises(ConfigError, match="pretrains vision backbones \\(workcell\\); give a pretrainer"):
        run_recipe(load_recipe(tmp_path / "r.yaml"), Layout(tmp_path / "runs", "r"), Fake().train, Fake().record)


def test_a_lost_machine_resumes_from_the_archived_stages_and_makes_only_what_they_need(tmp_path: Path) -> None:
    fake, archive = Fake(), tmp_path / "archive"
    (tmp_path / "r.yaml").write_text(RECIPE)
    recipe = load_recipe(tmp_path / "r.yaml")
    runs = Layout(tmp_path / "runs", "r")
    run_recipe(recipe, runs, fake.train, fake.record, archive=archive)
    assert sorted(p.name for p in archive.iterdir()) == ["first", "second", "third"]
    assert (archive / "third" / "model").is_dir() and (archive / "third" / "manifest.json").is_file()

    shutil.rmtree(tmp_path / "runs")  # the machine is lost; the archive was committed
    fake = Fake()
    steps = run_recipe(recipe, runs, fake.train, fake.record, archive=archive)
    assert {s.stage: s.action for s in steps} == {"first": "skip", "second": "skip", "third": "restore"}
    assert "not needed" in steps[0].reason and fake.trained == [] and fake.recorded == []
    third = tmp_path / "runs" / "r" / "third"
    assert json.loads((third / "manifest.json").read_text())["restored_from"] == str(archive / "third")
    assert (third / "checkpoints" / "step-00000004" / "model").is_dir()
    assert [s.action for s in run_recipe(recipe, runs, fake.train, fake.record, archive=archive)] == ["skip"] * 3

    shutil.rmtree(tmp_path / "runs")  # lost again, and only `second` was kept: `third` trains from it
    shutil.rmtree(archive / "third")
    steps = run_recipe(recipe, runs, fake.train, fake.record, archive=archive)
    assert [s.action for s in steps] == ["skip", "restore", "run"]
    assert [Path(c.run_dir).name for c in fake.trained] == ["third"] and fake.recorded == [("demos", None)]
    assert fake.trained[0].init == str(tmp_path / "runs" / "r" / "second" / "checkpoints" / "step-00000004" / "model")


def test_an_archived_stage_of_another_config_is_not_restored(tmp_path: Path) -> None:
    archive, layout = tmp_path / "archive", Layout(tmp_path / "runs", "r")
    _run(tmp_path, Fake())
    run_recipe(load_recipe(tmp_path / "r.yaml"), layout, Fake().train, Fake().record, archive=archive)
    assert not archive.exists()  # only what a run trains is archived
    shutil.rmtree(tmp_path / "runs")
    run_recipe(load_recipe(tmp_path / "r.yaml"), layout, Fake().train, Fake().record, archive=archive)
    shutil.rmtree(tmp_path / "runs")
    changed = RECIPE.replace("third: {init: second, datasets: [demos]}", "third: {init: second, datasets: [demos], lr: 0.01}")
    (tmp_path / "r.yaml").write_text(changed)
    steps = plan(load_recipe(tmp_path / "r.yaml"), layout, archive=archive)
    assert [s.action for s in steps] == ["skip", "restore", "run"]
