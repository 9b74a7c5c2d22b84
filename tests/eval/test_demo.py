import json

from clearvla.assets import DEFAULT_MODEL, default_model_dir
from clearvla.cli import main
from clearvla.models.vla import VLA


def test_shipped_default_model_loads_and_is_small():
    model = VLA.from_pretrained(default_model_dir())
    size = sum(f.stat().st_size for f in DEFAULT_MODEL.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    assert (DEFAULT_MODEL / "dataset_statistics.json").is_file() and (DEFAULT_MODEL / "README.md").is_file()
    assert set(model.norm_stats) == {"workcell_train_3k"}


def test_demo_runs_every_suite_and_writes_videos_and_reports(tmp_path, capsys):
    code = main(["demo", "--episodes", "1", "--workers", "1", "--out", str(tmp_path),
                 "--suites", "train", "ambiguous"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| train | 1 |" in out and "| ambiguous | 1 |" in out
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
    suites = json.loads((tmp_path / "report.json").read_text())["suites"]
    assert [s["suite"] for s in suites] == ["train", "ambiguous"]
    failed = [r for s in suites for r in s["results"] if not r["success"]]
    assert all(r["failure"] for r in failed) and ("(failures: " in out) == bool(failed)
