"""The VLA-backed scorer: distributions over action bins, agreement scores, uncertainty."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clearvla.clarify.scoring import VLAScorer, action_distributions, augmented_chunks, js_divergence, predicted_chunks
from clearvla.errors import ConfigError
from clearvla.data.stats import compute_statistics
from clearvla.models.vla import VLA


@pytest.fixture(scope="module")
def vla():
    rng = np.random.default_rng(0)
    stats = {"cell": compute_statistics(rng.normal(0, 0.01, (32, 7)), rng.normal(0, 1, (32, 13)), 2)}
    return VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=13, norm_stats=stats, seed=1)


@pytest.fixture(scope="module")
def obs():
    rng = np.random.default_rng(3)
    return {"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "proprio": np.zeros(13)}


def test_distributions_are_over_the_action_bins(vla, obs):
    dists = action_distributions(vla, obs, "pick up the red bolt", n_dims=3)
    assert dists.shape == (3, 256)
    np.testing.assert_allclose(dists.sum(1), 1.0, atol=1e-6)
    assert not np.allclose(dists, action_distributions(vla, obs, "push the blue plate to the left", n_dims=3))


def test_the_original_wording_scores_highest_and_scores_sum_to_one(vla, obs):
    scorer = VLAScorer(vla)
    texts = ["push the blue plate to the left", "pick up the red bolt", "stack the green block on the nut"]
    scores = scorer.score(obs, "pick up the red bolt", texts)
    assert scores.shape == (3,) and abs(scores.sum() - 1) < 1e-9 and int(np.argmax(scores)) == 1
    assert 0.0 <= scorer.uncertainty(obs, "pick up the red bolt") <= 1.0


def test_js_divergence_bounds():
    p = np.array([1.0, 0.0])
    assert js_divergence(p, p) == pytest.approx(0.0)
    assert js_divergence(p, np.array([0.0, 1.0])) == pytest.approx(np.log(2))


@pytest.fixture(scope="module")
def chunk_vla(vla):
    return VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=13,
                           norm_stats=vla.norm_stats, seed=1, action_chunk=4)


def test_chunk_models_score_by_the_chunks_they_would_execute(chunk_vla, obs):
    texts = ["push the blue plate to the left", "pick up the red bolt", "stack the green block on the nut"]
    chunks = predicted_chunks(chunk_vla, obs, texts)
    assert chunks.shape == (3, 4, 7) and not np.allclose(chunks[0], chunks[1])
    np.testing.assert_allclose(chunks[1], predicted_chunks(chunk_vla, obs, [texts[1]])[0], atol=1e-5)  # batching changes nothing
    scores = VLAScorer(chunk_vla).score(obs, "pick up the red bolt", texts)
    assert scores.shape == (3,) and abs(scores.sum() - 1) < 1e-9 and int(np.argmax(scores)) == 1


def test_chunk_uncertainty_is_the_spread_of_the_chunk_under_augmented_views(chunk_vla, obs):
    chunks = augmented_chunks(chunk_vla, obs, "pick up the red bolt", views=5)
    assert chunks.shape == (5, 4, 7) and not np.allclose(chunks[0], chunks[1])  # each view is drawn anew
    scorer = VLAScorer(chunk_vla, views=5)
    spread = scorer.uncertainty(obs, "pick up the red bolt")
    assert spread == pytest.approx(chunks[:, :, :3].std(axis=0).mean()) and 0.0 < spread <= 1.0
    assert scorer.uncertainty(obs, "pick up the red bolt") == spread  # seeded: one observation, one score
    blind = copy.deepcopy(chunk_vla)
    for p in blind.projector.parameters():
        torch.nn.init.zeros_(p)  # patch tokens no longer depend on the images: every view acts alike
    assert VLAScorer(blind, views=5).uncertainty(obs, "pick up the red bolt") < 1e-5 * spread
    with pytest.raises(ConfigError, match="views >= 2"):
        VLAScorer(chunk_vla, views=1)
