"""Small rotation helpers (numpy, float64). Conventions: quaternions are MuJoCo's (w, x, y, z); roll-pitch-yaw
are extrinsic rotations about the world x, y, z axes, i.e. R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""

from __future__ import annotations

import mujoco
import numpy as np


def rpy_to_mat(rpy: np.ndarray) -> np.ndarray:
    """[3] roll, pitch, yaw (rad) -> [3, 3] rotation matrix."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def mat_to_rpy(mat: np.ndarray) -> np.ndarray:
    """[3, 3] rotation matrix -> [3] roll, pitch, yaw (rad), pitch in [-pi/2, pi/2]."""
    pitch = np.arcsin(np.clip(-mat[2, 0], -1.0, 1.0))
    roll = np.arctan2(mat[2, 1], mat[2, 2])
    yaw = np.arctan2(mat[1, 0], mat[0, 0])
    return np.array([roll, pitch, yaw])


def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    """[4] (w, x, y, z) -> [3, 3]."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return mat.reshape(3, 3)


def quat_yaw(quat: np.ndarray) -> float:
    """Heading (rad) of the body x axis projected on the table plane."""
    mat = quat_to_mat(quat)
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector [3] (world frame) of the rotation taking `current` to `target` (both [3, 3])."""
    rel = target @ current.T
    angle = np.arccos(np.clip((np.trace(rel) - 1.0) / 2.0, -1.0, 1.0))
    axis = np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:
        if angle < 1e-6:
            return np.zeros(3)
        # 180 degrees: axis from the symmetric part.
        sym = (rel + np.eye(3)) / 2.0
        axis = sym[:, int(np.argmax(np.diag(sym)))]
        return angle * axis / np.linalg.norm(axis)
    return angle * axis / norm


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Wrap to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi
