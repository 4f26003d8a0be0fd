"""Where calls are kept: one row per finished call with its masked record, and the handoff summaries,
stored the moment a transfer starts so that the human's desk can read them while the call rings.

SQLite by default (var/calls.db); a Postgres URL in [store] db puts every worker's calls in one place
(voiceagent/db.py). Each row says which worker took the call."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

from . import paths
from .cluster import worker_name
from .db import Database, open_database, transient_errors
from .record import CallRecord

log = logging.getLogger(__name__)
RETRY_WAITS_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # ~15 s: a Postgres restart or a managed failover's switch


def SPOOL_DIR() -> Path:  # noqa: N802 - a place, read each time (VOICEAGENT_VAR may change in tests)
    return paths.var_dir() / "unsaved-calls"


def _safe_name(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", call_id)[:100] or "call"

_CALL_COLUMNS = "call_id, started_at, language, customer_id, duration_s, handoff, handoff_reason, resolved, record, worker"
_UPSERT_CALL = (f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (call_id) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _CALL_COLUMNS.split(", ")[1:]))
_UPSERT_HANDOFF = ("INSERT INTO handoffs (call_id, created_at, reason, target, summary) VALUES (?,?,?,?,?) "
                   "ON CONFLICT (call_id) DO UPDATE SET created_at = excluded.created_at, reason = excluded.reason, "
                   "target = excluded.target, summary = excluded.summary")


def store_database(db: str | Path | Database = "", pool_size: int = 4) -> Database:
    """The store's database from [store] db (or one already open)."""
    return db if isinstance(db, Database) else open_database(db, pool_size)


class CallStore:
    def __init__(self, db: str | Path | Database = "", worker: str = ""):
        self.db = store_database(db)
        self.worker = worker_name(worker)

    @property
    def path(self) -> Path | None:
        return self.db.path

    def save(self, record: CallRecord) -> None:
        """Store a finished call. A store that is briefly unreachable (Postgres restarting or failing over,
        SQLite locked) is retried for about 15 s; after that the record is spooled to var/unsaved-calls/ and
        stored by the next `replay_spooled()` (every start of `serve`): a call's record is never dropped."""
        if not record.worker:
            record.worker = self.worker
        data = record.masked()
        for wait in (*RETRY_WAITS_S, None):
            try:
                self._write(data)
                return
            except transient_errors() as exc:
                if wait is None:
                    path = self._spool(data)
                    log.error("call %s: the store is unreachable (%s); the record is kept in %s until it is back",
                              record.call_id, exc, path)
                    raise
                time.sleep(wait)

    def _write(self, data: dict) -> None:
        outcome = data["outcome"]
        with self.db.connect() as conn:
            conn.execute(_UPSERT_CALL, (
                data["call_id"], data["started_at"], data["language"], data.get("customer_id"), data.get("duration_s"),
                int(bool(outcome.get("handoff"))), outcome.get("handoff_reason"), int(bool(outcome.get("resolved"))),
                json.dumps(data, ensure_ascii=False), data.get("worker") or self.worker))
            if data.get("handoff"):
                _insert_handoff(conn, dict(data["handoff"], call_id=data["call_id"]))

    def _spool(self, data: dict) -> Path:
        SPOOL_DIR().mkdir(parents=True, exist_ok=True)
        path = SPOOL_DIR() / f"{_safe_name(data['call_id'])}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)  # whole or absent, even if the process dies here
        return path

    def replay_spooled(self) -> int:
        """Store the records spooled while the store was unreachable; the number stored."""
        stored = 0
        for path in sorted(SPOOL_DIR().glob("*.json")) if SPOOL_DIR().exists() else ():
            try:
                self._write(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError) as exc:
                log.error("spooled record %s cannot be read (%s): left in place", path, exc)
                continue
            path.unlink()
            stored += 1
        if stored:
            log.info("stored %d call record(s) spooled while the store was unreachable", stored)
        return stored

    def _documents(self, sql: str, args: tuple) -> list[dict]:
        """The JSON documents (records, summaries) a query selects."""
        with self.db.connect() as conn:
            return [json.loads(row[0]) for row in conn.execute(sql, args).fetchall()]

    def get(self, call_id: str) -> dict | None:
        found = self._documents("SELECT record FROM calls WHERE call_id = ?", (call_id,))
        return found[0] if found else None

    def recent(self, limit: int = 20) -> list[dict]:
        return self._documents("SELECT record FROM calls ORDER BY started_at DESC LIMIT ?", (limit,))

    def count(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def save_handoff(self, summary: dict) -> None:
        """A handoff summary (dialog/handoff.py; already masked), keyed by its call."""
        with self.db.connect() as conn:
            _insert_handoff(conn, summary)

    def handoff(self, call_id: str) -> dict | None:
        found = self._documents("SELECT summary FROM handoffs WHERE call_id = ?", (call_id,))
        return found[0] if found else None

    def recent_handoffs(self, limit: int = 20) -> list[dict]:
        return self._documents("SELECT summary FROM handoffs ORDER BY created_at DESC LIMIT ?", (limit,))


def _insert_handoff(conn, summary: dict) -> None:
    conn.execute(_UPSERT_HANDOFF, (summary["call_id"], summary.get("created_at", ""), summary.get("reason"),
                                   summary.get("target"), json.dumps(summary, ensure_ascii=False)))
