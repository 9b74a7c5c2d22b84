"""Ship a trained run as clearvla's default model: copy its final checkpoint into the package, evaluate it
on every suite, and write the model card (data, steps, time, scores) beside the weights. Stages are followed back
through each run's `init`; a chain that starts from a shipped model (the previous default) carries its card's
stages, recordings and time over.

usage: python scripts/ship_default_model.py RUN_DIR [--episodes-train 50] [--episodes-heldout 30] [--start 0]
       [--center-crop] [--train-report REPORT]
(--start and --center-crop as in `clearvla eval`; the card records them. A chunk model is played as its checkpoint's
`execute_actions` says, as `clearvla eval` and `clearvla demo` play it. --train-report reuses a
`clearvla eval` report of the run's final checkpoint on exactly those train episodes instead of playing them again.)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from clearvla.assets import DEFAULT_MODEL
from clearvla.eval.report import SuiteReport, failure_counts, read_reports, write_reports
from clearvla.eval.workcell import evaluate_suite
from clearvla.models.checkpoint import publish_permissions
from clearvla.sim.arm import HOME_QPOS
from clearvla.sim.expert import DEFAULT_STEP_NOISE

HELD_OUT = ("visual", "motion", "physical", "semantic", "ambiguous")


def training_seconds(run: Path) -> tuple[float, dict, list[dict]]:
    """(wall seconds estimated from logged samples/s, train_config, metrics rows) of a run directory."""
    config = json.loads((run / "train_config.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rate = sum(h["samples_per_s"] for h in history) / len(history) / config["batch_size"]
    return history[-1]["step"] / max(rate, 1e-9), config, history


def stages(run: Path) -> list[tuple[Path, float, dict, list[dict]]]:
    """(run dir, seconds, train_config, metrics rows) of `run` and of each run it was initialised from, first
    stage first (a stage's `init` is RUN/checkpoints/step-N/model)."""
    chain = []
    while True:
        chain.append((run, *training_seconds(run)))
        init = Path(chain[-1][2]["init"])
        run = init.parent.parent.parent  # RUN of RUN/checkpoints/step-N/model ("." for a shorter path)
        if not (init.is_dir() and (run / "train_config.json").is_file()):
            return chain[::-1]


def inherited(chain: list[tuple[Path, float, dict, list[dict]]]) -> tuple[list[str], list[str], float]:
    """(stage lines, recording commands, minutes) carried over from the model card of the checkpoint the first
    stage started from, when that is a shipped model (e.g. the previous default) rather than a preset or a run.
    Leading runs the card already names (the run that made the shipped model, when this chain continues it) are
    removed from `chain`: the card counts them."""
    card = Path(chain[0][2]["init"]) / "README.md"
    if not card.is_file():
        return [], [], 0.0
    text = card.read_text()
    while len(chain) > 1 and f"({chain[0][0]})" in text:
        del chain[0]
    data = re.search(r"^- \*\*Data\*\*: .*$", text, re.M)
    training = re.search(r"^- \*\*Training\*\*: (.*?)(?=^- )", text, re.M | re.S)
    lines = re.findall(r"^- \*\*Stage \d+\*\* .*$", text, re.M)
    if training is None or not lines:
        raise SystemExit(f"{card}: not a clearvla model card with Training and Stage lines")
    minutes = float(re.search(r"about (\d+) min", training.group(1)).group(1))  # type: ignore[union-attr]
    # Shipping a run again (a new card for the same weights): the card already counts its stages and minutes.
    again = [stage for stage in chain if f"({stage[0]})" in text]
    lines = [line for line in lines if not any(f"({stage[0]})" in line for stage in again)]
    minutes -= sum(stage[1] for stage in again) / 60
    steps = re.search(r"(\d+) steps ×", training.group(1)).group(1)  # type: ignore[union-attr]
    lr = re.search(r"lr ([0-9.e-]+)", training.group(1)).group(1)  # type: ignore[union-attr]
    # The card's own stage ("this model: ... as above") gets its steps and lr spelled out.
    lines[-1] = re.sub(r", this model: fine-tuned from stage (\d+), as above\.$",
                       rf": {steps} steps from stage \1, lr {lr}.", lines[-1])
    return lines, re.findall(r"`(clearvla sim record [^`]*)`", data.group(0)) if data else [], minutes


def handover_name(checkpoint: Path, shipped_as: str) -> str:
    """How a card names the model a handover recording started from. The package's default model is replaced by
    shipping, and a copy of a shipped model (a directory with its own card) is not made by `make default-model`: both
    are named by the stage their weights were, not by a path that will hold other weights or none."""
    if checkpoint.resolve() == DEFAULT_MODEL.resolve():
        return f"<{shipped_as}>"
    card = checkpoint / "README.md"
    stage = re.search(r"^- \*\*Stage (\d+)\*\* \(([^)]*)\), this model", card.read_text(), re.M) if card.is_file() else None
    return f"<stage {stage.group(1)}, the final checkpoint of {stage.group(2)}>" if stage else str(checkpoint)


def record_command(dataset: Path, shipped_as: str = "the shipped default model") -> str:
    """The `clearvla sim record` command that made a dataset, from its episode count, episode metadata and the
    arm's first pose (the home posture, or a random start)."""
    import pyarrow.parquet as pq

    info = json.loads((dataset / "meta" / "info.json").read_text())
    episodes = pq.read_table(next((dataset / "meta" / "episodes").rglob("*.parquet")), columns=["clearvla/metadata"])
    meta = json.loads(episodes.column(0)[0].as_py())
    noise = meta.get("expert_step_noise")
    options = "" if noise is None or abs(noise - DEFAULT_STEP_NOISE) < 1e-9 else f" --step-noise {noise:g}"
    first_state = pq.read_table(next((dataset / "data").rglob("*.parquet")), columns=["observation.state"]).column(0)[0]
    home = np.allclose(np.asarray(first_state.as_py())[7:], HOME_QPOS, atol=1e-3)  # joints of episode 0's first frame
    options += " --home-start" if home else ""
    options += "" if "observation.images.wrist_image" in info["features"] else " --no-wrist"
    options += f" --start {meta['index']}" if meta["index"] else ""  # skipped episodes before it write nothing
    if "handover_checkpoint" in meta:
        window = meta.get("handover_window", [0.0, 0.5])
        options += f" --handover {handover_name(Path(meta['handover_checkpoint']), shipped_as)}"
        options += "" if window == [0.0, 0.5] else f" --handover-window {window[0]:g} {window[1]:g}"
    return (f"clearvla sim record --suite {meta['suite']} --episodes {info['total_episodes']} --out {dataset} --image-size {meta['image_size']}"
            f" --seed {meta['expert_seed']}{options}")


def state_entries(config: dict) -> str:
    if not config.get("proprio"):
        return "no robot state"
    indices = config.get("proprio_indices")
    return f"state entries {', '.join(map(str, indices))}" if indices else "all state entries"


def output_line(model_config: dict) -> str:
    """The card's Output line from a checkpoint's config.json: the action head and, for chunk models, how much of each
    chunk a closed-loop policy runs (`execute_actions`), since that is how the card's scores were played."""
    extra = model_config.get("clearvla", {})
    chunk, execute = extra.get("action_chunk", 0), extra.get("execute_actions", 0)
    if not chunk:
        return "OpenVLA's 7 action tokens, 256 bins each"
    played = (f"the first {execute} actions of each chunk run before the next forward (`execute_actions` in config.json)"
              if execute and execute < chunk else "each whole chunk runs before the next forward")
    return f"OpenVLA-OFT parallel decoding: {chunk}-step action chunks through an L1 head; {played}"


def train_report(path: Path, checkpoint: Path, start: int, episodes: int) -> SuiteReport:
    """The `train` suite of a `clearvla eval` report, checked to be `checkpoint` on episodes start..start+episodes-1
    (it must have been played with the same --center-crop and no --execute: the report does not record them)."""
    train = [r for r in read_reports(path) if r.suite == "train"]
    if not train:
        raise SystemExit(f"{path}: no train suite in this report")
    report = train[0]
    if Path(report.checkpoint).resolve() != checkpoint.resolve():
        raise SystemExit(f"{path}: evaluates {report.checkpoint}, not the run's final checkpoint {checkpoint}")
    if sorted(e.index for e in report.episodes) != list(range(start, start + episodes)):
        raise SystemExit(f"{path}: its train episodes are not exactly {start}..{start + episodes - 1} "
                         f"(--start {start} --episodes-train {episodes})")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--episodes-train", type=int, default=50)
    parser.add_argument("--episodes-heldout", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", type=int, default=0, help="first train-suite episode (held-out suites start at 0)")
    parser.add_argument("--center-crop", action="store_true")
    parser.add_argument("--train-report", type=Path, default=None,
                        help="report.json of `clearvla eval` on the final checkpoint and these train episodes: reused")
    args = parser.parse_args()
    final = sorted((args.run / "checkpoints").glob("step-*"))[-1] / "model"
    reused = train_report(args.train_report, final, args.start, args.episodes_train) if args.train_report else None
    chain = stages(args.run)
    _, _, config, history = chain[-1]
    before, before_recordings, before_minutes = inherited(chain)
    seconds = sum(stage[1] for stage in chain) + 60 * before_minutes
    n_stages = len(before) + len(chain)
    earlier = "".join(f"\n{line}" for line in before) + "".join(
        f"\n- **Stage {len(before) + i + 1}** ({run}): {rows[-1]['step']} steps"
        f" {f'from stage {len(before) + i}' if before or i else 'from scratch'}"
        f" on {', '.join(c['datasets'])}, {state_entries(c)}, lr {c['lr']}."
        for i, (run, _, c, rows) in enumerate(chain[:-1])
    )
    if earlier:
        earlier += f"\n- **Stage {n_stages}** ({args.run}), this model: fine-tuned from stage {n_stages - 1}, as above."
    datasets = dict.fromkeys(d for _, _, c, _ in chain for d in c["datasets"])
    # One command per dataset; the card's own commands win (it knew which model a handover recording started from).
    commands = {re.search(r"--out (\S+)", c).group(1): c for c in before_recordings}  # type: ignore[union-attr]
    for d in datasets:
        commands.setdefault(d, record_command(Path(d), f"stage {len(before)}, the previous default model"))
    recordings = "; ".join(f"`{command}`" for command in commands.values())

    staging = Path(tempfile.mkdtemp(prefix=".default_model-", dir=DEFAULT_MODEL.parent))
    shutil.copytree(final, staging, dirs_exist_ok=True)
    options = dict(workers=args.workers, videos="none", center_crop=args.center_crop)
    if reused is None:
        reused = evaluate_suite(staging, "train", args.episodes_train, start=args.start, **options)
    reports = [reused]
    reports += [evaluate_suite(staging, s, args.episodes_heldout, **options) for s in HELD_OUT]
    write_reports(reports, args.run / "ship_eval")
    rows = "\n".join(
        f"| {r.suite} | {s['episodes']} | {s['success_rate']:.1%} | {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%} |"
        for r, s in ((r, r.summary()) for r in reports)
    )
    modes = "; ".join(f"{r.suite}: {counts}" for r in reports if (counts := failure_counts(r)))
    size_mb = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) / 2**20
    last = history[-1]
    evaluation = (f"`clearvla eval --suite SUITE --episodes N{' --center-crop' if args.center_crop else ''}`"
                  + (f", `train` from episode {args.start} (scenes the demonstrations never showed), the held-out suites"
                     f" from episode 0" if args.start else ""))
    chunk = config.get("action_chunk", 0)
    output = output_line(json.loads((staging / "config.json").read_text()))
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

- **Data**: scripted-expert demonstrations of the `train` suite: {recordings}.
- **Inputs**: cameras {', '.join(config.get('cameras') or ['image'])}; {state_entries(config)}.
- **Output**: {output}.
- **Training**: mode `{config['mode']}`, {last['step']} steps × batch {config['batch_size']}, AdamW lr {config['lr']}
  ({config['schedule']}, {config['warmup_steps']} warmup), seed {config['seed']}; about {seconds / 60:.0f} min on a
  2-core CPU ({f'all {n_stages} stages' if n_stages > 1 else 'one stage'}). Final train loss {last['loss']:.3f}, {fit}.{earlier}{patch}{binding}{focus}
- **Reproduce**: `make default-model` (record → `clearvla train`{f' × {n_stages} stages' if n_stages > 1 else ''} → this card).
- **Size**: {size_mb:.1f} MB on disk (float32 safetensors).
- **Un-normalisation key**: `{next(iter(json.loads((staging / 'dataset_statistics.json').read_text())))}`.

## Closed-loop success (Wilson 95% intervals)

Measured as {evaluation}.

| suite | episodes | success | 95% CI |
|---|---|---|---|
{rows}

Only `train` is in distribution; the held-out suites are reported, not targeted. Failure modes (`clearvla.sim.failure`;
`wrong_part` is a grounding error): {modes}.
""")
    publish_permissions(staging)
    if DEFAULT_MODEL.exists():
        shutil.rmtree(DEFAULT_MODEL)
    staging.rename(DEFAULT_MODEL)
    print((DEFAULT_MODEL / "README.md").read_text())


if __name__ == "__main__":
    main()
