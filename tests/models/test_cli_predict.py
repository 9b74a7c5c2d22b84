import json

import numpy as np
from PIL import Image

from clearvla.cli import main


def _png(tmp_path, image):
    path = tmp_path / "obs.png"
    Image.fromarray(image).save(path)
    return path


def test_predict_json_prints_exactly_one_object(tiny_vla, tiny_checkpoint, rgb_image, tmp_path, capsys):
    png = _png(tmp_path, rgb_image)
    code = main(["predict", "--checkpoint", str(tiny_checkpoint), "--image", str(png),
                 "--instruction", "pick up the red block", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)  # the whole stdout is one JSON object
    assert set(result) == {"action", "token_ids"} and len(result["action"]) == 7 and len(result["token_ids"]) == 7
    assert result["token_ids"] == tiny_vla.predict_action_tokens(rgb_image, "pick up the red block").tolist()
    np.testing.assert_allclose(result["action"], tiny_vla.predict_action(rgb_image, "pick up the red block"))


def _fails_with_one_line(argv, capsys, expected):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert expected in err, err


def test_cli_errors_are_one_line(tiny_checkpoint, rgb_image, tmp_path, capsys):
    png = _png(tmp_path, rgb_image)
    base = ["predict", "--image", str(png), "--instruction", "go"]
    _fails_with_one_line(base + ["--checkpoint", str(tiny_checkpoint), "--unnorm-key", "bridge"], capsys, "available: workcell")
    _fails_with_one_line(base + ["--checkpoint", str(tmp_path / "nope")], capsys, "does not exist")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    _fails_with_one_line(["predict", "--checkpoint", str(tiny_checkpoint), "--image", str(bad), "--instruction", "go"],
                         capsys, "cannot read image")
