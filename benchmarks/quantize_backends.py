"""bitsandbytes vs optimum-quanto for `--quantize int8|int4`: weight bytes, latency and agreement with float32.

Two random-weight models: the tiny preset, and a mid-size one (the tiny builder at hidden 1024, 8 layers, 64 px
images, ~100M LLM parameters, where the quantised linears are almost all of the weights, as in openvla-7b). Both
libraries quantise the same modules (LLM decoder linears + projector; not lm_head, not vision). Measured per
variant: bytes of the quantised modules' stored tensors (packed weights, scales, shifts, code tables), bytes of
the whole model, predict latency at batch 1 (fast decoding, median, variants measured round-robin), and agreement
with the float32 model: relative error of the final-position logits and share of identical action tokens over a
fixed set of inputs (random weights give near-flat logits, so token agreement is a harsh test; the logit error is
the fairer one).

Compute dtype: float32 everywhere; bfloat16 compute only on the tiny model (this CPU has no bf16 matmul units and
runs bf16 ~100x slower, which would dominate every other effect).

Run: .venv/bin/python benchmarks/quantize_backends.py  ->  benchmarks/results/quantize_backends.json
Needs bitsandbytes (the `quantize` extra); optimum-quanto is not a dependency: `pip install optimum-quanto` to
compare, without it only bitsandbytes is measured.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from common import write_result

from clearvla.infer.quantize import quantize_vla, weight_bytes
from clearvla.models.decoding import greedy_decode, left_pad
from clearvla.models.tokenizer import prompt_ids
from clearvla.models.vla import VLA

try:  # not a clearvla dependency: `pip install optimum-quanto` to compare; without it only bitsandbytes is measured
    import optimum.quanto  # noqa: F401

    HAVE_QUANTO = True
except ImportError:
    HAVE_QUANTO = False

MODELS = {
    "tiny": dict(image_size=224),
    "mid": dict(hidden_size=1024, num_layers=8, num_heads=16, intermediate_size=2816, image_size=64),
}
TEXTS = ["pick up the red block", "put the green bolt in the left bin", "stack the nut on the blue plate", "push it"]


def quanto_quantize(vla: VLA, mode: str) -> VLA:
    from optimum.quanto import freeze, qint4, qint8, quantize

    for module in (vla.language_model.model.layers, vla.projector):
        quantize(module, weights=qint8 if mode == "int8" else qint4)
        freeze(module)
    return vla


def quanto_bytes(vla: VLA) -> dict[str, int]:
    """Stored bytes of quanto's QLinear modules (state dict: int8 data or packed uint4 + scales + shifts) and of
    every other parameter and persistent buffer."""
    quantized = other = 0
    for module in vla.modules():
        if type(module).__module__.startswith("optimum.quanto"):
            quantized += sum(t.numel() * t.element_size() for t in module.state_dict().values())
        else:
            own = list(module.parameters(recurse=False)) + [
                b for n, b in module.named_buffers(recurse=False) if n not in module._non_persistent_buffers_set
            ]
            other += sum(t.numel() * t.element_size() for t in own)
    return {"quantized": quantized, "other": other, "total": quantized + other}


def inputs(vla: VLA, n: int, size: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), TEXTS[i % len(TEXTS)]) for i in range(n)]


@torch.no_grad()  # not inference_mode: quanto's int4 tensors fail under it ("Cannot set version_counter")
def final_logits(vla: VLA, image: np.ndarray, text: str) -> torch.Tensor:
    prefix = vla.prefix(vla.processor(image).to(vla.device))
    prompt = torch.tensor(prompt_ids(vla.tokenizer, text))
    embeds, mask, positions = left_pad(vla.language_model, prefix, [prompt])
    out = vla.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=1)
    return out.logits[0, -1].float()


@torch.no_grad()
def predict_tokens(vla: VLA, image: np.ndarray, text: str) -> np.ndarray:
    """`VLA.predict_action_tokens` (fast decoding) under no_grad instead of inference_mode (see final_logits)."""
    prefix = vla.prefix(vla.processor(image).to(vla.device))
    prompt = torch.tensor(prompt_ids(vla.tokenizer, text))
    return greedy_decode(vla.language_model, prefix, [prompt], 7)[0].numpy()


def run_model(name: str, dtypes: tuple[torch.dtype, ...], n_inputs: int, repeats: int) -> list[dict]:
    """Every variant of one model; latencies measured round-robin (one call of each in turn) so that load on the
    shared VM hits all variants alike."""
    rows = []
    base = VLA.from_config("tiny", seed=0, **MODELS[name]).eval()
    data = inputs(base, n_inputs, MODELS[name]["image_size"])
    ref_logits = [final_logits(base, im, t) for im, t in data]
    ref_tokens = np.stack([predict_tokens(base, im, t) for im, t in data])
    bf16_bytes = weight_bytes(copy.deepcopy(base).to(torch.bfloat16))["total"]
    for dtype in dtypes:
        float_model = copy.deepcopy(base).to(dtype)
        variants = [("none", "float", float_model)]
        for mode in ("int8", "int4"):
            variants.append((mode, "bitsandbytes", quantize_vla(copy.deepcopy(float_model), mode)))
            if HAVE_QUANTO:
                variants.append((mode, "optimum-quanto", quanto_quantize(copy.deepcopy(float_model), mode)))
        times: list[list[float]] = [[] for _ in variants]
        for _, _, vla in variants:
            predict_tokens(vla, *data[0])  # warm-up
        for _ in range(repeats if dtype == torch.float32 else 2):
            for i, (_, _, vla) in enumerate(variants):
                start = time.perf_counter()
                predict_tokens(vla, *data[0])
                times[i].append((time.perf_counter() - start) * 1000)
        for (mode, library, vla), samples in zip(variants, times):
            sizes = quanto_bytes(vla) if library == "optimum-quanto" else weight_bytes(vla)
            rel = [float((final_logits(vla, im, t) - r).norm() / r.norm()) for (im, t), r in zip(data, ref_logits)]
            tokens = np.stack([predict_tokens(vla, im, t) for im, t in data])
            row = {
                "model": name, "compute_dtype": str(dtype).removeprefix("torch."), "quantize": mode, "library": library,
                "quantized_bytes": sizes["quantized"], "total_bytes": sizes["total"],
                "total_vs_bf16": round(sizes["total"] / bf16_bytes, 3),
                "ms_per_call_p50": round(statistics.median(samples), 1),
                "logit_rel_error": round(float(np.mean(rel)), 4),
                "token_agreement": round(float((tokens == ref_tokens).mean()), 3),
            }
            rows.append(row)
            print(row, flush=True)
        del variants
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--inputs", type=int, default=8, help="fixed (image, instruction) pairs for agreement")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the VM's other core runs other work; one thread gives steadier numbers
    if not HAVE_QUANTO:
        print("optimum-quanto is not installed: measuring bitsandbytes only (pip install optimum-quanto to compare)")
    rows = run_model("tiny", (torch.float32, torch.bfloat16), args.inputs, args.repeats)
    rows += run_model("mid", (torch.float32,), args.inputs, args.repeats)
    path = write_result("quantize_backends", {"models": MODELS, "torch_threads": 1, "rows": rows})
    print("\n| model | compute | quantize | library | quantised MB | total vs bf16 | ms / call | logit rel. err | "
          "token agreement |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['compute_dtype']} | {r['quantize']} | {r['library']} | {r['quantized_bytes'] / 1e6:.2f} | "
              f"{r['total_vs_bf16']:.2f}x | {r['ms_per_call_p50']} | {r['logit_rel_error']:.4f} | {r['token_agreement']:.2f} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
