"""Ship a trained run as clearvla's default model: copy its final checkpoint into the package, evaluate it
on every suite, and write the model card (data, steps, time, scores) beside the weights.

usage: python scripts/ship_default_model.py RUN_DIR [--episodes-train 50] [--episodes-heldout 30] [--start 0]
       [--execute K] [--center-crop]
(--start, --execute and --center-crop as in `clearvla eval`; the card records them.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from clearvla.assets import DEFAULT_MODEL
from clearvla.eval.report import write_reports
from clearvla.models.checkpoint import publish_permissions
from clearvla.eval.rollout import evaluate_suite
from clearvla.sim.expert import DEFAULT_STEP_NOISE

HELD_OUT = ("visual", "motion", "physical", "semantic", "ambiguous")


def training_seconds(run: Path) -> tuple[float, dict, list[dict]]:
    """(wall seconds estimated from logged samples/s, train_config, metrics rows) of a run directory."""
    config = json.loads((run / "train_config.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rate = sum(h["samples_per_s"] for h in history) / len(history) / config["batch_size"]
    return history[-1]["step"] / max(rate, 1e-9), config, history


def step_noise_option(dataset: Path) -> str:
    """` --step-noise M` when the dataset's expert ran with a per-step noise other than its default, else ''."""
    import pyarrow.parquet as pq

    episodes = pq.read_table(next((dataset / "meta" / "episodes").rglob("*.parquet")), columns=["clearvla/metadata"])
    noise = json.loads(episodes.column(0)[0].as_py()).get("expert_step_noise")
    return "" if noise is None or abs(noise - DEFAULT_STEP_NOISE) < 1e-9 else f" --step-noise {noise:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--episodes-train", type=int, default=50)
    parser.add_argument("--episodes-heldout", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", type=int, default=0, help="first train-suite episode (held-out suites start at 0)")
    parser.add_argument("--execute", type=int, default=None, help="chunk models: actions run open loop per forward")
    parser.add_argument("--center-crop", action="store_true")
    args = parser.parse_args()
    final = sorted((args.run / "checkpoints").glob("step-*"))[-1] / "model"
    seconds, config, history = training_seconds(args.run)
    stage1 = ""
    init = Path(config["init"])
    if init.is_dir() and (init.parents[2] / "train_config.json").is_file():  # RUN/checkpoints/step-N/model
        first, first_config, first_history = training_seconds(init.parents[2])
        seconds += first
        stage1 = (f"\n- **Stage 1**: {first_history[-1]['step']} steps from scratch, reading state entries"
                  f" {', '.join(map(str, first_config.get('proprio_indices') or ['all']))}, lr {first_config['lr']};"
                  f" this model fine-tunes it (the state MLP starts fresh).")

    staging = Path(tempfile.mkdtemp(prefix=".default_model-", dir=DEFAULT_MODEL.parent))
    shutil.copytree(final, staging, dirs_exist_ok=True)
    options = dict(workers=args.workers, videos="none", execute=args.execute, center_crop=args.center_crop)
    reports = [evaluate_suite(staging, "train", args.episodes_train, start=args.start, **options)]
    reports += [evaluate_suite(staging, s, args.episodes_heldout, **options) for s in HELD_OUT]
    write_reports(reports, args.run / "ship_eval")
    rows = "\n".join(
        f"| {r.suite} | {s['episodes']} | {s['success_rate']:.1%} | {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%} |"
        for r, s in ((r, r.summary()) for r in reports)
    )
    size_mb = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) / 2**20
    last = history[-1]
    wrist = "wrist_image" in (config.get("cameras") or ())
    noise = step_noise_option(Path(config["datasets"][0]))
    recorded = [json.loads((Path(d) / "meta" / "info.json").read_text())["total_episodes"] for d in config["datasets"]]
    state = ("no" if not config.get("proprio") else
             f"entries {', '.join(map(str, config['proprio_indices']))}" if config.get("proprio_indices") else "all entries")
    evaluation = (f"`clearvla eval --suite SUITE --episodes N{f' --execute {args.execute}' if args.execute else ''}"
                  f"{' --center-crop' if args.center_crop else ''}`"
                  + (f", `train` from episode {args.start} (scenes the demonstrations never showed), the held-out suites"
                     f" from episode 0" if args.start else ""))
    chunk = config.get("action_chunk", 0)
    output = (f"OpenVLA-OFT parallel decoding: {chunk}-step action chunks through an L1 head" if chunk
              else "OpenVLA's 7 action tokens, 256 bins each")
    fit = (f"action L1 (normalised) {last['action_l1']:.3f}, whole chunk {last['chunk_l1']:.3f}" if chunk
           else f"action-token accuracy {last['action_accuracy']:.3f}")
    patch = (f"\n- **Patch reconstruction** (training only): weight {config['patch_loss']}; each camera patch token also decodes its"
             f" own patch at 4×4 pixels (`patch_decoder.*`, unused at inference; final error {last['patch_loss']:.3f})."
             if config.get("patch_loss") else "")
    binding = (f"\n- **Binding words to parts**: prefix attention `{config.get('prefix_attention', 'causal')}`, learned"
               f" action-slot embeddings, and attention supervision (weight {config['attention_loss']}) from the"
               f" simulator's masks: the slots learn to look at the object the arm heads for, the named part and then its"
               f" target (training only; final"
               f" `attention_loss` {last.get('attention_loss', float('nan')):.3f})." if config.get("attention_loss") else "")
    focus = (f"\n- **Focus head** (training only): weight {config['focus_loss']}; the slots regress where that object shows"
             f" in each camera (`focus_head.*`, unused at inference; final `focus_loss` {last.get('focus_loss', float('nan')):.3f})."
             if config.get("focus_loss") else "")
    (staging / "README.md").write_text(f"""# clearvla default model

The `tiny` preset (OpenVLA's architecture: fused DINOv2-reg4 + SigLIP ViTs, fused projector, Llama; 
{config.get('image_size')}² images) trained from scratch on the clearvla workcell simulator.

- **Data**: {', '.join(config['datasets'])} — scripted-expert demonstrations of the `train` suite
  (`clearvla sim record --suite train --episodes {sum(recorded)} --image-size 128{'' if wrist else ' --no-wrist'} --seed 0{noise}`).
- **Inputs**: cameras {', '.join(config.get('cameras') or ['image'])}; robot state (proprio): {state}.
- **Output**: {output}.
- **Training**: mode `{config['mode']}`, {last['step']} steps × batch {config['batch_size']}, AdamW lr {config['lr']}
  ({config['schedule']}, {config['warmup_steps']} warmup), seed {config['seed']}; about {seconds / 60:.0f} min on a
  2-core CPU (both stages). Final train loss {last['loss']:.3f}, {fit}.{stage1}{patch}{binding}{focus}
- **Reproduce**: `make default-model` (record → `clearvla train` stage 1 and stage 2 → this card).
- **Size**: {size_mb:.1f} MB on disk (float32 safetensors).
- **Un-normalisation key**: `{next(iter(json.loads((staging / 'dataset_statistics.json').read_text())))}`.

## Closed-loop success (Wilson 95% intervals)

Measured as {evaluation}.

| suite | episodes | success | 95% CI |
|---|---|---|---|
{rows}

Only `train` is in distribution; the held-out suites are reported, not targeted.
""")
    publish_permissions(staging)
    if DEFAULT_MODEL.exists():
        shutil.rmtree(DEFAULT_MODEL)
    staging.rename(DEFAULT_MODEL)
    print((DEFAULT_MODEL / "README.md").read_text())


if __name__ == "__main__":
    main()
