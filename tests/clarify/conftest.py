"""Episode setups of every suite, sampled once per session (no MuJoCo: sampling only, about 1 ms each)."""

from __future__ import annotations

import pytest

from clearvla.sim import suites
from clearvla.sim.sampling import EpisodeSetup

N_TRAIN = 600  # the held-out suites are used whole (200 each)


@pytest.fixture(scope="session")
def setups() -> dict[str, list[EpisodeSetup]]:
    return {
        suite: [suites.setup(spec) for spec in suites.episodes(suite)[: N_TRAIN if suite == "train" else None]]
        for suite in suites.SUITES
    }


@pytest.fixture(scope="session")
def ambiguous(setups) -> list[EpisodeSetup]:
    return setups["ambiguous"]
