"""Job history in SQLite (`<data-dir>/easel.db`, the default) or PostgreSQL (`--database-url postgresql://…`, for a
head that must survive its machine: webui/history_pg.py). Every job is written when queued, started and finished,
one transaction per change (SQLite in WAL mode), so a crash or kill -9 loses nothing that had finished.

A queued job also keeps its complete request (`request`, images included) until it finishes, so the jobs that were
waiting when the process died run at the next start. A full disk is a DiskFull error (the connection stays usable),
never SQLite's "cannot rollback - no transaction is active"."""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from webui.errors import DiskFull, is_disk_full

# REAL is SQLite's 8-byte float; PostgreSQL gets DOUBLE PRECISION (its REAL is 4 bytes: timestamps would round)
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    request TEXT,
    worker TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    retry_log TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
"""
# columns added after the first release (a history written before them gets them on open)
MIGRATIONS = (("request", "TEXT"), ("worker", "TEXT"), ("retries", "INTEGER NOT NULL DEFAULT 0"), ("retry_log", "TEXT"))


class History:
    """The job history's queries, written once for both databases: `?` placeholders, standard SQL. A backend gives
    the connection (`_write`, `_query`) and the one statement that differs (appending to `retry_log`)."""

    RETRY_SQL = ""  # UPDATE … SET status='queued', retries=?, worker=NULL, retry_log=<append ?> WHERE id=?
    where = ""  # what error messages name (a file, or the database's host and name: never a password)

    def _write(self, sql: str, args: tuple) -> int:
        raise NotImplementedError

    def _query(self, sql: str, args: tuple | list = ()) -> tuple[builtins.list[str], builtins.list[tuple]]:
        raise NotImplementedError

    def mark_running_interrupted(self) -> int:
        """After a restart, jobs that were running can no longer finish (queued ones are re-queued instead)."""
        return self._write(
            "UPDATE jobs SET status='interrupted', request=NULL, error=COALESCE(error, "
            "'server stopped before the job finished') WHERE status='running'",
            (),
        )

    def waiting(self) -> list[dict[str, Any]]:
        """Jobs left queued by a previous run, oldest first, with their stored request (None when there is none)."""
        names, rows = self._query("SELECT * FROM jobs WHERE status='queued' ORDER BY created_at")
        out = []
        for r in rows:
            d, raw = self._row(names, r), dict(zip(names, r)).get("request")
            try:
                d["request"] = json.loads(raw) if raw else None
            except ValueError:
                d["request"] = None
            out.append(d)
        return out

    def queued(
        self, job_id: str, kind: str, params: dict[str, Any], created_at: float, request: dict[str, Any] | None = None
    ) -> None:
        """A new job, or a re-queued one (same id) from a previous run."""
        prompt = str(params.get("prompt", "")) if isinstance(params, dict) else ""
        self._write(
            "INSERT INTO jobs(id, kind, status, prompt, params, created_at, request) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status='queued', "
            "started_at=NULL, finished_at=NULL, result=NULL, error=NULL, request=excluded.request",
            (
                job_id,
                kind,
                prompt,
                json.dumps(params, default=str),
                created_at,
                json.dumps(request, default=str) if request is not None else None,
            ),
        )

    def started(self, job_id: str, at: float, worker: str | None = None) -> None:
        self._write("UPDATE jobs SET status='running', started_at=?, worker=? WHERE id=?", (at, worker, job_id))

    def retried(self, job_id: str, retries: int, reason: str) -> None:
        """The job's worker died: it is queued again (`retries` times so far); the reason joins its retry_log."""
        self._write(self.RETRY_SQL, (retries, reason, job_id))

    def finished(self, job_id: str, status: str, result: dict[str, Any] | None, error: str | None, at: float) -> None:
        self._write(
            "UPDATE jobs SET status=?, result=?, error=?, finished_at=?, request=NULL WHERE id=?",
            (status, json.dumps(result, default=str) if result is not None else None, error, at, job_id),
        )

    def get(self, job_id: str) -> dict[str, Any] | None:
        names, rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return self._row(names, rows[0]) if rows else None

    def list(self, *, status: str | None = None, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM jobs WHERE 1=1"
        args: builtins.list[Any] = []
        if status:
            sql += " AND status=?"
            args.append(status)
        if search:
            sql += " AND prompt LIKE ? ESCAPE '\\'"
            args.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(max(1, min(int(limit), 1000)))
        names, rows = self._query(sql, args)
        return [self._row(names, r) for r in rows]

    @staticmethod
    def _row(names: builtins.list[str], row: tuple) -> dict[str, Any]:
        d = dict(zip(names, row))
        d.pop("request", None)  # only waiting() hands out the stored request (it may hold whole images)
        d["params"] = json.loads(d["params"] or "{}")
        d["result"] = json.loads(d["result"]) if d["result"] else None
        d["retry_log"] = json.loads(d["retry_log"]) if d.get("retry_log") else []
        return d

    def close(self) -> None:
        raise NotImplementedError


class JobHistory(History):
    """SQLite (`<data-dir>/easel.db`, the default)."""

    RETRY_SQL = (
        "UPDATE jobs SET status='queued', retries=?, worker=NULL, "
        "retry_log=json_insert(COALESCE(retry_log, '[]'), '$[#]', ?) WHERE id=?"
    )

    def __init__(self, file: Path):
        file.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.where = file, str(file)
        self._db = sqlite3.connect(str(file), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column, decl in MIGRATIONS:
                if column not in columns:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {decl}")

    def _write(self, sql: str, args: tuple) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                cur = self._db.execute(sql, args)
                self._db.execute("COMMIT")
                return cur.rowcount
            except BaseException as e:
                if self._db.in_transaction:  # SQLITE_FULL has already rolled back: a second ROLLBACK would raise
                    self._db.execute("ROLLBACK")
                if is_disk_full(e):
                    raise DiskFull(
                        f"disk full: free space in {self.file.parent}",
                        detail=f"the job history ({self.file}) could not be written: {e}",
                    ) from None
                raise

    def _query(self, sql: str, args: tuple | list = ()) -> tuple[builtins.list[str], builtins.list[tuple]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            return [d[0] for d in cur.description], cur.fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_history(url: str | None, default_file: Path) -> History:
    """`--database-url`: none or sqlite:///FILE for SQLite, postgresql://… for PostgreSQL (webui/history_pg.py)."""
    if not url:
        return JobHistory(default_file)
    if url.startswith("sqlite:///"):
        return JobHistory(Path(url[len("sqlite:///") :]).expanduser())
    if url.startswith(("postgresql://", "postgres://")):
        from webui.history_pg import PostgresHistory

        return PostgresHistory(url)
    raise ValueError("--database-url must be sqlite:///FILE or postgresql://USER@HOST[:PORT]/DB")
