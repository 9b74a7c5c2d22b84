"""Request images -> the uint8 [H, W, 3] RGB the model's processor reads.

Accepted on every endpoint (openpi's conventions, as its policies' `_parse_image` reads them):
- layout HWC [H, W, 3], or CHW [3, H, W] (when the last axis is not 3: HWC wins the rare [3, W, 3] tie);
- dtype uint8 0..255, or float in [0, 1], scaled as openpi does: `(255 * image).astype(uint8)`.

With `greyscale=True` (OpenVLA compat `/act` only) also what deploy.py's `Image.fromarray(image).convert("RGB")`
turns into RGB: greyscale uint8 [H, W] (replicated to 3 channels) and RGBA uint8 [H, W, 4] (alpha dropped).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearvla.serve.codecs import decode_array
from clearvla.serve.errors import RequestError

SHAPES = "[H, W, 3] or [3, H, W]"


def rgb_image(value: Any, field: str, max_bytes: int, max_side: int, greyscale: bool = False) -> np.ndarray:
    """A decoded request value -> uint8 [H, W, 3]; RequestError (422, 413 past `max_side`) naming `field`."""
    image = decode_array(value, field, max_bytes)
    if greyscale and image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 4)):
        image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    allowed = SHAPES + (", [H, W] greyscale or [H, W, 4] RGBA" if greyscale else "")
    if image.ndim != 3 or 3 not in (image.shape[0], image.shape[2]):
        raise RequestError(f"{field} must have shape {allowed} (RGB), got {list(image.shape)}", field=field)
    if image.shape[2] != 3:
        image = image.transpose(1, 2, 0)
    h, w = image.shape[:2]
    if not (1 <= h <= max_side and 1 <= w <= max_side):
        status = 413 if max(h, w) > max_side else 422
        raise RequestError(f"{field} is {h}x{w}; each side must be 1..{max_side} pixels", status=status, field=field)
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind != "f":
        raise RequestError(f"{field} must have dtype uint8 (RGB 0..255) or float (0..1), got {image.dtype}", field=field)
    if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        raise RequestError(f"{field} is a float image: its values must be finite and in [0, 1] (or send uint8 0..255)",
                           field=field)
    return (255 * image).astype(np.uint8)
