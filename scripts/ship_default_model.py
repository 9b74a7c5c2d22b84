"""Ship a trained run as clearvla's default model: copy its final checkpoint into the package, evaluate it
on every suite, and write the model card (data, steps, time, scores) beside the weights. The card is written from the
manifests `clearvla recipe run` leaves in each stage's run directory, followed back through each stage's init; a chain
that starts from a shipped model (the previous default) carries its card's stages, recordings and time over.

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

from clearvla.assets import DEFAULT_MODEL
from clearvla.eval.report import SuiteReport, failure_counts, read_reports, write_reports
from clearvla.eval.workcell import evaluate_suite
from clearvla.models.checkpoint import publish_permissions

HELD_OUT = ("visual", "motion", "physical", "semantic", "ambiguous")


def stages(run: Path) -> list[dict]:
    """The manifests (clearvla.recipe.manifest) of `run` and of each stage it was initialised from, first stage first."""
    chain = []
    while run is not None:
        path = run / "manifest.json"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: ship a stage `clearvla recipe run` finished")
        chain.append(json.loads(path.read_text()))
        run = Path(chain[-1]["init_run"]) if chain[-1]["init_run"] else None
    return chain[::-1]


def inherited(chain: list[dict]) -> tuple[list[str], list[str], float]:
    """(stage lines, recording commands, minutes) carried over from the model card of the checkpoint the first
    stage started from, when that is a shipped model (e.g. the previous default) rather than a preset or a run.
    Leading runs the card already names (the run that made the shipped model, when this chain continues it) are
    removed from `chain`: the card counts them."""
    card = Path(chain[0]["init"]) / "README.md"
    if not card.is_file():
        return [], [], 0.0
    text = card.read_text()
    while len(chain) > 1 and f"({_run(chain[0])})" in text:
        del chain[0]
    data = re.search(r"^- \*\*Data\*\*: .*$", text, re.M)
    training = re.search(r"^- \*\*Training\*\*: (.*?)(?=^- )", text, re.M | re.S)
    lines = re.findall(r"^- \*\*Stage \d+\*\* .*$", text, re.M)
    if training is None or not lines:
        raise SystemExit(f"{card}: not a clearvla model card with Training and Stage lines")
    minutes = float(re.search(r"about (\d+) min", training.group(1)).group(1))  # type: ignore[union-attr]
    # Shipping a run again (a new card for the same weights): the card already counts its stages and minutes.
    again = [stage for stage in chain if f"({_run(stage)})" in text]
    lines = [line for line in lines if not any(f"({_run(stage)})" in line for stage in again)]
    minutes -= sum(stage["wall_s"] for stage in again) / 60
    steps = re.search(r"(\d+) steps ×", training.group(1)).group(1)  # type: ignore[union-attr]
    lr = re.search(r"lr ([0-9.e-]+)", training.group(1)).group(1)  # type: ignore[union-attr]
    # The card's own stage ("this model: ... as above") gets its steps and lr spelled out.
    lines[-1] = re.sub(r", this model: fine-tuned from stage (\d+), as above\.$",
                       rf": {steps} steps from stage \1, lr {lr}.", lines[-1])
    return lines, re.findall(r"`(clearvla sim record [^`]*)`", data.group(0)) if data else [], minutes


def _run(manifest: dict) -> str:
    return manifest["config"]["run_dir"]


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


def stage_lines(chain: list[dict], before: list[str], before_recordings: list[str]) -> tuple[str, str]:
    """(the card's Stage lines after the inherited ones, its recording commands) from the stages' manifests: what
    each stage trained on, and the `clearvla sim record` command of every dataset, as the recipe ran them."""
    n_stages = len(before) + len(chain)
    earlier = "".join(f"\n{line}" for line in before) + "".join(
        f"\n- **Stage {len(before) + i + 1}** ({_run(m)}): {m['steps']} steps"
        f" {f'from stage {len(before) + i}' if before or i else 'from scratch'}"
        f" on {', '.join(m['config']['datasets'])}, {state_entries(m['config'])}, lr {m['config']['lr']}."
        for i, m in enumerate(chain[:-1])
    )
    if earlier:
        earlier += f"\n- **Stage {n_stages}** ({_run(chain[-1])}), this model: fine-tuned from stage {n_stages - 1}, as above."
    # One command per dataset; the card's own commands win (it knew which model a handover recording started from).
    commands = {re.search(r"--out (\S+)", c).group(1): c for c in before_recordings}  # type: ignore[union-attr]
    for m in chain:
        for dataset in m["datasets"].values():
            commands.setdefault(dataset["path"], dataset["record"])
    return earlier, "; ".join(f"`{command}`" for command in commands.values())


def evaluate(model: Path, args: argparse.Namespace, train: SuiteReport | None) -> list[SuiteReport]:
    """The train suite (`train` when given: a reused report) and every held-out suite, written to RUN/ship_eval."""
    options = dict(workers=args.workers, videos="none", center_crop=args.center_crop)
    if train is None:
        train = evaluate_suite(model, "train", args.episodes_train, start=args.start, **options)
    reports = [train, *(evaluate_suite(model, s, args.episodes_heldout, **options) for s in HELD_OUT)]
    write_reports(reports, args.run / "ship_eval")
    return reports


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
    chain = stages(args.run)
    final = Path(chain[-1]["final_checkpoint"]) / "model"
    reused = train_report(args.train_report, final, args.start, args.episodes_train) if args.train_report else None
    config, last = chain[-1]["config"], chain[-1]["metrics"]
    before, before_recordings, before_minutes = inherited(chain)
    seconds = sum(stage["wall_s"] for stage in chain) + 60 * before_minutes
    n_stages = len(before) + len(chain)
    earlier, recordings = stage_lines(chain, before, before_recordings)

    staging = Path(tempfile.mkdtemp(prefix=".default_model-", dir=DEFAULT_MODEL.parent))
    shutil.copytree(final, staging, dirs_exist_ok=True)
    reports = evaluate(staging, args, reused)
    rows = "\n".join(
        f"| {r.suite} | {s['episodes']} | {s['success_rate']:.1%} | {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%} |"
        for r, s in ((r, r.summary()) for r in reports)
    )
    modes = "; ".join(f"{r.suite}: {counts}" for r in reports if (counts := failure_counts(r)))
    size_mb = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) / 2**20
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
- **Reproduce**: `make default-model` at commit {chain[-1]['git_commit']} (`clearvla recipe run {chain[-1]['recipe']}`:
  record → train{f' × {n_stages} stages' if n_stages > 1 else ''}; each stage's manifest.json has its config hash and dataset
  fingerprints → this card).
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
