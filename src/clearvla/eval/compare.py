"""Paired comparison of two evaluations: the same episodes played by a baseline and a new checkpoint.

Two checkpoints played on the same scenes differ only where one succeeds and the other fails, so the honest test
is on those discordant pairs (exact McNemar), not two independent intervals. Episodes are paired by (suite, episode
index); each side may come from several `report.json` files (e.g. episodes 4000-4199 and 4200-4999).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clearvla.errors import InputError
from clearvla.eval.report import EpisodeResult, read_reports, summarize
from clearvla.eval.stats import exact_mcnemar, wilson_interval

Key = tuple[str, int]  # (suite, episode index)


def load_outcomes(paths: list[Path]) -> dict[Key, EpisodeResult]:
    """Every episode of the `report.json` files (or directories holding one) that `clearvla eval` wrote.
    An episode listed twice must have the same outcome (success and failure mode) in both places."""
    outcomes: dict[Key, EpisodeResult] = {}
    for path in paths:
        for report in read_reports(path):
            for episode in report.episodes:
                key = (report.suite, episode.index)
                seen = outcomes.setdefault(key, episode)
                if (seen.success, seen.failure) != (episode.success, episode.failure):
                    raise InputError(f"{path}: {report.suite} episode {episode.index} is listed with two different outcomes")
    return outcomes


def compare(baseline: dict[Key, EpisodeResult], new: dict[Key, EpisodeResult]) -> dict[str, Any]:
    """Per suite, over the episodes both sides played: each side's successes (Wilson 95 % interval) and failure
    modes, the pairs only `new` won and only the baseline won, and the exact McNemar p-value. Raises InputError
    when no episode was played by both."""
    shared = sorted(baseline.keys() & new.keys())
    if not shared:
        raise InputError("the two evaluations share no episode (same suite and episode index); "
                         "run both with the same --suite, --start and --episodes")
    suites: dict[str, Any] = {}
    for suite in sorted({s for s, _ in shared}):
        keys = [k for k in shared if k[0] == suite]
        won = sum(new[k].success and not baseline[k].success for k in keys)
        lost = sum(baseline[k].success and not new[k].success for k in keys)
        suites[suite] = {
            "episodes": len(keys), "first": keys[0][1], "last": keys[-1][1],
            "baseline": summarize([baseline[k] for k in keys]), "new": summarize([new[k] for k in keys]),
            "won": won, "lost": lost, "mcnemar_p": exact_mcnemar(won, lost),
        }
    return {"suites": suites, "unpaired": {"baseline": len(baseline) - len(shared), "new": len(new) - len(shared)}}


def markdown(result: dict[str, Any]) -> str:
    """The comparison as markdown: one row per suite, then failure modes side by side."""
    lines = ["| suite | episodes | baseline | new | new won / lost | exact McNemar p |", "|---|---|---|---|---|---|"]
    for suite, s in result["suites"].items():
        sides = [f"{x['successes']} ({x['success_rate']:.1%}, {x['ci95'][0]:.1%}–{x['ci95'][1]:.1%})"
                 for x in (s["baseline"], s["new"])]
        lines.append(f"| {suite} ({s['first']}–{s['last']}) | {s['episodes']} | {sides[0]} | {sides[1]} "
                     f"| {s['won']} / {s['lost']} | {s['mcnemar_p']:.3g} |")
    for suite, s in result["suites"].items():
        modes = sorted(s["baseline"]["failure_modes"].keys() | s["new"]["failure_modes"].keys())
        if modes:
            lines += ["", f"Failures in `{suite}` (baseline → new): "
                      + ", ".join(f"{m} {s['baseline']['failure_modes'].get(m, 0)} → {s['new']['failure_modes'].get(m, 0)}"
                                  for m in modes)]
    unpaired = result["unpaired"]
    if unpaired["baseline"] or unpaired["new"]:
        lines += ["", f"Left out, played by one side only: {unpaired['baseline']} baseline, {unpaired['new']} new episodes."]
    return "\n".join(lines)
