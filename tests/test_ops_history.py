"""Call history: search filters, pagination, the dashboard's figures on a small known set, ratings,
and the backfill of calls stored before the history existed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from voiceagent.db import open_database
from voiceagent.ops.history import CallHistory, Ratings, call_facts
from voiceagent.record import AgentTurn, CallerTurn, CallRecord, Outcome
from voiceagent.store import CallStore

NOW = datetime(2025, 3, 10, 12, 30, tzinfo=timezone.utc)


def caller(text: str, intent: str = "order.status", emotion: str = "neutral", anger: float = 0.0) -> CallerTurn:
    return CallerTurn(text=text, start_s=0.0, end_s=1.0, intent=intent, confidence=0.9, slots={}, emotion=emotion,
                      language="zh", dialect=None, anger=anger)


def agent(text: str) -> AgentTurn:
    return AgentTurn(text=text, start_s=1.0, end_s=2.0, latency_ms={"voice_to_voice": 600.0})


def make(call_id: str, minutes_ago: float, *, turns=(), customer: str | None = None, kind: str = "sip",
         resolved: bool = False, handoff: str | None = None, ended_by: str = "caller", duration: float = 60.0,
         campaign: dict | None = None, peak: float | None = None) -> CallRecord:
    record = CallRecord(call_id, "zh", customer_id=customer,
                        started_at=(NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds"))
    record.turns = list(turns)
    record.duration_s = duration
    record.outcome = Outcome(handoff=handoff is not None, handoff_reason=handoff, resolved=resolved, ended_by=ended_by)
    record.channel = {"kind": kind}
    record.campaign = campaign
    if peak is not None:
        record.emotion = {"running_anger": peak / 2, "peak_anger": peak}
    return record


def store_all(db, records: list[CallRecord]) -> CallHistory:
    store, history = CallStore(db), CallHistory(db)
    for record in records:
        store.save(record)
        history.note_call(record.call_id, record.masked())
    return history


@pytest.fixture
def db(store_db):
    """The store on SQLite, then on Postgres: every test here runs on both."""
    return store_db


def execute(db, sql: str, args: tuple = ()) -> list:
    """One statement on the store, outside the classes under test."""
    with open_database(db).connect() as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def sample(db) -> CallHistory:
    """Seven calls in the last day, two the week before, one long ago."""
    return store_all(db, [
        make("c1", 10, customer="C1001", resolved=True, duration=40,
             turns=[caller("你好", "chitchat.greeting"), agent("您好"), caller("我的订单到哪了", "order.status"),
                    agent("已发货"), caller("好的谢谢", "chitchat.goodbye", "satisfied")]),
        make("c2", 70, customer="C1002", handoff="angry", duration=120, peak=0.8,
             turns=[caller("我要退货 100% 不满意", "aftersales.return", "angry", 0.8), agent("马上为您转接")]),
        make("c3", 130, customer="C1001", resolved=True, duration=30, kind="webrtc",
             turns=[caller("What SIZE should I take", "product.size", "hesitant")]),
        make("c4", 200, resolved=False, duration=50, kind="audiosocket",
             turns=[caller("发票怎么开", "aftersales.invoice", "anxious", 0.3)]),
        make("c5", 300, customer="C1003", ended_by="error", duration=10, turns=[caller("喂", "other")]),
        make("c6", 400, customer="C1004", handoff="low_confidence", duration=90, peak=0.65,
             turns=[caller("听不懂", "other", "neutral", 0.65)]),
        make("c7", 500, customer="C1005", kind="sip", duration=5,
             campaign={"campaign": "spring", "outcome": None, "amd": {"verdict": "machine"}}),
        make("c8", 60 * 24 * 3, customer="C1003", resolved=True, duration=70, turns=[caller("退款", "aftersales.refund")]),
        make("c9", 60 * 24 * 10, customer="C1001", resolved=True, duration=70, turns=[caller("查物流", "logistics.track")]),
        make("c10", 60 * 24 * 400, customer="C1009", resolved=True, duration=70, turns=[caller("old", "order.cancel")]),
    ])


def ids(result: dict) -> list[str]:
    return [c["call_id"] for c in result["calls"]]


def test_facts_from_a_record():
    facts = call_facts("c2", make("c2", 1, handoff="angry", peak=0.8, turns=[
        caller("hi", "chitchat.greeting", "neutral"), caller("RETURN it", "aftersales.return", "angry", 0.8),
        caller("hm", "product.price", "hesitant")]).masked())
    assert (facts.intent, facts.outcome, facts.emotion, facts.peak_anger) == ("aftersales.return", "handoff", "angry", 0.8)
    assert "return it" in facts.transcript
    machine = call_facts("m", make("m", 1, campaign={"campaign": "x", "amd": {"verdict": "machine"}}).masked())
    assert (machine.outcome, machine.channel, machine.intent, machine.emotion) == ("machine", "campaign", None, None)


def test_search_filters_each_way(sample):
    assert sample.search()["total"] == 10
    assert ids(sample.search(intent="order.status")) == ["c1"]  # the main intent, past the greeting
    assert ids(sample.search(intent="aftersales")) == ["c2", "c4", "c8"]  # a whole group
    assert ids(sample.search(outcome="handoff")) == ["c2", "c6"]
    assert ids(sample.search(outcome="machine")) == ["c7"]
    assert ids(sample.search(outcome="error")) == ["c5"]
    assert ids(sample.search(emotion="angry")) == ["c2"]
    assert ids(sample.search(emotion="satisfied")) == []  # c1's worst was neutral
    assert ids(sample.search(customer="C1001")) == ["c1", "c3", "c9"]
    assert ids(sample.search(channel="webrtc")) == ["c3"]
    assert ids(sample.search(channel="campaign")) == ["c7"]
    assert ids(sample.search(q="size should")) == ["c3"]  # any case
    assert ids(sample.search(q="100%")) == ["c2"]  # % is plain text, not a wildcard
    assert ids(sample.search(q="_")) == []
    start = (NOW - timedelta(hours=9)).isoformat()
    assert ids(sample.search(from_=start, to=NOW.isoformat())) == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert ids(sample.search(from_=(NOW - timedelta(days=5)).date().isoformat(), to=(NOW - timedelta(days=1)).isoformat())) == ["c8"]
    assert ids(sample.search(from_=start, customer="C1001", outcome="resolved")) == ["c1", "c3"]
    with pytest.raises(ValueError):
        sample.search(from_="yesterday")


def test_search_results_carry_what_the_table_shows(sample):
    sample.ratings.add("c2", 2, "sip")
    row = sample.search(customer="C1002")["calls"][0]
    assert row == {"call_id": "c2", "started_at": (NOW - timedelta(minutes=70)).isoformat(timespec="seconds"),
                   "channel": "sip", "language": "zh", "customer_id": "C1002", "duration_s": 120.0,
                   "intent": "aftersales.return", "outcome": "handoff", "emotion": "angry", "peak_anger": 0.8,
                   "handoff_reason": "angry", "rating": 2, "recording": False}
    sample.has_recording = lambda call_id: call_id == "c2"
    assert sample.search(customer="C1002")["calls"][0]["recording"] is True


def test_pagination(sample):
    everything = ids(sample.search(limit=200))
    pages = [ids(sample.search(limit=3, offset=o)) for o in range(0, 12, 3)]
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert sum(pages, []) == everything
    assert sample.search(limit=3, offset=100) == {"total": 10, "calls": []}
    assert len(sample.search(limit=10_000)["calls"]) == 10  # capped, not refused
    assert len(sample.search(limit=0)["calls"]) == 1
    assert ids(sample.search(limit=2, offset=-5)) == everything[:2]


def test_sql_injection_in_the_filters_is_only_text(sample, db):
    for attack in ("'; DROP TABLE calls; --", "' OR 1=1 --", "%' OR '1'='1", "\") OR 1=1 --"):
        assert sample.search(q=attack)["total"] == 0
        assert sample.search(customer=attack)["total"] == 0
        assert sample.search(intent=attack)["total"] == 0
        assert sample.search(outcome=attack, emotion=attack, channel=attack)["total"] == 0
    assert execute(db, "SELECT COUNT(*) FROM calls") == [(10,)]
    assert sample.search()["total"] == 10


def test_dashboard_figures_exact(sample, db):
    for call_id, stars in (("c1", 5), ("c2", 1), ("c3", 4), ("chat-abc", 3)):
        assert sample.ratings.add(call_id, stars, "sip", at=NOW.timestamp() - 600)
    sample.ratings.add("c9", 5, "sip", at=NOW.timestamp() - 10 * 86400)  # outside the window
    # two campaign attempts that reached a person, one converted, one machine
    for person, outcome, ago in ((1, "converted", 3600), (1, "declined", 7200), (0, "machine", 7300),
                                 (1, "converted", 86400 * 5)):
        execute(db, "INSERT INTO campaign_attempts (campaign, contact_idx, phone, rule, started_at, person, outcome) "
                    "VALUES ('spring', 0, '+86138', 'ok', ?, ?, ?)", (NOW.timestamp() - ago, person, outcome))
    d = sample.dashboard(hours=24, now=NOW)
    # in the window: c1..c7; c7 a machine; conversations c1..c6
    assert (d["calls"], d["machine"], d["conversations"]) == (7, 1, 6)
    assert d["resolved_rate"] == round(2 / 6, 4)  # c1, c3
    assert d["handoff_rate"] == round(2 / 6, 4)
    assert d["handoff_reasons"] == {"angry": 1, "low_confidence": 1}
    assert d["aht_s"] == round((40 + 120 + 30 + 50 + 10 + 90) / 6, 1)
    assert d["anger_rate"] == round(2 / 6, 4)  # c2 (angry), c6 (peak 0.65); c4's 0.3 is not
    # c1 is resolved but C1001 called (c3) two hours before: a repeat contact; c3's earlier call (c9) is 10 days back
    assert d["fcr_rate"] == round(1 / 6, 4)
    assert d["satisfaction"] == {"avg": 3.25, "n": 4, "csat": 0.5}
    assert d["campaign_conversion"] == 0.5 and d["campaign"] == {"rate": 0.5, "converted": 1, "answered": 2}
    assert d["targets"]["fcr_rate"] == 0.85
    assert d["bucket"] == "hour" and len(d["series"]) == 25  # 24 hours not on the hour: 25 buckets
    assert sum(b["calls"] for b in d["series"]) == 7
    assert sum(b["handoffs"] for b in d["series"]) == 2 and sum(b["angry"] for b in d["series"]) == 2
    last = d["series"][-1]
    assert last["t"] == "2025-03-10T12:00:00+00:00" and last["calls"] == 1  # c1, 10 minutes ago
    json.dumps(d)  # the route returns it as it is


def test_dashboard_by_day_and_empty(sample, tmp_path):
    week = sample.dashboard(hours=24 * 7, now=NOW)
    assert week["bucket"] == "day" and len(week["series"]) == 8
    assert week["calls"] == 8 and sum(b["calls"] for b in week["series"]) == 8
    # c8 (3 days back, C1003) is a first contact: C1003's later error call does not make it a repeat
    assert week["fcr_rate"] == round(2 / 7, 4)
    empty = CallHistory(tmp_path / "empty.db").dashboard(hours=24, now=NOW)  # SQLite: the empty case, once
    assert empty["calls"] == 0 and empty["resolved_rate"] is None and empty["aht_s"] is None
    assert empty["satisfaction"] == {"avg": None, "n": 0, "csat": None} and empty["campaign_conversion"] is None
    assert all(b["calls"] == 0 for b in empty["series"])


def test_ratings_bounds_and_latest_wins(db):
    ratings = Ratings(db)
    for bad in (0, 6, -1, 3.5, "4", True, None):
        assert ratings.add("c1", bad, "sip") is False
    assert ratings.add("", 3) is False and ratings.add("x" * 500, 3) is False
    assert ratings.get("c1") is None
    assert ratings.add("c1", 2, "sip") and ratings.add("c1", 5, "webrtc")
    assert ratings.get("c1") == 5
    assert ratings.add("chat-s1", 1, "chat") and ratings.get("chat-s1") == 1
    assert execute(db, "SELECT COUNT(*) FROM ratings") == [(2,)]


def test_backfill_of_calls_stored_before(db):
    store = CallStore(db)
    store.save(make("old1", 30, customer="C7", handoff="angry", turns=[caller("气死了", "aftersales.complaint", "angry", 0.9)]))
    store.save(make("old2", 20, customer="C8", resolved=True, turns=[caller("查订单", "order.status")]))
    # a record that is not JSON does not stop the rest
    execute(db, "INSERT INTO calls (call_id, started_at, language, customer_id, duration_s, handoff, handoff_reason, "
                "resolved, record, worker) VALUES ('broken', '2025-03-10T12:00:00+00:00', 'zh', NULL, 1, 0, NULL, 0, "
                "'{oops', 'w2')")
    history = CallHistory(db)
    assert ids(history.search(outcome="handoff", emotion="angry")) == ["old1"]
    assert ids(history.search(intent="order.status", outcome="resolved")) == ["old2"]
    assert history.search()["total"] == 3
    assert history.search(outcome="error")["calls"][0]["call_id"] == "broken"  # from the row's columns
    assert execute(db, "SELECT worker FROM call_history WHERE call_id = 'broken'") == [("w2",)]
    assert history.dashboard(hours=24, now=NOW)["calls"] == 3
    assert history.backfill() == 0  # once
    store.save(make("new", 5, resolved=True, turns=[caller("hi", "product.price")]))  # saved without note_call
    assert CallHistory(db).search(intent="product.price")["total"] == 1
    store.save(make("old1", 30, customer="C7", resolved=True))  # saved again: note_call brings the facts up to date
    history.note_call("old1", store.get("old1"))
    assert ids(history.search(customer="C7"))[0] == "old1" and history.search(customer="C7")["calls"][0]["outcome"] == "resolved"


def test_store_still_saves_after_the_history_exists(db):
    """The history keeps its own table: CallStore.save into `calls` still works."""
    CallHistory(db)
    store = CallStore(db)
    store.save(make("after", 1))
    assert store.get("after")["call_id"] == "after"


def test_text_search_sees_the_masked_transcript_only(db):
    """A phone number said on a call is stored masked: searching for it finds nothing."""
    history = store_all(db, [make("p1", 5, turns=[caller("我的手机是13812345678", "account.info")])])
    assert history.search(q="13812345678")["total"] == 0
    assert ids(history.search(q="我的手机")) == ["p1"]


def test_each_call_says_which_worker_took_it(db):
    """Many workers on one store: the history row keeps the worker the record names, or the store's own."""
    tagged = make("w-a", 5, resolved=True)
    tagged.worker = "worker-a"
    store_all(db, [tagged])
    CallStore(db, worker="worker-b").save(make("w-b", 4))  # no worker on the record: the store's
    CallHistory(db)  # backfills w-b
    assert execute(db, "SELECT call_id, worker FROM call_history ORDER BY call_id") == [("w-a", "worker-a"),
                                                                                        ("w-b", "worker-b")]
