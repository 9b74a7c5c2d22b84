"""Dynamic batching: concurrent requests become one batched forward pass, run off the event loop.

Requests wait in a bounded queue. The batching loop takes the oldest request, waits until `max_batch_size`
requests are queued or `max_wait_ms` has passed since that request arrived, then runs the batch in a single
worker thread (one model, one forward at a time) while the event loop keeps accepting requests. Whatever
arrives during a forward pass is batched next, so under load batches fill without any waiting.

Before a batch runs, requests whose client has gone or whose deadline has passed are dropped. Requests are
grouped by `ActRequest.group` (same normalisation key, same inputs), one forward per group. If a batch fails
on a user error, its requests are rerun one by one so that one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from clearvla.errors import ClearVLAError
from clearvla.serve.errors import DeadlineExceeded, Overloaded
from clearvla.serve.safety import check_deadline

log = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[Any]], np.ndarray]  # B requests -> actions [B, K, A] (any [B, ...] works)


@dataclass(frozen=True)
class BatchResult:
    """One request's share of a batch: its row of the predicted actions (the server's: the chunk [K, A] float64),
    the batch size, and milliseconds spent queued and in the forward pass."""

    actions: np.ndarray
    batch_size: int
    queue_ms: float
    infer_ms: float


@dataclass
class _Job:
    request: Any  # an ActRequest (anything with .group, .deadline, .received)
    future: asyncio.Future
    enqueued: float


class Batcher:
    """Queue + batching loop around `predict(requests) -> actions [B, ...]` (called in one worker thread)."""

    def __init__(self, predict: PredictFn, max_batch_size: int = 8, max_wait_ms: float = 5.0, max_queue: int = 256) -> None:
        if max_batch_size < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("need max_batch_size >= 1, max_wait_ms >= 0, max_queue >= 1")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._pending: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.stats = {"requests": 0, "batches": 0, "batched_requests": 0, "max_batch": 0, "dropped_deadline": 0,
                      "dropped_overload": 0, "failed": 0}

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearvla-infer")
        self._task = asyncio.create_task(self._loop(), name="clearvla-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    # --- submitting -----------------------------------------------------------------------------------
    async def submit(self, request: Any) -> BatchResult:
        """Queue a request and wait for its action. Raises Overloaded (queue full), DeadlineExceeded, or the
        error the model raised for it."""
        assert self._wakeup is not None, "Batcher.start() was not awaited"
        if len(self._pending) >= self.max_queue:
            self.stats["dropped_overload"] += 1
            raise Overloaded(f"the request queue is full ({self.max_queue} waiting); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(request, future, time.monotonic()))
        self.stats["requests"] += 1
        self._wakeup.set()
        return await future  # a cancelled caller cancels the future; the loop skips it

    # --- the loop -------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            until = self._pending[0].enqueued + self.max_wait
            while len(self._pending) < self.max_batch_size and (remaining := until - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
            try:
                await self._run(batch)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let the loop die: fail this batch, keep serving
                log.exception("batch failed unexpectedly")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)

    async def _run(self, batch: list[_Job]) -> None:
        now = time.monotonic()
        live = []
        for job in batch:
            if job.future.done():  # the client went away
                continue
            try:
                check_deadline(job.request.deadline, job.request.received, "while queued", now)
            except DeadlineExceeded as e:
                self.stats["dropped_deadline"] += 1
                job.future.set_exception(e)
                continue
            live.append(job)
        groups: dict[Any, list[_Job]] = {}
        for job in live:
            groups.setdefault(job.request.group, []).append(job)
        for jobs in groups.values():
            await self._forward(jobs)

    async def _forward(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            actions = await loop.run_in_executor(self._executor, self.predict, [job.request for job in jobs])
        except Exception as e:
            if len(jobs) > 1 and isinstance(e, ClearVLAError):
                log.info("batch of %d failed (%s); rerunning its requests one by one", len(jobs), e)
                for job in jobs:
                    await self._forward([job])
                return
            self.stats["failed"] += len(jobs)
            if not isinstance(e, ClearVLAError):
                log.error("inference failed for a batch of %d", len(jobs), exc_info=e)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        infer_ms = (time.monotonic() - t0) * 1000.0
        actions = np.asarray(actions, dtype=np.float64)
        assert actions.shape[0] == len(jobs), f"predict returned {actions.shape[0]} actions for {len(jobs)} requests"
        self.stats["batches"] += 1
        self.stats["batched_requests"] += len(jobs)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(jobs))
        for job, row in zip(jobs, actions):
            if not job.future.done():
                job.future.set_result(BatchResult(row, len(jobs), (t0 - job.enqueued) * 1000.0, infer_ms))
