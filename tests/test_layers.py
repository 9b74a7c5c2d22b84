"""The import contracts in pyproject.toml ([tool.importlinter]) hold: no package imports one above it in the layers
(cli > commands > serve | eval > sim | train | clarify > infer | data > models > ...), and no import cycles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers_and_form_no_cycles():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is not installed: pip install -e '.[dev]' (it is a dev extra)"
    # This checkout's sources, not whichever clearvla the environment has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([lint, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"an import breaks the layers or makes a cycle; lint-imports says:\n"
                                    f"{result.stdout}{result.stderr}")
