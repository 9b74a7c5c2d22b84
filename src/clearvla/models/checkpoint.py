"""OpenVLA Hugging Face checkpoint layout: read and write (spec section 1-3).

A directory holds config.json, model.safetensors or model-0000N-of-0000M.safetensors + index, the tokenizer
files, preprocessor_config.json / processor_config.json, and optionally dataset_statistics.json (which,
when present, replaces config.norm_stats). Only safetensors are read: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from accelerate import init_empty_weights
from huggingface_hub import save_torch_state_dict
from safetensors import SafetensorError, safe_open
from transformers import LlamaConfig

from clearvla.models.config import VLAConfig, vit_from_dict, vit_to_dict
from clearvla.errors import CheckpointError, ConfigError
from clearvla.models.processor import ImageProcessor
from clearvla.models.quantize import check_mode, quantization_of, quantize_vla, require_bitsandbytes
from clearvla.models.tokenizer import load_tokenizer, save_tokenizer
from clearvla.models.vision import TIMM_VITS

if TYPE_CHECKING:
    from clearvla.models.vla import VLA

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
STATS_FILE = "dataset_statistics.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# Rebuilt from the config on construction; older transformers versions saved them.
_DERIVED_BUFFERS = ("rotary_emb.inv_freq",)


# --- config.json ------------------------------------------------------------------------------------
def config_to_json(config: VLAConfig, norm_stats: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """OpenVLA's config.json fields, plus a `clearvla` block with the ViT sizes (needed for sizes that
    no timm id names, e.g. the tiny preset) and the tokenizer kind."""
    defaults = LlamaConfig().to_dict()
    full = config.llama_config.to_dict()
    text_config = {k: v for k, v in full.items() if k not in ("transformers_version", "dtype") and defaults.get(k) != v}
    text_config["model_type"] = "llama"
    n = len(config.vision)
    return {
        "model_type": "openvla",
        "architectures": ["OpenVLAForActionPrediction"],
        "auto_map": {
            "AutoConfig": "configuration_prismatic.OpenVLAConfig",
            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
        },
        "vision_backbone_id": config.vision_backbone_id,
        "llm_backbone_id": config.llm_backbone_id,
        "arch_specifier": config.arch_specifier,
        "use_fused_vision_backbone": config.use_fused_vision_backbone,
        "image_resize_strategy": config.image_resize_strategy,
        "timm_model_ids": list(config.timm_model_ids[:n]),
        "timm_override_act_layers": [None] * n,
        "image_sizes": list(config.image_sizes),
        "hf_llm_id": config.hf_llm_id,
        "llm_max_length": config.llm_max_length,
        "pad_token_id": config.pad_token_id,
        "pad_to_multiple_of": config.pad_to_multiple_of,
        "n_action_bins": config.n_action_bins,
        "output_projector_states": False,
        "norm_stats": norm_stats,
        "text_config": text_config,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "clearvla": {
            "vision": [vit_to_dict(v) for v in config.vision],
            "tokenizer": config.tokenizer,
            "cameras": list(config.cameras),
            "proprio_dim": config.proprio_dim,
            "proprio_indices": list(config.proprio_indices),
            "action_chunk": config.action_chunk,
            "action_dim": config.action_dim,
            "patch_decoder": config.patch_decoder,
            "slot_embeddings": config.slot_embeddings,
            "prefix_attention": config.prefix_attention,
            "focus_head": config.focus_head,
            "execute_actions": config.execute_actions,
        },
    }


def config_from_json(raw: dict[str, Any], where: str) -> tuple[VLAConfig, dict[str, Any]]:
    """(VLAConfig, norm_stats) from a config.json dict; errors name the file and field."""

    def field(name: str) -> Any:
        if name not in raw:
            raise CheckpointError(f"{where}: missing field {name!r}")
        return raw[name]

    fused = bool(field("use_fused_vision_backbone"))
    n = 2 if fused else 1
    timm_ids = tuple(field("timm_model_ids"))[:n]
    extra = raw.get("clearvla", {})
    if "vision" in extra:
        vision = tuple(vit_from_dict(v) for v in extra["vision"])
    else:
        unknown = [t for t in timm_ids if t not in TIMM_VITS]
        if unknown:
            raise CheckpointError(f"{where}: unsupported timm_model_ids {unknown}; supported: {', '.join(TIMM_VITS)}")
        vision = tuple(TIMM_VITS[t] for t in timm_ids)
    if len(vision) != n:
        raise CheckpointError(f"{where}: use_fused_vision_backbone={fused} needs {n} backbones, found {len(vision)}")
    try:
        config = VLAConfig(
            vision=vision,
            text_config=dict(field("text_config")),
            image_sizes=tuple(int(s) for s in field("image_sizes"))[:n],
            vision_backbone_id=field("vision_backbone_id"),
            llm_backbone_id=raw.get("llm_backbone_id", "llama2-7b-pure"),
            arch_specifier=field("arch_specifier"),
            timm_model_ids=timm_ids,
            image_resize_strategy=raw.get("image_resize_strategy", "resize-naive"),
            hf_llm_id=raw.get("hf_llm_id", ""),
            llm_max_length=int(raw.get("llm_max_length", 2048)),
            pad_token_id=int(field("pad_token_id")),
            pad_to_multiple_of=int(field("pad_to_multiple_of")),
            n_action_bins=int(raw.get("n_action_bins", 256)),
            tokenizer=extra.get("tokenizer", "llama2"),
            cameras=tuple(extra.get("cameras", ("image",))),
            proprio_dim=int(extra.get("proprio_dim", 0)),
            proprio_indices=tuple(int(i) for i in extra.get("proprio_indices", ())),
            action_chunk=int(extra.get("action_chunk", 0)),
            action_dim=int(extra.get("action_dim", 7)),
            patch_decoder=int(extra.get("patch_decoder", 0)),
            slot_embeddings=bool(extra.get("slot_embeddings", False)),
            prefix_attention=str(extra.get("prefix_attention", "causal")),
            focus_head=bool(extra.get("focus_head", False)),
            execute_actions=int(extra.get("execute_actions", 0)),
        )
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return config, dict(raw.get("norm_stats") or {})


def _read_json(path: Path) -> Any:
    """The JSON file of a checkpoint directory; CheckpointError when it is missing or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"missing {path.name} in checkpoint directory {path.parent}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt {path.name} in {path.parent}: {e}") from None


def read_settings(directory: Path) -> tuple[VLAConfig, dict[str, Any], ImageProcessor]:
    """A checkpoint's JSON settings, no weights: the config, its norm_stats (dataset_statistics.json, when present,
    replaces config.json's) and the image processor. CheckpointError for a missing or corrupt file."""
    config, norm_stats = config_from_json(_read_json(directory / CONFIG_FILE), str(directory / CONFIG_FILE))
    if (directory / STATS_FILE).is_file():
        norm_stats = _read_json(directory / STATS_FILE)
    processor = ImageProcessor.from_json_dict(_read_json(directory / PROCESSOR_FILE), str(directory / PROCESSOR_FILE))
    return config, norm_stats, processor


# --- weights ----------------------------------------------------------------------------------------
def _weight_files(directory: Path) -> list[Path]:
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: missing 'weight_map'")
        files = [directory / name for name in sorted(set(weight_map.values()))]
    elif (directory / SINGLE_WEIGHTS).is_file():
        files = [directory / SINGLE_WEIGHTS]
    else:
        pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt"))
        hint = f" (found {', '.join(pickles)}: clearvla reads safetensors only, never pickles)" if pickles else ""
        raise CheckpointError(f"no weights in {directory}: expected {SINGLE_WEIGHTS} or {WEIGHTS_INDEX}{hint}")
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"missing weight shard {f.name} (listed in {WEIGHTS_INDEX}) in {directory}")
    return files


def read_state_dict(directory: Path, expected: dict[str, torch.Size], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read every tensor, checking names and shapes against `expected` before anything is loaded."""
    state: dict[str, torch.Tensor] = {}
    for path in _weight_files(directory):
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    if name.endswith(_DERIVED_BUFFERS):
                        continue
                    if name not in expected:
                        raise CheckpointError(f"{path.name}: unexpected tensor {name!r}, which the config does not define")
                    shape = tuple(f.get_slice(name).get_shape())
                    if shape != tuple(expected[name]):
                        raise CheckpointError(
                            f"{path.name}: tensor {name!r} has shape {list(shape)} but the config implies {list(expected[name])}"
                        )
                    state[name] = f.get_tensor(name).to(dtype)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"corrupt weight file {path} ({type(e).__name__}: {e})") from None
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CheckpointError(f"weights in {directory} lack {len(missing)} tensors: {', '.join(missing[:5])}{more}")
    return state


# --- load / save ------------------------------------------------------------------------------------
def load_pretrained(
    cls: type["VLA"], directory: Path, *, dtype: torch.dtype, device: str | torch.device, quantize: str | None = None
) -> "VLA":
    """The checkpoint in `directory` as `cls`, in `dtype` on `device`; `quantize` int8 / int4 reads the weights on
    the CPU and quantises them as they move to `device` (models/quantize.py)."""
    mode = check_mode(quantize)
    if mode != "none":
        require_bitsandbytes()  # fail before reading gigabytes of weights
        return quantize_vla(load_pretrained(cls, directory, dtype=dtype, device="cpu"), mode, device=device).to(device).eval()
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config, norm_stats, processor = read_settings(directory)
    tokenizer = load_tokenizer(directory)
    with init_empty_weights():  # parameters on the meta device; buffers (rotary tables) real
        model = cls(config, tokenizer=tokenizer, norm_stats=norm_stats, processor=processor)
    expected = {name: p.shape for name, p in model.state_dict().items() if not name.endswith(_DERIVED_BUFFERS)}
    model.load_state_dict(read_state_dict(directory, expected, dtype), strict=False, assign=True)
    return model.to(device).eval()


def save_pretrained(model: "VLA", directory: Path, *, max_shard_size: int | str, state_dict: dict | None = None) -> Path:
    """Write into a sibling temporary directory, then swap it in, so a crash never leaves half a checkpoint."""
    if state_dict is None and quantization_of(model) != "none":
        raise CheckpointError(
            f"this model is quantised ({quantization_of(model)}); OpenVLA checkpoints hold float weights: save the "
            "float model and quantise when loading (--quantize / VLA.from_pretrained(quantize=...))"
        )
    directory = directory.resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        source = model.state_dict() if state_dict is None else state_dict
        state = {k: _owning(v) for k, v in source.items() if not k.endswith(_DERIVED_BUFFERS)}
        save_torch_state_dict(state, tmp, max_shard_size=max_shard_size)
        (tmp / CONFIG_FILE).write_text(json.dumps(config_to_json(model.config, model.norm_stats, model.dtype), indent=2))
        if model.norm_stats:
            (tmp / STATS_FILE).write_text(json.dumps(model.norm_stats, indent=2))
        model.processor.save(tmp)
        (tmp / "processor_config.json").write_text(json.dumps(
            {"auto_map": {"AutoProcessor": "processing_prismatic.PrismaticProcessor"}, "processor_class": "PrismaticProcessor"},
            indent=2,
        ))
        if model.tokenizer is not None:
            save_tokenizer(model.tokenizer, tmp)
        publish_permissions(tmp)
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved checkpoint to %s", directory)
    return directory


def publish_permissions(root: Path) -> None:
    """Give a tree written through `tempfile.mkdtemp` (private, 0700) the permissions any new file gets
    under the process umask, so checkpoints are as readable as the user's other files."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _owning(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor, copied only if it is a view into a larger storage (as gathered FSDP shards are):
    safetensors refuses to write such views."""
    tensor = tensor.detach().contiguous()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def _swap_in(tmp: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(tmp, directory)
        return
    if not (directory / CONFIG_FILE).is_file() and any(directory.iterdir()):
        raise CheckpointError(f"refusing to overwrite {directory}: it exists and is not a checkpoint directory")
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
