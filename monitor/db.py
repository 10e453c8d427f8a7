"""The one way to reach the state database: an engine for SQLite or PostgreSQL, migrated to the newest schema.

SQLite waits up to `busy_timeout` for a writer (the update process and the service share the file) and
enforces foreign keys; any other failure to connect is a `StateUnavailableError`, which the service answers
with 503 while search keeps working.

Every process migrates at first use (each api replica and worker, the nightly job, `posapl keys add`), so the
upgrade holds a lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: its write lock) from before it
reads the schema revision: processes that start together on an empty database take turns, and all but the
first find the schema at head and change nothing.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from monitor.settings import MonitorSettings

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 5.0
_migrated: set[str] = set()
_lock = threading.Lock()
# pg_advisory_xact_lock key of the schema upgrade: any constant the application uses for nothing else.
MIGRATION_LOCK_KEY = 0x706F7361706C  # "posapl"


class StateUnavailableError(RuntimeError):
    """The state database cannot be reached, is locked, or cannot be migrated."""


def now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DBAPI objects)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def migrate(engine: sa.Engine) -> None:
    """Upgrade the schema to the newest revision shipped in monitor/migrations (idempotent, and safe when
    several processes do it at once: each waits for the database's write lock before reading the revision)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # held until the commit below, after the upgrade (PostgreSQL's DDL is transactional)
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first CREATE
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()


def open_engine(settings: MonitorSettings) -> sa.Engine:
    """An engine on the configured database, migrated once per process and URL."""
    url = settings.database_url()
    try:
        if url.startswith("sqlite"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        with _lock:
            if url not in _migrated:
                migrate(engine)
                _migrated.add(url)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StateUnavailableError(f"the state database is unavailable: {type(exc).__name__}") from exc
    return engine
