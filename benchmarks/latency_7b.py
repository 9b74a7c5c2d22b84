"""Issue #7, point 5: latency and memory at openvla-7b size, random weights, bf16 / int8 / int4, on one GPU.

The `openvla-7b` preset (DINOv2 ViT-L/14 + SigLIP So400m/14 at 224², fused projector, Llama-2 7B) is built on
the device with random weights and an 8-step chunk head (OpenVLA-OFT), so one model serves every bf16 decoder.
No Llama tokenizer ships here, so prompts are random ids of OpenVLA's prompt length ("In: What action should the
robot take to pick up the red block?\\nOut:" is 24 Llama tokens); latency does not depend on the values.

Rows, each measured after warm-up with the device synchronised around every call:
  bf16      prefill-only, HF generate, fast (static KV cache), parallel chunk (K=8, one forward pass)
  int8/int4 the fast decoder, LLM and projector linears quantised by bitsandbytes, bf16 compute
for batch 1 and 8. Per row: ms per call p50 / p99, actions/s, weight GB (as run) and peak device memory GB.

On a GPU machine (with the `quantize` extra; about 30 GB of device memory while the fp32 weights are cast):
    python benchmarks/latency_7b.py --device cuda            ->  benchmarks/results/latency_7b.json
Check the script anywhere (the tiny preset; on a CPU the "bf16" rows compute in float32):
    .venv/bin/python benchmarks/latency_7b.py --preset tiny --device cpu --repeats 2 --name latency_7b_cpu_check
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Callable

import numpy as np
import torch

from common import write_result

from clearvla.infer.quantize import quantize_vla, weight_bytes
from clearvla.models.decoding import greedy_decode
from clearvla.models.vla import VLA

STATS = {"bench": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7}}}
CHUNK = 8
PROMPT_TOKENS = 24
GB = 1e9

Decoder = Callable[[VLA, torch.Tensor, list[torch.Tensor]], torch.Tensor]
DECODERS: dict[str, tuple[Decoder, int]] = {  # name -> (run, actions per call per observation)
    "prefill-only": (lambda vla, prefix, prompts: greedy_decode(vla.language_model, prefix, prompts, 1), 0),
    "hf-generate": (lambda vla, prefix, prompts: greedy_decode(vla.language_model, prefix, prompts, 7, method="generate"), 1),
    "fast": (lambda vla, prefix, prompts: greedy_decode(vla.language_model, prefix, prompts, 7, method="fast"), 1),
    "parallel-chunk": (lambda vla, prefix, prompts: vla.decode_chunk(prefix, prompts), CHUNK),
}


def build(preset: str, device: torch.device, dtype: torch.dtype, quantize: str) -> VLA:
    """The preset with random weights (seed 0) made on `device` in `dtype`, then quantised there if asked."""
    with torch.device(device):
        vla = VLA.from_config(preset, seed=0, norm_stats=STATS, action_chunk=CHUNK).eval()
    vla = vla.to(dtype)
    return quantize_vla(vla, quantize, device=device)


def inputs(vla: VLA, batch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random camera images as the processor prepares them, and B prompts of PROMPT_TOKENS ids starting with BOS."""
    rng = np.random.default_rng(0)
    size = vla.config.image_sizes[0]
    images = [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(batch)]
    pixel_values, _ = vla.observation_inputs(images)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.cat([torch.tensor([1]), torch.randint(3, vla.config.base_vocab_size, (PROMPT_TOKENS - 1,),
                                                           generator=generator)]).to(vla.device) for _ in range(batch)]
    return pixel_values.to(vla.dtype), prompts


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def timed(vla: VLA, decoder: Decoder, pixel_values: torch.Tensor, prompts: list[torch.Tensor]) -> float:
    """Milliseconds for one call: vision + projector, then the decoder."""
    synchronize(vla.device)
    start = time.perf_counter()
    decoder(vla, vla.prefix(pixel_values), prompts)
    synchronize(vla.device)
    return (time.perf_counter() - start) * 1000


def measure(vla: VLA, label: dict, names: list[str], batches: list[int], repeats: int) -> list[dict]:
    """Rows for the decoders `names` of one model: `repeats` timed calls each, round-robin, after one warm-up."""
    rows = []
    weights_gb = weight_bytes(vla)["total"] / GB
    for batch in batches:
        pixel_values, prompts = inputs(vla, batch)
        if vla.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(vla.device)
        times: dict[str, list[float]] = {name: [] for name in names}
        for name in names:
            timed(vla, DECODERS[name][0], pixel_values, prompts)
        for _ in range(repeats):
            for name in names:
                times[name].append(timed(vla, DECODERS[name][0], pixel_values, prompts))
        peak = torch.cuda.max_memory_allocated(vla.device) / GB if vla.device.type == "cuda" else None
        for name in names:
            p50 = statistics.median(times[name])
            per_call = DECODERS[name][1] * batch
            rows.append({**label, "decoder": name, "batch": batch, "repeats": repeats, "ms_p50": round(p50, 2),
                         "ms_p99": round(float(np.percentile(times[name], 99)), 2),
                         "actions_per_s": round(1000 * per_call / p50, 1) if per_call else None,
                         "weights_gb": round(weights_gb, 3), "peak_memory_gb": round(peak, 2) if peak else None})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="openvla-7b", help="openvla-7b (the point), or tiny to check the script")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "int8", "int4"], choices=["bf16", "int8", "int4"])
    parser.add_argument("--name", default="latency_7b", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    # bf16 is the deployment dtype on GPUs; CPUs without bf16 matrix units compute the check in float32.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows: list[dict] = []
    for precision in args.precisions:
        start = time.perf_counter()
        vla = build(args.preset, device, dtype, "none" if precision == "bf16" else precision)
        built_s = time.perf_counter() - start
        names = list(DECODERS) if precision == "bf16" else ["fast"]
        rows += [{**row, "build_s": round(built_s, 1)}
                 for row in measure(vla, {"weights": precision}, names, args.batches, args.repeats)]
        del vla
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    path = write_result(args.name, {"preset": args.preset, "device": args.device, "gpu": gpu, "compute_dtype": str(dtype),
                                    "prompt_tokens": PROMPT_TOKENS, "chunk": CHUNK, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
