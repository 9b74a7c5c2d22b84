"""PNG training curves from a run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = (("loss", "val_loss"), ("action_accuracy", "val_action_accuracy"), ("action_l1", "val_action_l1"))


def plot_curves(metrics_file: Path, out: Path) -> Path:
    """Loss, action-token accuracy and action L1 against step, train and val, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2))
    for ax, keys in zip(axes, PANELS):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points), marker="." if key.startswith("val_") else None, label=key)
        ax.set_xlabel("step")
        ax.set_title(keys[0].replace("_", " "))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
