"""Policy server under load: N concurrent clients for a bounded time, with and without dynamic batching.

A tiny-preset model (--image-size model input) is served by one worker process holding two servers built by
`clearvla.serve.app.create_app` on two loopback ports: one with max batch size 1 (OpenVLA deploy.py's behaviour)
and one with --max-batch-size. This process only runs clients (numpy + requests, no torch until the end).
Each server is warmed up (sequential requests, then 2 s of load) before its measured phase. Each phase runs --clients threads, each with its own `clearvla.client.PolicyClient`
sending a --obs-size RGB observation in a loop for --duration seconds, and records every request's client-side
latency (encode, HTTP, queue, inference, safety, decode). It reports throughput, p50/p99 latency, the error count
(which must be zero: the script exits 1 otherwise), the server's mean batch size, and the batching gain
(throughput with batching / throughput at batch size 1). With --action-chunk K the model is a chunk model and each
answer carries K actions (`actions` [K, 7]), so actions/s = K x requests/s for a robot that executes chunks open loop.

Run: .venv/bin/python benchmarks/serve_load.py [--transport ws] [--action-chunk 8]
  ->  benchmarks/results/serve_load[_ws][_chunk8].json
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import requests

STATS = {"bench": {"action": {"q01": [-0.02] * 3 + [-0.1] * 3 + [0.0], "q99": [0.02] * 3 + [0.1] * 3 + [1.0],
                              "mask": [True] * 6 + [False]}}}
TEXTS = ("pick up the red block", "put the green cube in the left bin", "stack the blue ring on the peg", "push the yellow box")


def serve_worker(image_size: int, ports: list[int], batch_sizes: list[int], max_wait_ms: float, threads: int,
                 action_chunk: int) -> None:
    """One process, one model, one server per (port, batch size); runs until killed."""
    import torch
    import uvicorn

    from clearvla.models.vla import VLA

    torch.set_num_threads(threads)
    from clearvla.serve.app import ServeConfig, create_app

    vla = VLA.from_config("tiny", image_size=image_size, norm_stats=STATS, action_chunk=action_chunk).eval()
    servers = []
    for port, size in zip(ports, batch_sizes):
        app = create_app(vla, ServeConfig(max_batch_size=size, max_wait_ms=max_wait_ms, max_queue=1024))
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=False)
        servers.append(uvicorn.Server(config))

    async def main() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server worker exited with {proc.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def load_phase(url: str, clients: int, duration: float, obs_size: int, transport: str = "rest", chunk: int = 1) -> dict:
    """`clients` threads, each acting in a loop for `duration` seconds; latencies in ms, errors counted.
    transport: "rest" (POST /v1/act, json_numpy) or "ws" (the msgpack websocket); chunk: actions per answer."""
    from clearvla.client import PolicyClient, WebsocketPolicyClient

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_line = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        rng = np.random.default_rng(i)
        image = rng.integers(0, 256, size=(obs_size, obs_size, 3), dtype=np.uint8)
        make = PolicyClient if transport == "rest" else WebsocketPolicyClient
        with make(url if transport == "rest" else url.replace("http", "ws") + "/ws", timeout=30.0, retries=0) as policy:
            start_line.wait()
            stop = time.monotonic() + duration
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    result = policy.act(image, TEXTS[i % len(TEXTS)], "bench")
                    assert result.actions is not None and result.actions.shape == (chunk, 7)
                    latencies[i].append((time.perf_counter() - t0) * 1000.0)
                except Exception as e:  # counted, and printed once per client
                    if errors[i] == 0:
                        print(f"client {i}: {type(e).__name__}: {e}", file=sys.stderr)
                    errors[i] += 1

    before = requests.get(url + "/stats", timeout=10).json()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    all_ms = sorted(ms for per_client in latencies for ms in per_client)
    after = requests.get(url + "/stats", timeout=10).json()
    batches = after["batches"] - before["batches"]
    mean_batch = round((after["batched_requests"] - before["batched_requests"]) / batches, 2) if batches else None
    return {"requests": len(all_ms), "errors": sum(errors), "seconds": round(elapsed, 2),
            "throughput_rps": round(len(all_ms) / elapsed, 2), "actions_per_s": round(chunk * len(all_ms) / elapsed, 2),
            "p50_ms": round(statistics.median(all_ms), 1) if all_ms else None,
            "p99_ms": round(float(np.percentile(all_ms, 99)), 1) if all_ms else None,
            "mean_batch_size": mean_batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per phase")
    parser.add_argument("--transport", choices=("rest", "ws"), default="rest", help="REST /v1/act or the websocket")
    parser.add_argument("--image-size", type=int, default=224, help="model input size (tiny preset)")
    parser.add_argument("--obs-size", type=int, default=224, help="side of the RGB observation each client sends")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the server (1: on a small shared machine, OpenMP threads that spin "
                             "against the clients and other jobs make batch-1 serving erratic)")
    parser.add_argument("--action-chunk", type=int, default=0, help="K > 0: serve a chunk model of K actions per answer")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)  # internal: PORT:BATCH ...
    args = parser.parse_args()
    if args.worker:
        pairs = [p.split(":") for p in args.worker]
        serve_worker(args.image_size, [int(p) for p, _ in pairs], [int(b) for _, b in pairs], args.max_wait_ms, args.threads,
                     args.action_chunk)
        return 0

    chunk = max(args.action_chunk, 1)
    sizes = [1, args.max_batch_size]
    ports = [free_port() for _ in sizes]
    cmd = [sys.executable, __file__, "--image-size", str(args.image_size), "--max-wait-ms", str(args.max_wait_ms),
           "--threads", str(args.threads), "--action-chunk", str(args.action_chunk),
           "--worker", *(f"{port}:{size}" for port, size in zip(ports, sizes))]
    proc = subprocess.Popen(cmd)
    rows = []
    try:
        for port, size in zip(ports, sizes):
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            load_phase(url, 1, 0.5, args.obs_size, args.transport, chunk)  # warm-up: the first forward passes are slow
            load_phase(url, args.clients, 2.0, args.obs_size, args.transport, chunk)  # ... and so is each new batch shape
            row = {"max_batch_size": size, **load_phase(url, args.clients, args.duration, args.obs_size, args.transport, chunk)}
            rows.append(row)
            print(row, flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    from common import write_result  # imports torch: only now, after the load phases

    gain = round(rows[1]["throughput_rps"] / rows[0]["throughput_rps"], 2) if rows[0]["throughput_rps"] else None
    errors = sum(r["errors"] for r in rows)
    transport = {"rest": "REST /v1/act (json_numpy)", "ws": "websocket /ws (msgpack)"}[args.transport]
    name = ("serve_load" if args.transport == "rest" else "serve_load_ws") + (f"_chunk{chunk}" if args.action_chunk else "")
    path = write_result(name, {"preset": "tiny", "image_size": args.image_size, "obs_size": args.obs_size,
                               "clients": args.clients, "duration_s": args.duration, "max_wait_ms": args.max_wait_ms,
                               "server_torch_threads": args.threads, "transport": transport, "action_chunk": args.action_chunk, "rows": rows,
                               "batching_gain": gain, "errors": errors})
    print("\n| max batch | requests/s | actions/s | p50 ms | p99 ms | mean batch | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['max_batch_size']} | {r['throughput_rps']} | {r['actions_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['mean_batch_size']} | {r['errors']} |")
    print(f"\nbatching gain: {gain}x; errors: {errors}\nwrote {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
