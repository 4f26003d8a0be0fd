"""The call center's tickets (returns, exchanges, refund reviews, complaints, callbacks) in the call
store, so that every worker of a shared store sees the same ones: a caller who opened a return on one
worker and calls back through another is told it is open already.

Ids are as the shop file makes them: a prefix per kind, the day (yymmdd) and a 4-digit counter
(RT2503100001), the day's last number plus one. Two workers numbering the same day at once may both
pick the same; the insert is ON CONFLICT DO NOTHING, so the one that lost sees no row come back and
reads the last number again.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import Callable

from ..cluster import worker_name
from ..db import Database
from ..store import store_database
from .repository import Order, Ticket

log = logging.getLogger(__name__)

PREFIXES = {"return": "RT", "exchange": "EX", "refund_review": "RF", "complaint": "CP", "callback": "CB"}
MAX_DETAIL = 500
MAX_TRIES = 100  # reads of the day's last number before giving up (each lost race is one more)


class TicketBook:
    """Tickets in the store (`db`: [store] db or a Database). `today`: the day ids are numbered by
    (the shop's own date in the demo, else the calendar's)."""

    def __init__(self, db: str | Path | Database = "", worker: str = "", today: Callable[[], date] = date.today):
        self.db = store_database(db)
        self.worker = worker_name(worker)
        self.today = today

    def create(self, kind: str, order: Order | None, reason: str | None, detail: str = "",
               call_id: str | None = None, day: date | None = None) -> Ticket:
        """A new open ticket; ValueError for a kind there is no prefix for."""
        if kind not in PREFIXES:
            raise ValueError(f"unknown ticket kind {kind!r}: one of {', '.join(PREFIXES)}")
        prefix = PREFIXES[kind] + (day or self.today()).strftime("%y%m%d")
        row = (kind, order.order_id if order else None, order.customer_id if order else None, reason,
               (detail or "")[:MAX_DETAIL], "open", datetime.now().isoformat(timespec="seconds"), call_id, self.worker)
        for _ in range(MAX_TRIES):
            with self.db.connect() as conn:
                conn.begin_write()  # SQLite: no other writer between the read and the insert
                # the range lets the primary key's index find the day's tickets whatever the collation
                # (Postgres cannot use it for LIKE outside the C locale); LIKE keeps what is exactly the prefix's
                last = conn.execute("SELECT ticket_id FROM tickets WHERE ticket_id >= ? AND ticket_id <= ? "
                                    "AND ticket_id LIKE ? ORDER BY LENGTH(ticket_id) DESC, ticket_id DESC LIMIT 1",
                                    (prefix + "0", prefix + "9" * 8, prefix + "%")).fetchone()  # 10000 after 9999
                tail = last[0][len(prefix):] if last else "0"
                ticket_id = f"{prefix}{(int(tail) if tail.isdigit() else 0) + 1:04d}"
                if conn.execute("INSERT INTO tickets (ticket_id, kind, order_id, customer_id, reason, detail, status, "
                                "created_at, call_id, worker) VALUES (?,?,?,?,?,?,?,?,?,?) "
                                "ON CONFLICT (ticket_id) DO NOTHING RETURNING ticket_id",
                                (ticket_id, *row)).fetchone() is not None:
                    return Ticket(ticket_id, kind, row[1], reason)
            # Postgres: another worker's insert of this number committed first (ON CONFLICT waited for it),
            # so the next read sees it and takes the number after
            log.debug("ticket %s taken by another worker; trying the next", ticket_id)
        raise RuntimeError(f"no free {prefix} ticket number after {MAX_TRIES} tries")

    def open_ticket(self, order_id: str, kind: str) -> Ticket | None:
        """The order's open ticket of this kind (the oldest, if several), None if there is none."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT ticket_id, kind, order_id, reason FROM tickets WHERE order_id = ? AND kind = ? "
                               "AND status = 'open' ORDER BY created_at, ticket_id LIMIT 1", (order_id, kind)).fetchone()
        return Ticket(*row) if row else None

    def get(self, ticket_id: str) -> dict | None:
        """Everything kept of a ticket (the console, the tests)."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT ticket_id, kind, order_id, customer_id, reason, detail, status, created_at, "
                               "call_id, worker FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return dict(zip(row.keys(), row)) if row else None
