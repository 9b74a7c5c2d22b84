"""benchmarks/latency_7b.py (issue #7's GPU figures) runs end to end on the tiny preset, so it is ready when a GPU is."""

from __future__ import annotations

import pytest
import torch

BENCHMARK = "latency_7b"  # the `bench` fixture (conftest.py) imports benchmarks/latency_7b.py


def test_rows_for_every_decoder_and_precision(bench) -> None:
    cpu = torch.device("cpu")
    full = bench.build("tiny", cpu, torch.float32, "none")
    rows = bench.measure(full, {"weights": "bf16"}, list(bench.DECODERS), [2], repeats=1)
    assert [r["decoder"] for r in rows] == list(bench.DECODERS)
    assert all(r["ms_p50"] > 0 and r["batch"] == 2 for r in rows)
    speeds = {r["decoder"]: r["actions_per_s"] for r in rows}
    assert speeds["prefill-only"] is None  # one token is no action
    assert speeds["parallel-chunk"] == pytest.approx(1000 * 2 * bench.CHUNK / rows[-1]["ms_p50"], rel=0.01)
    int4 = bench.build("tiny", cpu, torch.float32, "int4")
    (row,) = bench.measure(int4, {"weights": "int4"}, ["fast"], [1], repeats=1)
    assert row["weights_gb"] < rows[0]["weights_gb"]


def test_prompts_have_openvla_length_and_bos(bench) -> None:
    vla = bench.build("tiny", torch.device("cpu"), torch.float32, "none")
    pixel_values, prompts = bench.inputs(vla, 3)
    assert pixel_values.shape[0] == 3 and len(prompts) == 3
    assert all(len(p) == bench.PROMPT_TOKENS and p[0] == 1 and p[1:].max() < vla.config.base_vocab_size for p in prompts)
