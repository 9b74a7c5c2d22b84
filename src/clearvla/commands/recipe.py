"""`clearvla recipe`: a whole training chain from one recipe file (clearvla.recipe.spec has the format).

    clearvla recipe run recipes/default_model.yaml [--until STAGE] [--smoke] [--run-root runs] [--archive DIR]
    clearvla recipe show recipes/default_model.yaml     # the stages as resolved, and what `run` would do
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recipe", help="run a chain of training stages and their recordings from one file")
    sub = p.add_subparsers(dest="recipe_command", required=True, metavar="RECIPE_COMMAND")
    for name, func, help in (("run", run, "record what is missing and train every stage not done (resumable)"),
                             ("show", show, "the resolved stages and datasets, and what `run` would do now")):
        s = sub.add_parser(name, help=help)
        s.add_argument("recipe", type=Path, help="a recipe file, e.g. recipes/default_model.yaml")
        s.add_argument("--until", metavar="STAGE", default=None, help="stop after this stage")
        s.add_argument("--run-root", type=Path, default=None,
                       help="datasets go in RUN_ROOT/data, vision backbones in RUN_ROOT/vision, stages in "
                            "RUN_ROOT/RECIPE (default runs; with --smoke a new temporary directory)")
        s.add_argument("--archive", type=Path, default=None, metavar="DIR",
                       help="copy each stage trained to DIR/STAGE (final model + manifest), and restore a stage from "
                            "there instead of training it when its config hash matches: commit DIR to keep a chain "
                            "across lost machines")
        s.add_argument("--smoke", action="store_true",
                       help="every stage 2 steps at 32 px on one-episode recordings: checks that the chain connects")
        s.set_defaults(func=func)


def _load(args: argparse.Namespace):
    from clearvla.recipe.runner import Layout
    from clearvla.recipe.spec import load_recipe

    recipe = load_recipe(args.recipe)
    if args.until is not None:
        recipe.stage(args.until)  # an unknown name fails before anything runs
    if args.smoke:
        recipe = recipe.smoke()
    root = args.run_root or (Path(tempfile.mkdtemp(prefix="clearvla-smoke-")) if args.smoke else Path("runs"))
    return recipe, Layout(root, recipe.name)


def run(args: argparse.Namespace) -> int:
    from clearvla.commands.sim import record
    from clearvla.commands.train import train_from_config
    from clearvla.recipe.runner import run_recipe
    from clearvla.recipe.spec import RecordSpec, VisionSpec

    recipe, layout = _load(args)
    logging.getLogger("clearvla.recipe").setLevel(logging.INFO)  # stage progress shows without -v

    def record_dataset(spec: RecordSpec, out: Path, handover: Path | None) -> None:
        record(spec.suite, spec.episodes, out, image_size=spec.image_size, seed=spec.seed, start=spec.start,
               stop=spec.stop, wrist_camera=spec.wrist, cameras=spec.cameras, workers=spec.workers,
               step_noise=spec.step_noise,
               random_start=not spec.home_start, handover=handover, handover_window=spec.handover_window,
               tasks=spec.tasks)

    def pretrain_backbone(spec: VisionSpec, out: Path) -> None:
        from clearvla.commands.pretrain_vision import pretrain_to

        pretrain_to(out, spec.settings, range(spec.first_scene, spec.first_scene + spec.scenes), spec.cameras)

    start = time.perf_counter()
    steps = run_recipe(recipe, layout, train_from_config, record_dataset, until=args.until, pretrain=pretrain_backbone,
                       archive=args.archive)
    said = {"skip": "skipped", "restore": "restored"}
    done = ", ".join(f"{s.stage} {said.get(s.action, 'trained')}" for s in steps)
    print(f"recipe {recipe.name}: {done} in {time.perf_counter() - start:.0f} s; runs in {layout.root / recipe.name}")
    return 0


def show(args: argparse.Namespace) -> int:
    from clearvla.recipe.runner import plan

    recipe, layout = _load(args)
    print(f"recipe {recipe.path}: datasets in {layout.root / 'data'}, vision backbones in {layout.root / 'vision'}, "
          f"stages in {layout.root / recipe.name}")
    for name, spec in recipe.datasets.items():
        state = "present" if layout.dataset(name).is_dir() else "missing"
        print(f"  dataset {name} ({state}): {spec.record.command(layout.dataset(name))}")
    for name, vision in recipe.vision.items():
        state = "present" if layout.vision(name).is_dir() else "missing"
        print(f"  vision {name} ({state}): {vision.command(layout.vision(name))}")
    for step in plan(recipe, layout, args.until, archive=args.archive):
        stage = recipe.stages[step.stage]
        own = {k: v for k, v in recipe.train_fields(stage).items() if k != "init" and recipe.defaults.get(k) != v}
        print(f"  stage {stage.name} <- {stage.init}: {step.action} ({step.reason})")
        print(f"    {json.dumps(own, default=list)}")
    return 0
