"""One console over many workers (issue 24, voiceagent/ops/cluster_bus.py), on a real Postgres server:

* two operator hubs sharing their consoles' events over LISTEN/NOTIFY: a call begun on A is in B's live
  list with worker A, its turns (masked, cut to fit a NOTIFY) reach a B console following it, its end
  removes it; an alert raised on A reaches B; a worker that joins late hears of calls already going; a
  dropped bus connection comes back by itself;
* two apps (one served over real HTTP): both listed by GET /api/ops/workers from their heartbeats, a
  stopped one turns down; a listen-in asked of B for A's call is answered by A, through B; /metrics
  carries the worker label;
* SQLite (one process): no bus, the console as it was, the worker listed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from voiceagent import db
from voiceagent.config import Config
from voiceagent.events import AgentTurnDone, CallerTurnNoted
from voiceagent.legs import FileLeg
from voiceagent.ops import cluster_bus
from voiceagent.ops import live as live_mod
from voiceagent.ops.cluster_bus import MAX_PAYLOAD, ClusterBus, fit_payload
from voiceagent.ops.live import NotLive, OperatorHub
from voiceagent.record import AgentTurn, CallerTurn, CallRecord, Outcome
from voiceagent.testing.fakes import fake_runtime

from .peers.ports import free_port

WAIT_S = 10.0  # a message crosses Postgres in milliseconds; this only bounds a failure


async def next_matching(queue: asyncio.Queue, match, timeout: float = WAIT_S) -> dict:
    """The first message from `queue` that `match` accepts (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message in time")
        message = await asyncio.wait_for(queue.get(), left)
        if message is not None and match(message):
            return message


async def until(predicate, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def caller_turn(text: str, emotion: str = "angry", anger: float = 0.8) -> CallerTurnNoted:
    return CallerTurnNoted(1.0, CallerTurn(text, 0.0, 1.0, "logistics.track", 0.9, {}, emotion, "en", None, anger=anger))


async def hub_on_bus(url: str, worker: str) -> OperatorHub:
    cfg = Config()
    cfg.cluster.worker, cfg.store.db = worker, url
    hub = OperatorHub(cfg)
    bus = ClusterBus(db.resolve(url)[1], hub.worker, hub.on_remote, on_connected=hub.bus_connected)
    await bus.start()
    hub.attach_bus(bus)
    await asyncio.wait_for(bus.connected.wait(), WAIT_S)
    return hub


def test_a_call_on_one_worker_is_seen_followed_and_ended_on_another(postgres_url):
    async def main():
        a, b = await hub_on_bus(postgres_url, "wa"), await hub_on_bus(postgres_url, "wb")
        try:
            b_list, a_list = b.subscribe(), a.subscribe()
            live = a.begin("call-1", "sip", FileLeg(np.zeros(1600, np.float32), 16000, realtime=False), "c-42", "en")

            started = await next_matching(b_list, lambda m: m["type"] == "call_started")
            assert started["call"]["call_id"] == "call-1" and started["call"]["worker"] == "wa"
            assert [(c["call_id"], c["worker"]) for c in b.live_calls()] == [("call-1", "wa")]
            assert [(c["call_id"], c["worker"]) for c in a.live_calls()] == [("call-1", "wa")]
            assert b.owner("call-1") == "wa" and a.owner("call-1") == "wa" and b.owner("nope") is None

            # a console on B follows A's call: its turns, masked, and the list's updates
            feed = b.subscribe("call-1")
            assert (await feed.get())["type"] == "snapshot"
            observe = a.observer(live)
            observe(caller_turn("Where is my parcel? Call me on 13812345678."))
            caller = await next_matching(feed, lambda m: m["type"] == "caller")
            assert "13812345678" not in caller["text"] and "parcel" in caller["text"]
            assert caller["emotion"] == "angry"
            updated = await next_matching(b_list, lambda m: m["type"] == "call_updated")
            assert updated["call"]["emotion"] == "angry" and updated["call"]["worker"] == "wa"

            # a turn far longer than a NOTIFY may carry arrives cut, not lost
            observe(AgentTurnDone(2.0, AgentTurn("word " * 5000, 1.0, 2.0, {"voice_to_voice": 800})))
            agent = await next_matching(feed, lambda m: m["type"] == "agent")
            assert agent["text"].startswith("word word") and len(agent["text"].encode()) < MAX_PAYLOAD

            # an alert raised on A reaches B's list and B's console on that call
            a.alert_raised({"id": "al-1", "level": 3, "kind": "threat", "call_id": "call-1", "message": "lawyer"})
            assert (await next_matching(b_list, lambda m: m["type"] == "alert"))["alert"]["id"] == "al-1"
            assert (await next_matching(feed, lambda m: m["type"] == "alert"))["alert"]["kind"] == "threat"

            # A's own messages do not come back to its console twice
            await asyncio.sleep(0.3)
            own = []
            while not a_list.empty():
                own.append(a_list.get_nowait())
            assert sum(1 for m in own if m and m["type"] == "call_started") == 1
            assert sum(1 for m in own if m and m["type"] == "alert") == 1

            # the call ends on A: B's console hears it, B's list is empty
            record = CallRecord("call-1", "en", outcome=Outcome(resolved=True))
            record.turns.append(caller_turn("thanks").turn)
            await a.end(live, record)
            ended = await next_matching(b_list, lambda m: m["type"] == "call_ended")
            assert ended["call_id"] == "call-1" and ended["outcome"] == "resolved"
            assert (await next_matching(feed, lambda m: m["type"] == "ended"))["outcome"] == "resolved"
            assert await asyncio.wait_for(feed.get(), WAIT_S) is None  # the feed closes
            assert b.live_calls() == []
            with pytest.raises(NotLive):
                b.subscribe("call-1")
        finally:
            await a.bus.stop()
            await b.bus.stop()

    asyncio.run(main())


def test_a_late_worker_hears_of_calls_already_going_and_a_dropped_bus_comes_back(postgres_url, monkeypatch):
    monkeypatch.setattr(live_mod, "RESYNC_S", 0.5)

    async def main():
        a = await hub_on_bus(postgres_url, "wa")
        live = a.begin("call-2", "webrtc", FileLeg(np.zeros(1600, np.float32), 16000, realtime=False), None, "zh")
        b = await hub_on_bus(postgres_url, "wb")  # joins after the call began: asks, A announces it again
        try:
            await until(lambda: [c["worker"] for c in b.live_calls()] == ["wa"])

            # B's listening connection is cut under it (a Postgres restart, a network blip), then A's
            for hub in (b, a):
                with psycopg.connect(db.resolve(postgres_url)[1], autocommit=True) as admin:
                    killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                           "WHERE application_name = %s", (f"voiceagent-bus-listen-{hub.worker}",))
                    assert killed.fetchall() == [(True,)]
                await until(lambda: not hub.bus.connected.is_set())
                await asyncio.wait_for(hub.bus.connected.wait(), WAIT_S)
                await asyncio.sleep(live_mod.RESYNC_S + 0.3)  # A's call, announced again, is kept
                assert [c["call_id"] for c in b.live_calls()] == ["call-2"]
            feed = b.subscribe("call-2")
            a.observer(live)(caller_turn("你好，我的快递到哪里了？", "neutral", 0.1))
            assert (await next_matching(feed, lambda m: m["type"] == "caller"))["text"] == "你好，我的快递到哪里了？"

            # A is killed (no word said) and starts again under the same name: its old call leaves B's list
            await a.bus.stop()
            a = await hub_on_bus(postgres_url, "wa")
            await until(lambda: b.live_calls() == [])
            # a worker the heartbeats find down (Heartbeat.on_down) takes its calls out of the list at once
            a.begin("call-5", "sip", FileLeg(np.zeros(1600, np.float32), 16000, realtime=False), None, "en")
            await until(lambda: [c["call_id"] for c in b.live_calls()] == ["call-5"])
            b.forget_workers({"wc"})
            assert len(b.live_calls()) == 1
            b.forget_workers({"wa"})
            assert b.live_calls() == []
        finally:
            await a.bus.stop()
            await b.bus.stop()

    asyncio.run(main())


def test_the_url_the_other_workers_reach_this_one_on(monkeypatch):
    monkeypatch.delenv("VOICEAGENT_HTTP_URL", raising=False)
    cfg = Config()
    assert cluster_bus.advertised_http_url(cfg, "10.0.0.7", 8080) == "http://10.0.0.7:8080"
    assert cluster_bus.advertised_http_url(cfg, "0.0.0.0", 8080) == f"http://{socket.gethostname()}:8080"
    monkeypatch.setenv("VOICEAGENT_HTTP_URL", "http://worker-3.internal:8080/")
    assert cluster_bus.advertised_http_url(cfg, "0.0.0.0", 8080) == "http://worker-3.internal:8080"


def test_messages_are_cut_to_fit_a_notify():
    small = {"type": "call_event", "event": {"type": "caller", "text": "hello"}}
    assert fit_payload(small) is not None and "hello" in fit_payload(small)
    huge = {"type": "call_event", "event": {"type": "agent", "text": "长" * 20000}}
    payload = fit_payload(huge)
    assert payload is not None and len(payload.encode()) < MAX_PAYLOAD < 8000
    assert len(fit_payload({"type": "x", "many": list(range(5000))}).encode()) < MAX_PAYLOAD  # lists cut too
    assert fit_payload({"type": "x", **{f"key{i}": i for i in range(2000)}}) is None  # cannot be cut: not sent


# -- two apps on one store ------------------------------------------------------------------------
class ServedApp:
    """An app served by uvicorn on a loopback port in a thread of its own (a worker the others can reach)."""

    def __init__(self, app):
        import uvicorn

        self.app, self.port = app, free_port("tcp")
        self.url = f"http://127.0.0.1:{self.port}"
        app.state.http_url = self.url
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the app did not start"
            time.sleep(0.05)
        return self

    def run(self, coro, timeout: float = WAIT_S):
        """A coroutine on the app's own loop (where its hub lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def make_app(url: str, worker: str, tmp_path):
    from voiceagent.server import create_app

    cfg = Config()
    cfg.store.db, cfg.cluster.worker = url, worker
    cfg.recordings.enabled = False
    cfg.call.greeting = False
    cfg.recordings.dir = str(tmp_path / f"recordings-{worker}")
    return create_app(cfg, runtime=fake_runtime(config=cfg))


def test_workers_are_listed_by_heartbeat_and_a_listen_in_goes_to_the_worker_that_holds_the_call(
        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_bus, "BEAT_S", 0.3)
    app_a, app_b = make_app(postgres_url, "wa", tmp_path), make_app(postgres_url, "wb", tmp_path)
    token = app_a.state.auth.create_token("ci-supervisor", "supervisor")  # a row in the shared store
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app_b) as b:
        def listed() -> dict:
            return {w["name"]: w for w in b.get("/api/ops/workers", headers=auth).json()}

        def wait_for(predicate) -> None:
            deadline = time.monotonic() + WAIT_S
            while not predicate():
                assert time.monotonic() < deadline, "condition not met in time"
                time.sleep(0.05)

        with ServedApp(app_a) as a:
            # both beat: B lists both, itself first, with A's URL
            wait_for(lambda: set(listed()) == {"wa", "wb"})
            workers = listed()
            assert workers["wa"]["up"] and workers["wb"]["up"] and workers["wb"]["self"]
            assert workers["wa"]["http_url"] == a.url
            assert b.get("/api/ops/workers").status_code == 401

            async def begin():  # a call on A, with its session (as run_call makes it)
                from voiceagent.engine import CallSession, SessionOptions

                hub = app_a.state.hub
                live = hub.begin("call-3", "sip", FileLeg(np.zeros(16000, np.float32), 16000, realtime=False),
                                 None, "en")
                live.session = CallSession(app_a.state.runtime, live.leg, SessionOptions(greeting=False),
                                           call_id="call-3")
                return live

            live = a.run(begin())
            wait_for(lambda: [c.get("worker") for c in b.get("/api/ops/calls?live=1", headers=auth).json()] == ["wa"])
            assert b.get("/api/ops/calls/call-3", headers=auth).json()["call"]["worker"] == "wa"

            # a listen-in asked of B: B sends it on to A, A answers the offer; the peer is A's
            offer = a.run(_browser_offer())
            answer = b.post("/api/ops/calls/call-3/listen", json={"sdp": offer, "type": "offer"}, headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["type"] == "answer" and answer.json()["sdp"].startswith("v=0")
            assert len(live.peers) == 1 and len(app_b.state.hub.calls) == 0
            # release of a call not taken over: A's own answer comes back through B
            released = b.post("/api/ops/calls/call-3/release", headers=auth)
            assert released.status_code == 404 and "not taken over" in released.json()["detail"]
            # without an operator B sends nothing on; a call on no worker is 404 as before
            assert b.post("/api/ops/calls/call-3/listen", json={"sdp": offer, "type": "offer"}).status_code == 401
            assert b.post("/api/ops/calls/nope/listen", json={"sdp": offer, "type": "offer"},
                          headers=auth).status_code == 404

            # /metrics: every series with its worker's name
            body = b.get("/metrics", headers=auth).text
            series = [line for line in body.splitlines() if line and not line.startswith("#")]
            assert series and all('worker="wb"' in line for line in series)
            assert 'voiceagent_calls_active{channel="sip",worker="wa"} 1.0' in \
                httpx.get(f"{a.url}/metrics", headers=auth).text

            a.run(app_a.state.hub.end(live, None))
            wait_for(lambda: b.get("/api/ops/calls?live=1", headers=auth).json() == [])
        # A has stopped: after three beats B lists it down
        wait_for(lambda: not listed()["wa"]["up"])
        assert listed()["wb"]["up"]


async def _browser_offer() -> str:
    """What a console's browser sends to listen in: a receive-only audio offer with its candidates."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_on_sqlite_there_is_no_bus_and_the_console_is_as_before(tmp_path):
    app = make_app(str(tmp_path / "calls.db"), "solo", tmp_path)
    token = app.state.auth.create_token("ci", "agent")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert app.state.cluster.bus is None and app.state.hub.bus is None
        workers = client.get("/api/ops/workers", headers=auth).json()
        assert [(w["name"], w["up"], w["self"]) for w in workers] == [("solo", True, True)]
        hub = app.state.hub
        hub.begin("call-4", "sip", FileLeg(np.zeros(1600, np.float32), 16000, realtime=False), None, "en")
        assert client.get("/api/ops/calls?live=1", headers=auth).json()[0]["worker"] == "solo"
        assert 'worker="solo"' in client.get("/metrics", headers=auth).text


def test_heartbeats_are_written_and_judged_on_the_databases_clock(tmp_path):
    """This machine's clock an hour ahead of the database's: seen_at is the database's time, and a worker
    that beat a second ago (by that clock) is up, not down."""
    database = db.open_database(tmp_path / "calls.db")
    database.now = lambda: time.time() - 3600  # (instance attribute: this test's Database only)
    heartbeat = cluster_bus.Heartbeat(database, "wa", lambda: "http://10.0.0.7:8080", lambda: {"calls": 1})
    heartbeat.beat()
    with database.connect() as conn:
        conn.execute("INSERT INTO workers (name, started_at, seen_at, http_url, sip, calls, max_calls, campaign_calls) "
                     "VALUES (?, ?, ?, '', '', 0, 0, 0)", ("wb", database.now() - 60, database.now() - 1))
        conn.execute("INSERT INTO workers (name, started_at, seen_at, http_url, sip, calls, max_calls, campaign_calls) "
                     "VALUES (?, ?, ?, '', '', 0, 0, 0)", ("wc", database.now() - 60, database.now() - 60))
    workers = {w["name"]: w for w in heartbeat.workers()}
    assert abs(workers["wa"]["seen_at"] - database.now()) < 60 and workers["wa"]["up"]
    assert workers["wb"]["up"] and not workers["wc"]["up"]
    assert heartbeat.http_url_of("wa") == "http://10.0.0.7:8080" and heartbeat.http_url_of("wc") is None


def test_a_loopback_http_address_on_a_shared_store_is_warned_of(monkeypatch, caplog):
    monkeypatch.delenv("VOICEAGENT_HTTP_URL", raising=False)
    cfg = Config()
    cfg.store.db = "postgresql://va:secret@db.internal:5432/voiceagent"
    with caplog.at_level("WARNING", logger="voiceagent.ops.cluster_bus"):
        assert cluster_bus.advertised_http_url(cfg, "127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert "loopback" in caplog.text and "http_url" in caplog.text and "secret" not in caplog.text
    for host, store, url in (("10.0.0.7", cfg.store.db, ""), ("127.0.0.1", "", ""),
                             ("::1", cfg.store.db, "http://worker-1:8080")):
        caplog.clear()
        other = Config()
        other.store.db, other.cluster.http_url = store, url
        with caplog.at_level("WARNING", logger="voiceagent.ops.cluster_bus"):
            cluster_bus.advertised_http_url(other, host, 8080)
        assert "loopback" not in caplog.text, (host, store, url)
    caplog.clear()
    with caplog.at_level("WARNING", logger="voiceagent.ops.cluster_bus"):
        cluster_bus.advertised_http_url(cfg, "localhost", 8080)
    assert "loopback" in caplog.text
