"""Run the trainer on the synthetic task in its own process (for the crash and torchrun tests).

usage: python train_synthetic.py RUN_DIR MAX_STEPS SAVE_EVERY [--resume] [--record OUT_JSON] [--strategy ddp|fsdp]
Prints "step N" after every optimizer step. Under torchrun each rank trains on its own samples with DDP.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

import synthetic
from clearvla.train.config import TrainConfig
from clearvla.models.vla import VLA
from clearvla.train.distributed import init_distributed, shutdown, wrapper
from clearvla.train.loop import train
from clearvla.train.modes import apply_mode

torch.set_num_threads(1)


def main() -> None:
    run_dir, max_steps, save_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    record = Path(sys.argv[sys.argv.index("--record") + 1]) if "--record" in sys.argv else None
    dist = init_distributed(torch.distributed.is_torchelastic_launched())
    cfg = TrainConfig(run_dir=run_dir, image_size=32, batch_size=4, max_steps=max_steps, save_every=save_every,
                      lr=1e-3, log_every=1, eval_every=0, keep_last=3, resume="--resume" in sys.argv)
    model = VLA.from_config("tiny", image_size=32, seed=0, norm_stats={"s": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7}}})
    apply_mode(model, cfg.mode)
    seen: list[int] = []

    def batches(start: int):
        for batch in synthetic.batches(model, start, cfg.batch_size, dist.rank, dist.world_size):
            seen.extend(batch["sample_ids"].tolist())
            yield batch

    strategy = sys.argv[sys.argv.index("--strategy") + 1] if "--strategy" in sys.argv else "ddp"
    wrapped: list[torch.nn.Module] = []

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        wrapped.append(wrapper(strategy, dist)(module))
        return wrapped[-1]

    train(model, batches, cfg, dist=dist, wrap=wrap,
          callbacks=(lambda step, _: print(f"step {step}", flush=True),))
    if record is not None:
        full = get_model_state_dict(wrapped[0], options=StateDictOptions(full_state_dict=True))  # gathers FSDP shards
        digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in full.values())).hexdigest()
        record.with_name(f"{record.stem}-rank{dist.rank}.json").write_text(json.dumps({"samples": seen, "weights": digest}))
    shutdown(dist)


if __name__ == "__main__":
    main()
