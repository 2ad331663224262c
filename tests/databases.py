"""The job database for tests: a throw-away PostgreSQL server for the session, and a fresh database
per test on SQLite and on PostgreSQL. Registered once, by tests/conftest.py, for the whole suite.

PostgreSQL refuses to run as root, so as root the cluster is created and run as ``nobody``
(``runuser``); the fixtures skip with the reason if the server cannot start, unless
RAAS_TEST_REQUIRE_POSTGRES=1 (``make test``), where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.net import free_port, wait_port

def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: Debian keeps them per version under /usr/lib/postgresql."""
    for d in ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)):
        p = Path(d) / name
        if p.exists():
            return str(p)
    return shutil.which(name)


def unavailable(reason: str) -> None:
    """Skip the PostgreSQL variant — or fail it where PostgreSQL is required (``make test`` sets
    RAAS_TEST_REQUIRE_POSTGRES=1 after installing it: nothing may be skipped in CI)."""
    if os.environ.get("RAAS_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here: {reason}")
    pytest.skip(reason)


class PostgresCluster:
    """A throw-away PostgreSQL server on a free loopback port (trust auth, user ``raas``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.user = "raas"
        self.runas: list[str] = []
        if os.geteuid() == 0:
            self.runas = ["runuser", "-u", "nobody", "--"]
            os.chmod(workdir, 0o777)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.runas, *cmd], check=check, capture_output=True, text=True,
                              timeout=120)

    def start(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            unavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
        r = self._run(initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                      "--no-sync", "-E", "UTF8", check=False)
        if r.returncode:
            unavailable(f"initdb failed: {r.stderr[-400:]}")
        opts = (f"-p {self.port} -k {self.workdir} -h 127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        r = self._run(pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.workdir / "log"),
                      "-w", "start", check=False)
        if r.returncode:
            log = (self.workdir / "log").read_text()[-400:] if (self.workdir / "log").exists() \
                else ""
            unavailable(f"PostgreSQL did not start: {r.stderr[-300:]} {log}")
        wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "immediate",
                  "stop", check=False)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg2

        name = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        conn.close()
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> PostgresCluster:
    """A PostgreSQL server for the session (skips with the reason if it cannot start)."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary (dev extra) is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="raas-pg-"))
    cluster = PostgresCluster(workdir)
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresCluster) -> str:
    """One database with the schema, emptied before each test that uses it."""
    from dispatcher.models import database, init_db

    url = postgres.create_database()
    init_db(url).close()
    database.initialize(None)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, empty job database: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'raas.db'}"
    return request.getfixturevalue("db_url_postgresql")


@pytest.fixture
def db_url_postgresql(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    url = postgres_url
    from dispatcher.models import ALL_MODELS, init_db

    db = init_db(url, create=False)
    tables = ", ".join(f'"{m._meta.table_name}"' for m in ALL_MODELS)
    db.execute_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    db.close()
    return url


@pytest.fixture
def db(db_url: str):
    """The models bound to a fresh database (both backends); closed after the test."""
    from dispatcher.models import init_db

    database = init_db(db_url)
    yield database
    database.close()
