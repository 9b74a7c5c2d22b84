"""The benchmark suites: fixed, seeded lists of episodes.

`train` is the training distribution; `visual`, `motion`, `physical` and `semantic` are the four held-out
generalisation axes of the OpenVLA paper; `ambiguous` has instructions that fit two or more parts.
Each suite is a list of `EpisodeSpec`s derived deterministically from the suite's seed; tasks cycle
pick, place, stack, push so every suite is balanced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache

import numpy as np

from clearvla.errors import ConfigError
from clearvla.sim.sampling import EpisodeSetup, EpisodeSpec, SuiteConfig, sample_setup
from clearvla.sim.tasks import TASKS

SUITE_CONFIGS: dict[str, SuiteConfig] = {
    "train": SuiteConfig(),
    "visual": SuiteConfig(n_distractors=(1, 3), visual=True),
    "motion": SuiteConfig(motion=True),
    "physical": SuiteConfig(physical=True),
    "semantic": SuiteConfig(semantic=True),
    "ambiguous": SuiteConfig(n_parts=(2, 4), ambiguous=True),
}
SUITES: tuple[str, ...] = tuple(SUITE_CONFIGS)
HELD_OUT: tuple[str, ...] = ("visual", "motion", "physical", "semantic", "ambiguous")
SUITE_SIZES: dict[str, int] = {"train": 5000, **{name: 200 for name in HELD_OUT}}
_SUITE_SEEDS: dict[str, int] = {name: 1000 + i for i, name in enumerate(SUITES)}


def check_suite(suite: str) -> str:
    """Return `suite` if it is known, else raise ConfigError listing the valid names."""
    if suite not in SUITE_CONFIGS:
        raise ConfigError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    return suite


@lru_cache(maxsize=None)
def _episodes(suite: str) -> tuple[EpisodeSpec, ...]:
    seeds = np.random.SeedSequence(_SUITE_SEEDS[suite]).generate_state(SUITE_SIZES[suite], dtype=np.uint32)
    return tuple(EpisodeSpec(suite, i, int(seed), TASKS[i % len(TASKS)]) for i, seed in enumerate(seeds))


def episodes(suite: str) -> list[EpisodeSpec]:
    """The fixed episode list of `suite` (same on every machine and run)."""
    return list(_episodes(check_suite(suite)))


def episode(suite: str, index: int) -> EpisodeSpec:
    """Episode `index` of `suite`; raises ConfigError when out of range."""
    specs = _episodes(check_suite(suite))
    if not 0 <= index < len(specs):
        raise ConfigError(f"episode index {index} out of range for suite {suite!r} (0..{len(specs) - 1})")
    return specs[index]


def check_tasks(tasks: Iterable[str] | None) -> tuple[str, ...] | None:
    """`tasks` as a tuple when every name is a task (pick, place, stack, push), None when None (every task); raises
    ConfigError naming the unknown ones."""
    if tasks is None:
        return None
    if isinstance(tasks, str):
        raise ConfigError(f"tasks must be a list of task names, got {tasks!r}")
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"unknown task(s) {', '.join(map(repr, unknown)) or '(none given)'}; tasks: {', '.join(TASKS)}")
    return tasks


def indices(suite: str, start: int = 0, stop: int | None = None, tasks: Iterable[str] | None = None) -> list[int]:
    """The indices in [start, stop) (None: the suite's end) of `suite`'s episodes whose task is one of `tasks`
    (None: every task), in order."""
    specs = _episodes(check_suite(suite))
    wanted = check_tasks(tasks)
    return [i for i in range(start, len(specs) if stop is None else stop) if wanted is None or specs[i].task in wanted]


def setup(spec: EpisodeSpec, *, random_start: bool = True) -> EpisodeSetup:
    """Sample the scene, task and instruction of `spec`; `random_start=False` starts the arm at home instead of at
    the episode's own pose (everything else is the same)."""
    cfg = SUITE_CONFIGS[check_suite(spec.suite)]
    return sample_setup(cfg if random_start else replace(cfg, random_start=False), spec)
