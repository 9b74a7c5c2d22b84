"""Dynamic batching with a fake model: batches fill, groups split, deadlines drop, one bad request fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from clearvla.errors import InputError
from clearvla.serve.batcher import Batcher
from clearvla.serve.errors import DeadlineExceeded, Overloaded


@dataclass(frozen=True)
class Req:
    value: float
    key: str = "a"
    deadline: float | None = None
    received: float = 0.0

    @property
    def group(self):
        return self.key


class FakeModel:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[float]] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, reqs):
        self.threads.add(threading.current_thread().name)
        if any(r.value < 0 for r in reqs):
            raise InputError("negative value")
        time.sleep(self.delay)
        self.batches.append([r.value for r in reqs])
        return np.array([[r.value] * 7 for r in reqs])


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_batched_off_the_event_loop():
    model = FakeModel(delay=0.02)

    async def main():
        batcher = Batcher(model, max_batch_size=4, max_wait_ms=50)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(Req(float(i))) for i in range(10)))
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [r.actions[0] for r in results] == list(range(10))  # each caller gets its own row
    assert [len(b) for b in model.batches] == [4, 4, 2]
    assert batcher.stats["max_batch"] == 4 and results[0].batch_size == 4
    assert threading.main_thread().name not in model.threads


def test_max_wait_bounds_the_wait_for_a_lone_request():
    model = FakeModel()

    async def main():
        batcher = Batcher(model, max_batch_size=8, max_wait_ms=30)
        await batcher.start()
        t0 = time.monotonic()
        await batcher.submit(Req(1.0))
        elapsed = time.monotonic() - t0
        await batcher.stop()
        return elapsed

    assert 0.025 < run(main()) < 1.0


def test_groups_run_separately_and_bad_requests_fail_alone():
    model = FakeModel()

    async def main():
        batcher = Batcher(model, max_batch_size=8, max_wait_ms=20)
        await batcher.start()
        reqs = [Req(1.0, "a"), Req(2.0, "b"), Req(-1.0, "a"), Req(3.0, "a")]
        results = await asyncio.gather(*(batcher.submit(r) for r in reqs), return_exceptions=True)
        await batcher.stop()
        return results

    results = run(main())
    assert isinstance(results[2], InputError)
    assert [results[i].actions[0] for i in (0, 1, 3)] == [1.0, 2.0, 3.0]
    assert sorted(map(sorted, model.batches)) == [[1.0], [2.0], [3.0]]  # the failed [1, -1, 3] batch reran one by one


def test_expired_requests_are_dropped_before_inference():
    model = FakeModel()

    async def main():
        batcher = Batcher(model, max_batch_size=8, max_wait_ms=30)
        await batcher.start()
        now = time.monotonic()
        results = await asyncio.gather(batcher.submit(Req(1.0, deadline=now + 0.005, received=now)),
                                       batcher.submit(Req(2.0, deadline=now + 10, received=now)), return_exceptions=True)
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert isinstance(results[0], DeadlineExceeded) and results[1].actions[0] == 2.0
    assert model.batches == [[2.0]] and batcher.stats["dropped_deadline"] == 1


def test_full_queue_is_overloaded_and_unexpected_errors_do_not_kill_the_loop():
    def broken(reqs):
        if reqs[0].value == 0:
            raise RuntimeError("boom")
        return np.zeros((len(reqs), 7))

    async def main():
        batcher = Batcher(broken, max_batch_size=1, max_wait_ms=0, max_queue=2)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(Req(float(i))) for i in range(4)), return_exceptions=True)
        after = await batcher.submit(Req(5.0))
        await batcher.stop()
        return results, after

    results, after = run(main())
    assert isinstance(results[0], RuntimeError) and results[1].actions.shape == (7,)
    assert [type(r).__name__ for r in results[2:]] == ["Overloaded", "Overloaded"]
    assert after.actions.shape == (7,)


def test_bad_settings():
    with pytest.raises(ValueError):
        Batcher(FakeModel(), max_batch_size=0)
    assert Overloaded.status == 503
