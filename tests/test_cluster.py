"""Many workers behind one Kamailio (issue 24): the shipped docker/kamailio/kamailio.cfg, run as it is,
with its dispatcher in front of SIP workers, real baresip phones calling through it, on loopback.

* Without models (in-process user agents as the workers): a full worker's 503 makes the dispatcher try
  the next one, and a worker that has gone silent is skipped after 2 s and marked inactive.
* With the whole agent (two `voiceagent serve` processes, one Postgres): calls spread over both and
  every record lands in the one store, each naming its worker; one worker SIGKILLed is out of the
  dispatcher's rotation within 10 s, the next calls are answered by the other, and no finished call's
  record is lost; the other told to stop (SIGTERM) mid-call drains: out of the rotation, its call
  finished, then it exits.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from telephony.sip.ua import UserAgent
from tests.peers import baresip as baresip_mod
from tests.peers import dispatcher as dispatcher_mod
from tests.peers import need
from tests.peers.baresip import Baresip
from tests.peers.dispatcher import KamailioDispatcher
from tests.peers.ports import free_port
from tests.peers.workers import Worker
from voiceagent.store import CallStore

from .test_sip_calls import caller_audio

pytestmark = [need(dispatcher_mod.available(), "kamailio (Debian kamailio)"),
              need(baresip_mod.available(), "baresip (Debian baresip-core)")]

OUT_WITHIN_S = 10.0  # a dead worker is out of the rotation by then (issue 24)


def dial_together(phones: list[Baresip], uri: str, timeout: float = 15.0) -> list[str]:
    """Every phone dials at once; the Call-IDs of the calls, once all are established."""
    for phone in phones:
        phone.dial(uri)
    return [phone.wait_for("CALL_ESTABLISHED", timeout)["id"] for phone in phones]


# -- the dispatcher's failover, with plain user agents as workers ----------------------------------
class HeldCalls:
    """A worker's call handler: holds each call until the caller hangs up."""

    def __init__(self):
        self.calls = []

    async def __call__(self, call) -> None:
        self.calls.append(call)
        await call.ended.wait()


def test_a_full_worker_503_and_a_silent_worker_send_the_call_to_the_next(tmp_path):
    async def scenario():
        handlers = {"a": HeldCalls(), "b": HeldCalls()}
        agents = {name: UserAgent("127.0.0.1", free_port("sip"), on_call=handler, rtp_ports=(34000, 34999),
                                  max_calls=4, trusted_proxies=("127.0.0.1",))
                  for name, handler in handlers.items()}
        for ua in agents.values():
            await ua.start()
        proxy = KamailioDispatcher({name: f"127.0.0.1:{ua.port}" for name, ua in agents.items()}, maxload=4)
        phones = [Baresip(f"caller{i}") for i in range(3)]
        try:
            await asyncio.to_thread(proxy.start)
            for phone in phones:
                await asyncio.to_thread(phone.start)
            for name in agents:
                await asyncio.to_thread(proxy.wait_state, name, "A", 10.0)
            # Call load: among equally loaded workers the dispatcher picks the first of its list, so
            # three calls at once go first, second, first. The first is made to hold one call only
            # (the dispatcher's maxload says 4): it answers the third 503, and the second takes it.
            first, second = list(proxy.states())
            agents[first].max_calls = 1
            call_ids = await asyncio.to_thread(dial_together, phones, f"sip:agent@{proxy.hostport}")
            for _ in range(100):  # the ACKs are on their way: the handlers get the calls then
                if sum(len(h.calls) for h in handlers.values()) >= len(phones):
                    break
                await asyncio.sleep(0.05)
            taken = {name: len(handlers[name].calls) for name in agents}
            for phone in phones:
                await asyncio.to_thread(phone.hangup)
                await phone.await_for("CALL_CLOSED", 10)
            full_log = proxy.log_text()
            loads_after_hangup = proxy.loads()  # each BYE took its call off its worker's count

            # A worker gone silent (closed, as if its host died): the next call's INVITE gets no 100
            # Trying from it within 2 s; the dispatcher marks it inactive and sends the call on.
            await agents[first].close()
            started = time.monotonic()
            phones[0].dial(f"sip:agent@{proxy.hostport}")
            late_call = (await phones[0].await_for("CALL_ESTABLISHED", 15))["id"]
            answered_after_s = time.monotonic() - started
            state = proxy.states()[first]
            await asyncio.to_thread(phones[0].hangup)
            return (first, second, call_ids, taken, full_log, loads_after_hangup, proxy.dispatched(), late_call,
                    answered_after_s, state, len(handlers[second].calls))
        finally:
            for phone in phones:
                await asyncio.to_thread(phone.stop)
            await asyncio.to_thread(proxy.stop)
            for ua in agents.values():
                await ua.close()

    (first, second, call_ids, taken, full_log, loads_after_hangup, dispatched, late_call, answered_after_s, state,
     second_total) = asyncio.run(asyncio.wait_for(scenario(), 120))

    assert taken == {first: 1, second: 2}  # every call answered, none beyond the full worker's 1
    assert "(after 503)" in full_log, full_log[-3000:]
    assert loads_after_hangup == {first: 0, second: 0}
    routes = {call_id: [w for c, w in dispatched if c == call_id] for call_id in call_ids}
    assert sorted(routes.values()) == sorted([[first], [first, second], [second]]), routes  # one went on after 503

    assert [w for c, w in dispatched if c == late_call] == [first, second]  # tried, no answer, the next
    assert answered_after_s < 10.0  # the 2 s wait for a 100 Trying, not the INVITE's 32 s
    assert state.startswith("I"), state  # out of the rotation until a probe is answered again
    assert second_total == 3


# -- two real workers and one Postgres --------------------------------------------------------------
def wait_for_records(store: CallStore, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = store.recent(50)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def sip_call_ids(records: list[dict]) -> dict[str, str]:
    """{SIP Call-ID: the worker that stored the record}."""
    return {r["channel"]["sip_call_id"]: r["worker"] for r in records}


def test_two_workers_behind_the_dispatcher_share_calls_and_one_killed_is_out_within_10_s(tmp_path, postgres_url):
    timings: dict[str, float] = {}
    began = time.monotonic()
    workers = [Worker("w1", tmp_path, postgres_url, rtp=(35000, 35499)),
               Worker("w2", tmp_path, postgres_url, rtp=(35500, 35999), drain_s=60.0)]
    proxy = KamailioDispatcher({w.name: w.hostport for w in workers}, maxload=3)
    store = CallStore(postgres_url)
    audio = caller_audio(tmp_path, "en_size_16k.wav", lead_s=0.5, tail_s=4.0)
    phones = [Baresip(f"caller{i}", audio_source=audio) for i in range(2)]
    try:
        for worker in workers:  # both load their models at once, as workers starting together do
            worker.start()
        proxy.start()
        for phone in phones:
            phone.start()
        deadline = time.monotonic() + 180
        while not all(w.healthy() for w in workers):
            assert time.monotonic() < deadline, "\n".join(w.log_tail() for w in workers)
            time.sleep(0.5)
        timings["workers_ready_s"] = time.monotonic() - began
        # the dispatcher's probes find them: a worker answers OPTIONS 503 until its models are loaded
        for worker in workers:
            proxy.wait_state(worker.name, "A", 15.0)
        uri = f"sip:agent@{proxy.hostport}"

        # 1. two callers at once: one on each worker (call load: the least loaded takes the next call)
        first_calls = dial_together(phones, uri)
        for phone in phones:
            phone.wait_for("CALL_CLOSED", 60)  # the caller's file ended (or the agent said goodbye first)
        records = wait_for_records(store, 2)
        assert sorted(sip_call_ids(records)) == sorted(first_calls), records
        assert sorted(sip_call_ids(records).values()) == ["w1", "w2"]  # spread over both, each says which
        by_proxy = dict(proxy.dispatched())
        assert all(by_proxy[c] == w for c, w in sip_call_ids(records).items())  # as the dispatcher sent them
        timings["first_calls_s"] = time.monotonic() - began - timings["workers_ready_s"]

        # 2. w1 killed: out of the rotation (two failed probes) within 10 s; no call on it meanwhile
        killed, survivor = workers
        killed.kill()
        out_after_s = proxy.wait_state(killed.name, "I", 30.0)
        timings["dead_worker_out_s"] = out_after_s
        assert out_after_s < OUT_WITHIN_S, f"{killed.name} still in rotation after {out_after_s:.1f}s"

        # 3. the next callers are all answered by the other worker, straight away
        started = time.monotonic()
        later_calls = dial_together(phones, uri, timeout=10.0)
        timings["answered_after_kill_s"] = time.monotonic() - started
        for phone in phones:
            phone.wait_for("CALL_CLOSED", 60)
        assert [w for c, w in proxy.dispatched() if c in later_calls] == [survivor.name] * 2

        # every finished call's record is there: the two before the kill, the two after
        records = wait_for_records(store, 4)
        stored = sip_call_ids(records)
        assert sorted(stored) == sorted(first_calls + later_calls), stored
        assert [stored[c] for c in later_calls] == [survivor.name] * 2
        assert store.count() == 4

        # 4. the survivor told to stop (SIGTERM, [cluster] drain_s) in the middle of a call: it leaves the
        # rotation at once (OPTIONS answered 503) but the caller's call goes on to its end, not hung up
        draining_call = dial_together(phones[:1], uri)[0]
        time.sleep(1.0)
        survivor.terminate()
        out_after_s = proxy.wait_state(survivor.name, "I", 30.0)
        timings["draining_worker_out_s"] = out_after_s
        assert survivor.proc.poll() is None, "a draining worker waits for its call"
        phones[0].wait_for("CALL_CLOSED", 60)
        records = wait_for_records(store, 5)
        drained = next(r for r in records if r["channel"]["sip_call_id"] == draining_call)
        assert drained["channel"]["end_reason"] != "shutdown", drained["channel"]
        assert drained["turns"] and any(t["role"] == "agent" for t in drained["turns"])
        survivor.proc.wait(30)  # and then it exits by itself, the call over
        assert survivor.proc.returncode == 0, survivor.log_tail()
    finally:
        for phone in phones:
            phone.stop()
        proxy.stop()
        for worker in workers:
            worker.stop()
        timings["total_s"] = time.monotonic() - began
        print("cluster timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
