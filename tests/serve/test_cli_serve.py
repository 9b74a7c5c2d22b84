"""`clearvla serve` options: safe defaults and one-line errors before anything is loaded."""

from __future__ import annotations

import pytest

from service_calls import act_once
from clearvla.cli import build_parser, main


def test_defaults_bind_loopback():
    args = build_parser("serve").parse_args(["serve", "--checkpoint", "ckpt"])
    assert (args.host, args.port, args.token, args.max_batch_size) == ("127.0.0.1", 8000, None, 8)


@pytest.mark.parametrize("extra, words", [
    ([], "not a checkpoint directory"),
    (["--limits", "missing.yaml"], "limits file missing.yaml does not exist"),
    (["--limits", "x.yaml", "--max-translation", "0.1"], "not both"),
    (["--max-translation", "-1"], "finite number >= 0"),
    (["--workspace", "1", "0", "0", "0", "1", "1"], "<= high"),
    (["--token", "short"], "at least 8"),
    (["--max-batch-size", "0"], "--max-batch-size must be positive"),
])
def test_bad_options_fail_with_one_line(tmp_path, capsys, extra, words):
    code = main(["serve", "--checkpoint", str(tmp_path / "nope"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert words in err, err


def test_bad_limits_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "limits.yaml"
    bad.write_text("robots: {arm: {max_translation: fast}}\n")
    assert main(["serve", "--checkpoint", str(tmp_path), "--limits", str(bad)]) == 2
    assert "max_translation must be a finite number" in capsys.readouterr().err


def test_quantized_model_serves(serve_checkpoint):
    """--quantize goes through the one loader predict and eval use: bitsandbytes layers in, actions out."""
    import numpy as np

    from clearvla.serve.app import load_model
    from clearvla.serve.service import PolicyService, ServeConfig
    from clearvla.serve.codecs import json_numpy_encode

    vla = load_model(serve_checkpoint, device="cpu", quantize="int8")
    assert any(type(m).__name__ == "Linear8bitLt" for m in vla.modules())
    service = PolicyService(vla, ServeConfig())
    payload = {"image": json_numpy_encode(np.zeros((32, 32, 3), np.uint8)), "instruction": "pick up the red block", "unnorm_key": "workcell"}

    response = act_once(service, payload)
    assert response.kind == "action" and response.action.shape == (7,) and np.isfinite(response.action).all()
