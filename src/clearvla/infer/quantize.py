"""Quantised inference: the one loader predict, eval and serve share, and the weights' size.

The layer replacement itself (bitsandbytes int8 / NF4, what is quantised and why bitsandbytes) lives in
models/quantize.py, so that loading a checkpoint (`VLA.from_pretrained(quantize=...)`) needs nothing above models/.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from clearvla.errors import ConfigError
from clearvla.models.quantize import (
    QUANTIZE_MODES,
    check_mode,
    quantization_of,
    quantize_vla,
    require_bitsandbytes,
    target_linears,
)

# The public names of quantisation, importable from here as before the layer replacement moved to models/.
__all__ = ["QUANTIZE_MODES", "check_mode", "load_for_inference", "quantization_of", "quantize_vla",
           "require_bitsandbytes", "target_linears", "weight_bytes"]

if TYPE_CHECKING:
    from clearvla.models.vla import VLA


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes the weights occupy: `quantized` (packed weights + scales + code tables of bitsandbytes layers, as
    their state dict stores them), `other` (every other parameter and persistent buffer) and `total`."""
    seen: set[int] = set()
    alive: list[torch.Tensor] = []  # state_dict() builds some tensors on the fly: keep them, or addresses get reused
    quantized = other = 0
    for module in model.modules():
        is_q = type(module).__module__.startswith("bitsandbytes")
        if is_q:
            tensors = list(module.state_dict(keep_vars=True).values())
        else:
            tensors = list(module.parameters(recurse=False)) + [
                b for n, b in module.named_buffers(recurse=False) if n not in module._non_persistent_buffers_set
            ]
        for t in tensors:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size()
            if key in seen and t.numel():
                continue
            seen.add(key)
            alive.append(t)
            if is_q:
                quantized += t.numel() * t.element_size()
            else:
                other += t.numel() * t.element_size()
    return {"quantized": quantized, "other": other, "total": quantized + other}


def load_for_inference(
    checkpoint: str | Path,
    *,
    dtype: str | torch.dtype = "float32",
    quantize: str | None = "none",
    device: str | torch.device = "cpu",
    include_vision: bool = False,
) -> "VLA":
    """A checkpoint ready for prediction: loaded in `dtype`, quantised (`none | int8 | int4`) and on `device`.

    The one loader for predict, eval and serve. Weights are read on the CPU and quantised as they move to the
    device, so a 7B checkpoint never sits on the GPU in full precision.
    """
    from clearvla.models.vla import VLA

    if isinstance(dtype, str):
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        dtype = getattr(torch, dtype)
    mode = check_mode(quantize)
    if mode != "none":
        require_bitsandbytes()  # fail before reading gigabytes of weights
    vla = VLA.from_pretrained(checkpoint, dtype=dtype, device="cpu")
    quantize_vla(vla, mode, include_vision=include_vision, device=device)
    return vla.to(device).eval()
