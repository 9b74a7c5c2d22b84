"""The one policy loader: a checkpoint in this process, or a server (tests/eval/test_eval.py plays through one)."""

import pytest

from clearvla.errors import CheckpointError, ConfigError
from clearvla.infer.loading import PolicyInputs, PolicySource, inspect_policy, load_policy
from clearvla.infer.policy import VLAPolicy
from clearvla.models.vla import VLA

STATS = {"workcell": {"action": {"q01": [-0.03] * 6 + [0.0], "q99": [0.03] * 6 + [1.0], "mask": [True] * 6 + [False]}}}


def test_inspecting_a_checkpoint_tells_what_the_loaded_policy_reads(tmp_path):
    checkpoint = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=8,
                                 norm_stats=STATS).save_pretrained(tmp_path / "ckpt")
    source = PolicySource(str(checkpoint), execute=1)
    inputs = inspect_policy(source)
    assert inputs == PolicyInputs(("image", "wrist_image"), 32, 8, ("workcell",))
    policy, loaded = load_policy(source)
    assert isinstance(policy, VLAPolicy) and policy.execute == 1 and loaded == inputs


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        PolicySource()
    with pytest.raises(ConfigError, match="dtype, quantize: set on the server"):
        PolicySource(server="http://127.0.0.1:1", dtype="bfloat16", quantize="int8")
    with pytest.raises(ConfigError, match="temporal ensemble"):
        PolicySource(server="http://127.0.0.1:1", ensemble=0.01)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        inspect_policy(PolicySource(str(tmp_path)))
    with pytest.raises(ConfigError, match="cannot read http://127.0.0.1:1/metadata"):
        inspect_policy(PolicySource(server="http://127.0.0.1:1"))
