"""HDF5 demonstrations in the LIBERO / robomimic layout, read (and written, for tests and small exports).

    data                      attrs: problem_info (JSON with "language_instruction"), env_args, total, num_demos
    data/demo_0/actions       [T, 7] float: xyz, rpy deltas, gripper (-1 = open, +1 = close in LIBERO/robosuite)
    data/demo_0/obs/agentview_rgb | agentview_image           [T, H, W, 3] uint8 -> camera "image"
    data/demo_0/obs/eye_in_hand_rgb | robot0_eye_in_hand_image [T, H, W, 3] uint8 -> camera "wrist_image"
    data/demo_0/obs/ee_pos, ee_ori, gripper_states (LIBERO)   -> proprio [T, 8] (or robot0_eef_pos, robot0_eef_quat,
                              robot0_gripper_qpos in robomimic; else robot_states)
    data/demo_0/dones         [T] -> is_terminal

LIBERO's raw renders are upside down; OpenVLA's RLDS copies rotate them 180 degrees (`rotate_180=True` does the same).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from clearvla.data import gripper
from clearvla.data.episode import Episode
from clearvla.data.formats import hash_files
from clearvla.errors import DataError

CAMERA_KEYS: dict[str, tuple[str, ...]] = {
    "image": ("agentview_rgb", "agentview_image"),
    "wrist_image": ("eye_in_hand_rgb", "robot0_eye_in_hand_image"),
}
PROPRIO_KEYS: tuple[tuple[str, ...], ...] = (
    ("ee_pos", "ee_ori", "gripper_states"),
    ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"),
)


def _demo_number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def _instruction(attrs: Any) -> str:
    if "language_instruction" in attrs:
        value = attrs["language_instruction"]
        return value.decode() if isinstance(value, bytes) else str(value)
    if "problem_info" in attrs:
        try:
            return str(json.loads(attrs["problem_info"]).get("language_instruction", ""))
        except ValueError:
            return ""
    return ""


class HDF5Source:
    """Episodes of one .hdf5 file or of every .hdf5/.h5 file in a directory (LIBERO ships one file per task)."""

    format = "hdf5"

    def __init__(
        self,
        path: str | Path,
        *,
        dataset_name: str | None = None,
        gripper_convention: str | None = "signed_close1",
        rotate_180: bool = False,
    ) -> None:
        self.path = Path(path)
        self.files = [self.path] if self.path.is_file() else sorted([*self.path.glob("*.hdf5"), *self.path.glob("*.h5")])
        if not self.files:
            raise DataError(f"{self.path}: no .hdf5 files")
        self.name = dataset_name or (self.path.stem if self.path.is_file() else self.path.name)
        self.gripper_convention = gripper_convention
        self.rotate_180 = rotate_180
        self._handles: dict[Path, h5py.File] = {}
        self._pid = os.getpid()
        self.demos: list[tuple[Path, str]] = []
        for file in self.files:
            data = self._file(file).get("data")
            if not isinstance(data, h5py.Group):
                raise DataError(f"{file}: no 'data' group (not a LIBERO/robomimic file)")
            self.demos += [(file, key) for key in sorted(data.keys(), key=_demo_number)]

    def __getstate__(self) -> dict:
        # open handles cannot be pickled (spawned DataLoader workers); each process reopens its own
        return {**self.__dict__, "_handles": {}}

    def _file(self, path: Path) -> h5py.File:
        # HDF5 handles must not cross a fork (DataLoader workers): reopen in each process.
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            try:
                self._handles[path] = h5py.File(path, "r")
            except OSError as e:
                raise DataError(f"{path}: cannot open HDF5 file ({e})") from None
        return self._handles[path]

    def __len__(self) -> int:
        return len(self.demos)

    def fingerprint(self) -> str:
        root = self.path.parent if self.path.is_file() else self.path
        return hash_files(self.files, root, extra=f"hdf5:{self.name}:{self.gripper_convention}:{self.rotate_180}")

    def load(self, index: int, *, images: bool = True, cameras: Sequence[str] | None = None) -> Episode:
        path, key = self.demos[index]
        where = f"{path}: data/{key}"
        try:
            f = self._file(path)
            demo = f["data"][key]
            actions = np.asarray(demo["actions"], dtype=np.float32)
            if self.gripper_convention is not None:
                actions[:, -1] = gripper.to_openvla(actions[:, -1], self.gripper_convention)
            obs = demo.get("obs", {})
            proprio = None
            for keys in PROPRIO_KEYS:
                if all(k in obs for k in keys):
                    proprio = np.concatenate([np.asarray(obs[k], np.float32).reshape(len(actions), -1) for k in keys], axis=1)
                    break
            else:
                if "robot_states" in demo:
                    proprio = np.asarray(demo["robot_states"], np.float32)
            decoded = {}
            for name, candidates in CAMERA_KEYS.items():
                raw = next((k for k in candidates if k in obs), None)
                if images and raw is not None and (cameras is None or name in cameras):
                    frames = np.asarray(obs[raw], dtype=np.uint8)
                    decoded[name] = np.ascontiguousarray(frames[:, ::-1, ::-1]) if self.rotate_180 else frames
            terminal = np.asarray(demo["dones"], dtype=bool) if "dones" in demo else None
            instruction = _instruction(demo.attrs) or _instruction(f["data"].attrs)
            metadata = {"source": f"{path.name}:{key}", **{k: _attr(v) for k, v in demo.attrs.items() if k != "init_state"}}
            return Episode(
                decoded, actions, instruction, proprio, is_terminal=terminal, dataset_name=self.name, metadata=metadata
            )
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            raise DataError(f"{where}: cannot read demo ({type(e).__name__}: {e})") from None


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def write_hdf5(path: str | Path, episodes: Sequence[Episode], *, problem_name: str = "clearvla") -> None:
    """Write episodes in LIBERO's layout (actions stored as given; proprio [T, 8] split into ee_pos, ee_ori,
    gripper_states, any other width as robot_states). The first episode's instruction goes in problem_info;
    each demo also carries its own in attrs["language_instruction"]."""
    path = Path(path)
    if path.exists():
        raise DataError(f"{path}: already exists; write_hdf5 only writes new files")
    inverse = {name: raw for name, candidates in CAMERA_KEYS.items() for raw in candidates[:1]}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        first = episodes[0].instruction if episodes else ""
        data.attrs["problem_info"] = json.dumps({"problem_name": problem_name, "language_instruction": first})
        data.attrs["env_args"] = json.dumps({"env_name": problem_name})
        data.attrs["num_demos"] = len(episodes)
        data.attrs["total"] = int(sum(len(e) for e in episodes))
        for i, episode in enumerate(episodes):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = len(episode)
            demo.attrs["language_instruction"] = episode.instruction
            demo.create_dataset("actions", data=episode.actions)
            demo.create_dataset("dones", data=episode.is_terminal.astype(np.uint8))
            demo.create_dataset("rewards", data=episode.is_terminal.astype(np.float32))
            obs = demo.create_group("obs")
            for name, frames in episode.images.items():
                obs.create_dataset(inverse.get(name, name), data=frames, compression="gzip", compression_opts=1)
            if episode.proprio is not None and episode.proprio.shape[1] == 8:
                obs.create_dataset("ee_pos", data=episode.proprio[:, :3])
                obs.create_dataset("ee_ori", data=episode.proprio[:, 3:6])
                obs.create_dataset("gripper_states", data=episode.proprio[:, 6:])
            elif episode.proprio is not None:
                demo.create_dataset("robot_states", data=episode.proprio)
