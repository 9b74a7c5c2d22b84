"""Inference speed in one run, one machine, one set of weights: decoding paths x weight precisions.

Decoders (models/decoding.py), all greedy, all giving OpenVLA's tokens unless noted:
  prefill-only      one forward pass and 1 token: the floor under every autoregressive decoder (reference row)
  hf-generate       transformers' `generate(do_sample=False)`: OpenVLA's own loop, the baseline
  reference         clearvla's KV-cached loop through `LlamaForCausalLM.forward` (dynamic cache)
  fast              prefill once + static KV cache, decoder layers called directly (the default)
  fast-action-only  fast, argmax over the 256 action tokens only (changes tokens where a text token won)
  parallel-chunk    OpenVLA-OFT parallel decoding: K=8 actions (56 slots, L1 head) from one forward pass; the same
                    weights plus the chunk head (built from the same seed), so actions/s counts all K actions
Precisions (the fast decoder): float32, bfloat16, int8 and int4 weights (bitsandbytes; compute in float32 on
this CPU, bfloat16 with --device cuda).

Each call predicts actions for a batch of observations (random 224² images, four different instructions); the
variants of a table are measured round-robin (one call of each in turn), so load on the shared VM hits them
alike. Reported: latency p50 / p99 per call, the LLM part alone (decode) p50, actions/s = batch x actions per
call / p50.

With --agreement N (needs MuJoCo): on the shipped default model and N simulator frames (scripted-expert
rollouts of the train suite), how much int8/int4 weights move its actions (and, for an action-token model, how
often action-only argmax and int8/int4 change the tokens).

Run: .venv/bin/python benchmarks/inference.py  ->  benchmarks/results/inference.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from common import write_result

from clearvla.infer.quantize import quantize_vla, target_linears, weight_bytes
from clearvla.models.decoding import greedy_decode
from clearvla.models.tokenizer import prompt_ids
from clearvla.models.vla import VLA

STATS = {"bench": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7}}}
CHUNK = 8  # OpenVLA-OFT's chunk length for LIBERO
TEXTS = ["pick up the red block", "put the large green bolt in the bin on the left", "push the nut", "stack it"]


@dataclass(frozen=True)
class Decoder:
    """One way to turn (prefix embeddings, prompts) into actions: tokens [B, 7], or with `chunk` K > 0 a chunk
    model's [B, K, 7] from one forward pass."""

    name: str
    run: Callable[[VLA, torch.Tensor, list[torch.Tensor]], torch.Tensor]
    note: str = ""
    chunk: int = 0


def _greedy(method: str, action_only: bool = False) -> Callable:
    def run(vla: VLA, prefix: torch.Tensor, prompts: list[torch.Tensor]) -> torch.Tensor:
        ids = (vla.action_tokenizer.first_token_id, vla.action_tokenizer.vocab_size) if action_only else None
        return greedy_decode(vla.language_model, prefix, prompts, 7, method=method, action_ids=ids)

    return run


DECODERS = [
    Decoder("prefill-only", lambda vla, prefix, prompts: greedy_decode(vla.language_model, prefix, prompts, 1),
            "one forward pass + 1 token: the floor every autoregressive decoder pays"),
    Decoder("hf-generate", _greedy("generate"), "transformers generate(do_sample=False), OpenVLA's loop"),
    Decoder("reference", _greedy("reference"), "KV-cached loop through LlamaForCausalLM.forward"),
    Decoder("fast", _greedy("fast"), "prefill + static KV cache (default)"),
    Decoder("fast-action-only", _greedy("fast", action_only=True), "fast, argmax over the action tokens"),
    Decoder("parallel-chunk", lambda vla, prefix, prompts: vla.decode_chunk(prefix, prompts),
            f"OpenVLA-OFT parallel decoding, K={CHUNK} actions per forward pass", chunk=CHUNK),
]

FAST = next(d for d in DECODERS if d.name == "fast")

# Precisions: (label, model dtype, quantize). Extra rows (e.g. 1/2/3 camera images, issue #10) are more entries
# of `workloads` in main(): each is a name, a model and a batch builder.
PRECISIONS = [("float32", torch.float32, "none"), ("bfloat16", torch.bfloat16, "none"),
              ("int8", torch.float32, "int8"), ("int4", torch.float32, "int4")]


def batch_inputs(batch: int, size: int, cameras: tuple[str, ...] = ("image",)) -> tuple[list, list[str]]:
    """B observations (an image each, or {camera: image} for multi-camera models) and B instructions."""
    rng = np.random.default_rng(0)
    frames = [{c: rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for c in cameras} for _ in range(batch)]
    images = [f[cameras[0]] for f in frames] if len(cameras) == 1 else frames
    return images, [TEXTS[i % len(TEXTS)] for i in range(batch)]


@torch.inference_mode()
def timed_call(vla: VLA, decoder: Decoder, images: list[np.ndarray], texts: list[str]) -> tuple[float, float]:
    """One `predict_action_tokens`-equivalent call: (total ms, decode ms)."""
    start = time.perf_counter()
    pixel_values, _ = vla.observation_inputs(images)
    prefix = vla.prefix(pixel_values)
    prompts = [torch.tensor(prompt_ids(vla.tokenizer, t), device=vla.device) for t in texts]
    middle = time.perf_counter()
    decoder.run(vla, prefix, prompts)
    end = time.perf_counter()
    return (end - start) * 1000, (end - middle) * 1000


def measure(variants: list[tuple[dict, VLA, Decoder]], batch: int, size: int, repeats: int) -> list[dict]:
    """Round-robin `repeats` calls of every variant; one row per variant."""
    inputs = [batch_inputs(batch, size, vla.config.cameras) for _, vla, _ in variants]
    times: list[list[tuple[float, float]]] = [[] for _ in variants]
    for (_, vla, decoder), (images, texts) in zip(variants, inputs):
        timed_call(vla, decoder, images, texts)  # warm-up
    for _ in range(repeats):
        for i, ((_, vla, decoder), (images, texts)) in enumerate(zip(variants, inputs)):
            times[i].append(timed_call(vla, decoder, images, texts))
    rows = []
    for (labels, _, decoder), samples in zip(variants, times):
        total = [t for t, _ in samples]
        p50 = statistics.median(total)
        rows.append({**labels, "batch": batch, "repeats": repeats, "ms_p50": round(p50, 1),
                     "ms_p99": round(float(np.percentile(total, 99)), 1),
                     "decode_ms_p50": round(statistics.median(d for _, d in samples), 1),
                     "actions_per_s": round(1000 * batch * max(decoder.chunk, 1) / p50, 1)})
    return rows


def agreement(frames: int) -> dict:
    """How much the shipped default model's actions move over simulator frames: for an action-token model,
    action-only vs full argmax and int8 / int4 vs float32 tokens; for a chunk model (no tokens), int8 / int4 vs
    float32 chunks."""
    from clearvla.assets import default_model_dir
    from clearvla.sim import suites
    from clearvla.sim.env import WorkcellEnv
    from clearvla.sim.expert import ScriptedExpert
    from clearvla.sim.rollout import run_episode

    vla = VLA.from_pretrained(default_model_dir())
    cameras = list(vla.config.cameras)
    env = WorkcellEnv("train", image_size=vla.processor.image_size, wrist_camera="wrist_image" in cameras)
    grabbed: list[tuple[dict, np.ndarray, str]] = []
    index = 0
    try:
        while len(grabbed) < frames:
            episode: list[tuple[dict, np.ndarray, str]] = []
            run_episode(env, ScriptedExpert(env, seed=0), suites.episode("train", index), record=False,
                        on_step=lambda obs, info: episode.append(({c: obs[c] for c in cameras}, obs["proprio"], info["instruction"])))
            grabbed += episode[:: max(1, len(episode) // 6)][:6]  # six frames spread over each episode
            index += 1
    finally:
        env.close()
    grabbed = grabbed[:frames]
    observations, texts = [o for o, _, _ in grabbed], [t for _, _, t in grabbed]
    inputs = dict(proprio=np.stack([p for _, p, _ in grabbed]) if vla.config.proprio_dim else None)
    result: dict = {"frames": frames, "episodes": index}
    if vla.config.action_chunk:
        result["model"] = f"chunk (K={vla.config.action_chunk})"
        reference = vla.predict_action_chunk(observations, texts, **inputs)
        for mode in ("int8", "int4"):
            chunks = quantize_vla(VLA.from_pretrained(default_model_dir()), mode).predict_action_chunk(observations, texts, **inputs)
            diff = np.abs(chunks - reference).reshape(-1, reference.shape[-1])
            result[f"{mode}_vs_float32"] = {"max_action_diff": [round(float(x), 4) for x in diff.max(0)],
                                            "mean_action_diff": [round(float(x), 5) for x in diff.mean(0)]}
        return result
    result["model"] = "action tokens"
    full = vla.predict_action_tokens(observations, texts, **inputs)
    only = vla.predict_action_tokens(observations, texts, action_tokens_only=True, **inputs)
    result["action_only_vs_full"] = {"token_agreement": round(float((full == only).mean()), 3),
                                     "frames_changed": int((full != only).any(-1).sum()),
                                     "full_argmax_text_tokens": int((~vla.action_tokenizer.is_action_token(full)).sum())}
    for mode in ("int8", "int4"):
        tokens = quantize_vla(VLA.from_pretrained(default_model_dir()), mode).predict_action_tokens(observations, texts, **inputs)
        diff = np.abs(vla.decode_actions(tokens) - vla.decode_actions(full))
        result[f"{mode}_vs_float32"] = {"token_agreement": round(float((tokens == full).mean()), 3),
                                        "frames_changed": int((tokens != full).any(-1).sum()),
                                        "max_action_diff": [round(float(x), 4) for x in diff.max(0)]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the VM's other core is busy)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: float16-free bfloat16 compute everywhere")
    parser.add_argument("--agreement", type=int, default=36, help="simulator frames for the agreement study (0: skip)")
    parser.add_argument("--cameras", action="store_true",
                        help="instead: latency with 1, 2 and 3 camera images (+ proprio) -> results/inference_cameras.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if args.cameras:
        return camera_costs(args)

    def model(dtype: torch.dtype, quantize: str) -> VLA:
        vla = VLA.from_config("tiny", seed=0, image_size=args.image_size, norm_stats=STATS).eval()
        vla = vla.to(torch.bfloat16 if cuda else dtype)
        return quantize_vla(vla, quantize, device=args.device).to(args.device)

    fp32 = model(torch.float32, "none")
    chunked = VLA.from_config("tiny", seed=0, image_size=args.image_size, norm_stats=STATS, action_chunk=CHUNK).eval()
    chunked = chunked.to(torch.bfloat16 if cuda else torch.float32).to(args.device)
    shared = fp32.state_dict()
    assert all(torch.equal(t, shared[k]) for k, t in chunked.state_dict().items() if k in shared), "same weights"
    precisions = {label: (model(dtype, q) if label != "float32" else fp32) for label, dtype, q in PRECISIONS}
    bf16_bytes = weight_bytes(precisions["bfloat16"])

    # Workloads: (table, variants). Each variant: (labels, model, decoder).
    workloads = {
        "decoding": [({"decoder": d.name, "precision": "bfloat16" if cuda else "float32"}, chunked if d.chunk else fp32, d)
                     for d in DECODERS],
        "precision": [({"decoder": "fast", "precision": label}, vla, FAST) for label, vla in precisions.items()],
    }
    results: dict[str, list[dict]] = {}
    for table, variants in workloads.items():
        results[table] = []
        for batch in args.batches:
            rows = measure(variants, batch, args.image_size, args.repeats)
            results[table] += rows
            for r in rows:
                print(table, r, flush=True)

    baseline = {r["batch"]: r["actions_per_s"] for r in results["decoding"] if r["decoder"] == "hf-generate"}
    prefill = {r["batch"]: r["decode_ms_p50"] for r in results["decoding"] if r["decoder"] == "prefill-only"}
    for r in results["decoding"]:
        if r["decoder"] == "prefill-only":  # no action: only the reference floor
            r["actions_per_s"] = r["speedup_vs_hf_generate"] = None
            continue
        r["speedup_vs_hf_generate"] = round(r["actions_per_s"] / baseline[r["batch"]], 2)
        if r["decoder"] != "parallel-chunk":  # one forward pass, no token steps
            r["ms_per_decode_step"] = round((r["decode_ms_p50"] - prefill[r["batch"]]) / 6, 2)  # tokens 2..7
    sizes = {}
    for label, vla in precisions.items():
        b = weight_bytes(vla)
        sizes[label] = {**b, "total_vs_bf16": round(b["total"] / bf16_bytes["total"], 3)}
    # Bytes of just the linears that int8/int4 replace, in bf16, for the "quantised weights vs bf16" ratio.
    names = target_linears(precisions["bfloat16"])
    linear_bf16 = sum(p.numel() * 2 for n in names for p in precisions["bfloat16"].get_submodule(n).parameters())
    for label in ("int8", "int4"):
        sizes[label]["quantized_vs_bf16_linears"] = round(sizes[label]["quantized"] / linear_bf16, 3)
        # As deployed on a GPU: the unquantised rest (embeddings, lm_head, vision, norms) in bfloat16, not float32.
        deployed = weight_bytes(model(torch.bfloat16, label))["total"] if not cuda else sizes[label]["total"]
        sizes[label]["total_rest_bf16"] = deployed
        sizes[label]["total_rest_bf16_vs_bf16"] = round(deployed / bf16_bytes["total"], 3)
    for r in results["precision"]:
        r["weight_mb"] = round(sizes[r["precision"]]["total"] / 1e6, 2)
        r["weight_mb_rest_bf16"] = round(sizes[r["precision"]].get("total_rest_bf16", sizes[r["precision"]]["total"]) / 1e6, 2)

    payload = {
        "preset": "tiny", "image_size": args.image_size, "device": args.device, "torch_threads": args.threads,
        "parameters": sum(p.numel() for p in fp32.parameters()),
        "decoders": {d.name: d.note for d in DECODERS}, "chunk": CHUNK,
        "weight_bytes": sizes, "bf16_bytes_of_quantised_linears": linear_bf16, **results,
    }
    if args.agreement:
        payload["agreement_default_model"] = agreement(args.agreement)
        print(payload["agreement_default_model"])
    path = write_result("inference", payload)

    print("\n| decoder | batch | ms / call p50 | p99 | LLM ms p50 | ms / token step | actions / s | vs HF generate |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in results["decoding"]:
        print(f"| {r['decoder']} | {r['batch']} | {r['ms_p50']} | {r['ms_p99']} | {r['decode_ms_p50']} | "
              f"{r.get('ms_per_decode_step', '–')} | {r['actions_per_s'] or '–'} | "
              f"{str(r['speedup_vs_hf_generate']) + 'x' if r['speedup_vs_hf_generate'] else '–'} |")
    print("\n| weights | batch | ms / call p50 | p99 | actions / s | weight MB as run | MB, rest in bf16 | "
          "quantised linears vs bf16 |\n|---|---|---|---|---|---|---|---|")
    for r in results["precision"]:
        ratio = sizes[r["precision"]].get("quantized_vs_bf16_linears")
        print(f"| {r['precision']} | {r['batch']} | {r['ms_p50']} | {r['ms_p99']} | {r['actions_per_s']} | "
              f"{r['weight_mb']} | {r['weight_mb_rest_bf16']} | {f'{ratio}x' if ratio else '–'} |")
    print(f"\nwrote {path}")


CAMERA_SETS = (("image",), ("image", "wrist_image"), ("image", "wrist_image", "side_image"))


def camera_costs(args: argparse.Namespace) -> None:
    """Issue #10's cost: the tiny preset reading 1, 2 and 3 cameras (fast decoder); every camera adds its patches
    to the LLM's sequence and one pass of the vision backbone."""
    variants = []
    for cameras in CAMERA_SETS:
        vla = VLA.from_config("tiny", seed=0, image_size=args.image_size, cameras=cameras, norm_stats=STATS).eval().to(args.device)
        variants.append(({"cameras": len(cameras), "prefix_tokens": vla.num_prefix_tokens}, vla, FAST))
    rows = []
    for batch in args.batches:
        rows += measure(variants, batch, args.image_size, args.repeats)
    one = {r["batch"]: r["ms_p50"] for r in rows if r["cameras"] == 1}
    for r in rows:
        r["vs_one_camera"] = round(r["ms_p50"] / one[r["batch"]], 2)
    path = write_result("inference_cameras", {"preset": "tiny", "image_size": args.image_size, "device": args.device,
                                              "torch_threads": args.threads, "rows": rows})
    print("| cameras | LLM prefix tokens | batch | ms / call p50 | p99 | actions / s | vs 1 camera |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cameras']} | {r['prefix_tokens']} | {r['batch']} | {r['ms_p50']} | {r['ms_p99']} | {r['actions_per_s']} | "
              f"{r['vs_one_camera']}x |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
