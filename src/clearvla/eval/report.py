"""Evaluation results: per-episode records -> success rate with Wilson 95 % interval, per task; JSON and markdown."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clearvla.eval.stats import wilson_interval


@dataclass(frozen=True)
class EpisodeResult:
    suite: str
    index: int
    task: str
    instruction: str
    success: bool
    steps: int
    video: str | None = None
    failure: str | None = None  # a key of clearvla.sim.failure.FAILURE_MODES; None for successes and for LIBERO


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Episodes, successes, success rate with its Wilson 95 % interval, and failure-mode counts of `results`."""
    wins = sum(r.success for r in results)
    lo, hi = wilson_interval(wins, len(results))
    modes = Counter(r.failure for r in results if r.failure is not None)
    return {"episodes": len(results), "successes": wins, "success_rate": wins / max(len(results), 1), "ci95": [lo, hi],
            "failure_modes": dict(sorted(modes.items()))}


@dataclass
class SuiteReport:
    """All episodes of one suite for one checkpoint."""

    checkpoint: str
    suite: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        tasks = sorted({r.task for r in self.episodes})
        return {
            "checkpoint": self.checkpoint, "suite": self.suite, "seconds": round(self.seconds, 1),
            **summarize(self.episodes),
            "per_task": {t: summarize([r for r in self.episodes if r.task == t]) for t in tasks},
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "results": [asdict(r) for r in sorted(self.episodes, key=lambda r: r.index)]}

    def markdown(self) -> str:
        s = self.summary()
        lines = [f"### `{self.suite}`: {_pct(s)}", "", "| task | episodes | success | 95% CI |", "|---|---|---|---|"]
        for task, t in s["per_task"].items():
            lines.append(f"| {task} | {t['episodes']} | {t['success_rate']:.1%} | {t['ci95'][0]:.1%}–{t['ci95'][1]:.1%} |")
        if s["failure_modes"]:
            lines += ["", *_failure_table(s)]
        failures = [r for r in self.episodes if not r.success]
        if failures:
            lines += ["", "Failures:", ""]
            lines += [f"- #{r.index} {r.task}: \"{r.instruction}\"" + (f" — {r.failure}" if r.failure else "")
                      + (f" ([video]({r.video}))" if r.video else "") for r in failures]
        return "\n".join(lines)


def _failure_table(summary: dict[str, Any]) -> list[str]:
    """Markdown: failed episodes per task and failure mode, then what each mode means."""
    from clearvla.sim.failure import FAILURE_MODES

    modes = [m for m in FAILURE_MODES if m in summary["failure_modes"]]
    lines = ["| failures by mode | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for task, t in [*summary["per_task"].items(), ("all", summary)]:
        lines.append(f"| {task} | " + " | ".join(str(t["failure_modes"].get(m, 0)) for m in modes) + " |")
    return lines + ["", *(f"- `{m}`: {FAILURE_MODES[m]}" for m in modes)]


def _pct(s: dict[str, Any]) -> str:
    return f"{s['success_rate']:.1%} ({s['successes']}/{s['episodes']}, 95% CI {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%})"


def failure_counts(report: SuiteReport) -> str:
    """One line of failure modes and their counts, most frequent first (e.g. "wrong_part 3, no_grasp 1"); "" when
    no failure has a mode."""
    modes = sorted(report.summary()["failure_modes"].items(), key=lambda item: -item[1])
    return ", ".join(f"{mode} {n}" for mode, n in modes)


def summary_table(reports: list[SuiteReport]) -> str:
    """One markdown row per suite."""
    lines = ["| suite | episodes | success | 95% CI |", "|---|---|---|---|"]
    for r in reports:
        s = r.summary()
        lines.append(f"| {r.suite} | {s['episodes']} | {s['success_rate']:.1%} | {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%} |")
    return "\n".join(lines)


def read_reports(path: Path) -> list[SuiteReport]:
    """The suites of a `report.json` that `write_reports` wrote (or of the directory holding it), every episode
    included. Raises InputError naming the file when it is missing or not such a report."""
    from clearvla.errors import InputError

    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{path}: no such report (give a report.json or the directory `clearvla eval` wrote)")
    try:
        return [SuiteReport(s["checkpoint"], s["suite"], [EpisodeResult(**r) for r in s["results"]], s["seconds"])
                for s in json.loads(file.read_text())["suites"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{file}: not a `clearvla eval` report ({type(e).__name__}: {e})") from e


def write_reports(reports: list[SuiteReport], out_dir: Path) -> tuple[Path, Path]:
    """report.json (every episode) and report.md (tables per suite) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps({"suites": [r.to_json() for r in reports]}, indent=2))
    body = [f"# Evaluation of `{reports[0].checkpoint}`", "", summary_table(reports), ""] + [r.markdown() + "\n" for r in reports]
    md_path.write_text("\n".join(body))
    return json_path, md_path
