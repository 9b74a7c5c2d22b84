"""Weight quantisation of a VLA with bitsandbytes: int8 (LLM.int8()) or int4 (NF4), as OpenVLA ships it.

Needs the `quantize` extra (`pip install 'clearvla[quantize]'`); nothing here imports bitsandbytes until a model
is quantised. What is quantised, following transformers' `load_in_8bit` / `load_in_4bit` (OpenVLA's path):

- every linear of the LLM's decoder layers and of the projector;
- not `lm_head` (transformers keeps the output layer in full precision by default), nor the embeddings or norms;
- the vision backbone only with `include_vision=True` (its linears are a tenth of openvla-7b's weights).

Compute runs in the model's dtype: bfloat16 on GPUs, float32 on CPUs without bf16 matmul units. int4 is NF4
(QLoRA's data type, made for normally distributed weights) in blocks of 64 with double-quantised block scales,
~0.53 bytes per weight; transformers' own 4-bit default is FP4. int8 is LLM.int8(): int8 weights with per-row
scales, activations quantised per row at run time and outlier features (|x| > 6) kept in 16-bit, as
`load_in_8bit` does; it is the mode that lost success in the OpenVLA paper.

Why bitsandbytes rather than optimum-quanto (both measured: benchmarks/quantize_backends.py, README "Fast
inference and quantisation"): agreement with float32 is the same within noise for both; bitsandbytes' int4 stores
fewer bytes (0.30x vs 0.33x of a bf16 100M-parameter model); at that size its layers ran faster on this CPU (int8
1.8x, int4 1.3x), while on the tiny model quanto's int8 was faster and int4 even; quanto's int4 tensors fail under
`torch.inference_mode`, which prediction uses; bitsandbytes is maintained (quanto's last release, March 2025, is
marked pre-alpha) and is what OpenVLA's users and paper run, with the reference CUDA kernels for 4-bit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clearvla.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from clearvla.models.vla import VLA

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8", "int4")
NF4_BLOCKSIZE = 64
CPU_PACK_ROWS = 32  # bitsandbytes' packed CPU kernel groups output rows by this many
INT8_THRESHOLD = 6.0  # transformers' llm_int8_threshold default
_SKIP = ("lm_head",)


def require_bitsandbytes() -> Any:
    """Import bitsandbytes, or raise MissingExtraError naming the extra that installs it."""
    try:
        import bitsandbytes
    except ImportError as e:
        raise MissingExtraError(
            f"quantisation needs bitsandbytes, which is not installed ({e}); install it with "
            "pip install 'clearvla[quantize]'"
        ) from None
    _quiet_int8_cast_warning()
    return bitsandbytes


def check_mode(mode: str | None) -> str:
    mode = "none" if mode is None else mode
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    return mode


def target_linears(vla: nn.Module, include_vision: bool = False) -> list[str]:
    """Names of the nn.Linear modules `quantize_vla` replaces (module docstring)."""
    roots = ["language_model.model.layers.", "projector."] + (["vision_backbone."] if include_vision else [])
    return [
        name for name, module in vla.named_modules()
        if type(module) is nn.Linear and name.startswith(tuple(roots)) and not name.endswith(_SKIP)
    ]


def quantize_vla(vla: "VLA", mode: str, *, include_vision: bool = False, device: str | torch.device | None = None) -> "VLA":
    """Replace the target linears of `vla` with bitsandbytes int8/int4 layers, in place; returns `vla`.

    The weights are quantised on `device` (default: where the model is), with compute in the model's dtype.
    Pick the dtype before quantising: a quantised model is not cast again (`.to(dtype)` would not re-quantise).
    mode "none" returns the model unchanged.
    """
    mode = check_mode(mode)
    if mode == "none":
        return vla
    if quantization_of(vla) != "none":
        raise ConfigError(f"this model is already quantised ({quantization_of(vla)})")
    bnb = require_bitsandbytes()
    dtype = vla.dtype
    target = torch.device(device) if device is not None else vla.device
    names = target_linears(vla, include_vision)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = vla.get_submodule(parent_name)
        linear = getattr(parent, child)
        setattr(parent, child, _quantized_linear(bnb, linear, mode, dtype, target))
    log.info("quantised %d linears to %s (compute %s) on %s", len(names), mode, dtype, target)
    return vla


def _quantized_linear(bnb: Any, linear: nn.Linear, mode: str, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """One bitsandbytes layer holding `linear`'s weights; bitsandbytes quantises them as they move to `device`."""
    weight = linear.weight.detach().to("cpu")  # Int8Params quantises only on a move from the CPU
    has_bias = linear.bias is not None
    if mode == "int8":
        layer = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False,
            threshold=INT8_THRESHOLD, device="meta",
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=has_bias, compute_dtype=dtype,
            compress_statistics=True, quant_type="nf4", device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, blocksize=NF4_BLOCKSIZE, compress_statistics=True, quant_type="nf4", module=layer,
        )
        # On CPUs with AVX512-BF16, bitsandbytes (0.49-0.50) repacks NF4 weights for a faster kernel on the first
        # forward, reshaping them as [out / 32, 32, ...] and the block scales as [out, in / 64]; a layer whose sizes
        # do not divide crashes there. Those layers keep the generic kernel, which every other CPU runs.
        if linear.in_features % NF4_BLOCKSIZE or linear.out_features % CPU_PACK_ROWS:
            layer.support_avx512bf16_for_cpu = False
    if has_bias:
        layer.bias = nn.Parameter(linear.bias.detach().to("cpu", dtype), requires_grad=False)
    return layer.to(device).eval()


def quantization_of(model: nn.Module) -> str:
    """"int8", "int4" or "none", read from the modules (no import of bitsandbytes needed)."""
    for module in model.modules():
        kind = type(module).__name__
        if type(module).__module__.startswith("bitsandbytes"):
            if kind == "Linear8bitLt":
                return "int8"
            if kind == "Linear4bit":
                return "int4"
    return "none"


class _DropInt8CastWarning(logging.Filter):
    """bitsandbytes logs 'inputs will be cast from float32 to float16' on every int8 matmul; that cast is how
    LLM.int8() works (module docstring), so the message is dropped rather than printed once per layer per token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast" not in record.getMessage()


def _quiet_int8_cast_warning() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastWarning) for f in logger.filters):
        logger.addFilter(_DropInt8CastWarning())
