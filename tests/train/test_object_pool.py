"""Object-level read-outs of patch features (train/object_pool.py) and the object heads of `pretrain-vision`."""

import numpy as np
import torch

from clearvla.sim.vision_labels import VOCAB
from clearvla.train.object_pool import object_labels, pool_objects, size_pairs
from clearvla.train.vision_pretrain import PatchHeads, pretrain_losses

SMALL, MEDIUM, LARGE = (VOCAB["size"].index(w) for w in ("small", "medium", "large"))
BLOCK, NUT = VOCAB["kind"].index("block"), VOCAB["kind"].index("nut")


def test_each_object_gets_the_mean_of_its_own_patches():
    features = torch.arange(12, dtype=torch.float32).view(1, 6, 2)  # patches 0..5, features (2p, 2p+1)
    objects = torch.tensor([[0, 1, 1, 3, 0, 3]])  # object 2 covers no patch
    pooled, shown = pool_objects(features, objects)
    assert pooled.shape == (1, 3, 2) and shown.tolist() == [[True, False, True]]
    assert pooled[0, 0].tolist() == [3.0, 4.0]  # mean of patches 1, 2
    assert pooled[0, 2].tolist() == [8.0, 9.0]  # mean of patches 3, 5
    assert pooled[0, 1].tolist() == [0.0, 0.0]


def test_object_labels_come_from_the_objects_patches():
    objects = torch.tensor([[0, 2, 2, 1], [1, 0, 0, 0]])
    size = torch.tensor([[0, LARGE, LARGE, SMALL], [MEDIUM, 0, 0, 0]])
    assert object_labels(size, objects).tolist() == [[SMALL, LARGE], [MEDIUM, 0]]


def test_size_pairs_are_same_kind_shown_parts_of_different_size_in_one_image():
    kind = torch.tensor([[BLOCK, BLOCK, NUT, BLOCK], [BLOCK, BLOCK, 0, 0]])
    size = torch.tensor([[SMALL, LARGE, MEDIUM, LARGE], [MEDIUM, MEDIUM, 0, 0]])
    shown = torch.tensor([[True, True, True, False], [True, True, False, False]])
    image, bigger, smaller = size_pairs(kind, size, shown)
    # image 0: block 1 (large) over block 0 (small); block 3 is not shown, the nut has no partner;
    # image 1: two medium blocks are not ordered
    assert list(zip(image.tolist(), bigger.tolist(), smaller.tolist())) == [(0, 1, 0)]


def test_the_object_heads_add_to_the_loss_only_with_weight():
    torch.manual_seed(0)
    heads = PatchHeads(8, VOCAB)
    objects = torch.tensor([[1, 1, 2, 0]] * 2)
    batch = {"object": objects, "kind": torch.tensor([[BLOCK, BLOCK, BLOCK, 0]] * 2),
             "colour": torch.zeros(2, 4, dtype=torch.long), "size": torch.tensor([[SMALL, SMALL, LARGE, 0]] * 2),
             "larger": torch.tensor([[0, 0, 1, -1]] * 2, dtype=torch.int8), "xy": torch.zeros(2, 4, 2)}
    features = torch.randn(2, 4, 8, requires_grad=True)
    pixels = torch.randn(2, 6, 8, 8)
    with_objects = pretrain_losses(features, heads, batch, pixels, 1.0, object_weight=1.0)
    without = pretrain_losses(features, heads, batch, pixels, 1.0, object_weight=0.0)
    objects_sum = (with_objects["object_kind"] + with_objects["object_size"] + with_objects["object_rank"]).detach()
    assert with_objects["object_rank"].item() > 0 and 0 <= with_objects["object_rank_acc"].item() <= 1
    assert np.isclose((with_objects["loss"] - without["loss"]).item(), float(objects_sum), atol=1e-5)
    with_objects["object_rank"].backward()
    assert features.grad[:, 3].abs().sum() == 0 and features.grad[:, :3].abs().sum() > 0  # background gets none
