import numpy as np
import pytest

from clearvla.actions.normalize import NormStats, action_stats
from clearvla.errors import InputError, UnnormKeyError

STATS = {"q01": [-1.0, 0.0, 2.0], "q99": [1.0, 4.0, 2.0], "min": [-2.0, 0.0, 2.0], "max": [2.0, 5.0, 2.0], "mask": [True, False, True]}


def test_normalize_respects_mask_and_constant_dims():
    s = NormStats.from_dict(STATS)
    x = np.array([[0.5, 3.0, 2.0], [5.0, -1.0, 2.0]])
    out = s.normalize(x)
    np.testing.assert_allclose(out[:, 0], [0.5, 1.0], atol=1e-7)  # clipped to [-1, 1]
    np.testing.assert_array_equal(out[:, 1], [3.0, -1.0])  # unmasked: untouched
    np.testing.assert_array_equal(out[:, 2], [0.0, 0.0])  # min == max -> 0


def test_unnormalize_inverts_within_bounds():
    s = NormStats.from_dict({"q01": [-0.02, 1.0], "q99": [0.02, 3.0]})  # mask defaults to all true
    x = np.array([0.013, 2.5])
    np.testing.assert_allclose(s.unnormalize(s.normalize(x)), x, atol=1e-7)
    np.testing.assert_allclose(s.unnormalize(np.array([-1.0, 1.0])), [-0.02, 3.0])


def test_wrong_width_names_shapes():
    with pytest.raises(InputError, match=r"\[\.\.\., 3\]"):
        NormStats.from_dict(STATS).normalize(np.zeros(4))


def test_unnorm_key_errors_list_the_keys():
    stats = {"bridge_orig": {"action": STATS}, "fractal20220817_data": {"action": STATS}}
    with pytest.raises(UnnormKeyError, match="bridge_orig, fractal20220817_data"):
        action_stats(stats, None)
    with pytest.raises(UnnormKeyError, match="unknown unnorm_key 'libero'.*bridge_orig"):
        action_stats(stats, "libero")
    assert action_stats({"only": {"action": STATS}}, None).dim == 3
