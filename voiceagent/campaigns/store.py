"""Where campaigns live: the campaign, its contacts and where each stands, every dial attempt (the
audit: when, to whom, which script, which rule allowed it, what came of it), the do-not-call list
shared by all campaigns, and the outbox of messages promised on calls. SQLite, in the call store's
file by default.

A dial is claimed before it is placed: the attempt is written, and the contact's attempt count
raised, in one transaction before the INVITE leaves. A process killed mid-call therefore leaves an
attempt without an outcome, and `recover` (run when a campaign starts) settles it: an attempt that
was answered ends the contact (someone was talked to: not called again), one still ringing counts
as an attempt and the contact waits `retry_after_s` like after a failure. Nobody is called twice
beyond `max_attempts`, and nobody is called again after a conversation.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..store import connect, db_file
from .spec import Campaign, Contact, campaign_from_dict, phone_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,            -- running, paused, stopped, waiting, done
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,                     -- the dialer running it (host:pid:random), while its lease lasts
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS campaign_contacts (
    campaign TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ref TEXT NOT NULL,
    phone TEXT NOT NULL,            -- as the campaign dials it
    phone_key TEXT NOT NULL,        -- the number in E.164 (+8613800000001): what the rules compare
    customer_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    timezone TEXT NOT NULL DEFAULT '',
    consent TEXT NOT NULL DEFAULT '',
    segment TEXT,
    script TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'pending',
    next_at REAL NOT NULL DEFAULT 0,
    last_rule TEXT NOT NULL DEFAULT '',
    answered INTEGER NOT NULL DEFAULT 0,    -- a person was talked to
    callback_at TEXT,
    call_ids TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (campaign, idx)
);
CREATE INDEX IF NOT EXISTS campaign_contacts_due ON campaign_contacts(campaign, outcome, next_at);
CREATE UNIQUE INDEX IF NOT EXISTS campaign_contacts_key ON campaign_contacts(campaign, phone_key);
CREATE TABLE IF NOT EXISTS campaign_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT NOT NULL,
    contact_idx INTEGER NOT NULL,
    phone TEXT NOT NULL,             -- E.164, as phone_key
    script TEXT,
    rule TEXT NOT NULL,              -- why this dial was allowed (window, consent, dnc, cap checked)
    started_at REAL NOT NULL,
    answered_at REAL,
    person INTEGER NOT NULL DEFAULT 0,
    ended_at REAL,
    outcome TEXT,                    -- busy, no_answer, rejected, failed, machine, converted, ... interrupted
    sip_status INTEGER,
    call_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS campaign_attempts_phone ON campaign_attempts(phone, answered_at);
CREATE INDEX IF NOT EXISTS campaign_attempts_campaign ON campaign_attempts(campaign);
CREATE TABLE IF NOT EXISTS dnc (
    phone TEXT PRIMARY KEY,          -- E.164
    added_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT,
    customer_id TEXT,
    phone TEXT NOT NULL,
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
);
"""

FINAL = ("converted", "declined", "opted_out", "transferred", "callback", "machine", "busy", "no_answer",
         "rejected", "failed", "dnc", "no_consent")
OUTCOMES = (*FINAL, "outside_window", "pending")
PERSON_OUTCOMES = ("converted", "declined", "opted_out", "transferred", "callback")


@dataclass(frozen=True)
class ContactRow:
    campaign: str
    idx: int
    contact: Contact
    script: str | None
    attempts: int
    outcome: str
    next_at: float
    last_rule: str
    call_ids: tuple[str, ...]
    callback_at: str | None = None  # when a callee who was busy asked to be called back


class CampaignStore:
    def __init__(self, db_path: str | Path = "", country_code: str = "86"):
        """`country_code`: the country of numbers written without one (13800000001 is +8613800000001):
        the do-not-call list, the frequency cap and duplicates compare numbers in E.164."""
        self.country_code = country_code
        self.path = db_file(db_path)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.path, timeout=30)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock, self._connect() as conn:
            return conn.execute(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._connect() as conn:
            return conn.execute(sql, args).fetchall()

    def key(self, phone: str) -> str:
        return phone_key(phone, self.country_code) or phone

    # -- who runs a campaign ------------------------------------------------------------------
    def acquire(self, name: str, owner: str, lease_s: float = 30.0) -> str | None:
        """Take (or renew) the right to dial this campaign; None when taken, else the owner whose
        lease had run out before (a dead process: its open attempts are to be recovered) or ""."""
        now = time.time()
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT owner, lease_until FROM campaigns WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            holder, until = row
            if holder and holder != owner and until > now and _alive(holder):
                return None
            conn.execute("UPDATE campaigns SET owner = ?, lease_until = ? WHERE name = ?", (owner, now + lease_s, name))
            return holder if holder and holder != owner else ""

    def holder(self, name: str) -> str | None:
        """The live dialer of a campaign, if another process holds it now."""
        rows = self._read("SELECT owner, lease_until FROM campaigns WHERE name = ?", (name,))
        live = rows and rows[0][0] and rows[0][1] > time.time() and _alive(rows[0][0])
        return rows[0][0] if live else None

    def release(self, name: str, owner: str) -> None:
        self._write("UPDATE campaigns SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?", (name, owner))

    # -- campaigns ----------------------------------------------------------------------------
    def save_campaign(self, campaign: Campaign, contacts: Iterable[Contact], segments: dict[str, str] | None = None) -> int:
        """Create the campaign, or update its settings if it exists (a restart resumes it). Contacts
        already in it (the same ref or the same number) keep where they stand; new ones are added.
        Returns how many were added."""
        now = time.time()
        segments = segments or {}
        with self._lock, self._connect() as conn:
            conn.execute("INSERT INTO campaigns (name, spec, state, created_at, updated_at) VALUES (?,?,?,?,?) "
                         "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                         (campaign.name, json.dumps(campaign.to_dict(), ensure_ascii=False), "running", now, now))
            known, keys = set(), set()
            for ref, key in conn.execute("SELECT ref, phone_key FROM campaign_contacts WHERE campaign = ?", (campaign.name,)):
                known.add(ref)
                keys.add(key)
            start = conn.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM campaign_contacts WHERE campaign = ?",
                                 (campaign.name,)).fetchone()[0]
            rows = []
            for c in contacts:
                key = self.key(c.phone)
                if c.ref in known or key in keys:
                    continue
                known.add(c.ref)
                keys.add(key)
                rows.append((campaign.name, start + len(rows), c.ref, c.phone, key, c.customer_id, c.name, c.language,
                             c.timezone, c.consent, c.segment or segments.get(c.customer_id)))
            conn.executemany("INSERT INTO campaign_contacts (campaign, idx, ref, phone, phone_key, customer_id, name, "
                             "language, timezone, consent, segment) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def campaign(self, name: str) -> Campaign | None:
        rows = self._read("SELECT spec FROM campaigns WHERE name = ?", (name,))
        return campaign_from_dict(json.loads(rows[0][0])) if rows else None

    def campaigns(self) -> list[dict]:
        return [{"name": n, "state": s, "created_at": c, "updated_at": u}
                for n, s, c, u in self._read("SELECT name, state, created_at, updated_at FROM campaigns ORDER BY created_at")]

    def state(self, name: str) -> str | None:
        rows = self._read("SELECT state FROM campaigns WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_state(self, name: str, state: str) -> None:
        self._write("UPDATE campaigns SET state = ?, updated_at = ? WHERE name = ?", (state, time.time(), name))

    # -- contacts -----------------------------------------------------------------------------
    _CONTACT_SQL = ("SELECT campaign, idx, ref, phone, customer_id, name, language, timezone, consent, segment, script, "
                    "attempts, outcome, next_at, last_rule, call_ids, callback_at FROM campaign_contacts")

    @staticmethod
    def _row(r: tuple) -> ContactRow:
        return ContactRow(r[0], r[1], Contact(r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]), r[10], r[11], r[12],
                          r[13], r[14], tuple(json.loads(r[15])), r[16])

    def due(self, name: str, now: float, limit: int, skip: Iterable[int] = ()) -> list[ContactRow]:
        skip = tuple(skip)
        marks = ",".join("?" * len(skip))
        extra = f" AND idx NOT IN ({marks})" if skip else ""
        rows = self._read(self._CONTACT_SQL + " WHERE campaign = ? AND outcome = 'pending' AND next_at <= ?" + extra
                          + " ORDER BY next_at, idx LIMIT ?", (name, now, *skip, limit))
        return [self._row(r) for r in rows]

    def next_due(self, name: str) -> float | None:
        rows = self._read("SELECT MIN(next_at) FROM campaign_contacts WHERE campaign = ? AND outcome = 'pending'", (name,))
        return rows[0][0]

    def contacts(self, name: str) -> list[ContactRow]:
        return [self._row(r) for r in self._read(self._CONTACT_SQL + " WHERE campaign = ? ORDER BY idx", (name,))]

    def settle(self, name: str, idx: int, outcome: str | None = None, next_at: float | None = None,
               rule: str | None = None, script: str | None = None, callback_at: str | None = None) -> None:
        """Where a contact stands now: a final outcome, or pending until `next_at`."""
        sets, args = [], []
        for column, value in (("outcome", outcome), ("next_at", next_at), ("last_rule", rule), ("script", script),
                              ("callback_at", callback_at)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if sets:
            self._write(f"UPDATE campaign_contacts SET {', '.join(sets)} WHERE campaign = ? AND idx = ?", (*args, name, idx))

    def settle_many(self, name: str, rows: list[tuple[int, str, str]]) -> None:
        """Final outcomes for many contacts at once: (idx, outcome, rule)."""
        with self._lock, self._connect() as conn:
            conn.executemany("UPDATE campaign_contacts SET outcome = ?, last_rule = ? WHERE campaign = ? AND idx = ?",
                             [(outcome, rule, name, idx) for idx, outcome, rule in rows])

    def counts(self, name: str) -> dict[str, int]:
        """Contacts per stored outcome ("pending" included)."""
        return dict(self._read("SELECT outcome, COUNT(*) FROM campaign_contacts WHERE campaign = ? GROUP BY outcome",
                               (name,)))

    def dnc_numbers(self) -> set[str]:
        return {r[0] for r in self._read("SELECT phone FROM dnc")}

    # -- attempts (the audit) -----------------------------------------------------------------
    def claim(self, name: str, idx: int, script: str | None, rule: str, max_attempts: int,
              hold_s: float = 3600.0, now: float | None = None) -> tuple[int | None, str]:
        """Written before the dial, in one transaction: the attempt, the contact's count raised and its
        next try pushed `hold_s` on (whatever happens to this process). Returns (the attempt's id,
        "ok"), or (None, why) with nothing written: "not_due" (final, or not due yet: another
        dialer took it), "exhausted" (no attempts left), "in_call" (its number is being dialled,
        here or by another campaign). `now`: the dialer's clock."""
        now = time.time() if now is None else now
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT phone_key, attempts FROM campaign_contacts WHERE campaign = ? AND idx = ? "
                               "AND outcome = 'pending' AND next_at <= ?", (name, idx, now)).fetchone()
            if row is None:
                return None, "not_due"
            key, attempts = row
            if attempts >= max_attempts:
                return None, "exhausted"
            if conn.execute("SELECT 1 FROM campaign_attempts WHERE phone = ? AND outcome IS NULL", (key,)).fetchone():
                return None, "in_call"
            conn.execute("UPDATE campaign_contacts SET attempts = attempts + 1, script = COALESCE(script, ?), "
                         "last_rule = ?, next_at = ? WHERE campaign = ? AND idx = ?", (script, rule, now + hold_s, name, idx))
            cur = conn.execute("INSERT INTO campaign_attempts (campaign, contact_idx, phone, script, rule, started_at) "
                               "VALUES (?,?,?,?,?,?)", (name, idx, key, script, rule, time.time()))
            return int(cur.lastrowid), "ok"

    def answered(self, attempt_id: int) -> None:
        self._write("UPDATE campaign_attempts SET answered_at = ? WHERE id = ?", (time.time(), attempt_id))

    def conclude(self, attempt_id: int, outcome: str, *, final: bool, retry_at: float | None = None,
                 sip_status: int | None = None, call_id: str | None = None, person: bool = False,
                 detail: dict | None = None, rule: str | None = None) -> None:
        """An attempt's outcome and where its contact stands after it (final, or pending until
        `retry_at`), in one transaction: a process killed in between leaves neither."""
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE campaign_attempts SET ended_at = ?, outcome = ?, sip_status = ?, call_id = ?, person = ?, "
                         "detail = ? WHERE id = ?", (time.time(), outcome, sip_status, call_id, int(person),
                                                     json.dumps(detail or {}, ensure_ascii=False), attempt_id))
            row = conn.execute("SELECT campaign, contact_idx FROM campaign_attempts WHERE id = ?", (attempt_id,)).fetchone()
            ids = json.loads(conn.execute("SELECT call_ids FROM campaign_contacts WHERE campaign = ? AND idx = ?",
                                          row).fetchone()[0])
            if call_id:
                ids.append(call_id)
            conn.execute("UPDATE campaign_contacts SET call_ids = ?, answered = MAX(answered, ?), outcome = ?, next_at = ?, "
                         "last_rule = COALESCE(?, last_rule) WHERE campaign = ? AND idx = ?",
                         (json.dumps(ids), int(person), outcome if final else "pending",
                          retry_at if retry_at is not None else 0.0, rule, *row))

    def recover(self, name: str, retry_after_s: float, max_attempts: int, now: float | None = None) -> int:
        """Settle the attempts a killed process left open (see the module's docstring). Returns how
        many. `now`: the dialer's clock."""
        now = time.time() if now is None else now
        with self._lock, self._connect() as conn:
            open_ = conn.execute("SELECT id, contact_idx, answered_at FROM campaign_attempts WHERE campaign = ? "
                                 "AND outcome IS NULL", (name,)).fetchall()
            for attempt_id, idx, answered_at in open_:
                conn.execute("UPDATE campaign_attempts SET outcome = 'interrupted', ended_at = ? WHERE id = ?",
                             (now, attempt_id))
                attempts = conn.execute("SELECT attempts FROM campaign_contacts WHERE campaign = ? AND idx = ?",
                                        (name, idx)).fetchone()[0]
                if answered_at is not None or attempts >= max_attempts:
                    conn.execute("UPDATE campaign_contacts SET outcome = 'failed', last_rule = 'interrupted' "
                                 "WHERE campaign = ? AND idx = ? AND outcome = 'pending'", (name, idx))
                else:
                    conn.execute("UPDATE campaign_contacts SET next_at = ?, last_rule = 'interrupted' "
                                 "WHERE campaign = ? AND idx = ? AND outcome = 'pending'", (now + retry_after_s, name, idx))
        return len(open_)

    def attempts(self, name: str) -> list[dict]:
        cols = ("id", "contact_idx", "phone", "script", "rule", "started_at", "answered_at", "person", "ended_at",
                "outcome", "sip_status", "call_id", "detail")
        rows = self._read(f"SELECT {', '.join(cols)} FROM campaign_attempts WHERE campaign = ? ORDER BY id", (name,))
        return [dict(zip(cols, r), detail=json.loads(r[-1])) for r in rows]

    def people_reached_since(self, phone: str, since: float) -> int:
        """Conversations with this number since `since`, in every campaign (the frequency cap); a
        call answered and still going counts."""
        return self._read("SELECT COUNT(*) FROM campaign_attempts WHERE phone = ? AND answered_at >= ? "
                          "AND (person = 1 OR outcome IS NULL)", (self.key(phone), since))[0][0]

    def script_stats(self, name: str, segment: str | None = None) -> dict[str, tuple[int, int]]:
        """Per script: (contacts a person answered, converted), within one segment if given."""
        seg = " AND segment IS ?" if segment is not None else ""
        rows = self._read("SELECT script, SUM(answered), SUM(outcome = 'converted') FROM campaign_contacts "
                          "WHERE campaign = ? AND script IS NOT NULL" + seg + " GROUP BY script",
                          (name, segment) if segment is not None else (name,))
        return {s: (int(a or 0), int(c or 0)) for s, a, c in rows}

    # -- do-not-call and the outbox -------------------------------------------------------------
    def dnc_add(self, phones: Iterable[str], source: str = "operator") -> int:
        now = time.time()
        with self._lock, self._connect() as conn:
            cur = conn.executemany("INSERT OR IGNORE INTO dnc VALUES (?,?,?)", [(self.key(p), now, source) for p in phones])
            return cur.rowcount

    def dnc_remove(self, phones: Iterable[str]) -> int:
        with self._lock, self._connect() as conn:
            return conn.executemany("DELETE FROM dnc WHERE phone = ?", [(self.key(p),) for p in phones]).rowcount

    def dnc_list(self) -> list[dict]:
        return [{"phone": p, "added_at": a, "source": s} for p, a, s in self._read("SELECT phone, added_at, source FROM dnc ORDER BY added_at")]

    def on_dnc(self, phone: str) -> bool:
        return bool(self._read("SELECT 1 FROM dnc WHERE phone = ?", (self.key(phone),)))

    def queue_message(self, campaign: str, customer_id: str, phone: str, text: str, channel: str = "sms") -> None:
        self._write("INSERT INTO outbox (campaign, customer_id, phone, channel, text, created_at) VALUES (?,?,?,?,?,?)",
                    (campaign, customer_id, phone, channel, text, time.time()))

    def outbox(self, campaign: str | None = None) -> list[dict]:
        where, args = (" WHERE campaign = ?", (campaign,)) if campaign else ("", ())
        cols = ("id", "campaign", "customer_id", "phone", "channel", "text", "created_at", "status")
        return [dict(zip(cols, r)) for r in self._read(f"SELECT {', '.join(cols)} FROM outbox{where} ORDER BY id", args)]


def _alive(owner: str) -> bool:
    """Whether a dialer "host:pid:tag" may still be running: one on this host whose process is gone
    (killed) is not, so a restart takes its campaign over at once rather than when the lease ends."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def campaign_store(config) -> CampaignStore:
    """The configured store: the call store's database, numbers in the configured country."""
    return CampaignStore(config.store.db, config.campaigns.default_country_code)


__all__ = ["CampaignStore", "campaign_store", "ContactRow", "FINAL", "OUTCOMES", "PERSON_OUTCOMES"]
