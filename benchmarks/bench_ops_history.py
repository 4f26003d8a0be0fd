#!/usr/bin/env python3
"""Call history with 10 000 stored calls: how long the console's search and dashboard take.

    .venv/bin/python benchmarks/bench_ops_history.py [--calls 10000] [--postgres]

Builds synthetic calls over 30 days (3 000 customers, a fifth of the calls anonymous; intents,
emotions, handoffs and ratings drawn at random, seeded) in a temporary SQLite file (--postgres: a
database on a Postgres server started for the run, tests/peers/postgres.py): the first 300
through `CallStore.save` + `note_call` as a finished call is stored, the rest written straight into
`calls` and indexed by `backfill` (as after an upgrade). Then times each search and dashboard
(median and worst of 20 runs) and prints the figures of the 30-day dashboard.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import contextlib
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.db import open_database  # noqa: E402
from voiceagent.ops.history import CallHistory  # noqa: E402
from voiceagent.record import AgentTurn, CallerTurn, CallRecord, Outcome  # noqa: E402
from voiceagent.store import CallStore  # noqa: E402

INTENTS = ("order.status", "logistics.track", "aftersales.return", "aftersales.refund", "aftersales.complaint",
           "product.size", "product.price", "promo.coupon", "account.info", "other")
EMOTIONS = ("neutral",) * 6 + ("satisfied", "hesitant", "anxious", "angry")
PHRASES = ("我的订单到哪了", "我要退货", "这个尺码偏大吗", "优惠券怎么用", "快递三天没动了",
           "where is my parcel", "I want a refund", "does it come in blue", "太慢了我要投诉", "谢谢")
REASONS = ("angry", "low_confidence", "asked_for_human", "repeated_failure")
NOW = datetime(2025, 3, 31, 12, 0, tzinfo=timezone.utc)


def synthetic(i: int, rng: random.Random) -> CallRecord:
    started = NOW - timedelta(seconds=rng.uniform(0, 30 * 86400))
    customer = None if rng.random() < 0.2 else f"C{rng.randrange(3000):05d}"
    record = CallRecord(f"call-{i:06d}", rng.choice(("zh", "en")), customer_id=customer,
                        started_at=started.isoformat(timespec="seconds"))
    for _ in range(rng.randint(1, 6)):
        emotion = rng.choice(EMOTIONS)
        anger = rng.uniform(0.5, 1.0) if emotion == "angry" else rng.uniform(0.0, 0.4)
        record.turns.append(CallerTurn(f"{rng.choice(PHRASES)} 订单{rng.randrange(10**6)}", 0.0, 1.0, rng.choice(INTENTS),
                                       0.9, {}, emotion, record.language, None, anger=anger))
        record.turns.append(AgentTurn("好的, 我帮您查一下", 1.0, 2.0, {"voice_to_voice": rng.uniform(400, 900)}))
    handoff = rng.random() < 0.15
    record.outcome = Outcome(handoff=handoff, handoff_reason=rng.choice(REASONS) if handoff else None,
                             resolved=not handoff and rng.random() < 0.75,
                             ended_by="error" if rng.random() < 0.01 else "caller")
    record.duration_s = round(rng.uniform(10, 300), 1)
    record.channel = {"kind": rng.choice(("sip", "sip", "audiosocket", "webrtc"))}
    if rng.random() < 0.1:
        record.campaign = {"campaign": "spring", "amd": {"verdict": "machine" if rng.random() < 0.3 else "human"}}
    record.emotion = {"peak_anger": max((t.anger for t in record.turns if isinstance(t, CallerTurn)), default=0.0)}
    return record


def timed(fn, runs: int = 20) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true", help="on a Postgres server started for the run")
    args = parser.parse_args()
    rng = random.Random(22)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if args.postgres:
            from tests.peers.postgres import PostgresServer

            db = stack.enter_context(PostgresServer()).create_database()
        else:
            db = str(Path(tmp) / "calls.db")
        print(f"store: {'Postgres' if args.postgres else 'SQLite'}")
        store, history = CallStore(db), CallHistory(db)
        records = [synthetic(i, rng) for i in range(args.calls)]
        through_api = records[:300]
        t0 = time.perf_counter()
        for record in through_api:
            store.save(record)
        save_ms = (time.perf_counter() - t0) * 1000 / len(through_api)
        t0 = time.perf_counter()
        for record in through_api:
            history.note_call(record.call_id, record.masked())
        note_ms = (time.perf_counter() - t0) * 1000 / len(through_api)
        with open_database(db).connect() as conn:
            conn.executemany("INSERT INTO calls (call_id, started_at, language, customer_id, duration_s, handoff, "
                             "handoff_reason, resolved, record) VALUES (?,?,?,?,?,?,?,?,?)", [
                (r.call_id, r.started_at, r.language, r.customer_id, r.duration_s, int(r.outcome.handoff),
                 r.outcome.handoff_reason, int(r.outcome.resolved), json.dumps(r.masked(), ensure_ascii=False))
                for r in records[300:]])
            conn.executemany("INSERT INTO campaign_attempts (campaign, contact_idx, phone, rule, started_at, person, outcome) "
                             "VALUES ('spring', 0, '+86138', 'ok', ?, ?, ?)",
                             [(NOW.timestamp() - rng.uniform(0, 30 * 86400), int(p), "converted" if p and rng.random() < 0.2
                               else ("declined" if p else "no_answer")) for p in (rng.random() < 0.6 for _ in range(2000))])
        t0 = time.perf_counter()
        backfilled = history.backfill()
        backfill_s = time.perf_counter() - t0
        for record in rng.sample(records, len(records) // 5):
            history.ratings.add(record.call_id, rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), "sip",
                                at=datetime.fromisoformat(record.started_at).timestamp() + 120)

        print(f"{args.calls} calls: CallStore.save {save_ms:.2f} ms/call, note_call {note_ms:.2f} ms/call, "
              f"backfill of {backfilled} in {backfill_s:.2f} s ({backfill_s * 1000 / max(1, backfilled):.2f} ms/call)")
        day = (NOW - timedelta(days=1)).isoformat()
        cases = {
            "search (no filter, page 1)": lambda: history.search(),
            "search intent=aftersales.return": lambda: history.search(intent="aftersales.return"),
            "search intent group aftersales": lambda: history.search(intent="aftersales"),
            "search outcome=handoff emotion=angry": lambda: history.search(outcome="handoff", emotion="angry"),
            "search customer=C00042": lambda: history.search(customer="C00042"),
            "search last day": lambda: history.search(from_=day, to=NOW.isoformat()),
            "search q='refund' (text)": lambda: history.search(q="REFUND"),
            "search q + page 20": lambda: history.search(q="订单", offset=950),
            "dashboard 24 h": lambda: history.dashboard(hours=24, now=NOW),
            "dashboard 7 days": lambda: history.dashboard(hours=168, now=NOW),
            "dashboard 30 days": lambda: history.dashboard(hours=720, now=NOW),
        }
        print(f"{'query':40} {'median ms':>9} {'max ms':>8} {'total':>6}")
        for name, fn in cases.items():
            median, worst, result = timed(fn)
            total = result.get("total", result.get("calls"))
            print(f"{name:40} {median:9.1f} {worst:8.1f} {total:>6}")
        figures = history.dashboard(hours=720, now=NOW)
        figures["series"] = f"{len(figures['series'])} {figures['bucket']} buckets"
        print(json.dumps(figures, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
