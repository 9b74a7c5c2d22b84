"""Spawned worker processes that stream items back to the parent (demonstration recording, evaluation)."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from queue import Empty
from typing import Any, Callable, Iterator, Sequence

from clearvla.errors import ClearVLAError

POLL_S = 1.0  # how often the parent checks for workers that died without a word
Work = Callable[[Any, Callable[[Any], None]], Any]  # work(job, emit): calls emit(item) for each item it makes


@dataclass(frozen=True)
class _Done:
    """A worker finished its job."""


@dataclass(frozen=True)
class _Failed:
    message: str
    error: ClearVLAError | None = None  # a user-facing error travels as itself, so the CLI prints its one line


def _run(work: Work, job: Any, queue: "mp.Queue", what: str) -> None:
    try:
        work(job, queue.put)
        queue.put(_Done())
    except BaseException as e:  # report, don't hang the parent
        queue.put(_Failed(f"{what} worker failed: {type(e).__name__}: {e}", e if isinstance(e, ClearVLAError) else None))


def stream_workers(work: Work, jobs: Sequence[Any], what: str, max_queue: int = 0) -> Iterator[Any]:
    """`work(job, emit)` for each job in its own spawned process; yields the emitted items in arrival order.

    `work` must be a module-level function and the jobs picklable. `what` names the workers in errors. A worker
    that raises a ClearVLAError raises it here; any other failure, or a worker that dies without a word (segfault,
    OOM), raises RuntimeError; closing the iterator early or an
    error terminates every worker. max_queue: items in flight before workers block (0: unbounded)."""
    context = mp.get_context("spawn")  # MuJoCo's GL context does not survive a fork
    queue = context.Queue(maxsize=max_queue)
    procs = [context.Process(target=_run, args=(work, job, queue, what), daemon=True) for job in jobs]
    for p in procs:
        p.start()
    running = len(procs)
    try:
        while running:
            try:
                item = queue.get(timeout=POLL_S)
            except Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"{what} worker exited with code {dead[0]}") from None
                continue
            if isinstance(item, _Done):
                running -= 1
            elif isinstance(item, _Failed):
                raise item.error or RuntimeError(item.message)
            else:
                yield item
    finally:
        for p in procs:
            p.terminate()
            p.join()
