"""Where campaigns live: the campaign, its contacts and where each stands, every dial attempt (the
audit: when, to whom, which script, which rule allowed it, what came of it), the do-not-call list
shared by all campaigns, and the outbox of messages promised on calls. In the store's database
(voiceagent/db.py): the SQLite file of one process, or the Postgres server every worker shares.

Several dialers (one per worker) run one campaign together. A contact is leased before it is
dialled: `lease` takes due contacts for one dialer (`leased_by`, `lease_until`) in one transaction
that also counts the campaign's live leases, so `max_concurrent` (read from the stored campaign, so a
change reaches every dialer at its next lease) holds across all of them (Postgres: the campaign's row
locked, contacts read FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE). The dialer renews its leases
while the calls last and gives each back when its attempt is concluded.

A lease is held by one dialer, not by a worker name: `leased_by` is the dialer's holder id (`lease_holder`:
the worker's name, host:pid and a random part), so two processes started under one name (a
`docker compose exec worker-1 voiceagent campaign ...` inherits VOICEAGENT_WORKER) never take each
other's contacts for a dead previous life's. The audit (`campaign_attempts.worker`) and `holders()`
keep the worker's name. Lease times are on the database's clock (`Database.now()`), never a
dialer's: workers on machines whose clocks disagree still agree on when a lease ran out; when a
contact is next due (`next_at`) stays on the dialer's clock, which decides calling windows.

A dial is claimed before it is placed: the attempt is written, and the contact's attempt count
raised, in one transaction before the INVITE leaves. A dialer killed mid-call therefore leaves an
attempt without an outcome under a lease nobody renews; once the lease runs out (at once, on one
machine's SQLite store, when its process is gone), whoever leases next settles it: the attempt is
closed as 'interrupted', an attempt that was answered ends the contact (someone was talked to: not
called again), one still ringing counts as an attempt and the contact waits `retry_after_s` like
after a failure. Nobody is called twice beyond `max_attempts`, nobody is called again after a
conversation, no contact is dialled by two dialers at once and none is lost with a dead worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..cluster import worker_name
from ..db import Connection, Database
from ..store import store_database
from .spec import Campaign, Contact, campaign_from_dict, phone_key

FINAL = ("converted", "declined", "opted_out", "transferred", "callback", "machine", "busy", "no_answer",
         "rejected", "failed", "dnc", "no_consent")
OUTCOMES = (*FINAL, "outside_window", "pending")
PERSON_OUTCOMES = ("converted", "declined", "opted_out", "transferred", "callback")
LEASE_S = 60.0  # how long a contact stays a dialer's without a renewal: a dead worker's come back after this


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
    def __init__(self, db: str | Path | Database = "", country_code: str = "86", worker: str = ""):
        """`db`: [store] db (a SQLite path, a postgresql:// URL) or an open Database. `country_code`: the
        country of numbers written without one (13800000001 is +8613800000001): the do-not-call list, the
        frequency cap and duplicates compare numbers in E.164. `worker`: the name this process's dialers
        lease contacts under ([cluster] worker, else host:pid; each dialer's leases are its own, see
        `lease_holder`)."""
        self.country_code = country_code
        self.db = store_database(db)
        self.worker = worker_name(worker)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on Postgres)."""
        return self.db.path

    def _write(self, sql: str, args: tuple = ()) -> int:
        return self.db.write(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.db.all(sql, args)

    def key(self, phone: str) -> str:
        return phone_key(phone, self.country_code) or phone

    # -- campaigns ----------------------------------------------------------------------------
    def save_campaign(self, campaign: Campaign, contacts: Iterable[Contact], segments: dict[str, str] | None = None) -> int:
        """Create the campaign, or update its settings if it exists (a restart resumes it). Contacts
        already in it (the same ref or the same number) keep where they stand; new ones are added.
        Returns how many were added."""
        now = time.time()
        segments = segments or {}
        with self.db.connect() as conn:
            conn.execute("INSERT INTO campaigns (name, spec, state, created_at, updated_at) VALUES (?,?,?,?,?) "
                         "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                         (campaign.name, json.dumps(campaign.to_dict(), ensure_ascii=False), "running", now, now))
            # the upsert holds the campaign's row until commit: two workers loading one file add each contact once
            known, keys = set(), set()
            for ref, key in conn.execute("SELECT ref, phone_key FROM campaign_contacts WHERE campaign = ?",
                                         (campaign.name,)).fetchall():
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
            if rows:
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

    def set_state(self, name: str, state: str, only_from: tuple[str, ...] = ()) -> bool:
        """Set the campaign's state (every dialer follows it); with `only_from`, only from one of those
        states (a dialer's own bookkeeping never overrides an operator's pause or stop)."""
        where = f" AND state IN ({','.join('?' * len(only_from))})" if only_from else ""
        return self._write(f"UPDATE campaigns SET state = ?, updated_at = ? WHERE name = ?{where}",
                           (state, time.time(), name, *only_from)) > 0

    def end_run(self, name: str, holder: str) -> str:
        """The campaign's state once one dialer's run ends (`holder`: its lease holder id), returned:
        done when no contact is left; when some are, waiting unless another dialer still holds a
        contact (then running). A paused or stopped campaign stays so."""
        lease_now = self.db.now()
        with self.db.connect() as conn:
            conn.begin_write()
            row = conn.execute("SELECT state FROM campaigns WHERE name = ?" + conn.for_update(), (name,)).fetchone()
            if row is None:
                return "gone"
            if row[0] not in ("running", "waiting", "done"):
                return row[0]
            pending = conn.execute("SELECT 1 FROM campaign_contacts WHERE campaign = ? AND outcome = 'pending' LIMIT 1",
                                   (name,)).fetchone()
            others = conn.execute("SELECT 1 FROM campaign_contacts WHERE campaign = ? AND lease_until > ? "
                                  "AND leased_by <> ? LIMIT 1", (name, lease_now, holder)).fetchone()
            state = "done" if pending is None else "running" if others else "waiting"
            conn.execute("UPDATE campaigns SET state = ?, updated_at = ? WHERE name = ?", (state, time.time(), name))
            return state

    # -- contacts -----------------------------------------------------------------------------
    _CONTACT_SQL = ("SELECT campaign, idx, ref, phone, customer_id, name, language, timezone, consent, segment, script, "
                    "attempts, outcome, next_at, last_rule, call_ids, callback_at FROM campaign_contacts")

    @staticmethod
    def _row(r: tuple) -> ContactRow:
        return ContactRow(r[0], r[1], Contact(r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]), r[10], r[11], r[12],
                          r[13], r[14], tuple(json.loads(r[15])), r[16])

    def due(self, name: str, now: float, limit: int, skip: Iterable[int] = ()) -> list[ContactRow]:
        """Contacts due by `now` (the dialer's clock) that no dialer holds (a read: `lease` is what takes
        them)."""
        lease_now = self.db.now()
        skip = tuple(skip)
        marks = ",".join("?" * len(skip))
        extra = f" AND idx NOT IN ({marks})" if skip else ""
        rows = self._read(self._CONTACT_SQL + " WHERE campaign = ? AND outcome = 'pending' AND next_at <= ? "
                          "AND lease_until <= ?" + extra + " ORDER BY next_at, idx LIMIT ?",
                          (name, now, lease_now, *skip, limit))
        return [self._row(r) for r in rows]

    def next_due(self, name: str, now: float | None = None) -> float | None:
        """When the campaign may next have a contact to dial, on the clock of `now` (the dialer's; by
        default the database's): a pending contact's next try, or for one a dialer holds, its lease's
        end (a live dialer concludes it before, a dead one's comes back then)."""
        lease_now = self.db.now()
        now = lease_now if now is None else now
        rows = self._read("SELECT MIN(CASE WHEN lease_until > 0 THEN NULL ELSE next_at END), "
                          "MIN(CASE WHEN lease_until > 0 THEN lease_until END) "
                          "FROM campaign_contacts WHERE campaign = ? AND outcome = 'pending'", (name,))
        next_at, lease_until = rows[0]
        # a lease's end is on the database's clock: moved onto the caller's
        ends = [t for t in (next_at, None if lease_until is None else lease_until - lease_now + now) if t is not None]
        return min(ends) if ends else None

    def contacts(self, name: str) -> list[ContactRow]:
        return [self._row(r) for r in self._read(self._CONTACT_SQL + " WHERE campaign = ? ORDER BY idx", (name,))]

    def settle(self, name: str, idx: int, outcome: str | None = None, next_at: float | None = None,
               rule: str | None = None, script: str | None = None, callback_at: str | None = None,
               holder: str | None = None) -> None:
        """Where a contact stands now: a final outcome, or pending until `next_at`; `holder`: the lease
        this dialer held on it is given back in the same transaction."""
        sets, args = [], []
        for column, value in (("outcome", outcome), ("next_at", next_at), ("last_rule", rule), ("script", script),
                              ("callback_at", callback_at)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        with self.db.connect() as conn:
            if sets:
                conn.execute(f"UPDATE campaign_contacts SET {', '.join(sets)} WHERE campaign = ? AND idx = ?",
                             (*args, name, idx))
            if holder:
                conn.execute("UPDATE campaign_contacts SET leased_by = NULL, lease_until = 0 WHERE campaign = ? "
                             "AND idx = ? AND leased_by = ?", (name, idx, holder))

    def settle_many(self, name: str, rows: list[tuple[int, str, str]]) -> None:
        """Final outcomes for many contacts at once: (idx, outcome, rule)."""
        if not rows:
            return
        with self.db.connect() as conn:
            conn.executemany("UPDATE campaign_contacts SET outcome = ?, last_rule = ? WHERE campaign = ? AND idx = ?",
                             [(outcome, rule, name, idx) for idx, outcome, rule in rows])

    def counts(self, name: str) -> dict[str, int]:
        """Contacts per stored outcome ("pending" included)."""
        return {o: int(n) for o, n in self._read("SELECT outcome, COUNT(*) FROM campaign_contacts WHERE campaign = ? "
                                                 "GROUP BY outcome", (name,))}

    def dnc_numbers(self) -> set[str]:
        return {r[0] for r in self._read("SELECT phone FROM dnc")}

    # -- leases: which dialer holds which contact --------------------------------------------------
    def lease(self, campaign: Campaign, holder: str, limit: int, now: float | None = None,
              lease_s: float = LEASE_S) -> list[ContactRow]:
        """Up to `limit` due contacts for the dialer `holder` (its `lease_holder` id), held for `lease_s`
        (renew them while their calls last), never more than the stored campaign's `max_concurrent`
        held by all dialers together. Contacts whose dialer is gone are settled first (see the
        module's docstring). `now`: the dialer's clock (what is due); leases: the database's."""
        now = time.time() if now is None else now
        lease_now = self.db.now()
        name = campaign.name
        with self.db.connect() as conn:
            conn.begin_write()
            # one leasing transaction per campaign at a time: the count of live leases below stays true
            # until this one's are written (Postgres; SQLite's BEGIN IMMEDIATE already holds the file)
            stored = conn.execute("SELECT spec FROM campaigns WHERE name = ?" + conn.for_update(), (name,)).fetchone()
            if stored is None:
                return []
            # the stored spec, not this dialer's copy: a changed max_concurrent holds on every worker at once
            max_concurrent = _stored_max_concurrent(stored[0], campaign.max_concurrent)
            self._recover(conn, name, campaign.retry_after_s, campaign.max_attempts, now, lease_now)
            held = conn.execute("SELECT COUNT(*) FROM campaign_contacts WHERE campaign = ? AND lease_until > ?",
                                (name, lease_now)).fetchone()[0]
            take = min(limit, max_concurrent - int(held))
            if take <= 0:
                return []
            rows = conn.execute(self._CONTACT_SQL + " WHERE campaign = ? AND outcome = 'pending' AND next_at <= ? "
                                "AND lease_until <= ? ORDER BY next_at, idx LIMIT ?" + conn.for_update(skip_locked=True),
                                (name, now, lease_now, take)).fetchall()
            if rows:
                conn.executemany("UPDATE campaign_contacts SET leased_by = ?, lease_until = ? WHERE campaign = ? AND idx = ?",
                                 [(holder, lease_now + lease_s, name, r[1]) for r in rows])
            return [self._row(r) for r in rows]

    def renew(self, name: str, holder: str, idxs: Iterable[int], lease_s: float = LEASE_S) -> int:
        """Push the leases `holder` still holds on these contacts to `lease_s` from now (the database's
        clock). Returns how many it still held (fewer: a lease ran out and another dialer settled the
        contact)."""
        idxs = sorted(set(idxs))
        if not idxs:
            return 0
        until = self.db.now() + lease_s
        marks = ",".join("?" * len(idxs))
        return self._write(f"UPDATE campaign_contacts SET lease_until = ? WHERE campaign = ? AND leased_by = ? "
                           f"AND lease_until > 0 AND idx IN ({marks})", (until, name, holder, *idxs))

    def holders(self, name: str, now: float | None = None) -> dict[str, int]:
        """The workers whose dialers hold contacts of this campaign at `now` (the database's clock, by
        default its present): worker name -> contacts held (two processes under one name add up)."""
        now = self.db.now() if now is None else now
        out: dict[str, int] = {}
        for holder, n in self._read("SELECT leased_by, COUNT(*) FROM campaign_contacts WHERE campaign = ? "
                                    "AND lease_until > ? GROUP BY leased_by", (name, now)):
            worker = holder_worker(holder or "")
            out[worker] = out.get(worker, 0) + int(n)
        return out

    # -- attempts (the audit) -----------------------------------------------------------------
    def claim(self, name: str, idx: int, script: str | None, rule: str, max_attempts: int,
              hold_s: float = 3600.0, now: float | None = None, holder: str | None = None) -> tuple[int | None, str]:
        """Written before the dial, in one transaction: the attempt, the contact's count raised and its
        next try pushed `hold_s` on (whatever happens to this process). Returns (the attempt's id,
        "ok"), or (None, why) with nothing written: "not_due" (final, not due yet, or, with `holder`,
        not under a live lease of that dialer's), "exhausted" (no attempts left), "dnc" (on the
        do-not-call list since the rules were checked), "in_call" (its number is being dialled, here or
        by another campaign). `now`: the dialer's clock. The attempt is audited under the holder's
        worker name."""
        now = time.time() if now is None else now
        lease_now = self.db.now() if holder else 0.0
        with self.db.connect() as conn:
            conn.begin_write()
            mine, args = (" AND leased_by = ? AND lease_until > ?", (holder, lease_now)) if holder else ("", ())
            row = conn.execute("SELECT phone_key, attempts FROM campaign_contacts WHERE campaign = ? AND idx = ? "
                               "AND outcome = 'pending' AND next_at <= ?" + mine + conn.for_update(),
                               (name, idx, now, *args)).fetchone()
            if row is None:
                return None, "not_due"
            key, attempts = row
            if attempts >= max_attempts:
                return None, "exhausted"
            if conn.execute("SELECT 1 FROM dnc WHERE phone = ?", (key,)).fetchone():
                return None, "dnc"
            if conn.postgres:  # one claim per number at a time, whichever campaign (SQLite: the file's lock)
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))
            if conn.execute("SELECT 1 FROM campaign_attempts WHERE phone = ? AND outcome IS NULL", (key,)).fetchone():
                return None, "in_call"
            conn.execute("UPDATE campaign_contacts SET attempts = attempts + 1, script = COALESCE(script, ?), "
                         "last_rule = ?, next_at = ? WHERE campaign = ? AND idx = ?", (script, rule, now + hold_s, name, idx))
            cur = conn.execute("INSERT INTO campaign_attempts (campaign, contact_idx, phone, script, rule, started_at, worker) "
                               "VALUES (?,?,?,?,?,?,?) RETURNING id",
                               (name, idx, key, script, rule, time.time(), holder_worker(holder) if holder else None))
            return int(cur.fetchone()[0]), "ok"

    def answered(self, attempt_id: int) -> None:
        self._write("UPDATE campaign_attempts SET answered_at = ? WHERE id = ?", (time.time(), attempt_id))

    def conclude(self, attempt_id: int, outcome: str, *, final: bool, retry_at: float | None = None,
                 sip_status: int | None = None, call_id: str | None = None, person: bool = False,
                 detail: dict | None = None, rule: str | None = None) -> bool:
        """An attempt's outcome and where its contact stands after it (final, or pending until
        `retry_at`), its lease given back, in one transaction: a process killed in between leaves
        neither. False when the attempt was already settled as interrupted (this dialer's lease ran
        out and another took the contact over): the contact is left as that one settled it."""
        with self.db.connect() as conn:
            conn.begin_write()
            found = conn.execute("SELECT campaign, contact_idx FROM campaign_attempts WHERE id = ?", (attempt_id,)).fetchone()
            if found is None:
                return False
            name, idx = found
            # the contact's row before the attempt's: the order every transaction here locks them in
            contact = conn.execute("SELECT call_ids FROM campaign_contacts WHERE campaign = ? AND idx = ?"
                                   + conn.for_update(), (name, idx)).fetchone()
            done = conn.execute("UPDATE campaign_attempts SET ended_at = ?, outcome = ?, sip_status = ?, call_id = ?, "
                                "person = ?, detail = ? WHERE id = ? AND outcome IS NULL",
                                (time.time(), outcome, sip_status, call_id, int(person),
                                 json.dumps(detail or {}, ensure_ascii=False), attempt_id)).rowcount
            if not done:
                return False
            ids = json.loads(contact[0])
            if call_id:
                ids.append(call_id)
            conn.execute("UPDATE campaign_contacts SET call_ids = ?, " + ("answered = 1, " if person else "")
                         + "outcome = ?, next_at = ?, last_rule = COALESCE(?, last_rule), leased_by = NULL, "
                         "lease_until = 0 WHERE campaign = ? AND idx = ?",
                         (json.dumps(ids), outcome if final else "pending",
                          retry_at if retry_at is not None else 0.0, rule, name, idx))
            return True

    def recover(self, name: str, retry_after_s: float, max_attempts: int, now: float | None = None) -> int:
        """Settle what dialers that are gone left (see the module's docstring): contacts whose lease ran
        out (the database's clock), or (SQLite: one machine) whose dialer's process is dead, and
        attempts left open on contacts nobody holds. A live dialer's leases are never taken, whatever
        its worker's name: a worker starting again gets its previous life's back as they run out.
        Returns how many attempts were closed as interrupted. `now`: the dialer's clock (when a
        contact is next due)."""
        now = time.time() if now is None else now
        lease_now = self.db.now()
        with self.db.connect() as conn:
            conn.begin_write()
            return self._recover(conn, name, retry_after_s, max_attempts, now, lease_now, unleased=True)

    def _recover(self, conn: Connection, name: str, retry_after_s: float, max_attempts: int, now: float,
                 lease_now: float, unleased: bool = False) -> int:
        def gone(by: str | None, until: float) -> bool:
            return until <= lease_now or (not conn.postgres and not _alive(by or ""))

        candidates = {idx for idx, by, until in conn.execute(
            "SELECT idx, leased_by, lease_until FROM campaign_contacts WHERE campaign = ? AND lease_until > 0",
            (name,)).fetchall() if gone(by, until)}
        if unleased:  # attempts left open on contacts nobody holds (claimed without a lease, or before leases)
            candidates |= {r[0] for r in conn.execute("SELECT DISTINCT contact_idx FROM campaign_attempts "
                                                      "WHERE campaign = ? AND outcome IS NULL", (name,)).fetchall()}
        closed = 0
        for idx in sorted(candidates):
            # read again under the row's lock: a dialer may have renewed or concluded it since (one that
            # holds the row now is at work on it: skipped)
            row = conn.execute("SELECT attempts, leased_by, lease_until FROM campaign_contacts WHERE campaign = ? "
                               "AND idx = ?" + conn.for_update(skip_locked=True), (name, idx)).fetchone()
            if row is None or not gone(row[1], row[2]):
                continue
            open_ = conn.execute("SELECT id, answered_at FROM campaign_attempts WHERE campaign = ? AND contact_idx = ? "
                                 "AND outcome IS NULL", (name, idx)).fetchall()
            for attempt_id, _ in open_:
                conn.execute("UPDATE campaign_attempts SET outcome = 'interrupted', ended_at = ? WHERE id = ?",
                             (time.time(), attempt_id))
            if open_ and (any(answered_at is not None for _, answered_at in open_) or row[0] >= max_attempts):
                conn.execute("UPDATE campaign_contacts SET outcome = 'failed', last_rule = 'interrupted' "
                             "WHERE campaign = ? AND idx = ? AND outcome = 'pending'", (name, idx))
            elif open_:
                conn.execute("UPDATE campaign_contacts SET next_at = ?, last_rule = 'interrupted' "
                             "WHERE campaign = ? AND idx = ? AND outcome = 'pending'", (now + retry_after_s, name, idx))
            # a lease taken but never dialled (killed before the claim) just comes back
            if row[2] > 0:
                conn.execute("UPDATE campaign_contacts SET leased_by = NULL, lease_until = 0 WHERE campaign = ? "
                             "AND idx = ?", (name, idx))
            closed += len(open_)
        return closed

    def attempts(self, name: str) -> list[dict]:
        cols = ("id", "contact_idx", "phone", "script", "rule", "started_at", "answered_at", "person", "ended_at",
                "outcome", "sip_status", "call_id", "detail", "worker")
        rows = self._read(f"SELECT {', '.join(cols)} FROM campaign_attempts WHERE campaign = ? ORDER BY id", (name,))
        return [dict(zip(cols, r), detail=json.loads(r[12])) for r in rows]

    def people_reached_since(self, phone: str, since: float) -> int:
        """Conversations with this number since `since`, in every campaign (the frequency cap); a
        call answered and still going counts."""
        return int(self._read("SELECT COUNT(*) FROM campaign_attempts WHERE phone = ? AND answered_at >= ? "
                              "AND (person = 1 OR outcome IS NULL)", (self.key(phone), since))[0][0])

    def script_stats(self, name: str, segment: str | None = None) -> dict[str, tuple[int, int]]:
        """Per script: (contacts a person answered, converted), within one segment if given."""
        seg = " AND segment = ?" if segment is not None else ""
        rows = self._read("SELECT script, SUM(answered), SUM(CASE WHEN outcome = 'converted' THEN 1 ELSE 0 END) "
                          "FROM campaign_contacts WHERE campaign = ? AND script IS NOT NULL" + seg + " GROUP BY script",
                          (name, segment) if segment is not None else (name,))
        return {s: (int(a or 0), int(c or 0)) for s, a, c in rows}

    # -- do-not-call and the outbox -------------------------------------------------------------
    def dnc_add(self, phones: Iterable[str], source: str = "operator") -> int:
        now = time.time()
        with self.db.connect() as conn:
            return sum(conn.execute("INSERT INTO dnc (phone, added_at, source) VALUES (?,?,?) ON CONFLICT (phone) DO NOTHING",
                                    (self.key(p), now, source)).rowcount for p in phones)

    def dnc_remove(self, phones: Iterable[str]) -> int:
        with self.db.connect() as conn:
            return sum(conn.execute("DELETE FROM dnc WHERE phone = ?", (self.key(p),)).rowcount for p in phones)

    def dnc_list(self) -> list[dict]:
        return [{"phone": p, "added_at": a, "source": s}
                for p, a, s in self._read("SELECT phone, added_at, source FROM dnc ORDER BY added_at")]

    def on_dnc(self, phone: str) -> bool:
        return bool(self._read("SELECT 1 FROM dnc WHERE phone = ?", (self.key(phone),)))

    def queue_message(self, campaign: str, customer_id: str, phone: str, text: str, channel: str = "sms") -> None:
        self._write("INSERT INTO outbox (campaign, customer_id, phone, channel, text, created_at) VALUES (?,?,?,?,?,?)",
                    (campaign, customer_id, phone, channel, text, time.time()))

    def outbox(self, campaign: str | None = None) -> list[dict]:
        where, args = (" WHERE campaign = ?", (campaign,)) if campaign else ("", ())
        cols = ("id", "campaign", "customer_id", "phone", "channel", "text", "created_at", "status")
        return [dict(zip(cols, r)) for r in self._read(f"SELECT {', '.join(cols)} FROM outbox{where} ORDER BY id", args)]


def lease_holder(worker: str) -> str:
    """A dialer's own lease holder id: its worker's name, then (after the last space) host:pid and a
    random part, new for every dialer: no two dialers, in one process or two, share one."""
    return f"{worker} {socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_worker(holder: str) -> str:
    """The worker name in a lease holder id (a lease from before holder ids: the name itself)."""
    return holder.rpartition(" ")[0] or holder


def _stored_max_concurrent(spec: str, default: int) -> int:
    try:
        return max(1, int(json.loads(spec).get("max_concurrent", default)))
    except (ValueError, TypeError, AttributeError):  # a spec this version cannot read: the dialer's copy
        return default


def _alive(holder: str) -> bool:
    """Whether a dialer may still be running, by its lease holder id: one on this host whose process
    is gone is not, so a restart takes its contacts back at once rather than when their leases end.
    Unknown (another host, a lease from before holder ids under a name other than host:pid): assumed
    alive (its leases run out)."""
    host, _, rest = holder.rpartition(" ")[2].partition(":")
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
    """The configured store: the call store's database, numbers in the configured country, leases under
    this worker's name."""
    return CampaignStore(config.store.db, config.campaigns.default_country_code, config.cluster.worker)


__all__ = ["CampaignStore", "campaign_store", "ContactRow", "FINAL", "holder_worker", "lease_holder", "LEASE_S",
           "OUTCOMES", "PERSON_OUTCOMES"]
