"""A ``limits`` storage kept in the platform's own database (``raas-db://``), so rate limits hold
across waitress threads and every dashboard process that shares the database.

Flask-Limiter takes its storage from the ``limits`` library, whose shipped backends are either
per process (memory) or need another server (Redis, Memcached, MongoDB). This one keeps one row per
counter in :class:`dispatcher.models.RateLimitCounter` (SQLite WAL or PostgreSQL), and supports the
fixed-window strategy: :meth:`DatabaseStorage.incr` is one upsert that starts a new window when
the old one has ended, followed by a read of the count in the same transaction.
"""

from __future__ import annotations

import time
from typing import Any

from limits.storage import Storage
from peewee import Case, PeeweeException

from dispatcher.models import RateLimitCounter, database

SCHEME = "raas-db"
PRUNE_INTERVAL_S = 60.0  # ended windows are deleted at most this often per process


class DatabaseStorage(Storage):
    """Fixed-window counters in the platform database (``storage_uri="raas-db://"``).

    The models must be bound to a database (:func:`dispatcher.models.init_db`) before use; each
    thread uses its own connection (peewee's, opened on demand).

    Args:
        uri: ``raas-db://`` (nothing else is read from it).
        wrap_exceptions: wrap database errors in :class:`limits.errors.StorageError`.
    """

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._pruned_at = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        """Database errors (peewee's base class)."""
        return PeeweeException

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter, starting a window of ``expiry`` [s] if none is open.

        Returns:
            The counter's value after the increment.
        """
        t = time.time()
        ended = RateLimitCounter.expires_at <= t
        upsert = RateLimitCounter.insert(key=key, count=amount, expires_at=t + expiry).on_conflict(
            conflict_target=[RateLimitCounter.key],
            update={RateLimitCounter.count: Case(None, [(ended, amount)],
                                                 RateLimitCounter.count + amount),
                    RateLimitCounter.expires_at: Case(None, [(ended, t + expiry)],
                                                      RateLimitCounter.expires_at)})
        # the upsert holds the row (PostgreSQL) or the write lock (SQLite) until the commit, so
        # the count read next is the one this increment produced
        with database.atomic():
            upsert.execute()
            count = RateLimitCounter.get_by_id(key).count
        self._prune(t)
        return count

    def get(self, key: str) -> int:
        """The counter of ``key`` in its current window (0 when none is open)."""
        row = (RateLimitCounter.select(RateLimitCounter.count)
               .where((RateLimitCounter.key == key) & (RateLimitCounter.expires_at > time.time()))
               .first())
        return row.count if row else 0

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window ends [s since the epoch]; now when none is open."""
        row = (RateLimitCounter.select(RateLimitCounter.expires_at)
               .where(RateLimitCounter.key == key).first())
        return max(row.expires_at, time.time()) if row else time.time()

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            database.execute_sql("SELECT 1")
        except PeeweeException:
            return False
        return True

    def reset(self) -> int:
        """Forget every counter; returns how many there were."""
        return RateLimitCounter.delete().execute()

    def clear(self, key: str) -> None:
        """Forget ``key``'s counter."""
        RateLimitCounter.delete().where(RateLimitCounter.key == key).execute()

    def _prune(self, t: float) -> None:
        """Delete ended windows now and then (two threads doing it at once is harmless)."""
        if t - self._pruned_at >= PRUNE_INTERVAL_S:
            self._pruned_at = t
            RateLimitCounter.delete().where(RateLimitCounter.expires_at <= t).execute()
