"""torchrun support: process-group setup, DDP wrapping, and FSDP2 sharding for large models on GPU."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import nn

from clearvla.errors import ConfigError
from clearvla.train.loop import Distributed

STRATEGIES = ("ddp", "fsdp")


def init_distributed(launched: bool) -> Distributed:
    """Join the torchrun job (gloo on CPU, nccl on CUDA) when `launched`; otherwise a single process."""
    if not launched:
        return Distributed()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(torch_dist.get_rank() % torch.cuda.device_count())
    return Distributed(rank=torch_dist.get_rank(), world_size=torch_dist.get_world_size())


def wrapper(strategy: str, dist: Distributed):
    """A function that wraps the model for `strategy` (identity for one process)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown distributed strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if dist.world_size == 1:
        return lambda model: model
    if strategy == "ddp":
        return lambda model: nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    return shard_fsdp


def shard_fsdp(model: nn.Module) -> nn.Module:
    """FSDP2: shard every transformer block (ViT and Llama) and then the root, so no rank holds the
    whole model's parameters, gradients and optimizer state."""
    from torch.distributed.fsdp import fully_shard

    from clearvla.models.vit import Block

    for module in model.modules():
        if isinstance(module, Block) or type(module).__name__ == "LlamaDecoderLayer":
            fully_shard(module)
    fully_shard(model)
    return model


def shutdown(dist: Distributed) -> None:
    if dist.world_size > 1 and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
