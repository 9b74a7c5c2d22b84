"""The suites' episode lists are pinned: a digest of the first 50 episodes of every suite (scene, task,
instruction, start pose). Every figure the project reports assumes these lists never change, so a change must be
deliberate: update the digest below only together with a note that earlier figures are no longer comparable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from clearvla.sim import suites

PINNED_EPISODES = 50
DIGESTS: dict[str, str] = {
    "train": "022daa517ccae544a167c192466f00e1884a016df1a1f0b4e23cefe883ace3d8",
    "visual": "5181b33702c95aa9463fc5fc4a2de1fb5888eee75ef3b148f7f974b1a0446583",
    "motion": "845c1c535af234ff1f208750b47202556891c78d1e18b228f2aa4f4548a07b65",
    "physical": "3736fc222ce5e68cc224eda4a9732048dcc433cc7e9514b352d42ca7becbceae",
    "semantic": "31c7160f4a0bf2b5f19658059e1d805da85e85cdfe1ebde9b953f840c93c26b8",
    "ambiguous": "5ee81c18a791b9996e32e872e89a520c3a77277fae9a6e49564e5975bfb066e8",
}


def _canonical(value: Any) -> Any:
    """JSON-ready form with floats rounded to 6 decimals, so platform float noise cannot flip the digest."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}  # json.dumps sorts the keys
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def suite_digest(suite: str, n: int = PINNED_EPISODES) -> str:
    """sha256 over the first `n` episode setups of `suite` (every field of `EpisodeSetup`, the scene included)."""
    setups = [dataclasses.asdict(suites.setup(spec)) for spec in suites.episodes(suite)[:n]]
    return hashlib.sha256(json.dumps(_canonical(setups), sort_keys=True).encode()).hexdigest()


def test_every_suite_is_pinned() -> None:
    assert set(DIGESTS) == set(suites.SUITES)


@pytest.mark.parametrize("suite", suites.SUITES)
def test_suite_episodes_unchanged(suite: str) -> None:
    got = suite_digest(suite)
    assert got == DIGESTS[suite], (
        f"the first {PINNED_EPISODES} episodes of suite {suite!r} changed (digest {got}). Every reported figure "
        "(the model card, docs/, benchmarks) was measured on these episode lists: if the change is deliberate, "
        "update DIGESTS in this file and say in the commit and docs/experiments/ that earlier figures are not "
        "comparable; otherwise revert it"
    )
