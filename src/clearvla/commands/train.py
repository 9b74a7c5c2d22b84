"""`clearvla train`: a TrainConfig (train/config.py) from `--config FILE` (YAML/JSON) plus CLI overrides (tyro), on
one process or under torchrun.

    clearvla train --config configs/workcell_chunk.yaml --datasets runs/data/demos --max-steps 2000
    torchrun --nproc_per_node 2 -m clearvla.cli train --config ... --strategy ddp
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any, Iterator

from clearvla.train.config import TrainConfig, config_from_fields, flatten
from clearvla.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", add_help=False, help="train or fine-tune a VLA (full, lora, frozen-vision, last-layer, sandwich)",
        description="All TrainConfig fields are options; `clearvla train --help` lists them.",
    )
    p.set_defaults(func=run, passthrough=True)


def load_config_file(path: Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """TrainConfig fields, by flat name, from a YAML or JSON file of flat names or group sections (`optim: {lr: ...}`).
    `base: OTHER.yaml` (a path relative to this file) loads OTHER first and this file's fields replace its fields,
    whole (lists are not merged); bases may chain."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (f" (the base of {_including[-1]})" if _including else ""))
    try:
        raw = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of TrainConfig fields, got a {type(raw).__name__}")
    base = raw.pop("base", None)
    own = flatten(raw, str(path))  # unknown or removed fields are errors that name them
    inherited: dict[str, Any] = {}
    if base is not None:
        chain = (*_including, path.resolve())
        base = (path.parent / str(base)).resolve()
        if base in chain:
            raise ConfigError("config bases form a cycle: " + " -> ".join(str(p) for p in (*chain, base)))
        inherited = load_config_file(base, chain)
    return {**inherited, **own}


def tyro_markers() -> tuple:
    """How tyro spells TrainConfig: flags keep their flat names (--lr, not --optim.lr); --help shows them by group."""
    import tyro

    return (tyro.conf.OmitArgPrefixes,)


def parse_config(options: list[str]) -> tuple[TrainConfig, str]:
    """(config, distributed strategy) from `--config FILE`, `--strategy ddp|fsdp` and tyro overrides."""
    import tyro

    options = list(options)
    defaults: dict[str, Any] = {}
    strategy = "ddp"
    for flag in ("--config", "--strategy"):
        if flag in options:
            i = options.index(flag)
            if i + 1 >= len(options):
                raise ConfigError(f"{flag} needs a value")
            value = options[i + 1]
            del options[i : i + 2]
            if flag == "--config":
                defaults = load_config_file(Path(value))
            else:
                strategy = value
    cfg = tyro.cli(TrainConfig, args=options, default=config_from_fields(defaults), prog="clearvla train",
                   config=tyro_markers())
    return cfg, strategy


def run(args: argparse.Namespace) -> int:
    cfg, strategy = parse_config(args.options)
    train_from_config(cfg, strategy)
    return 0


def train_from_config(cfg: TrainConfig, strategy: str = "ddp") -> list[dict[str, float]]:
    """Train one run as `clearvla train` does (this process, or this rank under torchrun): data, model, mode,
    loop, checkpoints in cfg.run_dir. Returns the logged history."""
    import torch
    from tqdm import tqdm

    from clearvla.data.cleaning import CleaningConfig
    from clearvla.data.loader import make_dataloader
    from clearvla.data.mixture import DatasetSpec, Mixture
    from clearvla.train.build import build_model
    from clearvla.train.distributed import init_distributed, shutdown, wrapper
    from clearvla.train.loop import train
    from clearvla.train.modes import LoraSettings, apply_mode, count_parameters
    from clearvla.train.objectives import needs_masks

    data = cfg.data
    if not data.datasets:
        raise ConfigError("no datasets given: pass --datasets DIR [DIR ...] or set `datasets` in the config file")
    dist = init_distributed(torch.distributed.is_torchelastic_launched())
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    weights = data.weights or (1.0,) * len(data.datasets)
    like = data.normalize_like or ("",) * len(data.datasets)
    mixture = Mixture.build(
        [DatasetSpec(path, weight, normalize_like=other or None) for path, weight, other in zip(data.datasets, weights, like)],
        cleaning=CleaningConfig(drop_outliers=data.drop_outliers, outlier_k=data.outlier_k),
        val_fraction=data.val_fraction, seed=cfg.run.seed, cache_dir=Path(cfg.run.run_dir) / "cache",
    )
    vla = build_model(cfg, mixture.norm_stats, device)
    apply_mode(vla, cfg.model.mode, LoraSettings(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_dropout))
    trainable, total = count_parameters(vla)
    if dist.is_main:
        print(f"mode {cfg.model.mode}: {trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)")
        for name, p in mixture.probabilities.items():
            print(f"  dataset {name}: sampling probability {p:.3f}")

    def loader(split: str, seed: int):
        return make_dataloader(mixture, vla.tokenizer, vla.processor, split=split, batch_size=cfg.optim.batch_size,
                               num_workers=data.num_workers if split == "train" else 0, seed=seed,
                               augment=data.augment, action_vocab_size=vla.config.base_vocab_size,
                               cameras=vla.config.cameras, proprio=vla.config.proprio_dim > 0,
                               action_chunk=vla.config.action_chunk, buffer_episodes=data.shuffle_buffer,
                               attention=split == "train" and needs_masks(cfg.objectives),
                               gripper_change_repeats=data.gripper_change_repeats)

    # Each rank draws its own stream; a resumed run replays the stream up to where it stopped (data only).
    train_loader = loader("train", cfg.run.seed * 1000 + dist.rank)

    def train_batches(start_sample: int) -> Iterator[dict]:
        return itertools.islice(iter(train_loader), start_sample // cfg.optim.batch_size, None)

    has_val = any(len(m.val) for m in mixture.members)
    val_loader = loader("val", cfg.run.seed) if has_val else None
    bar = tqdm(total=cfg.optim.max_steps, desc="train", unit="step", disable=not dist.is_main)

    def progress(step: int, metrics: dict[str, float]) -> None:
        bar.n = step
        if "loss" in metrics:
            shown = ("l1", "action_l1") if "chunk_l1" in metrics else ("acc", "action_accuracy")  # chunk models: no tokens
            bar.set_postfix({"loss": f"{metrics['loss']:.3f}", shown[0]: f"{metrics.get(shown[1], 0):.2f}"}, refresh=False)
        bar.refresh()

    try:
        history = train(vla, train_batches, cfg, val_batches=(lambda: iter(val_loader)) if val_loader is not None else None,
                         dist=dist, wrap=wrapper(strategy, dist), callbacks=(progress,))
    finally:
        bar.close()
        shutdown(dist)
    if dist.is_main and history:
        last = history[-1]
        fit = (f"action L1 {last['action_l1']:.3f}" if "action_accuracy" not in last and "action_l1" in last
               else f"action accuracy {last.get('action_accuracy', float('nan')):.3f}")
        print(f"done: step {last['step']}, loss {last['loss']:.4f}, {fit}")
        print(f"checkpoints in {Path(cfg.run.run_dir) / 'checkpoints'}; curves in {Path(cfg.run.run_dir) / 'curves.png'}")
    return history
