"""Write transactions and plain SQL on the platform database, the same text on SQLite and PostgreSQL.

Hot paths use plain SQL rather than peewee's query builder: building a peewee query costs ~0.4 ms
of Python, more than SQLite takes to run it, and the dispatcher runs several per job. Statements use
``?`` placeholders, translated once per driver and cached.
"""

from __future__ import annotations

from typing import Any, Mapping

from peewee import SqliteDatabase

from dispatcher.models import database

_SQL_CACHE: dict[tuple[str, str], str] = {}


def transaction() -> Any:
    """A write transaction (context manager): ``BEGIN IMMEDIATE`` on SQLite, so two processes
    never deadlock on a lock upgrade; ``BEGIN`` on PostgreSQL. Nested calls become savepoints."""
    if isinstance(database.obj, SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()


def sql(text: str) -> str:
    """``text`` with its ``?`` placeholders in the connected driver's style."""
    key = (database.param, text)
    out = _SQL_CACHE.get(key)
    if out is None:
        out = _SQL_CACHE[key] = text if key[0] == "?" else text.replace("?", key[0])
    return out


def execute(text: str, *params: Any) -> Any:
    """Run one statement; returns the driver's cursor."""
    return database.execute_sql(sql(text), params)


def scalar(text: str, *params: Any) -> Any:
    """The first column of the first row of a query (None when there is no row)."""
    row = execute(text, *params).fetchone()
    return None if row is None else row[0]


def update(table: str, fields: Mapping[str, Any], where: str, *params: Any) -> int:
    """``UPDATE table SET fields WHERE where``; returns the row count."""
    sets = ", ".join(f'"{c}" = ?' for c in fields)
    return execute(f'UPDATE "{table}" SET {sets} WHERE {where}', *fields.values(),
                   *params).rowcount
