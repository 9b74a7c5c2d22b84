"""Object-level views of patch features: each scene object's patches averaged into one vector, with that object's
labels, and the same-kind size pairs a ranking loss compares.

A patch shows part of an object, while its size is a property of the whole object; pooling the object's patches is
the simplest read-out that must gather it (a linear head on the mean is the mean of per-patch votes, so the patches
have to agree). Used by `pretrain-vision`'s object heads and by `benchmarks/patch_probe.py`'s object-level probe.
"""

from __future__ import annotations

import torch


def pool_objects(features: torch.Tensor, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features [B, P, D]; objects [B, P] int64 (0 background, k = scene object k-1) -> (pooled [B, K, D], the mean
    feature of object k+1's patches at [:, k]; shown [B, K] bool, whether it covers any patch), K = objects.max()."""
    b, _, d = features.shape
    k = int(objects.max()) if objects.numel() else 0
    index = objects.unsqueeze(-1).expand(-1, -1, d)
    sums = features.new_zeros(b, k + 1, d).scatter_add(1, index, features)
    counts = torch.zeros(b, k + 1, dtype=features.dtype, device=features.device).scatter_add(
        1, objects, torch.ones_like(objects, dtype=features.dtype))
    pooled = sums[:, 1:] / counts[:, 1:].clamp(min=1).unsqueeze(-1)
    return pooled, counts[:, 1:] > 0


def object_labels(labels: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """labels [B, P] int64 per patch (its object's label, 0 on background) -> [B, K] the label of each object
    (0 for an object that covers no patch), K = objects.max()."""
    k = int(objects.max()) if objects.numel() else 0
    out = torch.zeros(labels.shape[0], k + 1, dtype=labels.dtype, device=labels.device)
    return out.scatter_reduce(1, objects, labels, "amax", include_self=True)[:, 1:]


def size_pairs(kind: torch.Tensor, size: torch.Tensor, shown: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """kind, size [B, K] object labels (size 0 = none), shown [B, K] -> (image, bigger, smaller) index tensors [M]:
    every ordered pair of shown objects in one image with the same kind and size classes bigger > smaller > 0
    (the size vocabulary runs small < medium < large)."""
    same = (kind.unsqueeze(2) == kind.unsqueeze(1)) & (kind.unsqueeze(2) > 0)
    both = shown.unsqueeze(2) & shown.unsqueeze(1)
    ordered = (size.unsqueeze(2) > size.unsqueeze(1)) & (size.unsqueeze(1) > 0)
    return torch.nonzero(same & both & ordered, as_tuple=True)
