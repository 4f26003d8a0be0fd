"""Where calls are kept: SQLite by default, one row per finished call with its masked record, and
the handoff summaries, stored the moment a transfer starts so that the human's desk can read them
while the call rings."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from . import paths
from .record import CallRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    language TEXT,
    customer_id TEXT,
    duration_s REAL,
    handoff INTEGER NOT NULL,
    handoff_reason TEXT,
    resolved INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE TABLE IF NOT EXISTS handoffs (
    call_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    reason TEXT,
    target TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS handoffs_created ON handoffs(created_at);
"""


def db_file(db_path: str | Path = "") -> Path:
    """The store's SQLite file ([store] db; empty: var/calls.db), its folder made."""
    path = Path(db_path) if db_path else paths.var_dir() / "calls.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def connect(path: Path, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection in WAL mode: readers never wait for the one writer (calls, campaigns)."""
    conn = sqlite3.connect(path, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class CallStore:
    def __init__(self, db_path: str | Path = ""):
        self.path = db_file(db_path)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def save(self, record: CallRecord) -> None:
        data = record.masked()
        with self._lock, self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?)",
                (record.call_id, record.started_at, record.language, record.customer_id, record.duration_s,
                 int(record.outcome.handoff), record.outcome.handoff_reason, int(record.outcome.resolved),
                 json.dumps(data, ensure_ascii=False)),
            )
            if record.handoff:
                _insert_handoff(conn, dict(data["handoff"], call_id=record.call_id))

    def _documents(self, sql: str, args: tuple) -> list[dict]:
        """The JSON documents (records, summaries) a query selects."""
        with self._connect() as conn:
            return [json.loads(row[0]) for row in conn.execute(sql, args).fetchall()]

    def get(self, call_id: str) -> dict | None:
        found = self._documents("SELECT record FROM calls WHERE call_id = ?", (call_id,))
        return found[0] if found else None

    def recent(self, limit: int = 20) -> list[dict]:
        return self._documents("SELECT record FROM calls ORDER BY started_at DESC LIMIT ?", (limit,))

    def save_handoff(self, summary: dict) -> None:
        """A handoff summary (dialog/handoff.py; already masked), keyed by its call."""
        with self._lock, self._connect() as conn:
            _insert_handoff(conn, summary)

    def handoff(self, call_id: str) -> dict | None:
        found = self._documents("SELECT summary FROM handoffs WHERE call_id = ?", (call_id,))
        return found[0] if found else None

    def recent_handoffs(self, limit: int = 20) -> list[dict]:
        return self._documents("SELECT summary FROM handoffs ORDER BY created_at DESC LIMIT ?", (limit,))

def _insert_handoff(conn: sqlite3.Connection, summary: dict) -> None:
    conn.execute("INSERT OR REPLACE INTO handoffs VALUES (?,?,?,?,?)",
                 (summary["call_id"], summary.get("created_at", ""), summary.get("reason"), summary.get("target"),
                  json.dumps(summary, ensure_ascii=False)))
