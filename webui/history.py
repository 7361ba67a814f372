"""Job history in SQLite (`<data-dir>/easel.db`): every job is written when queued, started and finished, in WAL
mode and one transaction per change, so a crash or kill -9 loses nothing that had finished."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
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
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
"""


class JobHistory:
    def __init__(self, file: Path):
        file.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(file), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def mark_unfinished_interrupted(self) -> int:
        """After a restart, jobs that were queued or running can no longer finish."""
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE jobs SET status='interrupted', error=COALESCE(error, 'server stopped before the job finished')"
                " WHERE status IN ('queued', 'running')")
            return cur.rowcount

    def _write(self, sql: str, args: tuple) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def queued(self, job_id: str, kind: str, params: dict[str, Any], created_at: float) -> None:
        prompt = str(params.get("prompt", "")) if isinstance(params, dict) else ""
        self._write("INSERT INTO jobs(id, kind, status, prompt, params, created_at) VALUES (?, ?, 'queued', ?, ?, ?)",
                    (job_id, kind, prompt, json.dumps(params, default=str), created_at))

    def started(self, job_id: str, at: float) -> None:
        self._write("UPDATE jobs SET status='running', started_at=? WHERE id=?", (at, job_id))

    def finished(self, job_id: str, status: str, result: dict[str, Any] | None, error: str | None, at: float) -> None:
        self._write("UPDATE jobs SET status=?, result=?, error=?, finished_at=? WHERE id=?",
                    (status, json.dumps(result, default=str) if result is not None else None, error, at, job_id))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            names = [d[0] for d in self._db.execute("SELECT * FROM jobs LIMIT 0").description]
        return self._row(names, row) if row else None

    def list(self, *, status: str | None = None, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if status:
            sql += " AND status=?"
            args.append(status)
        if search:
            sql += " AND prompt LIKE ? ESCAPE '\\'"
            args.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(max(1, min(int(limit), 1000)))
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [self._row(names, r) for r in rows]

    @staticmethod
    def _row(names: list[str], row: tuple) -> dict[str, Any]:
        d = dict(zip(names, row))
        d["params"] = json.loads(d["params"] or "{}")
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def close(self) -> None:
        with self._lock:
            self._db.close()
