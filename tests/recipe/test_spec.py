"""Recipe files: the default model's chain resolves stage by stage, and a broken link is named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearvla.errors import ConfigError
from small_recipe import SMALL_RECIPE
from clearvla.recipe.spec import load_recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "default_model.yaml"

GOOD = "record: {suite: train, image_size: 32}\n" + SMALL_RECIPE + (
    "  second: {init: first, datasets: [demos, round1], weights: [1.0, 2.0], lr: 0.0005}\n")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_the_default_model_recipe_resolves_to_its_stages() -> None:
    recipe = load_recipe(RECIPE)
    assert list(recipe.stages) == [f"stage{i}" for i in range(1, 12)]
    stage2 = recipe.train_fields(recipe.stages["stage2"])
    assert (stage2["init"], stage2["proprio_indices"], stage2["lr"], stage2["max_steps"]) == ("stage1", (5, 6), 0.0005, 10000)
    stage5 = recipe.train_fields(recipe.stages["stage5"])
    assert stage5["datasets"] == ("workcell_train_3k", "workcell_handover_1500") and stage5["weights"] == (1.0, 2.0)
    assert stage5["normalize_like"] == ("", "workcell_train_3k") and stage5["batch_size"] == 8
    assert "normalize_like" not in recipe.train_fields(recipe.stages["stage4"])
    handover = recipe.datasets["workcell_handover2_1500"].record
    assert (handover.handover, handover.start, handover.episodes, handover.step_noise) == ("stage5", 1700, 1500, 0.004)
    assert recipe.datasets["workcell_train_3k_home"].record.step_noise is None  # the expert's default noise


@pytest.mark.parametrize("path", sorted(RECIPE.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file in recipes/ resolves, run from the repository root as documented: stages, datasets and every
    stage's TrainConfig (load_recipe checks them)."""
    monkeypatch.chdir(RECIPE.parents[1])
    assert load_recipe(path).stages


def test_a_recording_names_its_cameras_and_the_episodes_it_may_play(tmp_path: Path) -> None:
    text = GOOD.replace("demos: {episodes: 2}", "demos: {episodes: 2, stop: 4000, cameras: [image_top, wrist_image]}")
    record = load_recipe(_write(tmp_path, text)).datasets["demos"].record
    assert (record.stop, record.cameras) == (4000, ("image_top", "wrist_image"))
    assert "--stop 4000 --cameras image_top wrist_image" in record.command(tmp_path / "d")
    held_out = GOOD.replace("demos: {episodes: 2}", "demos: {episodes: 2, tasks: [pick, place, push]}")
    record = load_recipe(_write(tmp_path, held_out)).datasets["demos"].record
    assert record.tasks == ("pick", "place", "push") and "--tasks pick place push" in record.command(tmp_path / "d")


def test_smoke_makes_every_stage_and_recording_tiny(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, GOOD)).smoke()
    fields = recipe.train_fields(recipe.stages["second"])
    assert (fields["max_steps"], fields["image_size"], fields["lr"]) == (2, 32, 0.0005)
    assert {d.record.episodes for d in recipe.datasets.values()} == {1}


@pytest.mark.parametrize("edit, message", [
    (("init: first, datasets: [demos, round1]", "init: frist, datasets: [demos, round1]"),
     r"stage second: init 'frist' is neither an earlier stage \(first\), a preset .* nor a directory"),
    (("init: tiny, datasets: [demos]", "init: second, datasets: [demos]"),
     r"stage first: init 'second' is a later stage; a stage starts from an earlier one \(none before it\)"),
    (("init: tiny, datasets: [demos]", "init: first, datasets: [demos]"), r"stage first: init 'first' is this stage"),
    (("datasets: [demos, round1]", "datasets: [demos, round2]"),
     r"stage second: datasets names 'round2', which `datasets:` does not define \(demos, round1\)"),
    (("handover: first", "handover: second"), r"stage second: dataset round1 is played by stage 'second'"),
    (("lr: 0.0005", "learning_rate: 0.0005"), r"stage second: unknown field\(s\) learning_rate"),
    (("weights: [1.0, 2.0]", "weights: [1.0]"), r"stage second: got 1 weights for 2 datasets"),
    (("lr: 0.0005", "run_dir: x"), r"stage second: field 'run_dir' cannot be set here"),
    (("{episodes: 2}", "{episodes: 2, wrist_camera: false}"), r"dataset demos: unknown `sim record` option\(s\) wrist_camera"),
    (("{episodes: 2}", "{seed: 1}"), r"dataset demos: .*`episodes` is required"),
    (("{episodes: 2}", "{episodes: 2, tasks: [pick, stak]}"), r"dataset demos: unknown task\(s\) 'stak'; tasks: pick"),
    (("init: tiny, datasets: [demos]", "init: tiny, datasets: [demos], vision_init: workcel"),
     r"stage first: vision_init 'workcel' is neither an entry of `vision:`"),
    (("stages:", "vision:\n  workcell: {scenes: 2, step: 3}\nstages:"),
     r"vision workcell: unknown `pretrain-vision` option\(s\) step"),
    (("stages:", "vision:\n  workcell: {scenes: 2, steps: 0}\nstages:"), r"vision workcell: steps and batch_size must be"),
    (("stages:", "vision:\n  workcell: {scenes: 2, lr: fast}\nstages:"), r"vision workcell: lr must be a float, got 'fast'"),
    (("stages:", "vision:\n  workcell: {scenes: 2, cameras: image}\nstages:"), r"vision workcell: cameras must be a list"),
    (("stages:", "vision:\n  workcell: {scenes: 2, first_scene: 3999}\nstages:"),
     r"vision workcell: vision pretraining renders train-suite scenes 0..3999 only"),
    (("stages:", "vision:\n  workcell: {steps: 2}\nstages:"), r"vision workcell: `scenes` .* is required"),
    (("lr: 0.0005", "vision_init: 5"), r"stage second: vision_init must name an entry of `vision:` or a directory"),
    (("stages:", "vision:\n  workcell: {scenes: 2}\nstages:", "lr: 0.0005", "vision_init: workcell"),
     r"stage second: vision_init would replace the backbone stage first trained"),
    (("stages:", "vision:\n  workcell: {scenes: 2, image_size: 64}\nstages:",
      "init: tiny, datasets: [demos]", "init: tiny, datasets: [demos], vision_init: workcell, image_size: 32"),
     r"stage first: vision workcell is pretrained at image_size 64, the stage reads 32"),
])
def test_a_broken_link_or_field_is_named(tmp_path: Path, edit: tuple[str, ...], message: str) -> None:
    text = GOOD
    for old, new in zip(edit[::2], edit[1::2]):
        assert old in text
        text = text.replace(old, new, 1)
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, text))


def test_a_vision_entry_is_a_pretrain_vision_command_and_smoke_shrinks_it(tmp_path: Path) -> None:
    text = GOOD.replace("stages:", "vision:\n  workcell: {scenes: 3000, steps: 1500, object_weight: 1, cameras: [image]}"
                                   "\nstages:")
    text = text.replace("init: tiny, datasets: [demos]", "init: tiny, datasets: [demos], vision_init: workcell")
    recipe = load_recipe(_write(tmp_path, text))
    spec = recipe.vision_of(recipe.stages["first"])
    assert spec is not None and recipe.vision_of(recipe.stages["second"]) is None
    assert spec.settings.object_weight == 1.0 and isinstance(spec.settings.object_weight, float)  # 1 and 1.0 hash alike
    out = tmp_path / "v"
    assert spec.command(out) == f"clearvla pretrain-vision --out {out} --scenes 3000 --cameras image --steps 1500"
    smoke = recipe.smoke().vision["workcell"]
    assert (smoke.scenes, smoke.settings.steps, smoke.settings.image_size) == (1, 1, 32)
