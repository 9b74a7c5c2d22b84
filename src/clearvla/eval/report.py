"""Evaluation results: per-episode records -> success rate with Wilson 95 % interval, per task; JSON and markdown."""

from __future__ import annotations

import json
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


@dataclass
class SuiteReport:
    """All episodes of one suite for one checkpoint."""

    checkpoint: str
    suite: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    seconds: float = 0.0

    @staticmethod
    def _summary(results: list[EpisodeResult]) -> dict[str, Any]:
        wins = sum(r.success for r in results)
        lo, hi = wilson_interval(wins, len(results))
        return {"episodes": len(results), "successes": wins, "success_rate": wins / max(len(results), 1), "ci95": [lo, hi]}

    def summary(self) -> dict[str, Any]:
        tasks = sorted({r.task for r in self.episodes})
        return {
            "checkpoint": self.checkpoint, "suite": self.suite, "seconds": round(self.seconds, 1),
            **self._summary(self.episodes),
            "per_task": {t: self._summary([r for r in self.episodes if r.task == t]) for t in tasks},
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "results": [asdict(r) for r in sorted(self.episodes, key=lambda r: r.index)]}

    def markdown(self) -> str:
        s = self.summary()
        lines = [f"### `{self.suite}`: {_pct(s)}", "", "| task | episodes | success | 95% CI |", "|---|---|---|---|"]
        for task, t in s["per_task"].items():
            lines.append(f"| {task} | {t['episodes']} | {t['success_rate']:.1%} | {t['ci95'][0]:.1%}–{t['ci95'][1]:.1%} |")
        failures = [r for r in self.episodes if not r.success]
        if failures:
            lines += ["", "Failures:", ""]
            lines += [f"- #{r.index} {r.task}: \"{r.instruction}\"" + (f" ([video]({r.video}))" if r.video else "") for r in failures]
        return "\n".join(lines)


def _pct(s: dict[str, Any]) -> str:
    return f"{s['success_rate']:.1%} ({s['successes']}/{s['episodes']}, 95% CI {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%})"


def summary_table(reports: list[SuiteReport]) -> str:
    """One markdown row per suite."""
    lines = ["| suite | episodes | success | 95% CI |", "|---|---|---|---|"]
    for r in reports:
        s = r.summary()
        lines.append(f"| {r.suite} | {s['episodes']} | {s['success_rate']:.1%} | {s['ci95'][0]:.1%}–{s['ci95'][1]:.1%} |")
    return "\n".join(lines)


def write_reports(reports: list[SuiteReport], out_dir: Path) -> tuple[Path, Path]:
    """report.json (every episode) and report.md (tables per suite) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps({"suites": [r.to_json() for r in reports]}, indent=2))
    body = [f"# Evaluation of `{reports[0].checkpoint}`", "", summary_table(reports), ""] + [r.markdown() + "\n" for r in reports]
    md_path.write_text("\n".join(body))
    return json_path, md_path
