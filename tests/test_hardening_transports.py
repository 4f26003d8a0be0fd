"""The transports under floods (issue 22, findings 4 and 6): INVITEs never ACKed, idle SIP-over-TCP
connections, WebRTC offers that never connect, AudioSocket connections faster than the call limit,
and RTP spoofed with new SSRCs. No models: raw peers on loopback (test_sip_ua.py's), aiortc for the
browser's offer, and the sans-IO parts fed directly."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from telephony.asterisk.audiosocket import encode_audio, encode_hangup, encode_uuid
from telephony.asterisk.server import AudioSocketServer
from telephony.rtp.sdp import AudioCodec
from telephony.rtp.stream import SSRC_SWITCH_S, RtpReceiver, RtpStats
from telephony.sip.connections import ConnectionTable, TcpLimits
from telephony.sip.message import SipResponse, parse_message
from telephony.sip.ua import SOURCE_HEADER, UserAgent
from telephony.webrtc.offer import parse_offer
from voiceagent.browser import BrowserService, ServiceUnavailable
from voiceagent.config import Config, SipConfig, WebRtcConfig

from tests.peers import dispatcher as dispatcher_mod
from tests.peers import need
from tests.peers.dispatcher import KamailioDispatcher

from .test_sip_more import TcpPeer
from .test_sip_ua import SDP, RawPeer, agent, run  # noqa: F401  (run: the fixture)


class PeerAt(RawPeer):
    """A RawPeer at another loopback address (127.0.0.0/8 is all ours on Linux)."""

    def __init__(self, host: str, agent_port: int):
        super().__init__(agent_port)
        self.host = host
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def request(self, method: str, **kw) -> str:
        text = super().request(method, **kw)
        return text.replace(f"127.0.0.1:{self.port}", f"{self.host}:{self.port}")  # its Via and Contact


def invite(peer: RawPeer, call_id: str | None = None) -> None:
    peer.send(peer.request("INVITE", call_id=call_id, body=SDP.format(port=peer.rtp_port, direction="sendrecv")))


async def until(predicate, timeout: float, what: str) -> float:
    """Seconds it took for `predicate` to hold (fails after `timeout`)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# -- 1. INVITEs answered but never ACKed --------------------------------------------------------
def test_defaults_free_an_unacked_slot_within_5_s_and_cap_unacked_invites_per_address():
    sip = SipConfig()
    assert sip.ack_timeout_s <= 5.0 and 1 <= sip.max_unacked_per_source < sip.max_calls


def test_invites_never_acked_free_their_slots_at_the_ack_timeout_not_after_37_s(run):
    async def scenario():
        ua, handler = await agent(max_calls=4, ack_timeout_s=1.0)
        attackers = [PeerAt(f"127.0.0.{10 + i}", ua.port) for i in range(4)]
        caller = PeerAt("127.0.0.20", ua.port)
        try:
            for peer in attackers:
                invite(peer)
            for peer in attackers:
                await peer.expect(200)  # answered; the ACK never comes
            invite(caller)
            await caller.expect(503)  # every slot held
            held_s = await until(lambda: not ua.calls, 10.0, "the unACKed calls to be dropped")
            for peer in attackers:
                await peer.expect(method="BYE")  # the dialog is ended properly
            caller.call_id = uuid.uuid4().hex
            invite(caller)
            ok = await caller.expect(200)
            caller.send(caller.request("ACK", to_tag=ok.to_addr.tag))
            await until(lambda: handler.calls, 3.0, "the caller's call to start")
            return held_s, dict(ua.stats)
        finally:
            handler.release.set()
            for peer in (*attackers, caller):
                peer.close()
            await ua.close()

    held_s, stats = run(scenario())
    assert held_s < 5.0  # ack_timeout_s (1 s) and change; it was 32 s (64*T1) + 5
    assert stats["no_ack"] == 4 and stats["inbound"] == 5


def test_unacked_invites_from_one_address_are_capped_and_others_still_get_through(run):
    async def scenario():
        ua, handler = await agent(max_calls=8, max_unacked_per_source=2, ack_timeout_s=3.0)
        flood = [PeerAt("127.0.0.30", ua.port) for _ in range(4)]
        other = PeerAt("127.0.0.31", ua.port)
        try:
            for peer in flood:
                invite(peer)
            answered = refused = 0
            for peer in flood:
                try:
                    await peer.expect(200, timeout=1.0)
                    answered += 1
                except AssertionError:
                    refused += 1
            invite(other)
            ok = await other.expect(200)
            other.send(other.request("ACK", to_tag=ok.to_addr.tag))
            await until(lambda: handler.calls, 3.0, "the other caller's call to start")
            return answered, refused, dict(ua.stats)
        finally:
            handler.release.set()
            for peer in (*flood, other):
                peer.close()
            await ua.close()

    answered, refused, stats = run(scenario())
    assert (answered, refused) == (2, 2) and stats["unacked_refused"] == 2


def relayed_invite(proxy: PeerAt, caller_ip: str | None, *, headers: tuple[str, ...] | None = None) -> str:
    """An INVITE as a dispatcher at `proxy` relays it: its own Via above the caller's, and the caller's
    address in X-Voiceagent-Source (`caller_ip`; None: no header, `headers`: these lines instead). The
    caller's Via carries a made-up `received` each time, which must not matter."""
    proxy.call_id = uuid.uuid4().hex
    text = proxy.request("INVITE", body=SDP.format(port=proxy.rtp_port, direction="sendrecv"))
    forged = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    own_via = f"Via: SIP/2.0/UDP {proxy.host}:{proxy.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
    caller_via = f"Via: SIP/2.0/UDP 192.168.1.1:5060;branch=z9hG4bK{uuid.uuid4().hex[:12]};received={forged}"
    if headers is None:
        headers = () if caller_ip is None else (f"{SOURCE_HEADER}: {caller_ip}",)
    head, rest = text.split("\r\n", 1)
    rest = rest.split("\r\n", 1)[1]  # the peer's own Via, replaced by the proxy's and the caller's
    return "\r\n".join([head, own_via, caller_via, *headers, rest])


async def final_status(peer: RawPeer, timeout: float = 3.0) -> int:
    """The status of the next final response `peer` gets (100 Trying and requests skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = parse_message(peer.sock.recv(65536))
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        if isinstance(reply, SipResponse) and reply.status >= 200:
            return reply.status
    raise AssertionError(f"no final answer within {timeout} s")


def test_a_trusted_proxy_is_capped_per_caller_it_names_and_nobody_else_can_name_one(run):
    """Behind a Kamailio dispatcher every INVITE comes from the proxy's one address: capped as one, a
    worker would take two calls at a time in all. From a trusted proxy the cap counts the caller's
    address the proxy wrote in X-Voiceagent-Source; a Via's `received` (which a caller can forge
    through Kamailio) never counts; from an untrusted sender the header is ignored; a trusted proxy's
    INVITE without one (or with a broken or doubled one) counts as the proxy's own."""

    async def answers(proxy: PeerAt, callers: list) -> list[int]:
        statuses = []
        for caller in callers:
            if isinstance(caller, tuple):
                proxy.send(relayed_invite(proxy, None, headers=caller))
            else:
                proxy.send(relayed_invite(proxy, caller))
            statuses.append(await final_status(proxy))
        return statuses

    async def scenario():
        trusting, h1 = await agent(max_calls=10, max_unacked_per_source=2, ack_timeout_s=5.0,
                                   trusted_proxies=("127.0.0.60/32",))
        plain, h2 = await agent(max_calls=10, max_unacked_per_source=2, ack_timeout_s=5.0,
                                trusted_proxies=("127.0.0.62/32",))
        p1, p2 = PeerAt("127.0.0.60", trusting.port), PeerAt("127.0.0.61", plain.port)
        try:
            named = ["10.1.1.1", "10.1.1.2", "10.1.1.1", "10.1.1.3", "10.1.1.1"]
            unnamed = [None, None, ("X-Voiceagent-Source: not-an-address",),
                       ("X-Voiceagent-Source: 10.2.2.2", "X-Voiceagent-Source: 10.2.2.3")]
            through_trusted = await answers(p1, named + unnamed)
            from_untrusted = await answers(p2, named)
            return through_trusted, from_untrusted, dict(trusting._unacked), dict(plain._unacked)
        finally:
            h1.release.set()
            h2.release.set()
            p1.close()
            p2.close()
            await trusting.close()
            await plain.close()

    through_trusted, from_untrusted, trusting_keys, plain_keys = run(scenario())
    # only 10.1.1.1's third unACKed call is refused; then the proxy's own two, and no third
    assert through_trusted == [200, 200, 200, 200, 503, 200, 200, 503, 503]
    assert trusting_keys == {"10.1.1.1": 2, "10.1.1.2": 1, "10.1.1.3": 1, "127.0.0.60": 2}
    assert from_untrusted == [200, 200, 503, 503, 503]  # its header ignored: one address, two at a time
    assert plain_keys == {"127.0.0.61": 2}


def test_trusted_proxies_must_be_addresses():
    with pytest.raises(ValueError, match="trusted_proxies.*'kamailio'"):
        UserAgent("127.0.0.1", 0, trusted_proxies=("kamailio",))


def test_invites_arriving_together_meet_max_calls_at_once(run):
    async def scenario():
        ua, handler = await agent(max_calls=2, max_unacked_per_source=10)
        peers = [PeerAt(f"127.0.0.{40 + i}", ua.port) for i in range(6)]
        try:
            for peer in peers:
                invite(peer)
            outcomes = []
            for peer in peers:
                try:
                    ok = await peer.expect(200, timeout=1.5)
                    peer.send(peer.request("ACK", to_tag=ok.to_addr.tag))
                    outcomes.append(200)
                except AssertionError:
                    outcomes.append(503)
            return outcomes, len(ua.calls)
        finally:
            handler.release.set()
            for peer in peers:
                peer.close()
            await ua.close()

    outcomes, calls = run(scenario())
    assert outcomes.count(200) == 2 and calls == 2


# -- 2. SIP over TCP: idle connections, caps ----------------------------------------------------
def test_connection_table_times_out_the_silent_and_spares_calls():
    in_call: set = set()
    table = ConnectionTable(TcpLimits(first_message_s=10, idle_s=30), in_use=lambda: in_call)
    a, b, c, d = ("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.2", 1), ("10.0.0.3", 1)
    for address in (a, b, c, d):
        assert table.admit(address, 0.0).accepted
    table.message(b, 5.0)
    table.message(c, 5.0)
    in_call.add(c)
    table.message(d, 1.0)
    assert table.expired(9.9) == []
    assert table.expired(10.0) == [a]  # never a whole message: 10 s
    assert table.expired(30.9) == []
    assert table.expired(31.0) == [d]  # 30 s after its last message
    assert table.expired(35.0) == [b]  # c carries a call
    assert table.expired(100.0) == [] and c in table  # the call's connection stays, however quiet
    assert table.stats["timed_out"] == 3 and d not in table


def test_connection_table_evicts_the_idlest_or_refuses_when_all_carry_calls():
    in_call: set = set()
    table = ConnectionTable(TcpLimits(max_connections=4, max_per_source=2), in_use=lambda: in_call)
    x1, x2, x3 = ("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.1", 3)
    assert table.admit(x1, 0.0).accepted and table.admit(x2, 1.0).accepted
    table.message(x1, 2.0)  # x2 is now the idlest of its address
    assert table.admit(x3, 3.0).evict == (x2,)  # its address is at its cap: the idlest of it goes
    assert x2 not in table and x1 in table and x3 in table
    in_call.update({x1, x3})
    refused = table.admit(("10.0.0.1", 4), 4.0)
    assert not refused.accepted and refused.evict == ()  # both of its address carry calls
    y1, y2 = ("10.0.0.2", 1), ("10.0.0.3", 1)
    assert table.admit(y1, 5.0).accepted and table.admit(y2, 6.0).accepted  # 4 in all now
    new = table.admit(("10.0.0.4", 1), 7.0)
    assert new.accepted and new.evict == (y1,)  # the idlest one carrying no call
    in_call.update({y2, ("10.0.0.4", 1)})
    assert not table.admit(("10.0.0.5", 1), 8.0).accepted
    assert table.stats == {"refused": 2, "evicted": 2, "timed_out": 0}


def test_tcp_defaults_close_idle_connections():
    sip = SipConfig()
    assert sip.tcp_first_message_s <= 10 and sip.tcp_idle_s <= 30 and sip.tcp_max_per_source < sip.tcp_max_connections


def test_idle_tcp_connections_are_closed_and_cannot_lock_out_new_clients(run):
    async def scenario():
        limits = TcpLimits(max_connections=24, max_per_source=16, first_message_s=1.0, idle_s=1.5)
        ua, handler = await agent(tcp_limits=limits)
        idle = [await asyncio.open_connection("127.0.0.1", ua.port) for _ in range(16)]
        others = [await asyncio.open_connection("127.0.0.1", ua.port, local_addr=(f"127.0.0.{50 + i}", 0))
                  for i in range(8)]  # the total cap reached from other addresses
        try:
            await asyncio.sleep(0.1)
            # a 17th from the flooding address and a 25th in all are still served: the idlest go
            latecomer = await TcpPeer(ua.port).connect()
            latecomer.send(latecomer.request("OPTIONS"))
            await latecomer.expect(200)
            fresh = TcpPeer(ua.port)
            fresh.reader, fresh.writer = await asyncio.open_connection("127.0.0.1", ua.port,
                                                                       local_addr=("127.0.0.60", 0))
            fresh.port = fresh.writer.get_extra_info("sockname")[1]
            fresh.send(fresh.request("OPTIONS"))
            await fresh.expect(200)
            evicted = ua.endpoint.tcp.stats["evicted"]
            # a call over TCP stays up past the idle timeout; everything silent is closed
            caller = await TcpPeer(ua.port).connect()
            caller.send(caller.request("INVITE", body=SDP.format(port=caller.rtp_port, direction="sendrecv")))
            ok = await caller.expect(200)
            caller.send(caller.request("ACK", to_tag=ok.to_addr.tag))
            closed_s = await until(lambda: all(r.at_eof() for r, _ in idle + others), 6.0,
                                   "the silent connections to be closed")
            await asyncio.sleep(limits.idle_s + 1.0)
            assert handler.calls and handler.calls[0].active
            caller.send(caller.request("BYE", cseq=2, to_tag=ok.to_addr.tag))
            await caller.expect(200)  # over the same, long-quiet connection
            return evicted, closed_s, dict(ua.endpoint.tcp.stats)
        finally:
            handler.release.set()
            for _, writer in idle + others:
                writer.close()
            await ua.close()

    evicted, closed_s, stats = run(scenario())
    assert evicted == 2 and closed_s < 6.0 and stats["timed_out"] >= 20


# -- 3. WebRTC offers that never connect --------------------------------------------------------
async def browser_offer() -> tuple[RTCPeerConnection, object]:
    """A page's offer (audio and the events channel, candidates gathered) from a page that then
    vanishes: its ICE never completes."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}).encode()
    return pc, parse_offer(body)


def test_webrtc_defaults_drop_unconnected_offers_within_5_s_and_cap_them_per_client():
    web = WebRtcConfig()
    assert web.connect_timeout_s <= 5.0 and 1 <= web.max_pending_per_client < web.max_sessions


def test_offers_that_never_connect_are_capped_per_client_and_free_their_lines(run):
    async def scenario():
        config = Config()
        config.webrtc.max_sessions = 4
        browser = BrowserService(config, runtime=lambda: object(), http_host="127.0.0.1")
        pages = []
        try:
            for _ in range(3):
                pc, offer = await browser_offer()
                pages.append(pc)
                try:
                    await browser.open(offer, remote="203.0.113.7")
                except ServiceUnavailable as exc:
                    refused = exc
            pc, offer = await browser_offer()
            pages.append(pc)
            await browser.open(offer, remote="198.51.100.2")  # another client still gets a line
            for pc in pages:
                await pc.close()
            assert len(browser.calls) == 3
            freed_s = await until(lambda: not browser.calls, 12.0, "the unconnected lines to be freed")
            return refused, freed_s, dict(browser.counters)
        finally:
            await browser.close()

    refused, freed_s, counters = run(scenario())
    assert "still connecting" in refused.reason and refused.retry_after_s >= 1
    assert counters["pending_refused"] == 1 and counters["connect_timeouts"] == 3
    assert freed_s < 8.0  # connect_timeout_s (5 s); it was 15 s


# -- 4. AudioSocket max_calls under a burst -----------------------------------------------------
FRAME = b"\x01\x00" * 160


@pytest.mark.parametrize("audio_after_s", [0.02, 0.0])
def test_audiosocket_max_calls_holds_when_connections_come_at_once(audio_after_s):
    async def scenario():
        release = asyncio.Event()
        accepted, overflowed = [], []

        async def hold(conn):
            accepted.append(conn.uuid)
            await release.wait()

        async def overflow(conn):
            overflowed.append(conn.uuid)

        server = AudioSocketServer(hold, port=0, max_calls=4, on_overflow=overflow, first_audio_timeout_s=1.0)
        await server.start()
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(12)]
        try:
            for _, writer in conns:  # as Asterisk does: the UUID, then the first audio ~20 ms later
                writer.write(encode_uuid(uuid.uuid4()) + (b"" if audio_after_s else encode_audio(FRAME)))
            if audio_after_s:
                await asyncio.sleep(audio_after_s)
                for _, writer in conns:
                    writer.write(encode_audio(FRAME))

            async def outcome(reader) -> bytes:
                try:
                    return await asyncio.wait_for(reader.read(100), 1.5)
                except asyncio.TimeoutError:
                    return b"(held)"
            answers = await asyncio.gather(*(outcome(r) for r, _ in conns))
            active = len(server.calls)
            release.set()
            return accepted, overflowed, answers, active, dict(server.counters)
        finally:
            release.set()
            for _, writer in conns:
                writer.close()
            await server.close()

    accepted, overflowed, answers, active, counters = asyncio.run(scenario())
    assert len(accepted) == 4 and active == 4 and counters["calls"] == 4
    assert len(overflowed) == 8 and counters["overflow"] == 8
    assert answers.count(encode_hangup()) == 8 and answers.count(b"(held)") == 4  # the documented refusal


# -- 5. RTP spoofed with new SSRCs --------------------------------------------------------------
PCMU = AudioCodec(0, "PCMU")
EVENT = AudioCodec(101, "telephone-event", fmtp="0-16")


def packet(seq: int, ts: int, ssrc: int) -> bytes:
    return RtpPacket(payload_type=0, sequence_number=seq & 0xFFFF, timestamp=ts & 0xFFFFFFFF, ssrc=ssrc,
                     payload=b"\x7f" * 160).serialize()


def test_spoofed_ssrcs_neither_reset_the_timeline_nor_erase_the_callers_words():
    stats = RtpStats()
    receiver = RtpReceiver(stats)
    receiver.configure(PCMU, EVENT)
    caller, frames, spoofed = 0xCA11E5, [], 0
    rng = np.random.default_rng(7)
    t = 100.0
    for i in range(100):  # 2 s of the caller, 20 ms apart; 5 spoofed packets (250/s) in each gap
        receiver.feed(packet(1000 + i, 50_000 + 160 * i, caller), t)
        for k in range(5):
            receiver.feed(packet(int(rng.integers(0, 65536)), int(rng.integers(0, 2**32)),
                                 int(rng.integers(1, 2**32))), t + 0.004 * (k + 1))
            spoofed += 1
        frames += receiver.pop(t + 0.02)
        t += 0.02
    frames += receiver.pop(t + 1.0)
    assert receiver.remote_ssrc == caller and stats.other_ssrc == spoofed
    assert len(frames) == 100 and stats.packets_in == 100  # every word of the caller's kept
    starts = np.array([f.start_s for f in frames])
    assert np.allclose(np.diff(starts), 0.02)  # one timeline, never re-based
    # a real switch: the old source has stopped; after a pause the new one is followed
    receiver.feed(packet(7, 1_000, 0xB0B), t + SSRC_SWITCH_S + 0.01)
    assert receiver.remote_ssrc == 0xB0B
    # and after a re-INVITE at once, without the pause
    receiver.allow_new_source(t + 1.0)
    receiver.feed(packet(9, 2_000, 0xC0C), t + 1.01)
    assert receiver.remote_ssrc == 0xC0C


def test_a_spoofer_who_slips_into_a_pause_loses_the_stream_when_the_caller_speaks_again():
    stats = RtpStats()
    receiver = RtpReceiver(stats)
    receiver.configure(PCMU, EVENT)
    caller, spoofer = 0xCA11E5, 0x5F00F
    t = 100.0
    for i in range(10):
        receiver.feed(packet(1000 + i, 50_000 + 160 * i, caller), t + 0.02 * i)
    t += 0.2 + SSRC_SWITCH_S + 0.1  # the caller's phone sends nothing while they are quiet
    for i in range(20):  # the spoofer's packets, 250 a second, get in during the pause ...
        receiver.feed(packet(i, 160 * i, spoofer), t + 0.004 * i)
    assert receiver.remote_ssrc == spoofer
    t += 0.1
    receiver.feed(packet(1010, 50_000 + 160 * 10, caller), t)  # ... until the caller speaks again
    assert receiver.remote_ssrc == caller
    dropped = stats.other_ssrc
    for i in range(20, 40):  # and from then on the spoofer is dropped, however fast it sends
        receiver.feed(packet(i, 160 * i, spoofer), t + 0.004 * (i - 19))
    assert receiver.remote_ssrc == caller and stats.other_ssrc == dropped + 20


# -- 1b. the same through the shipped Kamailio dispatcher (docker/kamailio/kamailio.cfg) ---------------
def proxied_invite(caller: PeerAt, proxy_port: int, *, forged_source: str, forged_received: str) -> str:
    """A caller's INVITE to the dispatcher carrying its own X-Voiceagent-Source, and a Via that names
    its real address (so Kamailio adds no `received` of its own) with a made-up `received`."""
    caller.call_id = uuid.uuid4().hex
    text = caller.request("INVITE", body=SDP.format(port=caller.rtp_port, direction="sendrecv"),
                          extra=f"{SOURCE_HEADER}: {forged_source}\r\n")
    return text.replace(f"127.0.0.1:{caller.port};branch=", f"{caller.host}:{caller.port};branch=", 1) \
        .replace(";rport\r\n", f";received={forged_received}\r\n", 1) \
        .replace(f"sip:caller@127.0.0.1:{caller.port}", f"sip:caller@{caller.host}:{caller.port}")


@need(dispatcher_mod.available(), "kamailio (Debian kamailio)")
def test_behind_kamailio_the_cap_counts_the_real_caller_whatever_it_writes(run):
    """Kamailio drops the caller's own X-Voiceagent-Source and writes the address it got the INVITE
    from: a caller making up a new header (and Via `received`) per INVITE is still one caller, and
    another caller behind the same proxy is not held back by it."""

    async def scenario():
        ua, handler = await agent(max_calls=8, max_unacked_per_source=2, ack_timeout_s=10.0,
                                  trusted_proxies=("127.0.0.1",))
        proxy = KamailioDispatcher({"w": f"127.0.0.1:{ua.port}"}, maxload=8, worker_match=3)
        forger, other = PeerAt("127.0.0.80", 0), PeerAt("127.0.0.81", 0)
        try:
            await asyncio.to_thread(proxy.start)
            await asyncio.to_thread(proxy.wait_state, "w", "A", 10.0)
            for peer in (forger, other):
                peer.agent = ("127.0.0.1", proxy.port)
            forged = []
            for n in range(3):
                forger.send(proxied_invite(forger, proxy.port, forged_source=f"10.9.9.{n}",
                                           forged_received=f"10.8.8.{n}"))
                forged.append(await final_status(forger, 5.0))
            other.send(proxied_invite(other, proxy.port, forged_source="127.0.0.80", forged_received="10.8.8.9"))
            return forged, await final_status(other, 5.0), dict(ua._unacked)
        finally:
            handler.release.set()
            forger.close()
            other.close()
            await asyncio.to_thread(proxy.stop)
            await ua.close()

    forged, other, keys = run(scenario())
    # capped at two, as one caller: the worker's 503, which a proxy passes on as 500 (RFC 3261 16.7)
    assert forged == [200, 200, 500]
    assert other == 200  # another caller still gets through the same proxy
    assert keys == {"127.0.0.80": 2, "127.0.0.81": 1}


def sip_request(method: str, ruri: str, sender: socket.socket, host: str, *, proxy_port: int,
                routes: tuple[str, ...] = ()) -> bytes:
    """An in-dialog request (made-up tags) routed through the dispatcher at 127.0.0.1:`proxy_port`."""
    port = sender.getsockname()[1]
    route = ", ".join([f"<sip:127.0.0.1:{proxy_port};lr>", *routes])
    return (f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            f"Route: {route}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:mallory@{host}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{ruri}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 {method}\r\nContact: <sip:mallory@{host}:{port}>\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def received(sock: socket.socket, method: str | None, timeout: float) -> SipResponse | None:
    """The first request of `method` (or, for None, final response) `sock` gets within `timeout`."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = parse_message(sock.recv(65536))
        except (TimeoutError, socket.timeout):
            continue
        if method is None and isinstance(message, SipResponse) and message.status >= 200:
            return message
        if method is not None and not isinstance(message, SipResponse) and message.method == method:
            return message
    return None


@pytest.mark.parametrize("worker_match", [3, 2])
@need(dispatcher_mod.available(), "kamailio (Debian kamailio)")
def test_kamailio_relays_in_dialog_requests_only_from_or_to_a_worker(worker_match):
    """Anyone can make up a To tag and a Route to the dispatcher: relayed to its Request-URI such an
    "in-dialog" INVITE would be a free call through the carrier trunk that trusts the proxy. Refused
    (403) unless it comes from a worker or goes to one; the workers' own and the callers' requests to
    the workers still pass. Under both WORKER_MATCH modes: 3 (address alone, the shipped default) and 2."""
    sockets = {}
    for name, host in (("worker", "127.0.0.1"), ("carrier", "127.0.0.70"), ("outsider", "127.0.0.71")):
        sockets[name] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sockets[name].bind((host, 0))
    worker, carrier, outsider = sockets["worker"], sockets["carrier"], sockets["outsider"]
    carrier_port = carrier.getsockname()[1]
    proxy = KamailioDispatcher({"w": f"127.0.0.1:{worker.getsockname()[1]}"}, worker_match=worker_match)
    try:
        proxy.start()
        premium = f"sip:+19005550100@127.0.0.70:{carrier_port}"
        # to the carrier by the Request-URI, then by a second Route ($du): both refused, nothing relayed
        outsider.sendto(sip_request("INVITE", premium, outsider, "127.0.0.71", proxy_port=proxy.port),
                        ("127.0.0.1", proxy.port))
        by_ruri = received(outsider, None, 5.0)
        outsider.sendto(sip_request("INVITE", "sip:anyone@127.0.0.71", outsider, "127.0.0.71", proxy_port=proxy.port,
                                    routes=(f"<sip:127.0.0.70:{carrier_port};lr>",)), ("127.0.0.1", proxy.port))
        by_route = received(outsider, None, 5.0)
        leaked = received(carrier, "INVITE", 1.0)

        # a caller's request to a worker (its Contact in the Request-URI) is relayed
        worker_uri = f"sip:agent@127.0.0.1:{worker.getsockname()[1]}"
        outsider.sendto(sip_request("BYE", worker_uri, outsider, "127.0.0.71", proxy_port=proxy.port),
                        ("127.0.0.1", proxy.port))
        to_worker = received(worker, "BYE", 5.0)
        # a worker's request to the carrier (the far end of its outbound call) is relayed
        worker.sendto(sip_request("BYE", premium, worker, "127.0.0.1", proxy_port=proxy.port),
                      ("127.0.0.1", proxy.port))
        from_worker = received(carrier, "BYE", 5.0)
        log = proxy.log_text()
    finally:
        proxy.stop()
        for sock in sockets.values():
            sock.close()

    assert by_ruri is not None and by_ruri.status == 403, log[-2000:]
    assert by_route is not None and by_route.status == 403, log[-2000:]
    assert leaked is None, "a forged in-dialog INVITE reached the carrier"
    assert "not a worker: refused" in log
    assert to_worker is not None, log[-2000:]
    assert from_worker is not None, log[-2000:]
