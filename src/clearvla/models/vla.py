"""The VLA: vision backbone -> projector -> Llama, reading an image and an instruction, writing action tokens.

State-dict names match OpenVLA's Hugging Face checkpoints (`vision_backbone.*`, `projector.*`,
`language_model.*`), so `from_pretrained` loads published checkpoints and `save_pretrained` writes them.

Beyond OpenVLA (config `cameras`, `proprio_dim`): several cameras, each image's patches plus a learned per-camera
embedding (`camera_embedding`), in the config's camera order; and the robot state through a 2-layer MLP
(`proprio_projector`, OpenVLA-OFT's name) as one token after the patches. The LLM sequence is
`[BOS, patches(camera 0), ..., patches(camera n-1), proprio?, prompt[1:], actions]`.

With config `action_chunk` K > 0 (OpenVLA-OFT parallel decoding), `actions` are K x A empty slots that attend to
each other bidirectionally, and `action_head` (models/heads.py) reads them as a chunk of K actions in one forward.

With config `slot_embeddings`, the slots start from learned embeddings (`action_slots`) instead of zeros; with
`prefix_attention="bidirectional"` the tokens before the slots attend to each other both ways (a prefix-LM).

Training-only modules (config `patch_decoder` r > 0: `patch_decoder`; config `focus_head`: `focus_head`; both in
models/heads.py) add outputs to the training forward, and `output_attentions` returns the LLM's attention weights;
the objectives that read them live in train/objectives.py. Inference never runs them.
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
from clearvla.errors import CheckpointError, InputError
from clearvla.models import inputs as model_inputs
from clearvla.models.config import VLAConfig
from clearvla.models.decoding import greedy_decode
from clearvla.models.heads import ChunkOutput, FocusHead, L1ActionHead, PatchDecoder, eager_mask, slot_attention
from clearvla.models.inputs import Instructions, Observations, Proprio
from clearvla.models.presets import get_config
from clearvla.models.processor import ImageProcessor
from clearvla.models.projector import ProprioProjector, Projector
from clearvla.models.tokenizer import base_vocab_size, build_tiny_tokenizer
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
        dim = llm_config.hidden_size
        self.camera_embedding = nn.Embedding(len(config.cameras), dim) if len(config.cameras) > 1 else None
        if self.camera_embedding is not None:
            nn.init.normal_(self.camera_embedding.weight, std=0.02)
        read = len(config.proprio_indices) or config.proprio_dim
        self.proprio_projector = ProprioProjector(read, dim) if config.proprio_dim else None
        self.action_head = L1ActionHead(dim, config.action_dim, config.action_chunk) if config.action_chunk else None
        self.patch_decoder = PatchDecoder(dim, config.patch_decoder) if config.patch_decoder else None
        self.focus_head = FocusHead(dim, len(config.cameras)) if config.focus_head else None
        n_slots = config.action_chunk * config.action_dim
        self.action_slots = nn.Embedding(n_slots, dim) if config.slot_embeddings else None  # N(0, 1)
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
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantize: str | None = None,
    ) -> "VLA":
        """Load an OpenVLA-format checkpoint directory (safetensors only, no network, nothing unpickled).
        `quantize`: None/"none", "int8" or "int4" (bitsandbytes, the `quantize` extra; see models/quantize.py)."""
        from clearvla.models.checkpoint import load_pretrained

        return load_pretrained(cls, Path(directory), dtype=dtype, device=device, quantize=quantize)

    def save_pretrained(
        self, directory: str | Path, *, max_shard_size: int | str = "5GB", state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Write an OpenVLA-format checkpoint atomically (temporary directory, then rename). `state_dict`
        replaces this module's own tensors (e.g. full weights gathered from FSDP shards)."""
        from clearvla.models.checkpoint import save_pretrained

        return save_pretrained(self, Path(directory), max_shard_size=max_shard_size, state_dict=state_dict)

    @property
    def dtype(self) -> torch.dtype:
        # The input embeddings are never quantised (the projector's linears can be), so they carry the compute dtype.
        return self.language_model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.language_model.get_input_embeddings().weight.device

    # --- training forward ---------------------------------------------------------------------------
    @property
    def num_prefix_tokens(self) -> int:
        """Tokens between BOS and the prompt: every camera's patches, plus the proprio token."""
        return len(self.config.cameras) * self.vision_backbone.num_patches + (1 if self.proprio_projector else 0)

    def prefix(self, pixel_values: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values [B, n_cameras * 3 * n_backbones, S, S] (cameras in config order) and normalised proprio
        [B, P] -> the embeddings that follow BOS, [B, num_prefix_tokens, D]."""
        channels = 3 * len(self.config.vision)
        cameras = len(self.config.cameras)
        if pixel_values.ndim != 4 or pixel_values.shape[1] != cameras * channels:
            raise InputError(
                f"pixel_values must be [B, {cameras * channels}, S, S] ({cameras} camera(s) {list(self.config.cameras)} "
                f"x {channels} channels), got {tuple(pixel_values.shape)}"
            )
        b, _, h, w = pixel_values.shape
        per_camera = pixel_values.to(self.dtype).reshape(b * cameras, channels, h, w)
        patches = self.projector(self.vision_backbone(per_camera))
        patches = patches.reshape(b, cameras, patches.shape[1], patches.shape[2])
        if self.camera_embedding is not None:
            patches = patches + self.camera_embedding.weight[None, :, None, :]
        tokens = [patches.flatten(1, 2)]
        if self.proprio_projector is not None:
            if proprio is None or proprio.ndim != 2 or proprio.shape != (b, self.config.proprio_dim):
                got = None if proprio is None else tuple(proprio.shape)
                raise InputError(f"this model reads the robot state: proprio must be [B={b}, {self.config.proprio_dim}], got {got}")
            if self.config.proprio_indices:
                proprio = proprio[:, list(self.config.proprio_indices)]
            tokens.append(self.proprio_projector(proprio.to(self.dtype))[:, None])
        elif proprio is not None:
            raise InputError("this model has no proprio input (config proprio_dim = 0); pass proprio=None")
        return torch.cat(tokens, dim=1) if len(tokens) > 1 else tokens[0]

    def embed(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """[emb(BOS), prefix(pixel_values, proprio), emb(input_ids[:, 1:])] -> [B, 1 + num_prefix_tokens + L - 1, D].
        Rows must start with BOS (right padding), as OpenVLA's batches do."""
        return self.join(self.prefix(pixel_values, proprio), input_ids)

    def join(self, prefix: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """prefix [B, N, D] and input_ids [B, L] (BOS first) -> [emb(BOS), prefix, emb(input_ids[:, 1:])]."""
        text = self.language_model.get_input_embeddings()(input_ids)
        return torch.cat([text[:, :1], prefix, text[:, 1:]], dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> CausalLMOutputWithPast | ChunkOutput:
        """pixel_values [B, n_cameras*3*n_backbones, S, S], input_ids / attention_mask / labels [B, L], proprio [B, P]
        (models with proprio_dim > 0) -> logits [B, L + N, V] (N = num_prefix_tokens) and, with labels, the mean
        next-token cross-entropy over labels != -100 (the prefix is never supervised).

        Chunk models (action_chunk K > 0) take the prompt alone as input_ids and return a ChunkOutput: normalised
        actions [B, K, A] and, given target `actions` [B, K, A] (normalised), their mean L1 loss; labels are unused.

        What the training objectives (train/objectives.py) read: given targets (labels or actions), models with a
        `patch_decoder` also return `patch_predictions` and chunk models with a `focus_head` `focus` (ChunkOutput says
        the shapes); `output_attentions` returns every LLM layer's attention weights (`attentions`), which only eager
        attention computes: the caller picks the LLM's attention implementation, the forward never changes it.
        """
        if output_attentions and self.language_model.config._attn_implementation != "eager":
            raise InputError("output_attentions needs eager attention: call "
                             "vla.language_model.set_attn_implementation('eager') first (sdpa never computes the weights)")
        embeddings = self.embed(pixel_values, input_ids, proprio)
        b, n = input_ids.shape[0], self.num_prefix_tokens
        if attention_mask is not None:
            attention_mask = _with_prefix(attention_mask, n)
        patches = None
        if self.patch_decoder is not None and (labels is not None or actions is not None):
            patches = self.patch_decoder(embeddings[:, 1 : 1 + len(self.config.cameras) * self.vision_backbone.num_patches])
        if self.action_head is not None:
            out = self._forward_chunk(embeddings, attention_mask, actions, output_attentions)
            out.patch_predictions = patches
            return out
        if labels is not None:
            ignored = labels.new_full((b, n), IGNORE_INDEX)
            labels = torch.cat([labels[:, :1], ignored, labels[:, 1:]], dim=1)
        out = self.language_model(inputs_embeds=embeddings, attention_mask=attention_mask, labels=labels,
                                  output_attentions=output_attentions)
        if patches is not None:
            out["patch_predictions"] = patches
        return out

    def _forward_chunk(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None,
        targets: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> ChunkOutput:
        head = self.action_head
        assert head is not None
        b, t, d = embeddings.shape
        n_slots = head.chunk * head.action_dim
        valid = attention_mask if attention_mask is not None else embeddings.new_ones(b, t, dtype=torch.long)
        mask, positions = slot_attention(valid, n_slots, self.config.prefix_attention == "bidirectional")
        if self.action_slots is not None:
            slots = self.action_slots.weight.to(embeddings.dtype).expand(b, n_slots, d)
        else:
            slots = embeddings.new_zeros(b, n_slots, d)
        sequence = torch.cat([embeddings, slots], dim=1)
        if self.language_model.config._attn_implementation == "eager":
            mask = eager_mask(mask, sequence.dtype)
        hidden = self.language_model.model(inputs_embeds=sequence, attention_mask=mask, position_ids=positions,
                                           use_cache=False, output_attentions=output_attentions)  # one pass: no cache
        slot_states = hidden.last_hidden_state[:, t:]
        predicted = head(slot_states)
        loss = focus = None
        if targets is not None:
            if targets.shape != predicted.shape:
                raise InputError(f"actions must be [B, {head.chunk}, {head.action_dim}] (the chunk), got {tuple(targets.shape)}")
            loss = nn.functional.l1_loss(predicted.float(), targets.float())
            focus = self.focus_head(slot_states) if self.focus_head is not None else None
        return ChunkOutput(loss, predicted, focus=focus, attentions=hidden.attentions if output_attentions else None)

    # --- inference ----------------------------------------------------------------------------------
    def action_dim(self, unnorm_key: str | None = None) -> int:
        if not self.norm_stats:
            return DEFAULT_ACTION_DIM
        return action_stats(self.norm_stats, unnorm_key).dim

    # Observations -> (pixel_values, proprio), and with instructions -> (prefix embeddings, prompt ids): the
    # functions of models/inputs.py, as methods.
    observation_inputs = model_inputs.observation_inputs
    inference_inputs = model_inputs.inference_inputs

    @torch.inference_mode()
    def predict_action_tokens(self, images: Observations, instruction: Instructions, unnorm_key: str | None = None,
                              center_crop: bool = False, proprio: Proprio = None, *, decode: str = "fast",
                              action_tokens_only: bool = False) -> np.ndarray:
        """Greedy action token ids: [A] int64 for one observation, [B, A] for a batch (see `observation_inputs`).

        decode: "fast" (static KV cache; the same tokens as "reference"), "reference" or "generate" (HF's loop),
        see models/decoding.py. action_tokens_only: argmax over the action bins only (OpenVLA: whole vocabulary).
        """
        single = isinstance(instruction, str)
        prefix, prompts = self.inference_inputs(images, instruction, unnorm_key, center_crop, proprio)
        action_ids = (self.action_tokenizer.first_token_id, self.action_tokenizer.vocab_size) if action_tokens_only else None
        tokens = greedy_decode(
            self.language_model, prefix, prompts, self.action_dim(unnorm_key), method=decode, action_ids=action_ids
        ).cpu().numpy()
        return tokens[0] if single else tokens

    def decode_actions(self, token_ids: np.ndarray, unnorm_key: str | None = None) -> np.ndarray:
        """Token ids [..., A] -> actions [..., A] float64 in the dataset's units (un-normalised)."""
        return action_stats(self.norm_stats, unnorm_key).unnormalize(self.action_tokenizer.decode(token_ids))

    def predict_action(self, images: Observations, instruction: Instructions, unnorm_key: str | None = None,
                       center_crop: bool = False, proprio: Proprio = None, *, decode: str = "fast",
                       action_tokens_only: bool = False) -> np.ndarray:
        """Observation(s) (an image uint8 HxWx3, or {camera: image}) + instruction(s) [+ robot state] -> action [A]
        (or [B, A] for lists) float64, un-normalised with `norm_stats[unnorm_key]` (None only when there is exactly
        one key). `decode`, `action_tokens_only`: see `predict_action_tokens`. Chunk models return the chunk's first
        action (`predict_action_chunk` gives all K)."""
        if self.action_head is not None:
            chunk = self.predict_action_chunk(images, instruction, unnorm_key, center_crop, proprio)
            return chunk[..., 0, :]
        select_stats(self.norm_stats, unnorm_key)  # fail on a bad key before spending compute
        tokens = self.predict_action_tokens(
            images, instruction, unnorm_key, center_crop, proprio, decode=decode, action_tokens_only=action_tokens_only
        )
        return self.decode_actions(tokens, unnorm_key)

    @torch.inference_mode()
    def predict_action_chunk(self, images: Observations, instruction: Instructions, unnorm_key: str | None = None,
                             center_crop: bool = False, proprio: Proprio = None) -> np.ndarray:
        """The next actions to execute: [K, A] float64 for one observation ([B, K, A] for lists), un-normalised.
        Chunk models predict K = action_chunk steps in one forward pass; autoregressive models give K = 1."""
        if self.action_head is None:
            actions = self.predict_action(images, instruction, unnorm_key, center_crop, proprio)
            return actions[..., None, :]
        stats = action_stats(self.norm_stats, unnorm_key)
        if stats.dim != self.config.action_dim:
            raise InputError(f"norm_stats[{unnorm_key!r}] has {stats.dim}-D actions but the chunk head writes {self.config.action_dim}")
        single = isinstance(instruction, str)
        chunk = self.decode_chunk(*self.inference_inputs(images, instruction, unnorm_key, center_crop, proprio))
        actions = stats.unnormalize(chunk.float().clamp(-1.0, 1.0).cpu().numpy())
        return actions[0] if single else actions

    def decode_chunk(self, prefix: torch.Tensor, prompts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Chunk models: prefix embeddings [B, N, D] and B prompt id vectors -> normalised chunks [B, K, A], one
        forward pass (prompts right-padded, which changes no result)."""
        length = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), length), self.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(prompts):
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
        input_ids, valid = input_ids.to(self.device), _with_prefix(attention_mask.to(self.device), prefix.shape[1])
        return self._forward_chunk(self.join(prefix, input_ids), valid, None).actions


def _with_prefix(attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """A text mask [B, L] -> the mask of `join`'s sequence [B, L + n]: BOS, n always-real prefix tokens, the rest."""
    ones = attention_mask.new_ones(attention_mask.shape[0], n)
    return torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)

