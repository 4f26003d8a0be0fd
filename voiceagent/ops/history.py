"""Call history for the console: search over finished calls, the manager's figures (the dashboard)
and the callers' post-call ratings.

The search and the figures read a table of facts per call (`call_history`: channel, main intent,
outcome, worst emotion, peak anger, the start time in seconds; the transcript for the text search
apart in `call_history_text`, so that the figures' scans read short rows), kept beside the
store's `calls` table rather than added to it as columns (the figures' scans read short rows, and the
`calls` row stays the record as saved). The facts are filled
by `note_call` right after `CallStore.save`, and backfilled from the stored records (call.json) for
calls saved before, or without, it. Every figure is then an SQL aggregate over indexed columns; no
record is parsed to answer a request.

The figures (`dashboard`), over the calls started in the window:
- `calls`: every call stored, `machine` of them answered by a machine (campaign calls).
- The support figures count *conversations*: calls with a person, not campaign calls (a sales call
  handed to the sales team is a success, not a handoff): `resolved_rate` (resolved and not handed
  to a person), `handoff_rate` and `handoff_reasons`, `aht_s` (average handling time, the agent's
  part: the call's duration), `anger_rate` (peak anger >= 0.6, or the caller's worst emotion angry).
- `fcr_rate`, first-contact resolution: resolved without a person by a caller who had not called in
  the 7 days before (a known customer's earlier conversation makes this one a repeat contact; an
  anonymous caller cannot be linked, so counts as a first contact).
- `satisfaction`: the ratings given in the window (chat sessions too, which have no call row):
  `avg` stars, `n`, `csat` (share of 4 and 5 stars).
- `campaign_conversion`: converted attempts / attempts that reached a person, from the campaigns
  store's `campaign_attempts` (started in the window), None without campaigns.
- `series`: calls, handoffs and angry calls per hour, or per day for windows over 72 hours (UTC).
- `targets`: the figures the source documents set (FCR > 85 %, rating >= 4.5 of 5, handling time
  0.8 minute).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..db import Database
from ..record import CallRecord
from ..store import store_database

OUTCOMES = ("resolved", "handoff", "unresolved", "error", "machine")
EMOTION_SEVERITY = {"satisfied": 0, "neutral": 1, "hesitant": 2, "anxious": 3, "angry": 4}
ANGRY_AT = 0.6  # peak anger from which a call counts as angry
REPEAT_WINDOW_S = 7 * 86400  # an earlier conversation this close makes a call a repeat contact
# a call the support figures count: a person talked to, and not a campaign's sales call
CONVERSATION = "(outcome != 'machine' AND COALESCE(channel, '') != 'campaign')"
# Written as CASE, not summed comparisons: Postgres has no SUM(boolean) and no integer AND.
IS_CONVERSATION = f"CASE WHEN {CONVERSATION} THEN 1 ELSE 0 END"
HISTORY_COLUMNS = ("call_id", "started_at", "started_ts", "channel", "language", "customer_id", "duration_s", "intent",
                   "outcome", "emotion", "peak_anger", "handoff", "handoff_reason", "resolved", "worker")
_HISTORY_INSERT = (f"INSERT INTO call_history ({', '.join(HISTORY_COLUMNS)}) "
                   f"VALUES ({','.join('?' * len(HISTORY_COLUMNS))})")
_UPSERT_HISTORY = (_HISTORY_INSERT + " ON CONFLICT (call_id) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in HISTORY_COLUMNS[1:]))
_UPSERT_TEXT = ("INSERT INTO call_history_text (call_id, transcript) VALUES (?,?) "
                "ON CONFLICT (call_id) DO UPDATE SET transcript = excluded.transcript")
MINOR_INTENTS = ("chitchat.greeting", "chitchat.goodbye", "other", "handoff.human")
# what the source documents (../shared/seeds) set: 首轮解决率>85%, 用户评分≥4.5, 平均处理时长 0.8 分钟
TARGETS = {"fcr_rate": 0.85, "satisfaction_avg": 4.5, "aht_s": 48.0}
MAX_LIMIT = 200
RESULT_COLUMNS = ("call_id", "started_at", "channel", "language", "customer_id", "duration_s", "intent", "outcome",
                  "emotion", "peak_anger", "handoff_reason")


@dataclass(frozen=True)
class CallFacts:
    """What the search and the figures need of one call, taken from its record."""

    call_id: str
    started_at: str
    started_ts: float
    channel: str | None
    language: str | None
    customer_id: str | None
    duration_s: float
    intent: str | None
    outcome: str
    emotion: str | None
    peak_anger: float
    handoff: bool
    handoff_reason: str | None
    resolved: bool
    transcript: str
    worker: str | None = None  # which worker took the call (a shared store's calls come from many)

    def row(self) -> tuple:
        """The `call_history` row, as HISTORY_COLUMNS (the transcript goes to `call_history_text`)."""
        return (self.call_id, self.started_at, self.started_ts, self.channel, self.language, self.customer_id,
                self.duration_s, self.intent, self.outcome, self.emotion, self.peak_anger, int(self.handoff),
                self.handoff_reason, int(self.resolved), self.worker)


def call_facts(call_id: str, record: dict) -> CallFacts:
    """The facts of a call from its record (the masked call.json dict)."""
    outcome = record.get("outcome") or {}
    turns = record.get("turns") or []
    caller = [t for t in turns if t.get("role") == "caller"]
    return CallFacts(
        call_id=call_id,
        started_at=str(record.get("started_at") or ""),
        started_ts=_epoch(record.get("started_at")),
        channel=_channel(record),
        language=record.get("language") or None,
        customer_id=record.get("customer_id"),
        duration_s=float(record.get("duration_s") or 0.0),
        intent=_main_intent(caller),
        outcome=_outcome(record),
        emotion=max((t.get("emotion") or "neutral" for t in caller), key=lambda e: EMOTION_SEVERITY.get(e, 1),
                    default=None),
        peak_anger=float((record.get("emotion") or {}).get("peak_anger")
                         or max((t.get("anger") or 0.0 for t in caller), default=0.0)),
        handoff=bool(outcome.get("handoff")),
        handoff_reason=outcome.get("handoff_reason"),
        resolved=bool(outcome.get("resolved")),
        transcript="\n".join(t.get("text") or "" for t in turns).lower(),
        worker=record.get("worker") or None,
    )


def _channel(record: dict) -> str | None:
    if record.get("campaign"):  # an outbound campaign call, whichever line carried it
        return "campaign"
    return (record.get("channel") or {}).get("kind") or None


def _main_intent(caller_turns: list[dict]) -> str | None:
    intents = [t.get("intent") for t in caller_turns if t.get("intent")]
    return next((i for i in intents if i not in MINOR_INTENTS), intents[0] if intents else None)


def _outcome(record: dict) -> str:
    outcome = record.get("outcome") or {}
    amd = (record.get("campaign") or {}).get("amd") or {}
    if amd.get("verdict") == "machine":
        return "machine"
    if outcome.get("handoff"):
        return "handoff"
    if outcome.get("ended_by") == "error":
        return "error"
    return "resolved" if outcome.get("resolved") else "unresolved"


def _epoch(value: str | datetime | None) -> float:
    """Seconds since the epoch of an ISO time (no offset: UTC; a bare date: its midnight)."""
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).strip())  # ValueError on garbage: the route answers 422
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _fallback_row(call_id: str, started_at: str, language: str | None, customer_id: str | None,
                  duration_s: float | None, handoff: int, handoff_reason: str | None, resolved: int,
                  worker: str | None) -> tuple:
    """The `call_history` row of a call whose record cannot be read: what the `calls` row says."""
    try:
        started_ts = _epoch(started_at)
    except (ValueError, TypeError):
        started_ts = 0.0
    return (call_id, started_at or "", started_ts, None, language, customer_id, duration_s or 0.0, None, "error",
            None, 0.0, int(bool(handoff)), handoff_reason, int(bool(resolved)), worker)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class Ratings:
    """Post-call ratings, 1 to 5 stars ("press 1 to 5" on the phone, stars in the widget): one per
    call or chat session, the latest wins."""

    def __init__(self, db: str | Path | Database = ""):
        self.db = store_database(db)

    def add(self, call_id: str, stars: int, channel: str | None = None, at: float | None = None) -> bool:
        """Keep a rating; False (nothing kept) for stars outside 1..5 or a call id that is no id."""
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            return False
        if not isinstance(call_id, str) or not 0 < len(call_id) <= 128:
            return False
        at = time.time() if at is None else at
        with self.db.connect() as conn:
            conn.execute("INSERT INTO ratings (call_id, stars, channel, at, at_ts) VALUES (?,?,?,?,?) "
                         "ON CONFLICT (call_id) DO UPDATE SET stars = excluded.stars, channel = excluded.channel, "
                         "at = excluded.at, at_ts = excluded.at_ts",
                         (call_id, stars, (channel or None) and str(channel)[:32], _iso(at), at))
        return True

    def get(self, call_id: str) -> int | None:
        """The call's stars, None when it was not rated."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT stars FROM ratings WHERE call_id = ?", (call_id,)).fetchone()
        return row[0] if row else None


class CallHistory:
    """Search and figures over the calls in the store (`db`: [store] db or a Database; every worker's
    calls when it is a shared Postgres). `has_recording(call_id)`: whether a recording is kept
    (ops/recordings.py), for the search results; without it, False."""

    def __init__(self, db: str | Path | Database = "", has_recording: Callable[[str], bool] | None = None):
        self.db = store_database(db)
        self.ratings = Ratings(self.db)
        self.has_recording = has_recording
        self.backfill()

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on Postgres)."""
        return self.db.path

    def _connect(self):
        return self.db.connect()

    # -- keeping the facts ----------------------------------------------------------------------
    def note_call(self, call_id: str, record: dict | CallRecord) -> None:
        """Index a call just saved by `CallStore.save` (its masked record, or the record itself).
        ValueError when its `started_at` is no ISO time."""
        data = record.masked() if isinstance(record, CallRecord) else record
        facts = call_facts(call_id, data)
        with self._connect() as conn:
            conn.execute(_UPSERT_HISTORY, facts.row())
            conn.execute(_UPSERT_TEXT, (call_id, facts.transcript))

    def backfill(self, batch: int = 500) -> int:
        """Index the stored calls that have no facts yet (saved before this existed, or without
        `note_call`). Returns how many; a record that cannot be read is indexed from its row's columns.
        Workers backfilling the same shared store at once: DO NOTHING, the first one's rows stand."""
        done = 0
        while True:
            with self._connect() as conn:
                rows = conn.execute("SELECT c.call_id, c.record, c.started_at, c.language, c.customer_id, c.duration_s, "
                                    "c.handoff, c.handoff_reason, c.resolved, c.worker FROM calls c LEFT JOIN call_history h "
                                    "ON h.call_id = c.call_id WHERE h.call_id IS NULL LIMIT ?", (batch,)).fetchall()
            facts, texts = [], []
            for call_id, text, *columns in rows:
                try:
                    record = json.loads(text)
                    found = call_facts(call_id, record)
                    if found.worker is None:  # a record from before workers: its row may say
                        found = _with_worker(found, columns[-1])
                    facts.append(found.row())
                    texts.append((call_id, found.transcript))
                except (ValueError, TypeError, AttributeError):  # a broken record: indexed from the row's columns
                    facts.append(_fallback_row(call_id, *columns))
            if facts:
                with self._connect() as conn:
                    conn.executemany(_HISTORY_INSERT + " ON CONFLICT (call_id) DO NOTHING", facts)
                    conn.executemany("INSERT INTO call_history_text (call_id, transcript) VALUES (?,?) "
                                     "ON CONFLICT (call_id) DO NOTHING", texts)
            done += len(facts)
            if len(rows) < batch:
                return done

    # -- search ---------------------------------------------------------------------------------
    def search(self, from_: str | datetime | None = None, to: str | datetime | None = None, intent: str | None = None,
               outcome: str | None = None, emotion: str | None = None, customer: str | None = None,
               q: str | None = None, channel: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        """Finished calls, newest first: `{"total", "calls": [...]}` (ops_api.md). `from_`/`to`: ISO
        times (`to` excluded); `intent`: exact, or a whole group without a dot ("aftersales");
        `q`: a piece of the (masked) transcript, any case. Raises ValueError on a time that is none."""
        where, args = [], []
        if from_:
            where.append("h.started_ts >= ?")
            args.append(_epoch(from_))
        if to:
            where.append("h.started_ts < ?")
            args.append(_epoch(to))
        if intent:
            if "." in intent:
                where.append("h.intent = ?")
                args.append(intent)
            else:  # a first-level intent ("aftersales"): the whole group
                where.append("(h.intent = ? OR substr(h.intent, 1, ?) = ?)")
                args += [intent, len(intent) + 1, intent + "."]
        for column, value in (("outcome", outcome), ("emotion", emotion), ("customer_id", customer), ("channel", channel)):
            if value:
                where.append(f"h.{column} = ?")
                args.append(value)
        source = "call_history h"
        if q:
            source += " JOIN call_history_text t ON t.call_id = h.call_id"
            # LIKE on both stores (the transcript is lower-cased); % and _ in q escaped: plain text
            where.append("t.transcript LIKE ? ESCAPE '!'")
            args.append("%" + _like_escaped(q.lower()) + "%")
        clause = " WHERE " + " AND ".join(where) if where else ""
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        columns = ", ".join(f"h.{c}" for c in RESULT_COLUMNS)
        with self._connect() as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM {source}{clause}", args).fetchone()[0]
            rows = conn.execute(f"SELECT {columns}, r.stars FROM {source} LEFT JOIN ratings r "
                                f"ON r.call_id = h.call_id{clause} ORDER BY h.started_ts DESC, h.call_id "
                                "LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        calls = []
        for row in rows:
            call = dict(zip(RESULT_COLUMNS, row[:-1]), rating=row[-1])
            call["recording"] = bool(self.has_recording(call["call_id"])) if self.has_recording else False
            calls.append(call)
        return {"total": total, "calls": calls}

    # -- the figures ----------------------------------------------------------------------------
    def dashboard(self, hours: float = 24, now: float | datetime | None = None, bucket: str | None = None) -> dict:
        """The manager's figures over the last `hours` (see the module's docstring). `bucket`:
        "hour" or "day" for the series; None: hours up to 72 hours, days beyond."""
        end = time.time() if now is None else (now.timestamp() if isinstance(now, datetime) else float(now))
        hours = max(1.0, min(float(hours), 24 * 366.0))
        start = end - hours * 3600
        size = {"hour": 3600, "day": 86400}[bucket or ("hour" if hours <= 72 else "day")]
        window = (start, end)
        with self._connect() as conn:
            # one pass over the window, per bucket: the totals are the buckets' sums
            # FLOOR on Postgres, whose CAST to an integer rounds; SQLite's truncates (the same for ts >= 0)
            bucket_of = ("CAST(FLOOR(started_ts / ?) AS BIGINT)" if conn.postgres
                         else "CAST(started_ts / ? AS INTEGER)")
            talk_resolved = "s = 1 AND resolved = 1 AND handoff = 0"
            buckets = {int(row[0]): row[1:] for row in conn.execute(
                f"SELECT {bucket_of}, COUNT(*), SUM(CASE WHEN outcome = 'machine' THEN 1 ELSE 0 END), SUM(s), "
                f"SUM(CASE WHEN {talk_resolved} THEN 1 ELSE 0 END), SUM(CASE WHEN s = 1 AND handoff = 1 THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN s = 1 THEN duration_s ELSE 0 END), "
                "SUM(CASE WHEN s = 1 AND (peak_anger >= ? OR emotion = 'angry') THEN 1 ELSE 0 END), "
                # CASE: the repeat-contact lookup runs only for calls resolved without a person
                f"SUM(CASE WHEN {talk_resolved} AND (customer_id IS NULL OR NOT EXISTS ("
                "SELECT 1 FROM call_history p WHERE p.customer_id = c.customer_id AND p.started_ts >= c.started_ts - ? "
                "AND p.started_ts < c.started_ts AND p.outcome != 'machine' AND COALESCE(p.channel, '') != 'campaign')) "
                "THEN 1 ELSE 0 END) "
                "FROM (SELECT call_id, started_ts, customer_id, outcome, channel, resolved, handoff, duration_s, "
                "peak_anger, emotion, " + IS_CONVERSATION + " AS s FROM call_history "
                "WHERE started_ts >= ? AND started_ts < ?) c "
                "GROUP BY 1", (float(size), ANGRY_AT, float(REPEAT_WINDOW_S), *window))}
            calls, machine, talks, resolved, handoffs, seconds, angry, first_contact = (
                sum(row[i] or 0 for row in buckets.values()) for i in range(8))
            seconds = float(seconds)
            reasons = dict(conn.execute(
                "SELECT COALESCE(handoff_reason, 'unknown'), COUNT(*) FROM call_history WHERE started_ts >= ? "
                "AND started_ts < ? AND handoff = 1 AND " + CONVERSATION + " GROUP BY 1 ORDER BY 2 DESC, 1",
                window).fetchall())
            stars_avg, stars_n, stars_high = conn.execute(
                "SELECT AVG(stars), COUNT(*), COALESCE(SUM(CASE WHEN stars >= 4 THEN 1 ELSE 0 END), 0) FROM ratings "
                "WHERE at_ts >= ? AND at_ts < ?", window).fetchone()
            conversion = _campaign_conversion(conn, start, end)
        series = []
        for b in range(int(start // size), int((end - 1e-6) // size) + 1):  # empty buckets too: a chart's x axis
            row = buckets.get(b)
            series.append({"t": _iso(b * size), "calls": row[0] if row else 0, "handoffs": (row[4] or 0) if row else 0,
                           "angry": (row[6] or 0) if row else 0})
        return {
            "hours": hours, "from": _iso(start), "to": _iso(end),
            "calls": calls, "machine": machine, "conversations": talks,
            "resolved_rate": _rate(resolved, talks), "handoff_rate": _rate(handoffs, talks),
            "handoff_reasons": reasons,
            "aht_s": round(seconds / talks, 1) if talks else None,
            "anger_rate": _rate(angry, talks),
            "fcr_rate": _rate(first_contact, talks),
            # float(): Postgres averages integers as numeric (a Decimal, which JSON does not take)
            "satisfaction": {"avg": round(float(stars_avg), 2) if stars_avg is not None else None, "n": stars_n,
                             "csat": _rate(stars_high, stars_n)},
            "campaign_conversion": conversion["rate"], "campaign": conversion,
            "targets": dict(TARGETS),
            "bucket": "hour" if size == 3600 else "day",
            "series": series,  # per bucket, aligned to whole UTC hours or days
        }


def _campaign_conversion(conn, start: float, end: float) -> dict:
    """Converted attempts over attempts that reached a person (campaigns/store.py), None without any."""
    answered, converted = conn.execute(
        "SELECT COALESCE(SUM(person), 0), COALESCE(SUM(CASE WHEN outcome = 'converted' THEN 1 ELSE 0 END), 0) "
        "FROM campaign_attempts WHERE started_at >= ? AND started_at < ?", (start, end)).fetchone()
    answered, converted = int(answered), int(converted)
    return {"rate": _rate(converted, answered), "converted": converted, "answered": answered}


def _like_escaped(text: str) -> str:
    """`text` for a LIKE pattern with ESCAPE '!': its own %, _ and ! matched as themselves."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _with_worker(facts: CallFacts, worker: str | None) -> CallFacts:
    return replace(facts, worker=worker or None)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
