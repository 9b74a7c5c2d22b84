"""Model configuration: one frozen dataclass in OpenVLA's config.json vocabulary, and its builder.

`build_config(...)` is the one builder with every knob; the presets (models/presets.py) pin them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from transformers import LlamaConfig

from clearvla.errors import ConfigError
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
    # token (models/heads.py; its loss: train/objectives.py); inference ignores it, as it ignores SigLIP's attention-pool head.
    patch_decoder: int = 0
    # Chunk models: True gives each of the K x A action slots a learned embedding (`action_slots`, N(0, 1)) in place
    # of OpenVLA-OFT's zero vectors, so the slots' first-layer queries can already read the instruction; needed by
    # attention supervision (train/objectives.py).
    slot_embeddings: bool = False
    # Chunk models: "causal" (OpenVLA-OFT) or "bidirectional", a prefix-LM as in PaliGemma / pi0: image patches,
    # state and instruction all attend to each other (never to the slots), so a patch can read which part the words
    # name before the slots look for it (benchmarks/vision_probe.py, `binding`).
    prefix_attention: str = "causal"
    # Training only, chunk models: True adds `focus_head`, which regresses where the object the arm heads for shows
    # in every camera from the slots' final states (train/objectives.py); inference ignores it.
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


def vit_to_dict(vit: ViTConfig) -> dict[str, Any]:
    return asdict(vit)


def vit_from_dict(d: dict[str, Any]) -> ViTConfig:
    d = dict(d)
    d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
    return ViTConfig(**d)
