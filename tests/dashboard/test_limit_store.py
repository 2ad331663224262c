"""The ``limits`` storage on the platform database (``raas-db://``): its contract on SQLite and
PostgreSQL, with the clock injected, and atomic increments from many threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from dashboard import limit_store
from dashboard.limit_store import DatabaseStorage
from dispatcher.models import RateLimitCounter


class Clock:
    """A settable stand-in for the ``time`` module [s since the epoch]."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(limit_store, "time", c)
    return c


@pytest.fixture
def storage(db: Any) -> DatabaseStorage:  # noqa: F811
    s = storage_from_string("raas-db://")
    assert isinstance(s, DatabaseStorage)
    return s


def test_incr_counts_within_a_window_and_restarts_after_it(storage: Any, clock: Clock) -> None:
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 60, amount=4) == 7 and storage.get("k") == 7
    assert storage.get_expiry("k") == clock.now + 60  # the window began with the first hit
    clock.now += 59.9
    assert storage.incr("k", 60) == 8
    clock.now += 0.1  # the window has ended: a new one starts at the next hit
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1 and storage.get_expiry("k") == clock.now + 60
    assert storage.get("other") == 0 and storage.get_expiry("other") == clock.now


def test_clear_reset_check_and_pruning(storage: Any, clock: Clock) -> None:
    storage.incr("a", 10)
    storage.incr("b", 10)
    storage.clear("a")
    assert storage.get("a") == 0 and storage.get("b") == 1
    assert storage.check()
    assert storage.reset() == 1 and storage.get("b") == 0
    storage.incr("old", 10)
    clock.now += limit_store.PRUNE_INTERVAL_S + 11
    storage.incr("new", 10)  # prunes ended windows now and then
    assert [r.key for r in RateLimitCounter.select()] == ["new"]


def test_fixed_window_limiter_on_this_storage(storage: Any, clock: Clock) -> None:
    limiter = FixedWindowRateLimiter(storage)
    item = parse("3/minute")
    assert [limiter.hit(item, "alice") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(item, "bob") and not limiter.test(item, "alice")
    assert limiter.get_window_stats(item, "alice").reset_time == clock.now + 60
    clock.now += 60
    assert limiter.hit(item, "alice")


def test_increments_from_many_threads_are_atomic(storage: Any) -> None:
    def hit() -> None:
        for _ in range(10):
            storage.incr("shared", 60)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert storage.get("shared") == 80
