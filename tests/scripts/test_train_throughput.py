"""benchmarks/train_throughput.py: the default model's configuration, and one round-robin round of tiny steps."""

from __future__ import annotations

BENCHMARK = "train_throughput"  # the `bench` fixture (conftest.py) imports benchmarks/train_throughput.py


def test_the_benchmarked_config_is_the_default_models(bench) -> None:
    cfg = bench.default_config(32, precision="bf16")
    assert cfg.cameras == ("image", "wrist_image") and cfg.proprio and cfg.proprio_indices == (0, 1, 2, 5, 6)
    assert cfg.action_chunk == 8 and cfg.prefix_attention == "bidirectional"
    assert (cfg.patch_loss, cfg.attention_loss, cfg.focus_loss) == (1.0, 1.0, 1.0)
    assert (cfg.batch_size, cfg.precision) == (32, "bf16")
    assert bench.BASELINE == bench.VARIANTS[0] and len(set(bench.VARIANTS)) == len(bench.VARIANTS)


def test_one_round_of_every_kind_of_variant(bench, tmp_path) -> None:
    from clearvla.sim.record import record_demos

    dataset = tmp_path / "demos"
    record_demos("train", 2, dataset, image_size=128, seed=0)
    variants = (bench.BASELINE, bench.Variant("bf16"), bench.Variant(fused=False), bench.Variant(workers=1))
    found = bench.throughput(dataset, 2, rounds=1, steps=1, cache=tmp_path / "cache", variants=variants)
    rows = found["rows"]
    assert [r["variant"] for r in rows] == [v.name for v in variants] and rows[0]["ratio"] == 1.0
    assert all(r["samples_per_s"] > 0 and len(r["samples_per_s_rounds"]) == 1 for r in rows)
    assert found["gflops_per_sample"]["single"] < found["gflops_per_sample"]["fused"]
