from dataclasses import replace

import numpy as np
import pytest
import torch

import synthetic
from clearvla.train.config import TrainConfig
from clearvla.errors import CheckpointError, ConfigError
from clearvla.models.vla import VLA
from clearvla.train.checkpointing import checkpoint_dirs
from clearvla.train.loop import train
from clearvla.train.modes import apply_mode
from clearvla.train.merge import merge_checkpoint

NORM = {"synthetic": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}}}


def _model():
    return VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM)


def _run(tmp_path, **kw):
    base = dict(run_dir=str(tmp_path / "run"), image_size=32, batch_size=8, max_steps=8, lr=1e-3, log_every=1,
                save_every=4, eval_every=0, num_workers=0, keep_last=5)
    return TrainConfig(**{**base, **kw})


def _fit(cfg, model=None):
    model = apply_mode(model or _model(), cfg.mode)
    return model, train(model, lambda start: synthetic.batches(model, start, cfg.batch_size), cfg)


def test_loss_falls_and_actions_are_learned(tmp_path):
    cfg = _run(tmp_path, max_steps=40, save_every=40)
    model, history = _fit(cfg)
    assert np.mean([h["loss"] for h in history[-5:]]) < 0.5 * np.mean([h["loss"] for h in history[:5]])
    assert history[-1]["action_accuracy"] > history[0]["action_accuracy"]
    image, text, action = synthetic.sample(1, 32)
    predicted = model.eval().predict_action(image, text)
    assert np.sign(predicted[0]) == np.sign(action[0])  # learned which way to push


def test_resume_continues_the_same_loss_curve(tmp_path):
    _, straight = _fit(_run(tmp_path / "a"))
    _fit(_run(tmp_path / "b", max_steps=4))
    _, resumed = _fit(replace(_run(tmp_path / "b"), resume=True))  # a fresh process would rebuild the same model
    assert [h["step"] for h in resumed] == [5, 6, 7, 8]
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight[4:]]  # bitwise, not approximately


def test_checkpoints_are_complete_and_only_the_last_k_are_kept(tmp_path):
    cfg = _run(tmp_path, max_steps=8, save_every=2, keep_last=2)
    _fit(cfg)
    dirs = checkpoint_dirs(tmp_path / "run")
    assert [d.name for d in dirs] == ["step-00000006", "step-00000008"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp*"))
    model = VLA.from_pretrained(dirs[-1] / "model")  # a standalone OpenVLA checkpoint
    assert model.norm_stats == NORM
    for name in ("metrics.jsonl", "curves.png", "train_config.json", "dataset_statistics.json"):
        assert (tmp_path / "run" / name).is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_lora_adapters_merge_into_a_standalone_checkpoint(tmp_path):
    cfg = _run(tmp_path, mode="lora", max_steps=6, save_every=6)
    model, _ = _fit(cfg)
    step = checkpoint_dirs(tmp_path / "run")[-1]
    assert (step / "adapter" / "adapter_model.safetensors").is_file() and not (step / "model").exists()
    merged_dir = merge_checkpoint(tmp_path / "run", tmp_path / "merged")
    assert (merged_dir / "dataset_statistics.json").is_file()
    merged = VLA.from_pretrained(merged_dir)
    assert not any("lora" in k for k in merged.state_dict())
    image, text, _ = synthetic.sample(3, 32)
    np.testing.assert_allclose(merged.predict_action(image, text), model.eval().predict_action(image, text))
    with pytest.raises(CheckpointError, match="already standalone"):
        full = _run(tmp_path / "full", max_steps=2, save_every=2)
        _fit(full)
        merge_checkpoint(tmp_path / "full" / "run", tmp_path / "m2")


def test_bf16_autocast_keeps_fp32_master_weights(tmp_path):
    model, history = _fit(_run(tmp_path, precision="bf16", max_steps=3, save_every=3))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.isfinite(history[-1]["loss"])


def test_grad_accumulation_matches_a_bigger_batch(tmp_path):
    _, big = _fit(_run(tmp_path / "a", batch_size=8, max_steps=3, save_every=3, clip_grad_norm=0))
    _, acc = _fit(_run(tmp_path / "b", batch_size=4, grad_accum=2, max_steps=3, save_every=3, clip_grad_norm=0))
    # same 8 samples per step; mean of two half-batch losses == loss of the full batch up to float error
    np.testing.assert_allclose([h["loss"] for h in acc], [h["loss"] for h in big], rtol=2e-3)


def _chunk_batches(model, start, batch_size, chunk):
    """synthetic's task with [K, A] targets: the same action K times (prompt-only tokens, no labels)."""
    from clearvla.data.batching import VLACollator

    collator, i = VLACollator(model.tokenizer, model.processor), start
    while True:
        items = [synthetic.sample(i + k, model.processor.image_size) for k in range(batch_size)]
        i += batch_size
        batch = collator.prompts([text for _, text, _ in items])
        batch["pixel_values"] = model.processor([image for image, _, _ in items])
        batch["actions"] = torch.tensor(np.stack([np.tile(a, (chunk, 1)) for _, _, a in items]), dtype=torch.float32)
        yield batch


def test_chunk_models_train_with_the_same_loop(tmp_path):
    cfg = _run(tmp_path, max_steps=100, save_every=100)
    model = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=3)
    history = train(model, lambda start: _chunk_batches(model, start, cfg.batch_size, 3), cfg)
    assert np.mean([h["loss"] for h in history[-5:]]) < 0.6 * np.mean([h["loss"] for h in history[:5]])
    assert {"action_l1", "chunk_l1"} <= set(history[-1]) and "action_accuracy" not in history[-1]
    image, text, action = synthetic.sample(1, 32)
    chunk = model.eval().predict_action_chunk(image, text)
    assert chunk.shape == (3, 7) and (np.sign(chunk[:, 0]) == np.sign(action[0])).all()
    saved = VLA.from_pretrained(checkpoint_dirs(tmp_path / "run")[-1] / "model")
    np.testing.assert_allclose(saved.predict_action_chunk(image, text), chunk, atol=1e-5)


def test_patch_loss_trains_the_decoder_and_is_logged_apart_from_the_action_loss(tmp_path):
    cfg = _run(tmp_path, max_steps=30, save_every=30, patch_loss=1.0)
    model, history = _fit(cfg, VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, patch_decoder=4))
    assert all("patch_loss" in h for h in history)
    assert np.mean([h["patch_loss"] for h in history[-5:]]) < 0.5 * np.mean([h["patch_loss"] for h in history[:5]])
    saved = VLA.from_pretrained(checkpoint_dirs(tmp_path / "run")[-1] / "model")
    assert saved.config.patch_decoder == 4
    torch.testing.assert_close(saved.patch_decoder.proj.weight, model.patch_decoder.proj.weight)


def test_auto_precision_is_bf16_on_cuda_and_on_cpus_with_native_bf16(tmp_path, monkeypatch):
    from clearvla.train import loop

    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("flags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    without = tmp_path / "plain"
    without.write_text("flags\t\t: fpu avx512f avx512bw avx512_vnni\n")
    assert loop.cpu_has_native_bf16(str(with_bf16)) and not loop.cpu_has_native_bf16(str(without))
    assert not loop.cpu_has_native_bf16(str(tmp_path / "missing"))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
        assert loop.bf16_autocast("auto", cpu) is native
        assert loop.bf16_autocast("auto", cuda) and loop.bf16_autocast("bf16", cpu)
        assert not loop.bf16_autocast("fp32", cpu) and not loop.bf16_autocast("fp32", cuda)


def test_bf16_asked_for_on_a_cpu_without_it_is_used_with_a_warning(monkeypatch, caplog):
    from clearvla.train import loop

    cpu = torch.device("cpu")
    for native, warned in ((False, True), (True, False)):
        caplog.clear()
        monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
        with caplog.at_level("WARNING", logger="clearvla.train.loop"):
            assert loop.bf16_autocast("bf16", cpu)
        assert ("without native bf16" in caplog.text) is warned


def test_validation_runs_every_eval_every_steps_whatever_log_every_is(tmp_path):
    cfg = _run(tmp_path, max_steps=6, save_every=6, log_every=4, eval_every=3, eval_batches=1)
    model = apply_mode(_model(), cfg.mode)
    history = train(model, lambda start: synthetic.batches(model, start, cfg.batch_size), cfg,
                    val_batches=lambda: synthetic.batches(model, 0, cfg.batch_size))
    assert [h["step"] for h in history] == [3, 4, 6]
    assert ["val_loss" in h for h in history] == [True, False, True]


def _moved(before: dict, module: torch.nn.Module, prefix: str) -> float:
    return max((p.detach() - before[f"{prefix}.{n}"]).abs().max().item() for n, p in module.named_parameters())


def test_vision_lr_scale_slows_only_the_backbone_and_resumes(tmp_path):
    moved = {}
    for scale in (1.0, 0.01):
        model = _model()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        _fit(_run(tmp_path / str(scale), max_steps=3, save_every=3, vision_lr_scale=scale, clip_grad_norm=0), model)
        moved[scale] = (_moved(before, model.vision_backbone, "vision_backbone"),
                        _moved(before, model.projector, "projector"))
    # Adam steps scale with the rate: the backbone moves ~100x less, the projector as far as at scale 1
    assert moved[0.01][0] < 0.05 * moved[1.0][0]
    assert moved[0.01][1] == pytest.approx(moved[1.0][1], rel=0.2)
    _, straight = _fit(_run(tmp_path / "a", vision_lr_scale=0.1))
    _fit(_run(tmp_path / "b", max_steps=4, vision_lr_scale=0.1))
    _, resumed = _fit(replace(_run(tmp_path / "b", vision_lr_scale=0.1), resume=True))
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight[4:]]


def test_vision_lr_scale_must_be_positive():
    with pytest.raises(ConfigError, match="vision_lr_scale must be > 0.*frozen-vision"):
        TrainConfig(vision_lr_scale=0)
