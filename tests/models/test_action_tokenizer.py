import numpy as np
import pytest

from clearvla.actions.tokenizer import ActionTokenizer
from clearvla.errors import InputError


@pytest.fixture
def tok() -> ActionTokenizer:
    return ActionTokenizer(vocab_size=32000, n_bins=256)


def test_ids_follow_openvla_formula(tok):
    a = np.array([-1.0, -0.5, 0.0, 0.3, 1.0])
    bins = np.linspace(-1, 1, 256)
    np.testing.assert_array_equal(tok.encode(a), 32000 - np.digitize(a, bins))


def test_edges_and_out_of_range(tok):
    assert tok.encode(np.array([1.0]))[0] == 32000 - 256  # +1 lands on the lowest action id
    assert tok.encode(np.array([-1.0]))[0] == 31999
    np.testing.assert_array_equal(tok.encode(np.array([5.0, -7.0])), tok.encode(np.array([1.0, -1.0])))
    assert tok.is_action_token(tok.encode(np.linspace(-3, 3, 101))).all()


def test_decode_returns_bin_centres_and_clips_stray_ids(tok):
    centres = (tok.bins[:-1] + tok.bins[1:]) / 2
    assert tok.decode(np.array([31999]))[0] == centres[0]
    assert tok.decode(np.array([31744]))[0] == centres[254]  # V - token - 1 = 255 clips to 254
    assert tok.decode(np.array([5]))[0] == centres[254]  # a text token clips to the top bin
    assert tok.decode(np.array([32050]))[0] == centres[0]


def test_round_trip_error_is_at_most_one_bin(tok):
    a = np.random.default_rng(0).uniform(-1, 1, size=(1000, 7))
    back = tok.decode(tok.encode(a))
    assert np.abs(back - a).max() <= 2 / 255 + 1e-12
    np.testing.assert_array_equal(tok.encode(back), tok.encode(a))  # centres are fixed points


def test_nan_is_an_error(tok):
    with pytest.raises(InputError, match="NaN"):
        tok.encode(np.array([0.1, np.nan]))
