"""Save nested training state (optimizer, RNG, scheduler) without pickle: tensors go to one safetensors
file, everything else (numbers, strings, lists, dicts) to JSON with placeholders pointing at the tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from clearvla.errors import CheckpointError

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_NDARRAY = "__ndarray__"


def _flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(tree, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(tree))
        return {_NDARRAY: prefix}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(tree.items())]}
    if isinstance(tree, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
        return {_TUPLE: items} if isinstance(tree, tuple) else items
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot save {type(tree).__name__} at {prefix!r} in training state")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if _TENSOR in node:
            return tensors[node[_TENSOR]]
        if _NDARRAY in node:
            return tensors[node[_NDARRAY]].numpy()
        if _TUPLE in node:
            return tuple(_unflatten(v, tensors) for v in node[_TUPLE])
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in node["__dict__"]}
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    return node


def save_tree(tree: Any, directory: Path, name: str) -> None:
    """Write `<name>.json` (+ `<name>.safetensors` when the tree holds tensors) into `directory`."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(tree, "t", tensors)
    (directory / f"{name}.json").write_text(json.dumps(skeleton))
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))


def load_tree(directory: Path, name: str) -> Any:
    """Inverse of `save_tree`; a missing or corrupt file is a CheckpointError naming it."""
    skeleton_path, tensor_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    try:
        skeleton = json.loads(skeleton_path.read_text())
        tensors = load_file(str(tensor_path)) if tensor_path.exists() else {}
    except FileNotFoundError:
        raise CheckpointError(f"training state file {skeleton_path} is missing") from None
    except Exception as e:  # safetensors and json raise several types for damaged files
        raise CheckpointError(f"corrupt training state in {directory} ({name}): {e}") from None
    return _unflatten(skeleton, tensors)
