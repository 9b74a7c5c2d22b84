"""A training recipe file: named datasets, each a `clearvla sim record` spec, named pretrained vision backbones, each
a `clearvla pretrain-vision` spec, and named stages, each a TrainConfig that differs from the recipe's defaults in a
few fields and starts from an earlier stage's final checkpoint.

    record:   {suite: train, image_size: 128, seed: 0, workers: 2}       # every dataset's `sim record` options
    defaults: {image_size: 128, lr: 0.0002, max_steps: 8000, ...}         # every stage's TrainConfig fields
    datasets:
      demos:  {episodes: 3000, step_noise: 0.004}
      round1: {episodes: 1500, handover: stage2, normalize_like: demos}   # stage2's final checkpoint acts first
    vision:                                                               # `clearvla pretrain-vision` options
      workcell: {scenes: 3000, steps: 1500, batch_size: 256}
    stages:                                                               # run in this order
      stage1: {init: tiny, datasets: [demos], lr: 0.001, vision_init: workcell}
      stage2: {init: stage1, datasets: [demos], max_steps: 4000}
      stage3: {init: stage2, datasets: [demos, round1], weights: [1.0, 2.0]}

A stage's `init` is an earlier stage (its final checkpoint), a model preset or a checkpoint directory. Paths are
the runner's (runner.py): datasets in RUN_ROOT/data/NAME, backbones in RUN_ROOT/vision/NAME, stages in
RUN_ROOT/RECIPE/STAGE. A dataset's `normalize_like` becomes the TrainConfig field of every stage that trains on it
with the dataset it names. A stage's `vision_init` names an entry of `vision:` (or is a pretrain-vision directory).
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearvla.errors import ConfigError

if TYPE_CHECKING:
    from clearvla.train.vision_pretrain import PretrainSettings

# Fields the recipe itself sets in every stage's TrainConfig: a stage or the defaults may not.
MANAGED = {"run_dir": "the runner puts each stage in RUN_ROOT/RECIPE/STAGE",
           "normalize_like": "set normalize_like on the dataset",
           "resume": "the runner resumes an interrupted stage by itself"}
# --smoke: every stage and recording tiny, to check that the chain connects (inits, datasets), not what it learns.
SMOKE_TRAIN = dict(image_size=32, max_steps=2, batch_size=2, num_workers=0, save_every=2, eval_every=0, log_every=1,
                   warmup_steps=0, shuffle_buffer=2, val_fraction=0.0)
SMOKE_RECORD = dict(episodes=1, image_size=32, workers=1)
SMOKE_VISION = dict(steps=1, batch_size=2, image_size=32)  # PretrainSettings fields, on one scene


@dataclass(frozen=True)
class RecordSpec:
    """The options of one `clearvla sim record` (same names, `--no-wrist` as wrist: false); handover names a stage."""

    episodes: int
    suite: str = "train"
    image_size: int = 128
    seed: int = 0
    start: int = 0
    stop: int | None = None
    """None: the suite's end."""
    wrist: bool = True
    cameras: tuple[str, ...] | None = None
    """None: image and, with wrist, wrist_image."""
    step_noise: float | None = None
    """None: the expert's default noise."""
    workers: int = 1
    home_start: bool = False
    handover: str | None = None
    """A stage of the recipe whose final checkpoint acts first; the expert finishes (DAgger-style)."""
    handover_window: tuple[float, float] = (0.0, 0.5)
    tasks: tuple[str, ...] | None = None
    """None: every task."""

    def command(self, out: Path, handover_checkpoint: Path | None = None) -> str:
        """The equivalent `clearvla sim record` command line, writing to `out`."""
        args = ["clearvla", "sim", "record", "--suite", self.suite, "--episodes", str(self.episodes), "--out", str(out),
                "--image-size", str(self.image_size), "--seed", str(self.seed)]
        args += ["--start", str(self.start)] if self.start else []
        args += [] if self.stop is None else ["--stop", str(self.stop)]
        args += [] if self.wrist else ["--no-wrist"]
        args += [] if self.cameras is None else ["--cameras", *self.cameras]
        args += [] if self.step_noise is None else ["--step-noise", f"{self.step_noise:g}"]
        args += ["--workers", str(self.workers)] if self.workers != 1 else []
        args += ["--home-start"] if self.home_start else []
        args += [] if self.tasks is None else ["--tasks", *self.tasks]
        if self.handover is not None:
            args += ["--handover", str(handover_checkpoint or f"<{self.handover} final checkpoint>")]
            if self.handover_window != (0.0, 0.5):
                args += ["--handover-window", *(f"{x:g}" for x in self.handover_window)]
        return shlex.join(args)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    record: RecordSpec
    normalize_like: str = ""
    """Another dataset whose statistics normalise this one in every stage that trains on both ("": its own)."""


@dataclass(frozen=True)
class VisionSpec:
    """The options of one `clearvla pretrain-vision` (same names): train-suite scenes first_scene..+scenes rendered
    from `cameras`, trained with `settings`."""

    name: str
    scenes: int
    first_scene: int
    cameras: tuple[str, ...]
    settings: PretrainSettings

    def command(self, out: Path) -> str:
        """The equivalent `clearvla pretrain-vision` command line, writing to `out` (settings at their defaults
        left out)."""
        from clearvla.train.vision_pretrain import PretrainSettings

        args = ["clearvla", "pretrain-vision", "--out", str(out), "--scenes", str(self.scenes)]
        args += ["--first-scene", str(self.first_scene)] if self.first_scene else []
        args += ["--cameras", *self.cameras]
        default = PretrainSettings()
        for f in dataclasses.fields(self.settings):
            value = getattr(self.settings, f.name)
            if value != getattr(default, f.name):
                args += [f"--{f.name.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
        return shlex.join(args)

    def describe(self) -> dict[str, Any]:
        """What `clearvla pretrain-vision` writes to vision.json about its inputs: scenes [first, stop), cameras and
        every setting. A stage's config hash includes it, and the runner checks a backbone on disk against it."""
        return {"scenes": [self.first_scene, self.first_scene + self.scenes], "cameras": list(self.cameras),
                "settings": dataclasses.asdict(self.settings)}


@dataclass(frozen=True)
class StageSpec:
    name: str
    init: str
    """An earlier stage's name, a preset name or a checkpoint directory."""
    datasets: tuple[str, ...]
    fields: dict[str, Any]
    """The TrainConfig fields this stage changes from the recipe's defaults (lists as tuples)."""


@dataclass(frozen=True)
class Recipe:
    path: Path
    defaults: dict[str, Any]
    datasets: dict[str, DatasetSpec]
    stages: dict[str, StageSpec]
    """In run order."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields over every stage's (--smoke)."""
    vision: dict[str, VisionSpec] = field(default_factory=dict)
    """Pretrained vision backbones by name, each made before the first stage whose vision_init names it."""

    @property
    def name(self) -> str:
        return self.path.stem

    def smoke(self) -> Recipe:
        """This recipe with every stage a few steps and every recording one small episode."""
        tiny = {name: dataclasses.replace(d, record=dataclasses.replace(d.record, **SMOKE_RECORD))
                for name, d in self.datasets.items()}
        vision = {name: dataclasses.replace(v, scenes=1, settings=dataclasses.replace(v.settings, **SMOKE_VISION))
                  for name, v in self.vision.items()}
        return dataclasses.replace(self, datasets=tiny, vision=vision, overrides=SMOKE_TRAIN)

    def vision_of(self, stage: StageSpec) -> VisionSpec | None:
        """The `vision:` entry the stage's vision_init names, if it names one."""
        return self.vision.get(self.train_fields(stage).get("vision_init", ""))

    def stage(self, name: str) -> StageSpec:
        if name not in self.stages:
            raise ConfigError(f"{self.path}: no stage {name!r}; stages: {', '.join(self.stages)}")
        return self.stages[name]

    def train_fields(self, stage: StageSpec) -> dict[str, Any]:
        """The stage's TrainConfig fields before paths: defaults, then its own, then overrides; datasets by name,
        init as written, normalize_like from the datasets."""
        like = tuple(self.datasets[d].normalize_like if self.datasets[d].normalize_like in stage.datasets else ""
                     for d in stage.datasets)
        fields = {**self.defaults, **stage.fields, **self.overrides, "init": stage.init, "datasets": stage.datasets}
        return {**fields, "normalize_like": like} if any(like) else fields


def load_recipe(path: Path) -> Recipe:
    """Parse and check a recipe file: every field known, every init an earlier stage, a preset or a directory,
    every dataset a stage names defined and recordable before it. Errors name the file, the stage or dataset and
    the field."""
    import yaml

    from clearvla.train.config import config_from_fields, flatten

    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse recipe {path}: {e}") from None
    _expect_mapping(raw, f"{path}")
    _no_unknown(raw, {"record", "defaults", "datasets", "vision", "stages"}, f"{path}")
    defaults = flatten(_managed(_expect_mapping(raw.get("defaults") or {}, f"{path}: defaults"),
                                     f"{path}: defaults", also=("init", "datasets")), f"{path}: defaults")
    record = _expect_mapping(raw.get("record") or {}, f"{path}: record")
    datasets = {name: _dataset(name, spec, record, path)
                for name, spec in _expect_mapping(raw.get("datasets") or {}, f"{path}: datasets").items()}
    vision = {name: _vision(name, spec, path)
              for name, spec in _expect_mapping(raw.get("vision") or {}, f"{path}: vision").items()}
    stages: dict[str, StageSpec] = {}
    for name, spec in _expect_mapping(raw.get("stages") or {}, f"{path}: stages").items():
        where = f"{path}: stage {name}"
        spec = _managed(dict(_expect_mapping(spec, where)), where)
        init, names = spec.pop("init", None), spec.pop("datasets", None)
        if not isinstance(init, str) or not init:
            raise ConfigError(f"{where}: `init` must name an earlier stage, a preset or a checkpoint directory")
        if not isinstance(names, list) or not names or not all(isinstance(d, str) for d in names):
            raise ConfigError(f"{where}: `datasets` must be a non-empty list of dataset names from `datasets:`")
        stages[name] = StageSpec(name, init, tuple(names), flatten(spec, where))
    if not stages:
        raise ConfigError(f"{path}: no stages")
    recipe = Recipe(path, defaults, datasets, stages, vision=vision)
    _check_links(recipe)
    for stage in recipe.stages.values():  # values TrainConfig refuses (weights for 3 datasets given 2, ...)
        config_from_fields(recipe.train_fields(stage), f"{path}: stage {stage.name}")
    return recipe


def _dataset(name: str, spec: Any, record: dict[str, Any], path: Path) -> DatasetSpec:
    where = f"{path}: dataset {name}"
    spec = dict(_expect_mapping(spec, where))
    like = spec.pop("normalize_like", "")
    merged = {**record, **spec}
    known = {f.name for f in dataclasses.fields(RecordSpec)}
    _no_unknown(merged, known, where, what="`sim record` option")
    for key in ("handover_window", "cameras"):
        if merged.get(key) is not None:
            merged[key] = tuple(merged[key])
    if merged.get("tasks") is not None:
        from clearvla.sim.suites import check_tasks

        try:
            merged["tasks"] = check_tasks(merged["tasks"])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    try:
        return DatasetSpec(name, RecordSpec(**merged), like or "")
    except TypeError as e:  # a required option missing
        raise ConfigError(f"{where}: {e}; `episodes` is required") from None


def _vision(name: str, spec: Any, path: Path) -> VisionSpec:
    """A `vision:` entry: `scenes` (required), `first_scene`, `cameras` and PretrainSettings fields, each checked
    (values of a setting's type, positive counts, train-suite scenes, known cameras)."""
    from clearvla.sim.env import DEFAULT_CAMERAS, check_cameras
    from clearvla.sim.vision_labels import check_scenes
    from clearvla.train.vision_pretrain import PretrainSettings

    where = f"{path}: vision {name}"
    spec = dict(_expect_mapping(spec, where))
    default = PretrainSettings()
    own = {"scenes", "first_scene", "cameras"}
    _no_unknown(spec, own | {f.name for f in dataclasses.fields(default)}, where, what="`pretrain-vision` option")
    settings = {}
    for key, value in spec.items():
        if key in own:
            continue
        kind = type(getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, (kind, int) if kind is float else kind):
            raise ConfigError(f"{where}: {key} must be a {kind.__name__}, got {value!r}")
        settings[key] = kind(value)
    scenes, first = spec.get("scenes"), spec.get("first_scene", 0)
    cameras = spec.get("cameras", list(DEFAULT_CAMERAS))
    if not isinstance(scenes, int) or isinstance(scenes, bool) or scenes < 1 or not isinstance(first, int):
        raise ConfigError(f"{where}: `scenes` (a positive number of scenes) is required, and first_scene is a number")
    if not isinstance(cameras, list) or not cameras or not all(isinstance(c, str) for c in cameras):
        raise ConfigError(f"{where}: cameras must be a list of camera names, got {cameras!r}")
    try:
        check_scenes(range(first, first + scenes))
        return VisionSpec(name, scenes, first, check_cameras(cameras), PretrainSettings(**settings))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_links(recipe: Recipe) -> None:
    """Every stage's init and datasets, and every handover, refer to something that exists by then."""
    from clearvla.models.presets import PRESETS

    order = list(recipe.stages)
    where = f"{recipe.path}: stage"
    for i, stage in enumerate(recipe.stages.values()):
        if stage.init in recipe.stages and order.index(stage.init) >= i:
            raise ConfigError(f"{where} {stage.name}: init {stage.init!r} is "
                              f"{'this stage' if stage.init == stage.name else 'a later stage'}; a stage starts from an "
                              f"earlier one ({', '.join(order[:i]) or 'none before it'})")
        if stage.init not in recipe.stages and stage.init not in PRESETS and not Path(stage.init).is_dir():
            raise ConfigError(f"{where} {stage.name}: init {stage.init!r} is neither an earlier stage "
                              f"({', '.join(order[:i]) or 'none'}), a preset ({', '.join(PRESETS)}) nor a directory")
        for d in stage.datasets:
            if d not in recipe.datasets:
                raise ConfigError(f"{where} {stage.name}: datasets names {d!r}, which `datasets:` does not define "
                                  f"({', '.join(recipe.datasets) or 'none'})")
            player = recipe.datasets[d].record.handover
            if player is not None and (player not in recipe.stages or order.index(player) >= i):
                raise ConfigError(f"{where} {stage.name}: dataset {d} is played by stage {player!r} (its handover), "
                                  f"which is not a stage before {stage.name}")
        vision_init = recipe.train_fields(stage).get("vision_init", "")
        if not isinstance(vision_init, str):
            raise ConfigError(f"{where} {stage.name}: vision_init must name an entry of `vision:` or a directory")
        if vision_init and stage.init in recipe.stages:
            raise ConfigError(f"{where} {stage.name}: vision_init would replace the backbone stage {stage.init} "
                              "trained; give it only to stages that start from a preset or a checkpoint")
        if vision_init and vision_init not in recipe.vision and not Path(vision_init).is_dir():
            raise ConfigError(f"{where} {stage.name}: vision_init {vision_init!r} is neither an entry of `vision:` "
                              f"({', '.join(recipe.vision) or 'none'}) nor a directory")
        spec, reads = recipe.vision_of(stage), recipe.train_fields(stage).get("image_size")
        if spec is not None and reads is not None and spec.settings.image_size != reads:
            raise ConfigError(f"{where} {stage.name}: vision {spec.name} is pretrained at image_size "
                              f"{spec.settings.image_size}, the stage reads {reads}")
    for d in recipe.datasets.values():
        if d.normalize_like and d.normalize_like not in recipe.datasets:
            raise ConfigError(f"{recipe.path}: dataset {d.name}: normalize_like {d.normalize_like!r} is not a dataset")


def _expect_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got a {type(value).__name__}")
    return value


def _no_unknown(raw: dict[str, Any], known: set[str], where: str, what: str = "field") -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")


def _managed(raw: dict[str, Any], where: str, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """`raw` without fields the recipe manages, or a ConfigError naming the one given and why."""
    for name in (*MANAGED, *also):
        if name in raw:
            why = MANAGED.get(name, "each stage sets its own")
            raise ConfigError(f"{where}: field {name!r} cannot be set here ({why})")
    return raw
