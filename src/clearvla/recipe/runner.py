"""Run a recipe's stages in order: record each dataset and pretrain each vision backbone a stage needs when it is
missing, then train the stage unless its manifest says it is done with this config and these inputs; resume a stage
that was interrupted.

A stage re-runs (its old run dir set aside as RUN.previous) when its config, a stage before it in its chain, one of
its datasets or its pretrained backbone changed since its manifest was written; every stage that starts from it then
re-runs too. The trainer, the recorder and the vision pretrainer are passed in (`clearvla recipe` gives the ones
`clearvla train`, `sim record` and `pretrain-vision` use).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from clearvla.train.config import TrainConfig
from clearvla.errors import ConfigError
from clearvla.recipe.manifest import (
    MANIFEST, STARTED, config_hash, fingerprint, git_commit, last_metrics, read_json, write_json,
)
from clearvla.recipe.spec import Recipe, RecordSpec, StageSpec, VisionSpec
from clearvla.train.checkpointing import checkpoint_dirs, final_checkpoint, mark_final

log = logging.getLogger(__name__)

Trainer = Callable[[TrainConfig], object]
Recorder = Callable[[RecordSpec, Path, "Path | None"], object]
"""record(spec, out, handover_checkpoint): write the dataset `out` (absent) as `clearvla sim record` would."""
Pretrainer = Callable[[VisionSpec, Path], object]
"""pretrain(spec, out): write the backbone directory `out` (absent) as `clearvla pretrain-vision` would."""


@dataclass(frozen=True)
class Layout:
    """Where a recipe's files go: datasets in ROOT/data/NAME, backbones in ROOT/vision/NAME, stages in
    ROOT/RECIPE/STAGE."""

    root: Path
    recipe: str

    def dataset(self, name: str) -> Path:
        return self.root / "data" / name

    def vision(self, name: str) -> Path:
        return self.root / "vision" / name

    def stage(self, name: str) -> Path:
        return self.root / self.recipe / name


@dataclass(frozen=True)
class Step:
    """What the runner does (or did) with one stage: skip | resume | run | rerun, and why."""

    stage: str
    action: str
    reason: str
    config_hash: str


def stage_hashes(recipe: Recipe) -> dict[str, str]:
    """Each stage's config hash, chained through its init (a checkpoint directory init by its fingerprint); a
    vision_init that names a `vision:` entry counts by that entry's options."""
    hashes: dict[str, str] = {}
    for stage in recipe.stages.values():
        upstream = hashes.get(stage.init) or (fingerprint(Path(stage.init)) if Path(stage.init).is_dir() else None)
        fields, vision = recipe.train_fields(stage), recipe.vision_of(stage)
        if vision is not None:
            fields = {**fields, "vision_init": {"vision": vision.name, **vision.describe()}}
        hashes[stage.name] = config_hash(fields, upstream)
    return hashes


def decide(run_dir: Path, key: str, fingerprints: dict[str, str],
           vision: dict[str, str] | None = None) -> tuple[str, str]:
    """(action, reason) for a stage with config hash `key`, given the fingerprints of its datasets and of its
    `vision:` backbone (each by name; those present on disk)."""
    manifest = read_json(run_dir / MANIFEST)
    if manifest is not None:
        if manifest["config_hash"] != key:
            return "rerun", "its config, or a stage before it, changed since its manifest"
        changed = [n for n, f in fingerprints.items() if manifest["datasets"].get(n, {}).get("fingerprint") != f]
        if changed:
            return "rerun", f"dataset(s) {', '.join(changed)} changed since its manifest"
        remade = [n for n, f in (vision or {}).items() if manifest.get("vision", {}).get(n, {}).get("fingerprint") != f]
        if remade:
            return "rerun", f"vision backbone {remade[0]} changed since its manifest"
        if final_checkpoint(run_dir) is None:
            return "rerun", "its final checkpoint is gone"
        return "skip", f"done ({manifest['steps']} steps, finished {manifest['finished']})"
    started = read_json(run_dir / STARTED)
    if started is not None and started["config_hash"] == key:
        done = checkpoint_dirs(run_dir)
        return "resume", f"interrupted at {done[-1].name}" if done else "interrupted before its first checkpoint"
    if run_dir.exists():
        return "rerun", f"{run_dir} holds a run of another config"
    return "run", "not run yet"


def plan(recipe: Recipe, layout: Layout, until: str | None = None, archive: Path | None = None) -> list[Step]:
    """What `run_recipe` would do with each stage now, without doing anything."""
    return _Walk(recipe, layout, archive, None).all(until)


def run_recipe(recipe: Recipe, layout: Layout, train: Trainer, record: Recorder, until: str | None = None,
               pretrain: Pretrainer | None = None, archive: Path | None = None) -> list[Step]:
    """Bring every stage up to `until` (default: all) to done; returns what was done with each, in recipe order.
    A recipe with `vision:` entries needs `pretrain`. With `archive`, each stage trained is also copied to
    ARCHIVE/STAGE (its final model and manifest), and a stage found there with the config hash it has now is
    restored from it instead of trained (`_Walk` says when)."""
    if recipe.vision and pretrain is None:
        raise ConfigError(f"{recipe.path} pretrains vision backbones ({', '.join(recipe.vision)}); give a pretrainer")
    return _Walk(recipe, layout, archive, _Tools(train, record, pretrain, git_commit(Path(__file__).parent))).all(until)


@dataclass(frozen=True)
class _Tools:
    train: Trainer
    record: Recorder
    pretrain: Pretrainer | None
    commit: str | None


class _Walk:
    """Brings stages to done from the end of their chains backwards, so that only what a stage needs is made again.

    A stage is done when its manifest has the config hash it has now (chained through every stage before it) and
    the fingerprints of those of its inputs (datasets, backbone) that are on disk, or when ARCHIVE/STAGE has that
    hash (it is restored). An earlier stage is looked at only when the stage after it must train, or when its own
    run dir still exists: one whose run is gone (a lost machine) but whose later stage is done or archived is not
    needed, and is left alone. A stage trains after the stages it starts from and the stages whose handover plays
    one of its missing datasets; when one of those trains, it trains too. With no tools, nothing is done (`plan`).
    """

    def __init__(self, recipe: Recipe, layout: Layout, archive: Path | None, tools: _Tools | None) -> None:
        self.recipe, self.layout, self.archive, self.tools = recipe, layout, archive, tools
        self.hashes = stage_hashes(recipe)
        self.steps: dict[str, Step] = {}
        self.trained: set[str] = set()
        self.checked: set[str] = set()

    def all(self, until: str | None) -> list[Step]:
        """Every stage up to `until` in recipe order, those no later one starts from wanted (the ends of chains)."""
        names = [s.name for s in _stages(self.recipe, until)]
        starts = {self.recipe.stages[n].init for n in names}
        for name in names:
            self.resolve(name, wanted=name not in starts)
        return [self.steps.get(n) or Step(n, "skip", "not needed: a stage after it is done", self.hashes[n])
                for n in names]

    def resolve(self, name: str, wanted: bool = True) -> bool:
        """Bring stage `name` to done if `wanted` or its run dir exists; True when it (would have) trained."""
        if name in self.steps:
            return name in self.trained
        recipe, layout, stage = self.recipe, self.layout, self.recipe.stages[name]
        run_dir, key = layout.stage(name), self.hashes[name]
        if not wanted and not run_dir.exists():
            return False
        present = {d: fingerprint(layout.dataset(d)) for d in stage.datasets if layout.dataset(d).is_dir()}
        spec = recipe.vision_of(stage)
        made = spec is not None and layout.vision(spec.name).is_dir()
        vision = {spec.name: fingerprint(_checked_backbone(layout, spec))} if made else {}
        action, reason = decide(run_dir, key, present, vision)
        archived = self._archived(name) if action == "run" else None
        if archived is not None:
            action, reason = "restore", f"archived in {archived}"
        init = stage.init if stage.init in recipe.stages else None
        done = action in ("skip", "restore")
        if init is not None and self.resolve(init, wanted=not done) and done:
            action, reason = "rerun", f"stage {init} before it trains again"
        if action in ("skip", "restore"):
            if self.tools is not None and archived is not None and action == "restore":
                _restore(archived, run_dir)
                log.info("stage %s: restored from %s", name, archived)
            elif self.tools is not None:
                log.info("stage %s: skipped, %s", name, reason)
            self.steps[name] = Step(name, action, reason, key)
            return False
        for d in stage.datasets:
            player = recipe.datasets[d].record.handover
            if player is not None and not layout.dataset(d).is_dir():
                self.resolve(player)
        step = Step(name, action, reason, key)
        self.steps[name] = step
        self.trained.add(name)
        if self.tools is not None:
            self._train(stage, step)
        return True

    def _archived(self, name: str) -> Path | None:
        """ARCHIVE/STAGE when it holds a finished stage with the config hash the stage has now."""
        if self.archive is None:
            return None
        manifest = read_json(self.archive / name / MANIFEST)
        return self.archive / name if manifest is not None and manifest["config_hash"] == self.hashes[name] else None

    def _train(self, stage: StageSpec, step: Step) -> None:
        recipe, layout, tools = self.recipe, self.layout, self.tools
        assert tools is not None
        fingerprints = {d: fingerprint(_dataset(recipe, layout, d, self.trained, self.checked, tools.record))
                        for d in stage.datasets}
        spec = recipe.vision_of(stage)
        vision = {spec.name: fingerprint(_vision(layout, spec, tools.pretrain))} if spec is not None else {}
        run_dir = layout.stage(stage.name)
        if step.action == "rerun":
            log.warning("stage %s: re-running, %s; every stage after it in its chain re-runs too", stage.name,
                        step.reason)
            _set_aside(run_dir)
        log.info("stage %s: %s (%s) in %s", stage.name, "resuming" if step.action == "resume" else "starting",
                 step.reason, run_dir)
        manifest = _train_stage(recipe, stage, layout, step, fingerprints, vision, tools.train, tools.commit)
        log.info("stage %s: finished, %d steps in %.0f s", stage.name, manifest["steps"], manifest["wall_s"])
        if self.archive is not None:
            _archive(run_dir, self.archive / stage.name)


def _archive(run_dir: Path, out: Path) -> None:
    """Copy a finished run's final model and manifest to `out` (replacing what is there), via a temporary
    directory renamed into place."""
    final = final_checkpoint(run_dir)
    assert final is not None, f"{run_dir} has not finished"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        shutil.copytree(final / "model", tmp / "model")
        shutil.copy2(run_dir / MANIFEST, tmp / MANIFEST)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("stage %s: archived in %s", run_dir.name, out)


def _restore(archived: Path, run_dir: Path) -> None:
    """Rebuild a finished run dir from its archive: the model as its final checkpoint, and the manifest (noting
    where it came from)."""
    manifest = read_json(archived / MANIFEST)
    assert manifest is not None
    checkpoint = run_dir / "checkpoints" / f"step-{manifest['steps']:08d}"
    shutil.copytree(archived / "model", checkpoint / "model")
    mark_final(run_dir, checkpoint)
    write_json(run_dir / MANIFEST, {**manifest, "final_checkpoint": str(checkpoint), "restored_from": str(archived)})


def init_checkpoint(recipe: Recipe, layout: Layout, stage: StageSpec) -> str:
    """What the stage's TrainConfig.init is: the model of its init stage's final checkpoint, or init as written."""
    if stage.init not in recipe.stages:
        return stage.init
    return str(_final_model(layout, stage.init, f"stage {stage.name}: init"))


def _stages(recipe: Recipe, until: str | None) -> list[StageSpec]:
    names = list(recipe.stages)
    last = names.index(recipe.stage(until).name) if until is not None else len(names) - 1
    return [recipe.stages[n] for n in names[: last + 1]]


def _final_model(layout: Layout, stage: str, needed_by: str) -> Path:
    final = final_checkpoint(layout.stage(stage))
    if final is None or not (final / "model").is_dir():
        what = "has not finished" if final is None else "has no model/ in its final checkpoint (a LoRA run: merge it)"
        raise ConfigError(f"{needed_by}: stage {stage} {what} ({layout.stage(stage)})")
    return final / "model"


def _dataset(recipe: Recipe, layout: Layout, name: str, trained: set[str], checked: set[str], record: Recorder) -> Path:
    """The dataset's directory, recorded first when it is missing; `checked` (updated) holds the datasets this run
    has recorded or found already, so each is looked at once."""
    spec, out = recipe.datasets[name].record, layout.dataset(name)
    if name in checked:
        return out
    checked.add(name)
    if out.is_dir():
        if spec.handover in trained:
            log.warning("dataset %s was played by stage %s before it was trained again; delete %s to record it with "
                        "the new checkpoint", name, spec.handover, out)
        return out
    player = _final_model(layout, spec.handover, f"dataset {name}: handover") if spec.handover else None
    log.info("dataset %s: recording %d episodes: %s", name, spec.episodes, spec.command(out, player))
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    record(spec, out, player)
    log.info("dataset %s: recorded in %.0f s", name, time.perf_counter() - start)
    return out


def _checked_backbone(layout: Layout, spec: VisionSpec) -> Path:
    """The backbone directory of a `vision:` entry, which exists; ConfigError when its vision.json says it was
    pretrained with other options than the entry's."""
    out = layout.vision(spec.name)
    meta = read_json(out / "vision.json") or {}
    made = {k: meta.get(k) for k in spec.describe()}
    if made != spec.describe():
        differ = ", ".join(k for k in spec.describe() if made[k] != spec.describe()[k])
        raise ConfigError(f"vision {spec.name}: {out} was pretrained with other {differ} than the recipe gives; "
                          "delete it to pretrain it again")
    return out


def _vision(layout: Layout, spec: VisionSpec, pretrain: Pretrainer | None) -> Path:
    """The backbone directory of a `vision:` entry, pretrained first when it is missing (into a temporary
    directory beside it, renamed into place when done, so an interrupted pretraining never passes for a finished
    one)."""
    out = layout.vision(spec.name)
    if out.is_dir():
        return _checked_backbone(layout, spec)
    assert pretrain is not None, "run_recipe checks that a recipe with vision entries has a pretrainer"
    log.info("vision %s: pretraining: %s", spec.name, spec.command(out))
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        pretrain(spec, partial)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("vision %s: pretrained in %.0f s", spec.name, time.perf_counter() - start)
    return out


def _train_stage(recipe: Recipe, stage: StageSpec, layout: Layout, step: Step, fingerprints: dict[str, str],
                 vision: dict[str, str], train: Trainer, commit: str | None) -> dict:
    """Train one stage (resuming when step.action says so) and write its manifest; returns the manifest."""
    from clearvla.train.config import config_from_fields

    run_dir = layout.stage(stage.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = read_json(run_dir / STARTED) if step.action == "resume" else None
    started = started or {"config_hash": step.config_hash, "started": _now()}
    write_json(run_dir / STARTED, started)
    init = init_checkpoint(recipe, layout, stage)
    fields = {**recipe.train_fields(stage), "init": init, "run_dir": str(run_dir), "resume": step.action == "resume",
              "datasets": tuple(str(layout.dataset(d)) for d in stage.datasets)}
    spec = recipe.vision_of(stage)
    if spec is not None:
        fields["vision_init"] = str(layout.vision(spec.name))
    cfg = config_from_fields(fields, f"{recipe.path}: stage {stage.name}")
    start = time.perf_counter()
    train(cfg)
    final = final_checkpoint(run_dir)
    assert final is not None, f"the trainer finished {run_dir} without a final checkpoint"
    manifest = {
        "recipe": str(recipe.path), "stage": stage.name, "config_hash": step.config_hash, "config": fields,
        "init": init, "init_run": str(layout.stage(stage.init)) if stage.init in recipe.stages else None,
        "datasets": {d: {"path": str(layout.dataset(d)), "fingerprint": fingerprints[d],
                         "record": _record_command(recipe, layout, d)} for d in stage.datasets},
        "vision": {n: {"path": str(layout.vision(n)), "fingerprint": f,
                       "command": recipe.vision[n].command(layout.vision(n))} for n, f in vision.items()},
        "git_commit": commit, "started": started["started"], "finished": _now(),
        "wall_s": round(time.perf_counter() - start, 1), "resumed": step.action == "resume",
        "steps": int(final.name.split("-")[1]), "final_checkpoint": str(final), "metrics": last_metrics(run_dir),
    }
    write_json(run_dir / MANIFEST, manifest)
    (run_dir / STARTED).unlink()
    return manifest


def _record_command(recipe: Recipe, layout: Layout, name: str) -> str:
    spec = recipe.datasets[name].record
    player = final_checkpoint(layout.stage(spec.handover)) if spec.handover else None
    return spec.command(layout.dataset(name), player / "model" if player else None)


def _set_aside(run_dir: Path) -> None:
    if not run_dir.exists():
        return
    old = run_dir.with_name(f"{run_dir.name}.previous")
    replaced = old.exists()
    if replaced:
        shutil.rmtree(old)
    run_dir.rename(old)
    log.warning("moved the old %s to %s%s", run_dir, old, " (deleting the one there before)" if replaced else "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
