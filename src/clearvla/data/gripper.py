"""Gripper conventions, unified to OpenVLA's: the last action dimension is 1 = open, 0 = closed.

NumPy ports of the rules in OpenVLA's `prismatic/vla/datasets/rlds/utils/data_utils.py`, applied per trajectory:

| convention          | raw gripper action                                   | conversion to OpenVLA             | datasets                  |
|---------------------|------------------------------------------------------|-----------------------------------|---------------------------|
| `open1`             | absolute, 1 = open, 0 = closed                       | clip to [0, 1]                    | already standardised data |
| `close1`            | absolute, 1 = closed, 0 = open                       | 1 - clip(x, 0, 1)                 | stanford_hydra, ...       |
| `signed_close1`     | absolute, -1 = open, +1 = closed (robosuite)         | 1 - clip(x, 0, 1)                 | LIBERO (RLDS and HDF5)    |
| `continuous_open1`  | absolute, continuous in [0, 1], 1 = open             | binarize (look-ahead, see below)  | bridge_orig               |
| `relative_close1`   | relative, +1 = start closing, -1 = start opening     | integrate to absolute (`rel2abs`) | fractal20220817_data (RT-1) |
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clearvla.errors import ConfigError


def invert(gripper: np.ndarray) -> np.ndarray:
    """[T] absolute gripper with 1 = closed -> 1 = open."""
    return 1.0 - gripper


def binarize(gripper: np.ndarray) -> np.ndarray:
    """[T] continuous absolute gripper (1 = open) -> {0, 1}.

    Values above 0.95 are open, below 0.05 closed; an in-between value takes the state reached *after* it
    (scanning backwards), and a trailing run of in-between values keeps the last raw value, as OpenVLA does.
    """
    gripper = np.asarray(gripper, dtype=np.float32)
    out = np.empty_like(gripper)
    if len(gripper) == 0:
        return out
    carry = gripper[-1]
    for i in range(len(gripper) - 1, -1, -1):
        value = gripper[i]
        if value > 0.95:
            carry = 1.0
        elif value < 0.05:
            carry = 0.0
        out[i] = carry
    return out


def rel2abs(gripper: np.ndarray) -> np.ndarray:
    """[T] relative gripper commands (+1 closing, -1 opening, ~0 no change) -> absolute {0, 1}, 1 = open.

    The state before the first command is the opposite of that command (a trajectory that starts by closing
    starts open); a trajectory with no command at all is open throughout.
    """
    gripper = np.asarray(gripper, dtype=np.float32)
    steps = np.where(gripper < -0.1, 1, np.where(gripper > 0.1, -1, 0))  # +1 = becomes open, -1 = becomes closed
    if len(steps) == 0:
        return np.zeros(0, dtype=np.float32)
    nonzero = np.flatnonzero(steps)
    state = -steps[nonzero[0]] if len(nonzero) else 1
    out = np.empty(len(steps), dtype=np.float32)
    for i, step in enumerate(steps):
        if step != 0:
            state = step
        out[i] = state
    return out / 2.0 + 0.5


def _open1(gripper: np.ndarray) -> np.ndarray:
    return np.clip(gripper, 0.0, 1.0)


def _close1(gripper: np.ndarray) -> np.ndarray:
    return invert(np.clip(gripper, 0.0, 1.0))


CONVENTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "open1": _open1,
    "close1": _close1,
    "signed_close1": _close1,  # clip(-1..1 -> 0..1) drops "open" to 0 before inverting, as OpenVLA's LIBERO transform
    "continuous_open1": binarize,
    "relative_close1": rel2abs,
}


def to_openvla(gripper: np.ndarray, convention: str) -> np.ndarray:
    """[T] gripper values in `convention` (see the module table) -> [T] float32, 1 = open, 0 = closed."""
    try:
        convert = CONVENTIONS[convention]
    except KeyError:
        raise ConfigError(f"unknown gripper convention {convention!r}; use one of: {', '.join(CONVENTIONS)}") from None
    return np.asarray(convert(np.asarray(gripper, dtype=np.float32)), dtype=np.float32)
