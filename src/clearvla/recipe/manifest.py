"""What a finished recipe stage was: RUN/manifest.json, written when its training finished.

    {"recipe", "stage", "config_hash", "config" (the TrainConfig fields it trained with), "init" (the checkpoint it
     started from), "init_run" (that stage's run dir, or null), "datasets" ({name: {path, fingerprint, record}}),
     "vision" ({name: {path, fingerprint, command}} of the `vision:` backbone it loaded, {} if none),
     "git_commit", "started", "finished" (ISO 8601, UTC), "wall_s", "resumed", "steps", "final_checkpoint",
     "metrics" (the last logged training row)}

A stage whose manifest has the config hash and the dataset and backbone fingerprints the recipe gives now is done.
RUN/stage.json marks a stage whose training started (its config hash), so an interrupted run resumes only with the
same config.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
STARTED = "stage.json"


def config_hash(fields: dict[str, Any], upstream: str | None) -> str:
    """sha256 of a stage's TrainConfig fields (datasets by name, init as written) and of the hash of the stage it
    starts from, so that a stage changes whenever any stage before it in its chain does."""
    text = json.dumps({"fields": fields, "upstream": upstream}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(directory: Path) -> str:
    """A cheap sha256 of a dataset or checkpoint directory: the bytes of its metadata (files under meta/ and every
    .json file) and the name and size of every other file (videos and weights are not read)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        digest.update(rel.encode() + b"\0")
        if rel.startswith("meta/") or path.suffix == ".json":
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD's commit of the repository holding `cwd` (the current directory by default), "+dirty" when there are
    uncommitted changes; None outside a git repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is none (a torn write is never left: see `write_json`)."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=list) + "\n")
    os.replace(tmp, path)


def last_metrics(run_dir: Path) -> dict[str, Any]:
    """The last logged training row of a run (metrics.jsonl), {} if none."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    trained = [row for row in rows if "loss" in row]
    return trained[-1] if trained else {}
