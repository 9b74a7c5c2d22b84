"""The VLA: vision backbone -> projector -> Llama, reading an image and an instruction, writing action tokens.

State-dict names match OpenVLA's Hugging Face checkpoints (`vision_backbone.*`, `projector.*`,
`language_model.*`), so `from_pretrained` loads published checkpoints and `save_pretrained` writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from transformers import LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from clearvla.actions.normalize import action_stats, select_stats
from clearvla.actions.tokenizer import ActionTokenizer
from clearvla.config import VLAConfig, get_config
from clearvla.errors import CheckpointError, InputError
from clearvla.models.decoding import greedy_decode
from clearvla.models.processor import ImageLike, ImageProcessor
from clearvla.models.projector import Projector
from clearvla.models.tokenizer import base_vocab_size, build_tiny_tokenizer, prompt_ids
from clearvla.models.vision import VisionBackbone

IGNORE_INDEX = -100
DEFAULT_ACTION_DIM = 7


class VLA(nn.Module):
    """OpenVLA's architecture at any size.

    Attributes: `vision_backbone`, `projector`, `language_model` (transformers' LlamaForCausalLM), plus the
    non-module `tokenizer`, `processor` (ImageProcessor), `action_tokenizer` and `norm_stats`
    (OpenVLA's `{dataset_key: {"action": {...}, ...}}`).
    """

    def __init__(
        self,
        config: VLAConfig,
        tokenizer: Any | None = None,
        norm_stats: dict[str, Any] | None = None,
        processor: ImageProcessor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.vision_backbone = VisionBackbone(config.vision, config.image_sizes)
        llm_config = config.llama_config
        self.projector = Projector(self.vision_backbone.embed_dim, llm_config.hidden_size, config.fused_projector)
        self.language_model = LlamaForCausalLM(llm_config)
        self.processor = processor or ImageProcessor(
            config.image_sizes[0], tuple(v.mean for v in config.vision), tuple(v.std for v in config.vision),
            config.image_resize_strategy,
        )
        self.action_tokenizer = ActionTokenizer(config.base_vocab_size, config.n_action_bins)
        self.norm_stats: dict[str, Any] = dict(norm_stats or {})
        self.tokenizer = tokenizer
        if tokenizer is not None:
            if base_vocab_size(tokenizer) != config.base_vocab_size:
                raise CheckpointError(
                    f"tokenizer has {base_vocab_size(tokenizer)} base tokens but the config implies "
                    f"{config.base_vocab_size} (text_config.vocab_size - pad_to_multiple_of)"
                )

    # --- construction and checkpoints -------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: str | VLAConfig,
        *,
        seed: int = 0,
        norm_stats: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> "VLA":
        """A randomly initialised model from a preset name (with builder overrides) or a VLAConfig.

        The `tiny` preset builds clearvla's own SentencePiece tokenizer; `openvla-7b` has none (its Llama-2
        tokenizer comes with a checkpoint), so it can be built (e.g. on the meta device) but not prompted.
        """
        if isinstance(config, str):
            config = get_config(config, **overrides)
        elif overrides:
            raise InputError("builder overrides apply to preset names only; pass a complete VLAConfig instead")
        tokenizer = None
        if config.tokenizer == "tiny":
            tokenizer = build_tiny_tokenizer(config.base_vocab_size, config.n_action_bins)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, tokenizer=tokenizer, norm_stats=norm_stats)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "VLA":
        """Load an OpenVLA-format checkpoint directory (safetensors only, no network, nothing unpickled)."""
        from clearvla.models.checkpoint import load_pretrained

        return load_pretrained(cls, Path(directory), dtype=dtype, device=device)

    def save_pretrained(
        self, directory: str | Path, *, max_shard_size: int | str = "5GB", state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Write an OpenVLA-format checkpoint atomically (temporary directory, then rename). `state_dict`
        replaces this module's own tensors (e.g. full weights gathered from FSDP shards)."""
        from clearvla.models.checkpoint import save_pretrained

        return save_pretrained(self, Path(directory), max_shard_size=max_shard_size, state_dict=state_dict)

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.fc1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.projector.fc1.weight.device

    # --- training forward ---------------------------------------------------------------------------
    def embed(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """[emb(BOS), projector(patches), emb(input_ids[:, 1:])] -> [B, 1 + N + L - 1, D].
        Rows must start with BOS (right padding), as OpenVLA's batches do."""
        patches = self.projector(self.vision_backbone(pixel_values.to(self.dtype)))
        text = self.language_model.get_input_embeddings()(input_ids)
        return torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutputWithPast:
        """pixel_values [B, 3*n, S, S], input_ids / attention_mask / labels [B, L] -> logits [B, L + N, V]
        and, with labels, the mean next-token cross-entropy over labels != -100 (patches never supervised)."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 * len(self.config.vision):
            raise InputError(f"pixel_values must be [B, {3 * len(self.config.vision)}, S, S], got {tuple(pixel_values.shape)}")
        embeddings = self.embed(pixel_values, input_ids)
        b, n = input_ids.shape[0], self.vision_backbone.num_patches
        if attention_mask is not None:
            ones = attention_mask.new_ones(b, n)
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        if labels is not None:
            ignored = labels.new_full((b, n), IGNORE_INDEX)
            labels = torch.cat([labels[:, :1], ignored, labels[:, 1:]], dim=1)
        return self.language_model(inputs_embeds=embeddings, attention_mask=attention_mask, labels=labels)

    # --- inference ----------------------------------------------------------------------------------
    def action_dim(self, unnorm_key: str | None = None) -> int:
        if not self.norm_stats:
            return DEFAULT_ACTION_DIM
        return action_stats(self.norm_stats, unnorm_key).dim

    @torch.inference_mode()
    def predict_action_tokens(
        self,
        image: ImageLike | Sequence[ImageLike],
        instruction: str | Sequence[str],
        unnorm_key: str | None = None,
        center_crop: bool = False,
    ) -> np.ndarray:
        """Greedy action token ids: [A] int64 for one observation, [B, A] for a batch."""
        if self.tokenizer is None:
            raise InputError("this model has no tokenizer (build the tiny preset or load a checkpoint)")
        single = isinstance(instruction, str)
        instructions = [instruction] if single else list(instruction)
        pixel_values = self.processor(image, center_crop=center_crop).to(self.device)
        if len(pixel_values) != len(instructions):
            raise InputError(f"got {len(pixel_values)} images but {len(instructions)} instructions")
        prompts = [torch.tensor(prompt_ids(self.tokenizer, text), device=self.device) for text in instructions]
        patches = self.projector(self.vision_backbone(pixel_values.to(self.dtype)))
        tokens = greedy_decode(self.language_model, patches, prompts, self.action_dim(unnorm_key)).cpu().numpy()
        return tokens[0] if single else tokens

    def decode_actions(self, token_ids: np.ndarray, unnorm_key: str | None = None) -> np.ndarray:
        """Token ids [..., A] -> actions [..., A] float64 in the dataset's units (un-normalised)."""
        return action_stats(self.norm_stats, unnorm_key).unnormalize(self.action_tokenizer.decode(token_ids))

    def predict_action(
        self,
        image: ImageLike | Sequence[ImageLike],
        instruction: str | Sequence[str],
        unnorm_key: str | None = None,
        center_crop: bool = False,
    ) -> np.ndarray:
        """Image(s) uint8 HxWx3 + instruction(s) -> action [A] (or [B, A] for lists) float64, un-normalised
        with `norm_stats[unnorm_key]` (None only when there is exactly one key)."""
        select_stats(self.norm_stats, unnorm_key)  # fail on a bad key before spending compute
        return self.decode_actions(self.predict_action_tokens(image, instruction, unnorm_key, center_crop), unnorm_key)
