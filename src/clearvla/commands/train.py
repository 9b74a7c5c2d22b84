"""`clearvla train`: a TrainConfig from `--config FILE` (YAML/JSON) plus CLI overrides (tyro), on one
process or under torchrun.

    clearvla train --config configs/train_tiny.yaml --mode lora --max-steps 2000
    torchrun --nproc_per_node 2 -m clearvla.cli train --config ... --strategy ddp
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

from clearvla.config import TrainConfig
from clearvla.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", add_help=False, help="train or fine-tune a VLA (full, lora, frozen-vision, last-layer, sandwich)",
        description="All TrainConfig fields are options; `clearvla train --help` lists them.",
    )
    p.set_defaults(func=run, passthrough=True)


def load_config_file(path: Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """TrainConfig fields from a YAML or JSON file. `base: OTHER.yaml` (a path relative to this file) loads OTHER
    first and this file's fields replace its fields, whole (lists are not merged); bases may chain."""
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
    inherited: dict[str, Any] = {}
    base = raw.pop("base", None)
    own = check_fields(raw, str(path))
    if base is not None:
        chain = (*_including, path.resolve())
        base = (path.parent / str(base)).resolve()
        if base in chain:
            raise ConfigError("config bases form a cycle: " + " -> ".join(str(p) for p in (*chain, base)))
        inherited = load_config_file(base, chain)
    return {**inherited, **own}


def check_fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """`raw` as TrainConfig keyword arguments (YAML lists become tuples); an unknown name is a ConfigError that
    names `where` (a file, or a recipe stage) and lists the valid fields."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; TrainConfig fields: {', '.join(sorted(known))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


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
    return tyro.cli(TrainConfig, args=options, default=config_from_fields(defaults), prog="clearvla train"), strategy


def config_from_fields(fields: dict[str, Any], where: str = "") -> TrainConfig:
    """A TrainConfig from flat field names (as config files spell them; see `check_fields`); a bad value is a
    ConfigError prefixed with `where` when given."""
    try:
        return TrainConfig(**fields)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


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
    from clearvla.data.paraphrases import load_paraphrases
    from clearvla.train.build import build_model
    from clearvla.train.distributed import init_distributed, shutdown, wrapper
    from clearvla.train.loop import train
    from clearvla.train.modes import LoraSettings, apply_mode, count_parameters

    if not cfg.datasets:
        raise ConfigError("no datasets given: pass --datasets DIR [DIR ...] or set `datasets` in the config file")
    dist = init_distributed(torch.distributed.is_torchelastic_launched())
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    weights = cfg.weights or (1.0,) * len(cfg.datasets)
    like = cfg.normalize_like or ("",) * len(cfg.datasets)
    mixture = Mixture.build(
        [DatasetSpec(path, weight, normalize_like=other or None) for path, weight, other in zip(cfg.datasets, weights, like)],
        cleaning=CleaningConfig(drop_outliers=cfg.drop_outliers, outlier_k=cfg.outlier_k),
        val_fraction=cfg.val_fraction, seed=cfg.seed, cache_dir=Path(cfg.run_dir) / "cache",
    )
    paraphrases = {
        m.name: load_paraphrases(path, m.name, len(m.source))
        for m, path in zip(mixture.members, cfg.paraphrases or ("",) * len(cfg.datasets)) if path
    }
    vla = build_model(cfg, mixture.norm_stats, device)
    apply_mode(vla, cfg.mode, LoraSettings(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout))
    trainable, total = count_parameters(vla)
    if dist.is_main:
        print(f"mode {cfg.mode}: {trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)")
        for name, p in mixture.probabilities.items():
            said = f"; paraphrases for {len(paraphrases[name])} episodes" if name in paraphrases else ""
            print(f"  dataset {name}: sampling probability {p:.3f}{said}")

    def loader(split: str, seed: int):
        return make_dataloader(mixture, vla.tokenizer, vla.processor, split=split, batch_size=cfg.batch_size,
                               num_workers=cfg.num_workers if split == "train" else 0, seed=seed,
                               augment=cfg.augment, action_vocab_size=vla.config.base_vocab_size,
                               cameras=vla.config.cameras, proprio=vla.config.proprio_dim > 0,
                               action_chunk=vla.config.action_chunk, buffer_episodes=cfg.shuffle_buffer,
                               attention=split == "train" and (cfg.attention_loss > 0 or cfg.focus_loss > 0),
                               gripper_change_repeats=cfg.gripper_change_repeats, paraphrases=paraphrases,
                               paraphrase_prob=cfg.paraphrase_prob)

    # Each rank draws its own stream; a resumed run replays the stream up to where it stopped (data only).
    train_loader = loader("train", cfg.seed * 1000 + dist.rank)

    def train_batches(start_sample: int) -> Iterator[dict]:
        return itertools.islice(iter(train_loader), start_sample // cfg.batch_size, None)

    has_val = any(len(m.val) for m in mixture.members)
    val_loader = loader("val", cfg.seed) if has_val else None
    bar = tqdm(total=cfg.max_steps, desc="train", unit="step", disable=not dist.is_main)

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
        print(f"checkpoints in {Path(cfg.run_dir) / 'checkpoints'}; curves in {Path(cfg.run_dir) / 'curves.png'}")
    return history
