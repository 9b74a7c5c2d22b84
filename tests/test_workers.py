"""Spawned workers: every item arrives, a failing or dying worker stops the stream with its reason."""

from __future__ import annotations

import os

import pytest

from clearvla.errors import InputError
from clearvla.workers import stream_workers


def count_to(job: int, emit) -> None:
    for i in range(job):
        emit((job, i))


def fail_at_two(job: int, emit) -> None:
    emit(job)
    if job == 2:
        raise ValueError("bad job 2")


def refuse(job: int, emit) -> None:
    raise InputError(f"job {job} is malformed")


def die(job: int, emit) -> None:
    os._exit(3)


def test_every_item_of_every_job_arrives():
    items = list(stream_workers(count_to, [2, 3], "test"))
    assert sorted(items) == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert [i for j, i in items if j == 3] == [0, 1, 2]  # one worker's items keep their order


def test_a_failing_worker_raises_with_its_reason():
    with pytest.raises(RuntimeError, match="test worker failed: ValueError: bad job 2"):
        list(stream_workers(fail_at_two, [1, 2], "test"))


def test_a_user_facing_error_arrives_as_itself():
    with pytest.raises(InputError, match="job 7 is malformed"):  # the CLI prints it as one line
        list(stream_workers(refuse, [7], "test"))


def test_a_worker_that_dies_silently_is_noticed():
    with pytest.raises(RuntimeError, match="test worker exited with code 3"):
        list(stream_workers(die, [1], "test"))
