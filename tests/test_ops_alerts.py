"""The four-level alerts (voiceagent/ops/alerts.py): each rule raises at its threshold and not
below, once; acknowledged by an operator; kept across a restart; pushed to console listeners; sent
to a webhook (a real local HTTP server), and a dead webhook holds nothing up."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from voiceagent.config import AlertsConfig
from voiceagent.engine import CallSession, SessionOptions
from voiceagent.events import AgentTurnDone, CallerTurnNoted, StageFailed
from voiceagent.ops.alerts import Alerts, threat
from voiceagent.record import AgentTurn, CallerTurn, CallRecord, Outcome
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, FakeTTS, fake_runtime, reply

# Threat phrases. The patterns were tuned on TUNE only; HELD_OUT was written before tuning and is
# only measured (held-out at the time of writing: recall 15/15, false alarms 1/14).
TUNE = {
    True: ["我要向媒体曝光你们", "我要打315投诉", "我要找消协", "我去市场监管局投诉你们", "我要请律师起诉你们",
           "我们法院见", "我要把这事发到微博上", "我要找记者来报道", "再不解决我就去工商局投诉", "我要走法律途径",
           "I'm going to the press with this", "I'll report you to the regulator", "I'm calling my lawyer",
           "I will sue you", "I'm going to contact a reporter", "I'll file a complaint with trading standards",
           "I'll post this all over social media", "see you in court"],
    False: ["我想查一下物流", "我用工商银行的卡付款的", "我在抖音上看到你们的直播", "订单号是315207",
            "这个质量太差了气死我了", "我要投诉这个快递员", "帮我转人工",
            "I pressed the button and nothing happened", "of course I still want it", "I saw it on social media",
            "my order number is 315 228", "this is ridiculous, I'm furious", "I want to complain about the courier",
            "the court shoes are too small"],
}
HELD_OUT = {
    True: ["你们再不处理我就去找媒体曝光", "我要打12315投诉你们", "我已经联系了律师，准备告你们", "信不信我发到网上让大家看看",
           "我会向市场监督管理局反映的", "我要去消费者协会投诉", "等着收法院传票吧", "我认识电视台的记者",
           "I'm going to report you to the Better Business Bureau", "my lawyer will be in touch",
           "I'll take you to small claims court", "I'm contacting a journalist about this",
           "I will file a complaint with the consumer protection agency", "I'm going to post this all over Twitter",
           "you'll be hearing from my attorney"],
    False: ["我用工商银行卡付的款", "快递到了没有", "我在微博上看到你们的活动", "你们这个衣服质量太差了，我很生气",
            "帮我查一下订单号315开头的那个", "我要退货，尺码不对", "请转人工客服",
            "I pressed the button twice and nothing happened", "Of course I want a refund", "Is there any news on my order?",
            "I saw your ad on social media", "I'm really angry, this is the third time", "My order number is 315 442",
            "Can you check the status of my court shoes order?"],
}


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make(store_db):
    """Alerts on the test's store: SQLite, then Postgres (every test here runs on both)."""
    made: list[Alerts] = []

    def make(clock: Clock | None = None, sender=None, **config) -> Alerts:
        """An Alerts on the test's store; a second one on it is a restart, or another worker."""
        alerts = Alerts(store_db, AlertsConfig(**config), webhook_sender=sender, now=clock or Clock())
        made.append(alerts)
        return alerts

    yield make
    for alerts in made:
        alerts.close()


def said(text: str = "where is my parcel", anger: float = 0.0, emotion: str | None = None) -> CallerTurnNoted:
    emotion = emotion or ("angry" if anger >= 0.5 else "neutral")
    return CallerTurnNoted(1.0, CallerTurn(text, 0.0, 1.0, "other", 0.9, {}, emotion, "en", None, anger=anger))


def angers(alerts: Alerts, call_id: str, *values: float) -> None:
    for a in values:
        alerts.on_event(call_id, "sip", said(anger=a))


def levels(alerts: Alerts, kind: str, call_id: str | None = None) -> list[int]:
    return sorted(a["level"] for a in alerts.open_alerts()
                  if a["kind"] == kind and (call_id is None or a["call_id"] == call_id))


def v2v(ms: float) -> AgentTurnDone:
    return AgentTurnDone(1.0, AgentTurn("ok", 1.0, 2.0, {"voice_to_voice": ms}))


def ended(call_id: str, **outcome) -> CallRecord:
    record = CallRecord(call_id, "en", outcome=Outcome(**outcome))
    record.turns.append(said().turn)
    return record


def wait_for(condition, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- one caller's anger -------------------------------------------------------------------------

def test_anger_at_the_crisis_threshold_is_level_3_and_just_below_is_not(make):
    alerts = make()
    angers(alerts, "below", 0.84)
    angers(alerts, "at", 0.85)
    assert levels(alerts, "anger", "below") == [] and levels(alerts, "anger", "at") == [3]
    (alert,) = alerts.open_alerts()
    assert alert["level_name"] == "crisis" and alert["level_name_zh"] == "危机" and alert["channel"] == "sip"
    angers(alerts, "at", 0.9, 0.7, 0.95)  # once per call and level; nothing lower after a crisis
    assert levels(alerts, "anger", "at") == [3]


def test_anger_twice_in_a_row_is_level_2(make):
    alerts = make()
    angers(alerts, "almost", 0.59, 0.6, 0.2, 0.59)
    angers(alerts, "angry", 0.6, 0.6, 0.7)
    assert levels(alerts, "anger", "almost") == [] and levels(alerts, "anger", "angry") == [2]
    angers(alerts, "angry", 0.9)  # it gets worse: the crisis is raised besides
    assert levels(alerts, "anger", "angry") == [2, 3]


def test_anger_rising_over_three_turns_is_level_2(make):
    alerts = make()
    angers(alerts, "flat", 0.1, 0.2, 0.35)  # rising, but by less than anger_rise (0.3)
    angers(alerts, "dips", 0.1, 0.45, 0.3)
    angers(alerts, "rising", 0.1, 0.2, 0.45)
    assert levels(alerts, "anger", "flat") == [] and levels(alerts, "anger", "dips") == []
    assert levels(alerts, "anger", "rising") == [2]


# -- threats ------------------------------------------------------------------------------------

def rates(phrases: dict[bool, list[str]]) -> tuple[float, float]:
    recall = sum(bool(threat(p)) for p in phrases[True]) / len(phrases[True])
    false_alarms = sum(bool(threat(p)) for p in phrases[False]) / len(phrases[False])
    return recall, false_alarms


def test_threat_words_are_found_on_held_out_phrases():
    recall, false_alarms = rates(HELD_OUT)
    assert recall >= 0.85 and false_alarms <= 0.15
    recall, false_alarms = rates(TUNE)
    assert recall == 1.0 and false_alarms == 0.0


def test_a_threat_is_a_crisis_and_with_anger_a_major_crisis(make):
    alerts = make(threat_words=["微信群"])
    alerts.on_event("calm", "sip", said("I'm calling my lawyer about this"))
    alerts.on_event("quiet", "sip", said("where is my parcel"))
    alerts.on_event("angry", "webrtc", said("你们再不退款我就去找媒体曝光", anger=0.7))
    alerts.on_event("extra", "sip", said("我要发到业主微信群里"))  # the operator's own words
    assert levels(alerts, "threat", "calm") == [3] and levels(alerts, "threat", "quiet") == []
    assert levels(alerts, "threat", "angry") == [4] and levels(alerts, "threat", "extra") == [3]
    major = next(a for a in alerts.open_alerts() if a["level"] == 4)
    assert major["level_name_zh"] == "重大危机" and "媒体" in major["message_zh"]
    # the calm caller gets angry and threatens again: a major crisis besides
    alerts.on_event("calm", "sip", said("I will sue you", anger=0.8))
    assert levels(alerts, "threat", "calm") == [3, 4]


def test_a_threat_quotes_the_caller_with_personal_data_masked(make):
    alerts = make()
    alerts.on_event("c", "sip", said("I'm 13812345678 and I will sue you"))
    (alert,) = alerts.open_alerts()
    assert "13812345678" not in alert["message"] and "sue" in alert["message"]


# -- windows over calls -------------------------------------------------------------------------

def test_angry_calls_per_window_level_2_at_the_threshold_level_3_at_twice(make):
    clock = Clock()
    alerts = make(clock, angry_calls=3)
    for i in range(2):
        angers(alerts, f"c{i}", 0.7)
        angers(alerts, f"c{i}", 0.7)  # a call counts once
    assert levels(alerts, "angry_calls") == []
    angers(alerts, "c2", 0.65)
    assert levels(alerts, "angry_calls") == [2]
    (alert,) = [a for a in alerts.open_alerts() if a["kind"] == "angry_calls"]
    assert alert["call_id"] is None
    for i in range(3, 5):
        angers(alerts, f"c{i}", 0.7)
    assert levels(alerts, "angry_calls") == [2]  # not raised again while open
    angers(alerts, "c5", 0.7)
    assert levels(alerts, "angry_calls") == [2, 3]


def test_angry_calls_outside_the_window_do_not_count_and_the_rule_rearms(make):
    clock = Clock()
    alerts = make(clock, angry_calls=2, window_s=900)
    angers(alerts, "a", 0.7)
    clock.t += 901
    angers(alerts, "b", 0.7)
    assert levels(alerts, "angry_calls") == []
    angers(alerts, "c", 0.7)
    (alert,) = [a for a in alerts.open_alerts() if a["kind"] == "angry_calls"]
    assert alerts.ack(alert["id"], "sam")
    angers(alerts, "d", 0.7)  # still over the threshold: acknowledged, not raised again at once
    assert levels(alerts, "angry_calls") == []
    clock.t += 901
    angers(alerts, "e", 0.7)  # back under ...
    angers(alerts, "f", 0.7)  # ... and over again
    assert levels(alerts, "angry_calls") == [2]


def test_handoff_rate_over_the_last_calls_at_the_threshold(make):
    alerts = make(handoff_rate_calls=10, handoff_rate=0.5)
    outcomes = [False] * 6 + [True] * 4
    for i, handoff in enumerate(outcomes):
        alerts.call_ended(f"c{i}", "sip", ended(f"c{i}", handoff=handoff, resolved=not handoff))
    assert levels(alerts, "handoff_rate") == []  # 4 of 10
    alerts.call_ended("silent", "sip", CallRecord("silent", "en"))  # nobody spoke: not counted
    assert levels(alerts, "handoff_rate") == []
    alerts.call_ended("c10", "sip", ended("c10", resolved=True))  # the window slides: 4 of 10 again
    assert levels(alerts, "handoff_rate") == []
    alerts.call_ended("c11", "sip", ended("c11", handoff=True))  # 5 of the last 10
    assert levels(alerts, "handoff_rate") == [2]


def test_a_failed_transfer_is_level_2_for_its_call(make):
    alerts = make()
    alerts.call_ended("ok", "sip", ended("ok", handoff=True, transfer_ok=True, transfer_status="completed"))
    alerts.call_ended("none", "sip", ended("none", handoff=True))
    alerts.call_ended("busy", "audiosocket", ended("busy", handoff=True, handoff_target="human-queue",
                                                  transfer_ok=False, transfer_status="busy"))
    (alert,) = alerts.open_alerts()
    assert (alert["kind"], alert["level"], alert["call_id"], alert["channel"]) == \
        ("transfer_failed", 2, "busy", "audiosocket")
    assert "busy" in alert["message"]


def test_asr_failures_per_window(make):
    clock = Clock()
    alerts = make(clock, asr_failures=3)
    alerts.on_event("a", "sip", StageFailed(1.0, "asr", "x"))
    alerts.on_event("b", "sip", StageFailed(1.0, "tts", "x"))  # another stage: not counted here
    alerts.on_event("b", "sip", StageFailed(2.0, "asr", "x"))
    assert levels(alerts, "asr_failures") == []
    alerts.on_event("c", "sip", StageFailed(1.0, "asr", "x"))
    alerts.on_event("d", "sip", StageFailed(1.0, "asr", "x"))
    assert levels(alerts, "asr_failures") == [2]


def test_voice_to_voice_p95_over_budget_level_1_and_over_twice_level_2(make):
    alerts = make(v2v_turns=20, v2v_budget_s=1.5, v2v_warning_factor=2.0)
    for _ in range(19):
        alerts.on_event("a", "sip", v2v(800))
    alerts.on_event("a", "sip", v2v(None))  # a greeting: not measured
    alerts.on_event("a", "sip", v2v(5000))  # 1 slow turn of 20: p95 is still fast
    alerts.on_event("a", "sip", v2v(1500))  # the budget itself is not over it
    assert levels(alerts, "latency") == []
    alerts.on_event("a", "sip", v2v(2000))  # 2 of the last 20 over budget: p95 is the slower of them
    assert levels(alerts, "latency") == [1]
    alerts.on_event("a", "sip", v2v(3000))  # twice the budget itself is not over it
    assert levels(alerts, "latency") == [1]
    alerts.on_event("a", "sip", v2v(4000))
    assert levels(alerts, "latency") == [1, 2]


# -- the recorded call, the engine, persistence -------------------------------------------------

def test_a_recorded_angry_caller_raises_alerts_at_the_end_of_the_call(make):
    alerts = make()
    record = CallRecord("rec-1", "zh")
    for text, anger in (("我的快递怎么还没到", 0.2), ("你们太过分了", 0.65), ("再不解决我就找记者曝光", 0.9)):
        record.turns.append(said(text, anger).turn)
    alerts.call_ended("rec-1", "file", record.masked())  # its call.json, as stored
    assert {(a["kind"], a["level"]) for a in alerts.open_alerts()} == {("anger", 3), ("threat", 4)}


def test_a_call_on_the_engine_raises_a_threat_alert_from_its_own_events(make):
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"I am calling my lawyer about this.": reply("I'm sorry to hear that.", "complaint")})
    script = CallerScript(asr)
    script.say("I am calling my lawyer about this.", at_s=0.5)
    script.silence(3.0)
    alerts = make()

    async def main():
        session = CallSession(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg(),
                              SessionOptions(greeting=False), call_id="live-1",
                              observers=[lambda e: alerts.on_event("live-1", "file", e)])
        record = await asyncio.wait_for(session.run(), 30)
        alerts.call_ended("live-1", "file", record)

    asyncio.run(main())
    assert levels(alerts, "threat", "live-1") == [3]


def test_ack_and_open_alerts_newest_first(make):
    clock = Clock()
    alerts = make(clock)
    angers(alerts, "first", 0.9)
    clock.t += 5
    angers(alerts, "second", 0.9)
    first, second = alerts.open_alerts()[::-1]
    assert (second["call_id"], first["call_id"]) == ("second", "first")
    assert alerts.ack(second["id"], "sam")
    assert not alerts.ack(second["id"], "sam") and not alerts.ack("no-such-alert", "sam")
    assert [a["id"] for a in alerts.open_alerts()] == [first["id"]]
    acked = alerts.get(second["id"])
    assert acked["acked_by"] == "sam" and acked["acked_at"]
    assert alerts.get("no-such-alert") is None


def test_alerts_survive_a_restart(make):
    alerts = make()
    angers(alerts, "c1", 0.9)
    angers(alerts, "c2", 0.9)
    one, two = alerts.open_alerts()
    alerts.ack(one["id"], "sam")
    assert alerts.flush()
    alerts.close()

    again = make()
    assert [a["id"] for a in again.open_alerts()] == [two["id"]]
    assert again.get(one["id"])["acked_by"] == "sam"
    angers(again, two["call_id"], 0.95)  # the same call, kind and level while open: not raised twice
    assert len(again.open_alerts()) == 1
    assert again.open_counts() == {1: 0, 2: 0, 3: 1, 4: 0}


def test_an_alert_raised_on_another_worker_is_acknowledged_here_once(make):
    """On a shared store the console may be served by a worker that did not raise the alert."""
    raised_on, console_on = make(), make()
    angers(raised_on, "c1", 0.9)
    [alert] = raised_on.open_alerts()
    assert raised_on.flush()
    assert console_on.ack(alert["id"], "sam")
    assert not console_on.ack(alert["id"], "sam")  # once
    assert console_on.get(alert["id"])["acked_by"] == "sam"
    assert not console_on.ack("no-such-alert", "sam")


def test_console_listeners_are_told_of_new_and_acknowledged_alerts(make):
    alerts = make()

    async def main():
        q = alerts.subscribe()
        other = alerts.subscribe()
        alerts.unsubscribe(other)
        angers(alerts, "c", 0.9)
        raised = await asyncio.wait_for(q.get(), 5)
        alerts.ack(raised["id"], "sam")
        acked = await asyncio.wait_for(q.get(), 5)
        # raised from another thread (a store callback): still delivered on the loop
        await asyncio.to_thread(angers, alerts, "d", 0.9)
        threaded = await asyncio.wait_for(q.get(), 5)
        return raised, acked, threaded, other.qsize()

    raised, acked, threaded, unsubscribed = asyncio.run(main())
    assert raised["level"] == 3 and raised["acked_by"] is None
    assert acked["id"] == raised["id"] and acked["acked_by"] == "sam"
    assert threaded["call_id"] == "d" and unsubscribed == 0


# -- the webhook --------------------------------------------------------------------------------

class Receiver(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.got = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver.got
    server.shutdown()
    server.server_close()


def test_webhook_delivers_alerts_from_its_min_level_to_a_live_server(make, receiver):
    url, got = receiver
    alerts = make(webhook_url=url, webhook_min_level=2, v2v_turns=20)
    angers(alerts, "c", 0.6, 0.6)  # level 2
    alerts.on_event("c", "sip", said("I will sue you", anger=0.9))  # level 3 anger, level 4 threat
    for _ in range(20):
        alerts.on_event("c", "sip", v2v(5000))  # level 1 and 2 latency
    assert wait_for(lambda: alerts.webhooks_delivered == 4)
    assert alerts.webhooks_failed == 0
    assert sorted(body["level"] for _, body in got) == [2, 2, 3, 4]
    content_type, body = next((ct, b) for ct, b in got if b["kind"] == "threat")
    assert content_type.startswith("application/json")
    assert set(body) >= {"id", "level", "level_name", "kind", "call_id", "message", "at"}
    assert body["level_name"] == "major_crisis" and body["call_id"] == "c"


def test_a_dead_webhook_is_retried_in_the_background_and_holds_nothing_up(make):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{refused.getsockname()[1]}/hook"
    refused.close()  # nothing listens there
    silent = socket.socket()  # listens, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for i, url in enumerate((dead_url, f"http://127.0.0.1:{silent.getsockname()[1]}/hook")):
            alerts = make(webhook_url=url, webhook_timeout_s=1.0, webhook_retries=2, webhook_backoff_s=0.05)
            calls = (f"c{i}", f"d{i}")  # new calls: the second Alerts finds the first's open in the store
            angers(alerts, calls[0], 0.9)
            angers(alerts, calls[1], 0.9)  # the rules go on while the first delivery waits
            assert len([a for a in alerts.open_alerts() if a["call_id"] in calls]) == 2 and alerts.flush()
            assert wait_for(lambda: alerts.webhooks_failed == 2 and alerts.webhooks_pending == 0, 30)
            assert alerts.webhooks_delivered == 0
    finally:
        silent.close()


def test_a_sender_that_fails_then_succeeds_is_retried(make):
    calls: list[dict] = []

    def flaky(payload: dict) -> None:
        calls.append(payload)
        if len(calls) < 3:
            raise ConnectionError("not yet")

    alerts = make(sender=flaky, webhook_retries=3, webhook_backoff_s=0.01)
    angers(alerts, "c", 0.9)
    assert wait_for(lambda: alerts.webhooks_delivered == 1)
    assert len(calls) == 3 and len({c["id"] for c in calls}) == 1


def test_observers_never_raise(make):
    alerts = make()
    alerts.on_event("c", "sip", CallerTurnNoted(1.0, object()))
    alerts.on_event("c", "sip", AgentTurnDone(1.0, None))
    alerts.call_ended("c", "sip", None)
    assert alerts.open_alerts() == []


def test_open_alerts_older_than_open_for_h_leave_the_list(make):
    clock = Clock()
    alerts = make(clock, open_for_h=1.0)
    angers(alerts, "old", 0.9)
    clock.t += 3601
    angers(alerts, "new", 0.9)
    assert [a["call_id"] for a in alerts.open_alerts()] == ["new"]
    assert alerts.open_counts()[3] == 1


# -- many workers on one store -------------------------------------------------------------------


def test_an_ack_the_bus_did_not_carry_is_seen_when_the_list_is_read(make):
    """No bus (or a message missed): the store says it is acknowledged, and the raising worker believes it."""
    raised_on, console_on = make(v2v_turns=2, v2v_budget_s=1.0), make()
    for ms in (1500, 1500):
        raised_on.on_event("c", "sip", v2v(ms))
    [alert] = raised_on.open_alerts()
    assert [a["id"] for a in console_on.open_alerts()] == [alert["id"]]  # the store's list: every worker's
    assert console_on.ack(alert["id"], "sam")
    assert raised_on.open_counts()[1] == 1  # not told yet
    assert raised_on.open_alerts() == [] and raised_on.open_counts()[1] == 0
    for ms in (500, 500, 1500, 1500):  # back under, then over again: raised again
        raised_on.on_event("c", "sip", v2v(ms))
    [again] = raised_on.open_alerts()
    assert again["id"] != alert["id"] and again["kind"] == "latency"


def test_an_ack_on_one_worker_reaches_the_worker_that_raised_it(postgres_url):
    """Two workers on Postgres with the bus, wired as the server wires them: an alert A raised and B's
    console acknowledged leaves A's open list and counts, and a new breach on A raises it again."""
    from voiceagent import db
    from voiceagent.config import Config
    from voiceagent.ops.cluster_bus import ClusterBus
    from voiceagent.ops.live import OperatorHub

    async def worker(name: str):
        cfg = Config()
        cfg.cluster.worker, cfg.store.db = name, postgres_url
        alerts = Alerts(postgres_url, AlertsConfig(v2v_turns=2, v2v_budget_s=1.0))
        hub = OperatorHub(cfg, alerts=alerts)
        bus = ClusterBus(db.resolve(postgres_url)[1], hub.worker, hub.on_remote, on_connected=hub.bus_connected)
        await bus.start()
        hub.attach_bus(bus)
        await asyncio.wait_for(bus.connected.wait(), 10)
        raised = alerts.subscribe()

        async def upkeep():  # as server._operator_upkeep: what Alerts publishes goes to the hub (and the bus)
            while True:
                hub.alert_raised(await raised.get())

        return alerts, hub, asyncio.create_task(upkeep())

    async def until(condition) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not met in time")

    async def listed(alerts: Alerts) -> list[dict]:
        """The open list once A's writer thread has stored what it raised (a moment after the breach)."""
        for _ in range(250):
            found = await asyncio.to_thread(alerts.open_alerts)
            if found:
                return found
            await asyncio.sleep(0.02)
        return []

    def breach(alerts: Alerts) -> None:  # under, then over the latency budget (the window rule re-arms)
        for ms in (500, 500, 1500, 1500):
            alerts.on_event("c", "sip", v2v(ms))

    async def main():
        (a, hub_a, up_a), (b, hub_b, up_b) = await worker("wa"), await worker("wb")
        try:
            breach(a)
            assert a.open_counts()[1] == 1
            [alert] = await listed(b)  # B's console lists A's alert
            breach(a)
            assert a.open_counts()[1] == 1  # still open: not raised twice
            assert [x["id"] for x in await asyncio.to_thread(b.open_alerts)] == [alert["id"]]

            assert await asyncio.to_thread(b.ack, alert["id"], "sam")
            await until(lambda: a.open_counts()[1] == 0)  # told over the bus, not only when it reads the list
            assert await asyncio.to_thread(a.open_alerts) == []

            breach(a)
            assert a.open_counts()[1] == 1
            [again] = await listed(b)
            assert again["id"] != alert["id"] and again["kind"] == "latency"
        finally:
            for task in (up_a, up_b):
                task.cancel()
            await hub_a.bus.stop()
            await hub_b.bus.stop()
            a.close()
            b.close()

    asyncio.run(main())
