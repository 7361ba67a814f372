"""The job history in PostgreSQL (`--database-url postgresql://USER@HOST[:PORT]/DB`): for a head that must survive
the loss of its machine (a new head on another machine reads the same history and re-queues the waiting jobs).

psycopg 3 (the reference PostgreSQL driver, `pip install -r requirements-ray.txt`) rather than SQLAlchemy: the
history is a dozen statements in standard SQL shared with SQLite (webui/history.py), so a dialect layer would add a
large dependency for one differing statement.

Passwords: keep them out of the URL (and so out of `ps`) with libpq's own means, which psycopg honours: a
`~/.pgpass` file (or PGPASSFILE), or PGPASSWORD in the environment. Error messages name the host and the database,
never the password. A lost connection (the server restarted, a failover) is opened again once per statement.
"""

from __future__ import annotations

import builtins
import threading
from typing import Any

from webui.errors import EaselError
from webui.history import MIGRATIONS, SCHEMA, History


class DatabaseUnavailable(EaselError):
    status = 503


class PostgresHistory(History):
    RETRY_SQL = (
        "UPDATE jobs SET status='queued', retries=?, worker=NULL, retry_log=(COALESCE(retry_log, '[]')"
        "::jsonb || jsonb_build_array(?::text))::text WHERE id=?"
    )

    def __init__(self, url: str):
        try:
            import psycopg
            import psycopg.conninfo
        except ImportError as e:
            raise EaselError(
                f"--database-url postgresql:// needs psycopg: pip install -r requirements-ray.txt ({e})"
            ) from None
        self._psycopg, self._url = psycopg, url
        info = psycopg.conninfo.conninfo_to_dict(url)
        self.where = (
            f"PostgreSQL database {info.get('dbname') or info.get('user') or ''!s} on "
            f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"
        )
        self._lock = threading.Lock()
        self._db: Any = None
        with self._lock:
            self._connect()
            db: Any = self._db  # set by _connect (mypy keeps self._db narrowed to the None above)
            with db.transaction():
                for statement in SCHEMA.replace(" REAL", " DOUBLE PRECISION").split(";"):
                    if statement.strip():
                        db.execute(statement)
                for column, decl in MIGRATIONS:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {column} {decl}")

    def _connect(self) -> None:
        try:
            self._db = self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as e:
            raise DatabaseUnavailable(
                f"the job history ({self.where}) is unreachable", detail=_without_password(str(e), self._url)
            ) from None

    def _run(self, fn):
        """fn(connection) under the lock; a connection found closed or broken is opened again and fn run once more."""
        with self._lock:
            for attempt in (0, 1):
                if self._db is None or self._db.closed:
                    self._connect()
                try:
                    return fn(self._db)
                except self._psycopg.OperationalError as e:
                    self._db = None
                    if attempt:
                        raise DatabaseUnavailable(
                            f"the job history ({self.where}) could not be written",
                            detail=_without_password(str(e), self._url),
                        ) from None

    def _write(self, sql: str, args: tuple) -> int:
        def write(db) -> int:
            with db.transaction():
                return db.execute(_pg(sql), args).rowcount

        return self._run(write)

    def _query(self, sql: str, args: tuple | list = ()) -> tuple[builtins.list[str], builtins.list[tuple]]:
        def query(db):
            cur = db.execute(_pg(sql), args)
            return [d.name for d in cur.description], cur.fetchall()

        return self._run(query)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


def _pg(sql: str) -> str:
    # the shared statements use `?`; psycopg's placeholder is %s (no literal % or ? appears in them)
    return sql.replace("%", "%%").replace("?", "%s")


def _without_password(text: str, url: str) -> str:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
