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


def test_predict_with_a_wrist_camera_and_the_robot_state(tmp_path, capsys):
    """Issue 10: `--camera NAME=FILE` and `--proprio` feed a multi-input model; missing ones are one-line errors."""
    from clearvla.data.stats import compute_statistics
    from clearvla.models.vla import VLA

    rng = np.random.default_rng(0)
    stats = {"cell": compute_statistics(rng.normal(0, 0.01, (32, 7)), rng.normal(0, 1, (32, 4)), 2)}
    vla = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=4, norm_stats=stats)
    ckpt = vla.save_pretrained(tmp_path / "ckpt")
    front, wrist = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    Image.fromarray(front).save(tmp_path / "front.png")
    Image.fromarray(wrist).save(tmp_path / "wrist.png")
    base = ["predict", "--checkpoint", str(ckpt), "--image", str(tmp_path / "front.png"), "--instruction", "push it"]
    assert main(base + ["--camera", f"wrist_image={tmp_path / 'wrist.png'}", "--proprio", "0.1", "0", "0", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["token_ids"]
    expected = vla.predict_action_tokens({"image": front, "wrist_image": wrist}, "push it", proprio=np.array([0.1, 0, 0, 1]))
    assert got == expected.tolist()
    _fails_with_one_line(base + ["--proprio", "0", "0", "0", "0"], capsys, "lacks camera(s) ['wrist_image']")
    _fails_with_one_line(base + ["--camera", f"wrist_image={tmp_path / 'wrist.png'}"], capsys, "pass proprio")
    _fails_with_one_line(base + ["--camera", "wrist.png"], capsys, "NAME=FILE")
