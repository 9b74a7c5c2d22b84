"""Model configuration: one frozen dataclass in OpenVLA's config.json vocabulary, and named presets.

`build_config(...)` is the one builder with every knob; presets pin them. `get_config(name, **overrides)`
looks a preset up with a "did you mean" on typos.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from transformers import LlamaConfig

from clearvla.errors import ConfigError
from clearvla.models.vision import TIMM_VITS
from clearvla.models.vit import ViTConfig

FUSED_ARCH = "no-align+fused-gelu-mlp"
PLAIN_ARCH = "no-align+gelu-mlp"
PREFIX_ATTENTION = ("causal", "bidirectional")


@dataclass(frozen=True)
class VLAConfig:
    """Architecture of a VLA, field names as in OpenVLA's config.json.

    vision: one ViTConfig per backbone (DINOv2 first when fused). image_sizes: input side per backbone.
    text_config: LlamaConfig keyword arguments (complete; saved as a diff against LlamaConfig defaults).
    pad_to_multiple_of: the LLM vocab is the tokenizer's (+ <PAD>) padded to this multiple, so the base
    vocabulary holding the action tokens is `text_config["vocab_size"] - pad_to_multiple_of`.
    """

    vision: tuple[ViTConfig, ...]
    text_config: dict[str, Any]
    image_sizes: tuple[int, ...] = (224, 224)
    vision_backbone_id: str = "dinosiglip-vit-so-224px"
    llm_backbone_id: str = "llama2-7b-pure"
    arch_specifier: str = FUSED_ARCH
    timm_model_ids: tuple[str, ...] = ("vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224")
    image_resize_strategy: str = "resize-naive"
    hf_llm_id: str = "meta-llama/Llama-2-7b-hf"
    llm_max_length: int = 2048
    pad_token_id: int = 32000
    pad_to_multiple_of: int = 64
    n_action_bins: int = 256
    tokenizer: str = "llama2"  # "llama2": files come with the checkpoint; "tiny": clearvla's built-in tokenizer
    # Inputs beyond OpenVLA's single image (issue 10); the defaults are OpenVLA's, so its checkpoints are unchanged.
    cameras: tuple[str, ...] = ("image",)  # camera names, in the order their patch tokens enter the LLM
    proprio_dim: int = 0  # robot-state width; > 0 adds one proprio token after the image patches
    # The entries of that state the model reads (empty: all). Joint angles lag behind the commanded pose, so with the
    # pose they reveal the arm's current velocity, and a cloned policy learns to keep moving as it moves (and to
    # stay still at rest) instead of reading the images: leave them out (benchmarks/input_ablation.py shows it).
    proprio_indices: tuple[int, ...] = ()
    # Output (issue 7): 0 = OpenVLA's autoregressive action tokens; K > 0 = OpenVLA-OFT parallel decoding of a
    # K-step chunk of `action_dim`-wide actions through an L1 regression head (models/heads.py).
    action_chunk: int = 0
    action_dim: int = 7
    # Training only: r > 0 adds `patch_decoder`, which reconstructs each patch at r x r pixels from its LLM input
    # token (models/patch_decoder.py); inference ignores it, as it ignores SigLIP's attention-pool head.
    patch_decoder: int = 0
    # Chunk models: True gives each of the K x A action slots a learned embedding (`action_slots`, N(0, 1)) in place
    # of OpenVLA-OFT's zero vectors, so the slots' first-layer queries can already read the instruction; needed by
    # attention supervision (models/attention_target.py).
    slot_embeddings: bool = False
    # Chunk models: "causal" (OpenVLA-OFT) or "bidirectional", a prefix-LM as in PaliGemma / pi0: image patches,
    # state and instruction all attend to each other (never to the slots), so a patch can read which part the words
    # name before the slots look for it (benchmarks/vision_probe.py, `binding`).
    prefix_attention: str = "causal"
    # Training only, chunk models: True adds `focus_head`, which regresses where the object the arm heads for shows
    # in every camera from the slots' final states (models/focus_target.py); inference ignores it.
    focus_head: bool = False
    # Chunk models: how many actions of each K-step chunk a closed-loop policy runs before its next forward (0: all K).
    # A deployment setting the checkpoint carries, so `clearvla eval`, `demo` and the server play a model as it was
    # measured; `--execute` overrides it.
    execute_actions: int = 0

    def __post_init__(self) -> None:
        if len(self.vision) != len(self.image_sizes) or len(self.vision) not in (1, 2):
            raise ConfigError(f"need one or two vision backbones with one image size each, got {len(self.vision)} and {self.image_sizes}")
        for vit, size in zip(self.vision, self.image_sizes):
            if size % vit.patch_size:
                raise ConfigError(f"image size {size} is not a multiple of the patch size {vit.patch_size}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras) or not all(isinstance(c, str) and c for c in self.cameras):
            raise ConfigError(f"cameras must be distinct non-empty names, got {self.cameras!r}")
        if not isinstance(self.proprio_dim, int) or self.proprio_dim < 0:
            raise ConfigError(f"proprio_dim must be an integer >= 0, got {self.proprio_dim!r}")
        if self.proprio_indices and (
            not self.proprio_dim or len(set(self.proprio_indices)) != len(self.proprio_indices)
            or not all(isinstance(i, int) and 0 <= i < self.proprio_dim for i in self.proprio_indices)
        ):
            raise ConfigError(f"proprio_indices must be distinct entries of the {self.proprio_dim}-wide state "
                              f"(0..{self.proprio_dim - 1}), got {list(self.proprio_indices)}")
        if not isinstance(self.patch_decoder, int) or self.patch_decoder < 0:
            raise ConfigError(f"patch_decoder must be an integer >= 0, got {self.patch_decoder!r}")
        if self.prefix_attention not in PREFIX_ATTENTION:
            raise ConfigError(f"prefix_attention must be one of {', '.join(PREFIX_ATTENTION)}, got {self.prefix_attention!r}")
        if self.prefix_attention != "causal" and not self.action_chunk:
            raise ConfigError("a bidirectional prefix needs an action-chunk model (action_chunk > 0): action tokens are decoded causally")
        if self.slot_embeddings and not self.action_chunk:
            raise ConfigError("slot_embeddings needs an action-chunk model (action_chunk > 0)")
        if self.focus_head and not self.action_chunk:
            raise ConfigError("focus_head needs an action-chunk model (action_chunk > 0): it reads the action slots")
        for name in ("action_chunk", "action_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "action_chunk" else 1):
                raise ConfigError(f"{name} must be an integer >= {0 if name == 'action_chunk' else 1}, got {value!r}")
        if not isinstance(self.execute_actions, int) or not 0 <= self.execute_actions <= self.action_chunk:
            raise ConfigError(f"execute_actions must be an integer from 0 (the whole chunk) to the chunk length "
                              f"{self.action_chunk}, got {self.execute_actions!r}")
        if self.arch_specifier not in (FUSED_ARCH, PLAIN_ARCH, "fused-gelu-mlp", "gelu-mlp"):
            raise ConfigError(f"arch_specifier {self.arch_specifier!r} is not supported; use {FUSED_ARCH!r} or {PLAIN_ARCH!r}")

    @property
    def use_fused_vision_backbone(self) -> bool:
        return len(self.vision) == 2

    @property
    def fused_projector(self) -> bool:
        return "fused" in self.arch_specifier

    @cached_property
    def llama_config(self) -> LlamaConfig:
        """The LLM config: `text_config` over transformers' LlamaConfig defaults (which are Llama-2 7B's)."""
        return LlamaConfig(**self.text_config)

    @property
    def base_vocab_size(self) -> int:
        return self.llama_config.vocab_size - self.pad_to_multiple_of


def build_config(
    *,
    vision: tuple[ViTConfig, ...],
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    base_vocab_size: int,
    image_size: int = 224,
    num_kv_heads: int | None = None,
    max_position_embeddings: int = 2048,
    fused_projector: bool = True,
    pad_to_multiple_of: int = 64,
    **fields: Any,
) -> VLAConfig:
    """The one builder: LLM sizes, vocabulary and image size in, a complete VLAConfig out.

    The pad token takes id `base_vocab_size` (first id after the base vocabulary, OpenVLA's <PAD>).
    """
    vocab = base_vocab_size + pad_to_multiple_of
    text_config = dict(
        vocab_size=vocab, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads, max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6, pad_token_id=base_vocab_size, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    return VLAConfig(
        vision=vision,
        text_config=text_config,
        image_sizes=(image_size,) * len(vision),
        arch_specifier=FUSED_ARCH if fused_projector else PLAIN_ARCH,
        pad_token_id=base_vocab_size,
        pad_to_multiple_of=pad_to_multiple_of,
        **fields,
    )


def _openvla_7b(**overrides: Any) -> VLAConfig:
    return build_config(
        vision=(TIMM_VITS["vit_large_patch14_reg4_dinov2.lvd142m"], TIMM_VITS["vit_so400m_patch14_siglip_224"]),
        hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008, base_vocab_size=32000,
        **overrides,
    )


def _tiny(image_size: int = 224, **overrides: Any) -> VLAConfig:
    """Same architecture as openvla-7b (fused DINOv2-reg4 + SigLIP, fused projector, Llama), CPU-sized."""
    dino = replace(TIMM_VITS["vit_large_patch14_reg4_dinov2.lvd142m"], width=64, depth=3, heads=4, mlp_hidden=256, patch_size=16)
    siglip = replace(TIMM_VITS["vit_so400m_patch14_siglip_224"], width=64, depth=3, heads=4, mlp_hidden=256, patch_size=16)
    knobs: dict[str, Any] = dict(
        vision=(dino, siglip), hidden_size=128, num_layers=4, num_heads=4, intermediate_size=352,
        base_vocab_size=1024, max_position_embeddings=1024, image_size=image_size,
        vision_backbone_id="tiny-dinosiglip", llm_backbone_id="tiny-llama", timm_model_ids=("tiny-dinov2-reg4", "tiny-siglip"),
        hf_llm_id="", llm_max_length=1024, tokenizer="tiny",
    )
    knobs.update(overrides)
    return build_config(**knobs)


PRESETS = {"openvla-7b": _openvla_7b, "tiny": _tiny}


def get_config(name: str, **overrides: Any) -> VLAConfig:
    """A preset by name, with builder knobs overridden (e.g. `get_config("tiny", image_size=128)`)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; available: {', '.join(sorted(PRESETS))}")
    try:
        return PRESETS[name](**overrides)
    except TypeError as e:
        raise ConfigError(f"preset {name!r}: {e}") from None


def vit_to_dict(vit: ViTConfig) -> dict[str, Any]:
    return asdict(vit)


def vit_from_dict(d: dict[str, Any]) -> ViTConfig:
    d = dict(d)
    d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
    return ViTConfig(**d)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `clearvla train` needs. `--config FILE` (YAML/JSON) sets defaults, every option below
    overrides them, and `--strategy ddp|fsdp` picks the torchrun wrapper."""

    run_dir: str = "runs/train"
    """Where checkpoints, TensorBoard logs, metrics.jsonl and curves.png go."""
    init: str = "tiny"
    """A preset name (train from scratch) or an OpenVLA-format checkpoint directory (fine-tune)."""
    image_size: int | None = None
    """Image side (e.g. 128 for CPU training). A checkpoint given a new side fine-tunes at it: its ViT position
    tables are resampled to the new patch grid (bicubic); unset, a checkpoint keeps its own."""
    widen: int = 1
    """> 1 with a checkpoint init: train a model this many times wider (every width, MLP and head count) that starts
    computing exactly what the checkpoint computes (Net2WiderNet; train/widen.py)."""
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
    patch_loss: float = 0.0
    """> 0: add a training-only patch decoder and this weight times its reconstruction error to the loss (helps
    models trained from scratch learn where things are; models/patch_decoder.py)."""
    prefix_attention: str = "causal"
    """Chunk models: causal (OpenVLA-OFT) | bidirectional (a prefix-LM: patches, state and instruction attend to each
    other, so a patch can read which part the words name)."""
    slot_embeddings: bool = False
    """Chunk models: learned action-slot embeddings instead of OpenVLA-OFT's zero slots."""
    attention_loss: float = 0.0
    """> 0 (chunk models): add this weight times the attention supervision loss, which asks the action slots to look
    at the part and target the instruction names (needs datasets with attention masks, e.g. `clearvla sim record`;
    turns on slot_embeddings; models/attention_target.py)."""
    focus_loss: float = 0.0
    """> 0 (chunk models): add a training-only head that regresses, from the action slots, where the object the arm
    heads for shows in every camera (the centroid of the same attention masks), and this weight times its L1 error
    (models/focus_target.py)."""
    drop_outliers: bool = True
    """Cleaning: drop episodes with an action beyond outlier_k x IQR of the dataset (per dimension)."""
    outlier_k: float = 3.0
    num_workers: int = 2
    """DataLoader worker processes."""
    shuffle_buffer: int = 64
    """Decoded episodes each worker keeps and draws frames from: a batch mixes about this many scenes (OpenVLA
    shuffles over 256k frames; a handful of episodes gives batches of near-duplicate frames)."""
    execute_actions: int = 0
    """Chunk models: the actions of each chunk the checkpoints say to run before the next forward (`clearvla eval`,
    `demo` and the server play them so; `--execute` overrides); 0 keeps the init checkpoint's (a preset: all K)."""
    gripper_change_repeats: int = 1
    """Frames whose gripper command (the last action dimension) changes, a grasp or a release, are drawn this many
    times per pass over an episode (about one frame in thirty in the simulator's data; with 1 a model can learn the
    grasp as a timing inside its action chunk rather than from what it sees, benchmarks/input_ablation.py)."""
    paraphrases: tuple[str, ...] = ()
    """Per dataset, a paraphrase file (`clearvla sim paraphrase`; data/paraphrases.py) or "" for none: other
    instructions that mean the same as each episode's, which training frames draw from (language augmentation)."""
    paraphrase_prob: float = 0.5
    """The chance that a training frame of an episode with paraphrases reads one of them, drawn uniformly, instead of
    its recorded instruction."""
    mode: str = "full"
    """full | lora | frozen-vision | last-layer | sandwich (OpenVLA's fine-tuning variants)."""
    lora_rank: int = 32
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lr: float | None = None
    """Peak learning rate; default 5e-4 for LoRA and 2e-5 otherwise (OpenVLA's recipes)."""
    weight_decay: float = 0.0
    schedule: str = "constant"
    """constant (OpenVLA) | cosine (after warmup)."""
    warmup_steps: int = 0
    batch_size: int = 16
    """Per process, per micro-step."""
    grad_accum: int = 1
    max_steps: int = 1000
    """Optimizer steps."""
    clip_grad_norm: float = 1.0
    """0 disables clipping."""
    precision: str = "auto"
    """auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 (autocast; master weights stay fp32)."""
    log_every: int = 10
    eval_every: int = 100
    """Validation metrics every N steps (0: never)."""
    eval_batches: int = 4
    save_every: int = 200
    """Checkpoint every N steps (and at the end)."""
    keep_last: int = 2
    seed: int = 0
    resume: bool = False
    """Continue from the newest checkpoint in run_dir/checkpoints."""

    def __post_init__(self) -> None:
        from clearvla.train.modes import MODES
        from clearvla.train.optim import SCHEDULES

        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of: {', '.join(SCHEDULES)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision {self.precision!r} is not one of: auto, fp32, bf16")
        if self.weights and len(self.weights) != len(self.datasets):
            raise ConfigError(f"got {len(self.weights)} weights for {len(self.datasets)} datasets")
        if self.normalize_like and len(self.normalize_like) != len(self.datasets):
            raise ConfigError(f"got {len(self.normalize_like)} normalize_like entries for {len(self.datasets)} datasets")
        if self.execute_actions < 0:
            raise ConfigError(f"execute_actions must be >= 0 (0 keeps the init checkpoint's), got {self.execute_actions}")
        if self.gripper_change_repeats < 1:
            raise ConfigError(f"gripper_change_repeats must be >= 1, got {self.gripper_change_repeats}")
        if self.paraphrases and len(self.paraphrases) != len(self.datasets):
            raise ConfigError(f"got {len(self.paraphrases)} paraphrases entries for {len(self.datasets)} datasets")
        if not 0.0 <= self.paraphrase_prob <= 1.0:
            raise ConfigError(f"paraphrase_prob must be in [0, 1], got {self.paraphrase_prob}")
        if self.widen < 1:
            raise ConfigError(f"widen must be an integer >= 1, got {self.widen}")
        if self.patch_loss < 0:
            raise ConfigError(f"patch_loss must be >= 0, got {self.patch_loss}")
        if self.proprio_indices and not self.proprio:
            raise ConfigError("proprio_indices choose entries of the robot state: they need proprio=True")
        if self.prefix_attention not in PREFIX_ATTENTION:
            raise ConfigError(f"prefix_attention {self.prefix_attention!r} is not one of: {', '.join(PREFIX_ATTENTION)}")
        if self.attention_loss < 0:
            raise ConfigError(f"attention_loss must be >= 0, got {self.attention_loss}")
        if self.focus_loss < 0:
            raise ConfigError(f"focus_loss must be >= 0, got {self.focus_loss}")
        if (self.prefix_attention != "causal" or self.slot_embeddings or self.attention_loss or self.focus_loss) and not self.action_chunk:
            raise ConfigError("prefix_attention=bidirectional, slot_embeddings, attention_loss and focus_loss need an "
                              "action-chunk model (action_chunk > 0)")
        if self.action_tokens and self.action_chunk:
            raise ConfigError(f"action_tokens trains action tokens, action_chunk={self.action_chunk} trains chunks: set one")
        for name in ("batch_size", "grad_accum", "max_steps", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.mode == "lora" else 2e-5)
