"""What `clearvla train` needs, in five groups: the model it trains (`model`), the data (`data`), the objectives added
to the action loss (`objectives`), the optimisation (`optim`) and the run's bookkeeping (`run`). Each group checks its
own fields; `TrainConfig` checks only what spans groups.

Field names are unique across groups, so users spell them without the group, as before the grouping: YAML keys
(`lr: 2.0e-4`), CLI flags (`--max-steps 100`) and Python (`TrainConfig(lr=2e-4)`, `cfg.lr`) all take the flat
name. A config file may also group them (`optim: {lr: 2.0e-4}`). Every field's docstring is its documentation:
`clearvla train --help` (tyro) and docs/reference/train_config.md (scripts/gen_train_config_doc.py) read them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from clearvla.errors import ConfigError
from clearvla.models.config import PREFIX_ATTENTION

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ModelOptions:
    """The model a run starts from and trains: init, inputs, output and fine-tuning mode."""

    init: str = "tiny"
    """A preset name (train from scratch) or an OpenVLA-format checkpoint directory (fine-tune)."""
    image_size: int | None = None
    """Image side (e.g. 128 for CPU training). A checkpoint given a new side fine-tunes at it: its ViT position
    tables are resampled to the new patch grid (bicubic); unset, a checkpoint keeps its own."""
    cameras: tuple[str, ...] = ()
    """Cameras the model reads, in this order (e.g. image wrist_image); empty: the checkpoint's, or just "image"."""
    proprio: bool = False
    """Feed the robot state (the datasets' proprio stream, normalised by its own statistics) as one token."""
    proprio_indices: tuple[int, ...] = ()
    """With proprio: the entries of the state the model reads (empty: all), e.g. 0 1 2 5 6 for the simulator's grip
    position, yaw and gripper without the joint angles, which give away the arm's current velocity."""
    action_chunk: int = 0
    """K > 0: train OpenVLA-OFT parallel decoding (K-step action chunks, L1 head) instead of action tokens."""
    action_tokens: bool = False
    """Turn a chunk checkpoint (init) back into OpenVLA's action tokens: drop its chunk head, action slots and focus
    head and return to a causal prefix; the rest of its weights carry over (a same-init chunk-vs-token comparison)."""
    prefix_attention: str = "causal"
    """Chunk models: causal (OpenVLA-OFT) | bidirectional (a prefix-LM: patches, state and instruction attend to each
    other, so a patch can read which part the words name)."""
    execute_actions: int = 0
    """Chunk models: the actions of each chunk the checkpoints say to run before the next forward (`clearvla eval`,
    `demo` and the server play them so; `--execute` overrides); 0 keeps the init checkpoint's (a preset: all K)."""
    vision_init: str = ""
    """A `clearvla pretrain-vision` directory (vision.safetensors) whose weights replace the vision backbone's
    before training, tensor by tensor (a name or shape mismatch is an error); the mode then decides whether they
    train (frozen-vision keeps them fixed). Empty: the init's own vision weights."""
    mode: str = "full"
    """full | lora | frozen-vision | last-layer | sandwich (OpenVLA's fine-tuning variants)."""
    lora_rank: int = 32
    """LoRA: the adapters' rank r (OpenVLA: 32)."""
    lora_alpha: int = 16
    """LoRA: the adapters' scale alpha; their update is scaled by alpha / r (OpenVLA: 16)."""
    lora_dropout: float = 0.0
    """LoRA: dropout on the adapters' input (OpenVLA: none)."""

    def __post_init__(self) -> None:
        from clearvla.train.modes import MODES

        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if self.prefix_attention not in PREFIX_ATTENTION:
            raise ConfigError(f"prefix_attention {self.prefix_attention!r} is not one of: {', '.join(PREFIX_ATTENTION)}")
        if self.prefix_attention != "causal" and not self.action_chunk:
            raise ConfigError("prefix_attention=bidirectional needs an action-chunk model (action_chunk > 0)")
        if self.execute_actions < 0:
            raise ConfigError(f"execute_actions must be >= 0 (0 keeps the init checkpoint's), got {self.execute_actions}")
        if self.proprio_indices and not self.proprio:
            raise ConfigError("proprio_indices choose entries of the robot state: they need proprio=True")
        if self.action_tokens and self.action_chunk:
            raise ConfigError(f"action_tokens trains action tokens, action_chunk={self.action_chunk} trains chunks: set one")


@dataclass(frozen=True)
class DataOptions:
    """The datasets, how they mix and clean, and how frames are drawn from them."""

    datasets: tuple[str, ...] = ()
    """Dataset directories (LeRobot v3, clearvla's native format)."""
    weights: tuple[float, ...] = ()
    """Mixture sampling weights, one per dataset (default: equal)."""
    normalize_like: tuple[str, ...] = ()
    """Per dataset, the name of another one whose statistics normalise it (same robot and action space), or ""
    for its own (default: every dataset its own). Datasets normalised like another add no norm_stats key."""
    val_fraction: float = 0.05
    """Fraction of episodes held out for validation metrics."""
    augment: bool = True
    """OpenVLA's image augmentation (random resized crop 0.9, colour jitter)."""
    drop_outliers: bool = True
    """Cleaning: drop episodes with an action beyond outlier_k x IQR of the dataset (per dimension)."""
    outlier_k: float = 10.0
    """Cleaning: how many inter-quartile ranges beyond the quartiles an action may lie before its episode is an
    outlier (every shipped recipe uses 10; `clearvla data clean` defaults to the stricter 3)."""
    num_workers: int = 2
    """DataLoader worker processes."""
    shuffle_buffer: int = 64
    """Decoded episodes each worker keeps and draws frames from: a batch mixes about this many scenes (OpenVLA
    shuffles over 256k frames; a handful of episodes gives batches of near-duplicate frames)."""
    gripper_change_repeats: int = 1
    """Frames whose gripper command (the last action dimension) changes, a grasp or a release, are drawn this many
    times per pass over an episode (about one frame in thirty in the simulator's data; with 1 a model can learn the
    grasp as a timing inside its action chunk rather than from what it sees, benchmarks/input_ablation.py)."""

    def __post_init__(self) -> None:
        if self.weights and len(self.weights) != len(self.datasets):
            raise ConfigError(f"got {len(self.weights)} weights for {len(self.datasets)} datasets")
        if self.normalize_like and len(self.normalize_like) != len(self.datasets):
            raise ConfigError(f"got {len(self.normalize_like)} normalize_like entries for {len(self.datasets)} datasets")
        if self.gripper_change_repeats < 1:
            raise ConfigError(f"gripper_change_repeats must be >= 1, got {self.gripper_change_repeats}")


@dataclass(frozen=True)
class ObjectiveOptions:
    """Weights of the training-only objectives added to the action loss (train/objectives.py); 0 leaves one out."""

    patch_loss: float = 0.0
    """> 0: add a training-only patch decoder and this weight times its reconstruction error to the loss (helps
    models trained from scratch learn where things are)."""
    attention_loss: float = 0.0
    """> 0 (chunk models): add this weight times the attention supervision loss, which asks the action slots to look
    at the part and target the instruction names (needs datasets with attention masks, e.g. `clearvla sim record`;
    gives the model learned action-slot embeddings)."""
    focus_loss: float = 0.0
    """> 0 (chunk models): add a training-only head that regresses, from the action slots, where the object the arm
    heads for shows in every camera (the centroid of the same attention masks), and this weight times its L1 error."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class OptimOptions:
    """The optimiser, its schedule, the batch and the number of steps."""

    lr: float | None = None
    """Peak learning rate; default 5e-4 for LoRA and 2e-5 otherwise (OpenVLA's recipes)."""
    weight_decay: float = 0.0
    """AdamW weight decay (OpenVLA: none)."""
    vision_lr_scale: float = 1.0
    """Multiplies the learning rate (and its schedule) of the vision backbone's trainable parameters: below 1, a
    pretrained backbone (`vision_init`) adapts slowly while the rest learns at `lr`; `mode: frozen-vision` is 0."""
    schedule: str = "constant"
    """constant (OpenVLA) | cosine (after warmup)."""
    warmup_steps: int = 0
    """Steps of linear warmup to the peak learning rate."""
    batch_size: int = 16
    """Per process, per micro-step."""
    grad_accum: int = 1
    """Micro-steps whose gradients add up to one optimizer step."""
    max_steps: int = 1000
    """Optimizer steps."""
    clip_grad_norm: float = 1.0
    """0 disables clipping."""
    precision: str = "auto"
    """auto (bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32) | fp32 | bf16 (autocast; master weights stay fp32)."""

    def __post_init__(self) -> None:
        from clearvla.train.optim import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of: {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        for name in ("batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.vision_lr_scale > 0:
            raise ConfigError(f"vision_lr_scale must be > 0 (to keep the backbone fixed, use mode: frozen-vision), "
                              f"got {self.vision_lr_scale}")


@dataclass(frozen=True)
class RunOptions:
    """Where the run writes, how often it logs, evaluates and saves, and its seed."""

    run_dir: str = "runs/train"
    """Where checkpoints, TensorBoard logs, metrics.jsonl and curves.png go."""
    seed: int = 0
    """Seeds the model's initialisation, data order and augmentation: the same seed gives the same run."""
    resume: bool = False
    """Continue from the newest checkpoint in run_dir/checkpoints."""
    log_every: int = 10
    """Log training metrics every N steps."""
    eval_every: int = 100
    """Validation metrics every N steps (0: never)."""
    eval_batches: int = 4
    """Validation batches per evaluation."""
    save_every: int = 200
    """Checkpoint every N steps (and at the end)."""
    keep_last: int = 2
    """Checkpoints kept in run_dir/checkpoints (older ones are deleted)."""

    def __post_init__(self) -> None:
        for name in ("keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


GROUPS: dict[str, type] = {"model": ModelOptions, "data": DataOptions, "objectives": ObjectiveOptions,
                           "optim": OptimOptions, "run": RunOptions}
FIELD_GROUP: dict[str, str] = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}
# Options taken out of the trainer, with what they measured; a config naming one is refused with this text.
REMOVED: dict[str, str] = {
    "widen": "widening a checkpoint (Net2WiderNet) measured no gain (stage 14: 529 vs stage 11's 545 of 1,000, "
             "p = 0.40)",
    "paraphrases": "instruction paraphrases measured no gain (stage 19: 510 vs its control's 506 of 1,000, p = 0.83)",
    "paraphrase_prob": "instruction paraphrases measured no gain (stage 19: 510 vs its control's 506 of 1,000, "
                       "p = 0.83)",
    "slot_embeddings": "learned action-slot embeddings come with attention_loss > 0, as they always did",
}


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything `clearvla train` needs. `--config FILE` (YAML/JSON) sets defaults, every option below
    overrides them, and `--strategy ddp|fsdp` picks the torchrun wrapper."""

    # Built from groups, flat field names (`TrainConfig(lr=1e-3, datasets=("d",))`) or both; a field reads through
    # its group (`cfg.optim.lr`) or by its flat name (`cfg.lr`).

    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    objectives: ObjectiveOptions = field(default_factory=ObjectiveOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def __init__(
        self,
        model: ModelOptions | None = None,
        data: DataOptions | None = None,
        objectives: ObjectiveOptions | None = None,
        optim: OptimOptions | None = None,
        run: RunOptions | None = None,
        **flat: Any,
    ) -> None:
        given = {"model": model, "data": data, "objectives": objectives, "optim": optim, "run": run}
        per_group: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
        for name, value in flat.items():
            per_group[_group_of(name, "TrainConfig")][name] = value
        for group, cls in GROUPS.items():
            base = given[group] if given[group] is not None else cls()
            object.__setattr__(self, group, replace(base, **per_group[group]) if per_group[group] else base)
        self._check()

    def _check(self) -> None:
        """The checks that span groups (each group checks its own fields)."""
        if (self.objectives.attention_loss or self.objectives.focus_loss) and not self.model.action_chunk:
            raise ConfigError("attention_loss and focus_loss need an action-chunk model (action_chunk > 0)")

    def __getattr__(self, name: str) -> Any:
        group = FIELD_GROUP.get(name)
        if group is None:
            raise AttributeError(f"TrainConfig has no field {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    @property
    def learning_rate(self) -> float:
        lr = self.optim.lr
        return lr if lr is not None else (5e-4 if self.model.mode == "lora" else 2e-5)

    @property
    def slot_embeddings(self) -> bool:
        """Learned action-slot embeddings: what attention supervision needs (models/config.py)."""
        return self.objectives.attention_loss > 0

    def to_dict(self) -> dict[str, Any]:
        """Every field by its flat name (the form run directories save as train_config.json)."""
        return {name: getattr(getattr(self, group), name) for name, group in FIELD_GROUP.items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "TrainConfig", *, saved: bool = False) -> "TrainConfig":
        """A config from flat field names, group sections (`optim: {lr: ...}`) or both; lists become tuples.
        Unknown names are errors naming the closest field. `saved`: a run directory's own train_config.json, which
        may hold fields of older versions: unknown ones are skipped, removed ones only refused where they change
        the model the run trained."""
        return cls(**flatten(raw, where, saved=saved))


def flatten(raw: Mapping[str, Any], where: str = "TrainConfig", *, saved: bool = False) -> dict[str, Any]:
    """Flat field name -> value from a mapping of flat names and group sections; see `TrainConfig.from_dict`."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in GROUPS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key} is a group of fields ({', '.join(f.name for f in fields(GROUPS[key]))}): "
                                  f"write them flat or as a mapping ({key}: {{name: value}}), got {value!r}")
            _check_names([name for name in value if name not in FIELD_GROUP], f"{where}: {key}")
            misplaced = [name for name in value if FIELD_GROUP[name] != key]
            if misplaced:
                raise ConfigError(f"{where}: {misplaced[0]} belongs in {FIELD_GROUP[misplaced[0]]}, not {key}")
            out.update(value)
        elif key in REMOVED and saved:
            _check_saved_removed(key, value, raw, where)
        elif key in FIELD_GROUP:
            out[key] = value
    if not saved:
        _check_names([k for k in raw if k not in FIELD_GROUP and k not in GROUPS], where)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def _group_of(name: str, where: str) -> str:
    _check_names([name] if name not in FIELD_GROUP else [], where)
    return FIELD_GROUP[name]


def _check_names(unknown: list[str], where: str) -> None:
    """Unknown field names are an error naming them, a removed one with why, the others with the closest field."""
    removed = [name for name in unknown if name in REMOVED]
    if removed:
        raise ConfigError(f"{where}: {removed[0]} was removed: {REMOVED[removed[0]]}; delete it from the config "
                          "(commit 85ed93a still has it)")
    if unknown:
        hints = [f"{name} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, FIELD_GROUP, n=1))
                 else name for name in unknown]
        raise ConfigError(f"{where}: unknown field(s) {', '.join(hints)}; TrainConfig fields: {', '.join(sorted(FIELD_GROUP))}")


def _check_saved_removed(name: str, value: Any, raw: Mapping[str, Any], where: str) -> None:
    """A removed field in a saved run config is skipped unless the run's model depended on it."""
    changed_model = (name == "widen" and value not in (None, 1)) or (
        name == "slot_embeddings" and value and not raw.get("attention_loss", 0))
    if changed_model:
        raise ConfigError(f"{where}: the run used {name}={value!r}, which was removed ({REMOVED[name]}); its model "
                          "cannot be rebuilt here: use commit 85ed93a")


def config_from_fields(fields: dict[str, Any], where: str = "") -> TrainConfig:
    """A TrainConfig from flat field names (as `flatten` gives them from files and recipe stages); a bad value is a
    ConfigError prefixed with `where` when given."""
    try:
        return TrainConfig(**fields)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
