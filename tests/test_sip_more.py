"""More of the SIP side on the wire: SIP over TCP, key presses (SIP INFO, RFC 4733, a real phone's),
the outcomes of outbound calls that fail, hostile or broken input inside a call, and the CLI serving
and placing calls.

The raw peers come from test_sip_ua.py (RawPeer speaks SIP over UDP by hand; TcpPeer below is the
same over one TCP connection); the real phones from tests/peers/. The CLI tests run `voiceagent` as
a subprocess with the real models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from telephony.rtp.dtmf import dtmf_packets
from telephony.rtp.g711 import ulaw_encode
from telephony.sip.auth import DigestServer
from telephony.sip.leg import SipLeg
from telephony.sip.message import SipParseError, SipRequest, SipResponse, StreamParser, make_response, parse_message
from telephony.sip.ua import CallFailed, Credentials, UserAgent
from tests.peers.baresip import Baresip
from tests.peers.ports import free_port
from voiceagent.legs.base import DtmfDigit
from voiceagent.phone import PhoneService
from voiceagent.store import CallStore

from .conftest import VOICEAGENT, cli_env
from .test_sip_calls import caller_audio, needs_baresip, service_config, wait_records
from .test_sip_ua import SDP, RawPeer, agent, call_up, media_port, run  # noqa: F401  (run: the fixture)


# -- helpers ----------------------------------------------------------------------------------

class TcpPeer(RawPeer):
    """RawPeer's requests over one TCP connection to the agent (Via SIP/2.0/TCP, Contact with
    ;transport=tcp); what comes back is framed with the product's StreamParser."""

    def __init__(self, agent_port: int):
        super().__init__(agent_port)  # its UDP socket stays unused; its RTP socket is the media
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._parser = StreamParser()
        self._pending: list[SipRequest | SipResponse] = []

    async def connect(self) -> "TcpPeer":
        self.reader, self.writer = await asyncio.open_connection(*self.agent)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.writer.get_extra_info("sockname")[1]
        return self

    def request(self, method: str, **kw) -> str:
        text = super().request(method, **kw)
        contact = f"<sip:caller@127.0.0.1:{self.port}>"
        return text.replace("SIP/2.0/UDP", "SIP/2.0/TCP", 1).replace(contact, contact[:-1] + ";transport=tcp>", 1)

    def send(self, text: str | bytes) -> None:
        assert self.writer is not None
        self.writer.write(text.encode() if isinstance(text, str) else text)

    async def send_bytewise(self, text: str) -> None:
        """One byte per write (TCP_NODELAY, a pause between): the agent sees it in many segments."""
        assert self.writer is not None
        for byte in text.encode():
            self.writer.write(bytes([byte]))
            await self.writer.drain()
            await asyncio.sleep(0.001)

    async def expect(self, status: int | None = None, method: str | None = None, timeout: float = 3.0):
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            while self._pending:
                msg = self._pending.pop(0)
                if status is not None and isinstance(msg, SipResponse) and msg.status == status:
                    return msg
                if method is not None and isinstance(msg, SipRequest) and msg.method == method:
                    return msg
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"no {status or method} within {timeout} s")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                continue
            if not data:
                raise AssertionError(f"connection closed while waiting for {status or method}")
            self._pending += self._parser.feed(data)

    async def closed_by_agent(self, timeout: float = 3.0) -> bool:
        """True when the agent closes the connection within `timeout` (EOF or reset)."""
        assert self.reader is not None
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        super().close()


def reply(peer: RawPeer, request: SipRequest, status: int, *, tag: str | None = None,
          headers: list[tuple[str, str]] | None = None, body: str = "") -> SipResponse:
    """The peer answers `request` (a UAS's response, built as RFC 3261 8.2.6 says)."""
    response = make_response(request, status, to_tag=tag, headers=headers or [], body=body.encode(),
                             content_type="application/sdp" if body else None)
    peer.send(response.to_bytes())
    return response


def rtp_packet(seq: int, ts: int, payload: bytes, pt: int = 0, marker: bool = False, ssrc: int = 0x01020304) -> bytes:
    return (bytes([0x80, (0x80 if marker else 0) | pt]) + (seq & 0xFFFF).to_bytes(2, "big")
            + (ts & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload)


SILENCE_PCMU = ulaw_encode(np.zeros(160, np.float32))


def drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(4096)
            n += 1
        except BlockingIOError:
            return n


async def hang_up(peer: RawPeer, tag: str, cseq: int = 99) -> None:
    """The peer ends the call (so that closing the agent does not wait on a BYE nobody answers)."""
    peer.send(peer.request("BYE", cseq=cseq, to_tag=tag))
    await peer.expect(200)


def port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


async def collect_digits(leg: SipLeg, into: list[DtmfDigit]) -> None:
    async for item in leg.receive():
        if isinstance(item, DtmfDigit):
            into.append(item)


# -- 1. SIP over TCP ----------------------------------------------------------------------------

def test_tcp_options_framing_a_whole_call_and_garbage_closing_only_its_connection(run):
    async def scenario():
        ua, handler = await agent()
        a = await TcpPeer(ua.port).connect()
        b = c = None
        udp = RawPeer(ua.port)
        try:
            a.send(a.request("OPTIONS"))
            ok = await a.expect(200)  # back on the same connection
            assert "INVITE" in ok.headers.get("Allow") and ok.top_via.transport.upper() == "TCP"
            await a.send_bytewise(a.request("OPTIONS", cseq=2))  # one byte per segment: still framed
            assert (await a.expect(200)).cseq == (2, "OPTIONS")
            a.send(a.request("OPTIONS", cseq=3) + "\r\n\r\n" + a.request("OPTIONS", cseq=4))  # two in one write
            assert (await a.expect(200)).cseq == (3, "OPTIONS")
            assert (await a.expect(200)).cseq == (4, "OPTIONS")

            # a whole call over the same connection
            a.send(a.request("INVITE", cseq=5, body=SDP.format(port=a.rtp_port, direction="sendrecv")))
            await a.expect(100)
            ok = await a.expect(200)
            assert ";transport=tcp" in str(ok.contact)  # in-dialog requests must come back over TCP
            tag = ok.to_addr.tag
            a.send(a.request("ACK", cseq=5, to_tag=tag))
            await asyncio.sleep(0.4)
            call = handler.calls[0]
            assert call.active and call.transport == "tcp"
            agent_rtp = ("127.0.0.1", media_port(ok))
            for i in range(20):
                a.rtp.sendto(rtp_packet(i, i * 160, SILENCE_PCMU, marker=i == 0), agent_rtp)
                await asyncio.sleep(0.02)
            assert drain(a.rtp) >= 10 and call.rtp.stats.packets_in >= 15  # media both ways
            with pytest.raises(AssertionError):
                await a.expect(200, timeout=1.2)  # over TCP the 200 is not resent once ACKed (nor before)

            # garbage on another connection: that connection is closed, nothing else is disturbed
            b = await TcpPeer(ua.port).connect()
            b.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)))  # a TLS hello
            assert await b.closed_by_agent(3.0)
            malformed = ua.endpoint.stats["malformed"]
            assert malformed >= 1
            a.send(a.request("OPTIONS", cseq=6, call_id="after-garbage"))
            await a.expect(200)  # the call's connection still works
            udp.send(udp.request("OPTIONS"))
            await udp.expect(200)  # UDP too
            c = await TcpPeer(ua.port).connect()
            c.send(c.request("OPTIONS"))
            await c.expect(200)  # and new TCP connections
            assert call.active

            a.send(a.request("BYE", cseq=7, to_tag=tag))
            await a.expect(200)
            await asyncio.wait_for(call.ended.wait(), 2)
            assert call.end_reason == "remote_bye" and not ua.calls

            # a second call on the connection, ended by the agent: the caller's Contact is the
            # connection's own address (nobody listens there), so the BYE must come down this one
            a.send(a.request("INVITE", cseq=1, call_id="second-" + a.call_id,
                             body=SDP.format(port=a.rtp_port, direction="sendrecv")))
            ok = await a.expect(200)
            a.send(a.request("ACK", cseq=1, call_id="second-" + a.call_id, to_tag=ok.to_addr.tag))
            await asyncio.sleep(0.2)
            handler.release.set()  # the agent's handler returns: it hangs up
            bye = await a.expect(method="BYE")
            assert bye.call_id == "second-" + a.call_id and bye.top_via.transport.upper() == "TCP"
            a.send(make_response(bye, 200).to_bytes())
            await asyncio.wait_for(handler.calls[1].ended.wait(), 2)
            assert handler.calls[1].end_reason == "agent_bye"
            await asyncio.sleep(0.1)
            assert not ua.calls
        finally:
            handler.release.set()
            for peer in (a, b, c, udp):
                if peer is not None:
                    peer.close()
            await ua.close()
    run(scenario())


@needs_baresip
def test_baresip_calls_the_agent_over_tcp(runtime, config, tmp_path):
    """A real phone calls sip:agent@...;transport=tcp: the call is set up and torn down over TCP and
    its record says so. Then the agent hangs up a TCP call itself: its BYE reaches the phone."""
    async def scenario():
        phone = PhoneService(service_config(config), runtime, host="127.0.0.1", port=0)
        await phone.start()
        held = []

        async def hang_up_soon(call):
            held.append(call)
            await asyncio.sleep(1.0)  # then the UA ends the call with BYE

        ua = UserAgent("127.0.0.1", 0, on_call=hang_up_soon, rtp_ports=(34000, 34999))
        await ua.start()
        try:
            async with Baresip("caller", transport="tcp") as caller:
                await asyncio.to_thread(caller.dial, f"sip:agent@127.0.0.1:{phone.port};transport=tcp")
                await caller.await_for("CALL_ESTABLISHED", 10)
                await asyncio.sleep(1.5)
                await asyncio.to_thread(caller.hangup)
                await caller.await_for("CALL_CLOSED", 5)
                await wait_records(phone, 1, timeout=15)

                await asyncio.to_thread(caller.dial, f"sip:agent@127.0.0.1:{ua.port};transport=tcp")
                await caller.await_for("CALL_ESTABLISHED", 10)
                closed = await caller.await_for("CALL_CLOSED", 10)
                messages = caller.sip_messages()
        finally:
            await ua.close()
            await phone.stop()
        return phone.records[0], held, closed, messages

    record, held, closed, messages = asyncio.run(scenario())
    assert record.channel["transport"] == "tcp" and record.channel["end_reason"] == "remote_bye"
    assert record.channel["rtp"]["packets_in"] > 50
    assert held and held[0].transport == "tcp" and held[0].end_reason == "agent_bye"
    assert closed["param"] == "Connection reset by peer"  # the agent's BYE arrived
    invites = [m for m in messages if m["method"] == "INVITE" and m["direction"] == "out"]
    byes_in = [m for m in messages if m["method"] == "BYE" and m["direction"] == "in"]
    assert invites and all(m["proto"] == "TCP" for m in invites)
    assert byes_in and all(m["proto"] == "TCP" for m in byes_in)


# -- 2. Key presses -----------------------------------------------------------------------------

def test_info_dtmf_reaches_the_leg_and_an_unknown_info_body_is_refused(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        reader = None
        try:
            _, tag, call = await call_up(peer, handler.calls)
            leg = SipLeg(call, ua)
            digits: list[DtmfDigit] = []
            reader = asyncio.ensure_future(collect_digits(leg, digits))
            peer.send(peer.request("INFO", cseq=2, to_tag=tag, body="Signal=5\r\nDuration=160\r\n",
                                   ctype="application/dtmf-relay"))
            await peer.expect(200)
            peer.send(peer.request("INFO", cseq=3, to_tag=tag, body="7", ctype="application/dtmf"))
            await peer.expect(200)
            peer.send(peer.request("INFO", cseq=4, to_tag=tag, body="<xml/>", ctype="application/media_control+xml"))
            refused = await peer.expect(415)
            assert refused.cseq == (4, "INFO")
            peer.send(peer.request("INFO", cseq=5, to_tag=tag, body="Signal= #\r\nDuration=100\r\n",
                                   ctype="application/dtmf-relay"))
            await peer.expect(200)  # the call goes on after the refusal
            await asyncio.sleep(0.2)
            assert [d.digit for d in digits] == ["5", "7", "#"]
            assert call.active
            await hang_up(peer, tag)
        finally:
            if reader is not None:
                reader.cancel()
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


def test_rfc4733_presses_reach_the_leg_once_each_and_the_clock_switch_keeps_jitter_sane(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        reader = None
        try:
            ok, tag, call = await call_up(peer, handler.calls)
            assert "telephone-event" in ok.body.decode()
            dest = ("127.0.0.1", media_port(ok))
            seq, ts = 1000, 5000

            async def audio(n: int) -> None:
                nonlocal seq, ts
                for _ in range(n):
                    peer.rtp.sendto(rtp_packet(seq, ts, SILENCE_PCMU), dest)
                    seq, ts = seq + 1, ts + 160
                    await asyncio.sleep(0.02)

            async def press(digit: str) -> None:
                nonlocal seq, ts
                start = ts
                for marker, offset, payload in dtmf_packets(digit, duration_ms=120):
                    peer.rtp.sendto(rtp_packet(seq, start, payload, pt=101, marker=marker), dest)
                    seq += 1
                    await asyncio.sleep(0.02 if offset < 960 else 0.005)  # the 3 end packets close together
                ts = start + 960

            await audio(15)  # steady RTP on the stream's own clock...
            leg = SipLeg(call, ua)  # ...then the leg moves it onto the call's clock
            digits: list[DtmfDigit] = []
            reader = asyncio.ensure_future(collect_digits(leg, digits))
            await audio(10)
            await press("4")
            await audio(5)
            await press("2")
            await press("2")  # the same key again is a new press (new timestamp)
            await audio(10)
            await asyncio.sleep(0.2)
            assert [d.digit for d in digits] == ["4", "2", "2"]
            # steady 20 ms packets: the jitter is a few ms, not the distance between the two clocks
            assert call.rtp.stats.jitter_ms < 30, call.rtp.stats
            await hang_up(peer, tag)
        finally:
            if reader is not None:
                reader.cancel()
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


@needs_baresip
def test_baresip_key_presses_reach_the_leg(tmp_path):
    """baresip's `sndcode` (ctrl_tcp) sends the key as RFC 4733 events: one DtmfDigit per press."""
    async def scenario():
        calls = []

        async def hold(call):
            calls.append(call)
            await call.ended.wait()

        ua = UserAgent("127.0.0.1", 0, on_call=hold, rtp_ports=(34000, 34999))
        await ua.start()
        reader = None
        try:
            async with Baresip("caller") as phone:
                await asyncio.to_thread(phone.dial, f"sip:agent@127.0.0.1:{ua.port}")
                await phone.await_for("CALL_ESTABLISHED", 5)
                for _ in range(100):
                    if calls:
                        break
                    await asyncio.sleep(0.02)
                leg = SipLeg(calls[0], ua)
                digits: list[DtmfDigit] = []
                reader = asyncio.ensure_future(collect_digits(leg, digits))
                await asyncio.sleep(0.3)
                for key in ("1", "9"):
                    resp = await asyncio.to_thread(phone.command, "sndcode", key)
                    assert resp.get("ok"), resp
                    await asyncio.sleep(0.6)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(phone.hangup)
                await asyncio.wait_for(calls[0].ended.wait(), 5)
        finally:
            if reader is not None:
                reader.cancel()
            await ua.close()
        return digits, calls[0]

    digits, call = asyncio.run(scenario())
    assert [d.digit for d in digits] == ["1", "9"]
    assert call.rtp.stats.jitter_ms < 60, call.rtp.stats


# -- 3. Outbound calls that fail ----------------------------------------------------------------

def outbound_peer(ua: UserAgent) -> RawPeer:
    return RawPeer(ua.port)  # it answers the INVITEs the agent sends it


async def expect_ack_for(peer: RawPeer, invite: SipRequest, final: SipResponse) -> SipRequest:
    """The transaction layer's ACK of a non-2xx final response: same branch and Request-URI as the
    INVITE, the response's To (tag), CSeq n ACK (RFC 3261 17.1.1.3)."""
    ack = await peer.expect(method="ACK")
    assert ack.top_via.branch == invite.top_via.branch
    assert ack.uri == invite.uri and ack.cseq == (invite.cseq[0], "ACK")
    assert ack.to_addr.tag == final.to_addr.tag
    return ack


@pytest.mark.parametrize("status, outcome", [(486, "busy"), (603, "rejected"), (404, "rejected")])
def test_outbound_final_refusals_become_outcomes_acked_with_no_leak(run, status, outcome):
    async def scenario():
        ua, _ = await agent()
        peer = outbound_peer(ua)
        try:
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=5.0))
            invite = await peer.expect(method="INVITE")
            rtp_port = media_port(invite)
            assert not port_is_free(rtp_port)  # the offer's port is held while the call is tried
            reply(peer, invite, 100)
            final = reply(peer, invite, status, tag="callee1")
            await expect_ack_for(peer, invite, final)
            with pytest.raises(CallFailed) as failed:
                await asyncio.wait_for(attempt, 3)
            assert (failed.value.outcome, failed.value.status) == (outcome, status)
            assert not ua.calls and port_is_free(rtp_port) and port_is_free(rtp_port + 1)
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_outbound_ringing_too_long_is_cancelled_then_no_answer(run):
    async def scenario():
        ua, _ = await agent()
        peer = outbound_peer(ua)
        try:
            started = time.monotonic()
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=1.0))
            invite = await peer.expect(method="INVITE")
            rtp_port = media_port(invite)
            reply(peer, invite, 100)
            reply(peer, invite, 180, tag="ringing")
            cancel = await peer.expect(method="CANCEL", timeout=3.0)
            assert 0.9 < time.monotonic() - started < 2.0
            # CANCEL matches the INVITE's transaction: same branch, same CSeq number (RFC 3261 9.1)
            assert cancel.top_via.branch == invite.top_via.branch
            assert cancel.cseq == (invite.cseq[0], "CANCEL")
            assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
            assert cancel.from_addr.tag == invite.from_addr.tag and cancel.to_addr.tag is None
            reply(peer, cancel, 200)
            terminated = reply(peer, invite, 487, tag="ringing")
            await expect_ack_for(peer, invite, terminated)
            with pytest.raises(CallFailed) as failed:
                await asyncio.wait_for(attempt, 3)
            assert failed.value.outcome == "no_answer" and failed.value.status == 487
            assert not ua.calls and port_is_free(rtp_port)
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_outbound_to_a_peer_that_never_answers_gives_up_at_the_ring_timeout(run):
    async def scenario():
        ua, _ = await agent()
        peer = outbound_peer(ua)  # reads the INVITE, says nothing
        try:
            started = time.monotonic()
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=1.0))
            invite = await peer.expect(method="INVITE")
            rtp_port = media_port(invite)
            with pytest.raises(CallFailed) as failed:
                await asyncio.wait_for(attempt, 2.5)
            assert time.monotonic() - started < 2.0
            # nobody there at all: reported as no answer; no CANCEL without a provisional (9.1)
            assert failed.value.outcome == "no_answer" and failed.value.status is None
            with pytest.raises(AssertionError):
                await peer.expect(method="CANCEL", timeout=0.5)
            assert not ua.calls and port_is_free(rtp_port)
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_a_late_answer_after_giving_up_is_acked_and_hung_up(run):
    """The INVITE given up on is still being retransmitted; if the callee picks up after all, the
    agent ACKs and sends BYE, so the callee is not left holding a dead call."""
    async def scenario():
        ua, _ = await agent()
        peer = outbound_peer(ua)
        try:
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=1.0))
            invite = await peer.expect(method="INVITE")
            with pytest.raises(CallFailed):
                await asyncio.wait_for(attempt, 2.5)
            answer = SDP.format(port=peer.rtp_port, direction="sendrecv")
            reply(peer, invite, 200, tag="late", headers=[("Contact", f"<sip:callee@127.0.0.1:{peer.port}>")],
                  body=answer)
            ack = await peer.expect(method="ACK")
            assert ack.to_addr.tag == "late" and ack.cseq == (invite.cseq[0], "ACK")
            bye = await peer.expect(method="BYE")
            assert bye.call_id == invite.call_id and bye.to_addr.tag == "late"
            reply(peer, bye, 200)
            assert not ua.calls
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_outbound_digest_challenge_is_answered_and_the_call_set_up(run):
    async def scenario():
        ua, _ = await agent(credentials=Credentials("agent", "s3cret"))
        peer = outbound_peer(ua)
        server = DigestServer("pbx.test", {"agent": "s3cret"})
        call = None
        try:
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=5.0))
            first = await peer.expect(method="INVITE")
            assert first.header("Authorization") is None
            reply(peer, first, 100)
            challenge = reply(peer, first, 401, tag="auth1", headers=[("WWW-Authenticate", server.challenge())])
            await expect_ack_for(peer, first, challenge)
            second = await peer.expect(method="INVITE")
            # the same call tried again (RFC 3261 22.2): Call-ID and From tag kept, CSeq up by one
            assert second.call_id == first.call_id and second.from_addr.tag == first.from_addr.tag
            assert second.cseq == (first.cseq[0] + 1, "INVITE")
            assert second.top_via.branch != first.top_via.branch
            assert server.check("INVITE", second.header("Authorization") or "", request_uri=second.uri) == "agent"
            reply(peer, second, 180, tag="callee2")
            ok = reply(peer, second, 200, tag="callee2",
                       headers=[("Contact", f"<sip:callee@127.0.0.1:{peer.port}>")],
                       body=SDP.format(port=peer.rtp_port, direction="sendrecv"))
            ack = await peer.expect(method="ACK")
            # the 2xx's ACK is the dialog's: to the Contact, its own branch, the INVITE's CSeq number
            assert ack.uri == f"sip:callee@127.0.0.1:{peer.port}"
            assert ack.cseq == (second.cseq[0], "ACK") and ack.to_addr.tag == ok.to_addr.tag
            assert ack.top_via.branch != second.top_via.branch
            call = await asyncio.wait_for(attempt, 3)
            assert call.active and call.media_started and len(ua.calls) == 1
            await asyncio.sleep(0.3)
            assert drain(peer.rtp) >= 5  # the agent's media reaches the callee
            ending = asyncio.ensure_future(call.bye())
            bye = await peer.expect(method="BYE")
            reply(peer, bye, 200)
            await asyncio.wait_for(ending, 3)
            assert not ua.calls
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_outbound_wrong_credentials_are_not_retried_forever(run):
    async def scenario():
        ua, _ = await agent(credentials=Credentials("agent", "wrong"))
        peer = outbound_peer(ua)
        server = DigestServer("pbx.test", {"agent": "s3cret"})
        try:
            attempt = asyncio.ensure_future(ua.invite(f"sip:callee@127.0.0.1:{peer.port}", ring_timeout_s=5.0))
            for n in range(2):
                invite = await peer.expect(method="INVITE")
                if n:
                    assert server.check("INVITE", invite.header("Authorization") or "", request_uri=invite.uri) is None
                challenge = reply(peer, invite, 401, tag=f"auth{n}", headers=[("WWW-Authenticate", server.challenge())])
                await expect_ack_for(peer, invite, challenge)
            with pytest.raises(CallFailed) as failed:
                await asyncio.wait_for(attempt, 3)
            assert (failed.value.outcome, failed.value.status) == ("rejected", 401)
            with pytest.raises(AssertionError):
                await peer.expect(method="INVITE", timeout=0.5)  # a third try would loop
            rtp_port = media_port(invite)
            assert not ua.calls and port_is_free(rtp_port)
        finally:
            peer.close()
            await ua.close()
    run(scenario())


# -- 4. Bad input inside a call -----------------------------------------------------------------

def test_forged_bye_old_cseq_and_glare_inside_a_call(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            _, tag, call = await call_up(peer, handler.calls)
            # a BYE naming the call (Call-ID, our tag) but another caller's From tag: not this dialog
            forged = peer.request("BYE", cseq=2, to_tag=tag).replace(f"tag={peer.tag}", "tag=forged1")
            peer.send(forged)
            await peer.expect(481)
            await asyncio.sleep(0.1)
            assert call.active and len(ua.calls) == 1

            # CSeq going back: 500 (RFC 3261 12.2.2), the call goes on
            peer.send(peer.request("INFO", cseq=10, to_tag=tag, body="1", ctype="application/dtmf"))
            await peer.expect(200)
            peer.send(peer.request("INFO", cseq=9, to_tag=tag, body="2", ctype="application/dtmf"))
            old = await peer.expect(500)
            assert old.cseq == (9, "INFO") and call.active

            # a re-INVITE while the 200 of the previous one waits for its ACK: 491 Request Pending
            sdp = SDP.format(port=peer.rtp_port, direction="sendrecv")
            peer.send(peer.request("INVITE", cseq=11, to_tag=tag, body=sdp))
            first = await peer.expect(200)
            branch = "z9hG4bK" + uuid.uuid4().hex[:12]
            peer.send(peer.request("INVITE", cseq=12, to_tag=tag, body=sdp, branch=branch))
            pending = await peer.expect(491)
            assert pending.cseq == (12, "INVITE")
            peer.send(peer.request("ACK", cseq=12, to_tag=tag, branch=branch))  # ACK of the 491
            peer.send(peer.request("ACK", cseq=11, to_tag=tag))  # ACK of the first re-INVITE's 200
            assert first.to_addr.tag == tag
            await asyncio.sleep(0.2)
            peer.send(peer.request("INVITE", cseq=13, to_tag=tag, body=sdp))
            await peer.expect(200)  # no longer pending once the ACK came
            peer.send(peer.request("ACK", cseq=13, to_tag=tag))
            assert call.active

            peer.send(peer.request("BYE", cseq=14, to_tag=tag))
            await peer.expect(200)
            await asyncio.wait_for(call.ended.wait(), 2)
            assert call.end_reason == "remote_bye" and not ua.calls
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


GARBAGE_SDP = [
    "hello, this is not SDP",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio notaport RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 99999999 RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",  # no c=
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 not-an-ip!\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 96\r\n"
    "a=rtpmap:96 PCMU\r\na=ptime:abc\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 31\r\n",
]


def test_an_invite_with_garbage_sdp_is_refused_and_leaves_no_call(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            for i, body in enumerate(GARBAGE_SDP):
                call_id = f"garbage-{i}-{peer.call_id}"
                peer.send(peer.request("INVITE", call_id=call_id, body=body))
                while True:
                    final = await _final(peer)
                    if final.call_id == call_id:
                        break
                assert final.status in (400, 488), (body, final.status, final.reason)
                peer.send(peer.request("ACK", call_id=call_id, to_tag=final.to_addr.tag or ""))
            await asyncio.sleep(0.3)
            assert not ua.calls and not handler.calls
            # still answering calls afterwards
            _, tag, call = await call_up(peer, handler.calls)
            assert call.active
            await hang_up(peer, tag)
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


async def _final(peer: RawPeer, timeout: float = 3.0) -> SipResponse:
    """The next final response the peer receives."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            data = peer.sock.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        try:
            msg = parse_message(data)
        except SipParseError:
            continue
        if isinstance(msg, SipResponse) and msg.status >= 200:
            return msg
    raise AssertionError(f"no final response within {timeout} s")


def _mutate(text: str, rng: random.Random) -> bytes:
    """One random mutation of a request, its Via line kept so that every answer comes back here."""
    lines = text.split("\r\n")
    via = next(i for i, line in enumerate(lines) if line.startswith("Via:"))
    kind = rng.randrange(6)
    if kind == 0:  # flip bytes anywhere outside the Via
        data = bytearray(text.encode())
        via_span = range(text.index("Via:"), text.index("\r\n", text.index("Via:")))
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            if i not in via_span:
                data[i] = rng.randrange(256)
        return bytes(data)
    if kind == 1:  # drop a line
        i = rng.choice([i for i in range(len(lines)) if i != via and lines[i]])
        del lines[i]
    elif kind == 2:  # duplicate a line
        i = rng.choice([i for i in range(1, len(lines)) if i != via and lines[i]])
        lines.insert(i, lines[i])
    elif kind == 3:  # truncate the body or the head
        return text.encode()[: rng.randrange(text.index("Via:") + 200, len(text.encode()))]
    elif kind == 4:  # a header value replaced with junk
        i = rng.choice([i for i in range(1, len(lines)) if i != via and ":" in lines[i]])
        name = lines[i].split(":", 1)[0]
        junk = "".join(rng.choice("abc;=<>@:\"\\ \t,0123456789\x00\xff") for _ in range(rng.randint(0, 40)))
        lines[i] = f"{name}: {junk}"
    else:  # an SDP line broken
        i = rng.choice([i for i in range(len(lines)) if "=" in lines[i][:2]] or [len(lines) - 1])
        lines[i] = lines[i][:2] + "".join(rng.choice("x 0123456789:/") for _ in range(rng.randint(0, 30)))
    return "\r\n".join(lines).encode("utf-8", "replace")


def test_garbage_and_mutated_invites_while_a_call_is_up_do_not_disturb_it(run, caplog):
    async def scenario():
        ua, handler = await agent(max_calls=64)  # mutated INVITEs that still parse go all the way through
        peer = RawPeer(ua.port)
        rng = random.Random(int(os.environ.get("SIP_FUZZ_SEED", "20240611")))  # fixed; set it to explore
        pump = None
        try:
            ok, tag, call = await call_up(peer, handler.calls)
            dest = ("127.0.0.1", media_port(ok))
            sent = [0]
            received = [0]

            async def media() -> None:
                seq = 1
                while True:
                    peer.rtp.sendto(rtp_packet(seq, seq * 160, SILENCE_PCMU), dest)
                    seq += 1
                    sent[0] += 1
                    received[0] += drain(peer.rtp)
                    await asyncio.sleep(0.02)

            pump = asyncio.ensure_future(media())
            await asyncio.sleep(0.3)
            in_before, got_before = call.rtp.stats.packets_in, received[0]
            for _ in range(50):
                junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 1500)))
                if rng.random() < 0.3:
                    junk = b"INVITE sip:agent@127.0.0.1 SIP/2.0\r\n" + junk
                peer.send(junk)
                await asyncio.sleep(0.005)
            for i in range(50):
                call_id = f"fuzz-{i}-{rng.getrandbits(32):08x}"
                text = peer.request("INVITE", call_id=call_id,
                                    body=SDP.format(port=peer.rtp_port + 2, direction="sendrecv"))
                peer.send(_mutate(text, rng))
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            # the call carried media both ways all along
            assert call.active and ua.calls.get((call.call_id, tag)) is call
            assert call.rtp.stats.packets_in - in_before >= 0.8 * (sent[0] - 60)
            assert received[0] - got_before >= 40
            # answers to the fuzz: collect; a mutated INVITE that was still a good call is ACKed and hung up
            answers = await _drain_responses(peer)
            assert not [r for r in answers if r.status == 500], "the agent failed on some input"
            accepted = [r for r in answers if r.status == 200 and r.cseq and r.cseq[1] == "INVITE"
                        and r.call_id != call.call_id]
            for r in {(r.call_id, r.to_addr.tag): r for r in accepted}.values():
                # echo the 200's own From/To/Call-ID: the mutation may have hit any of them
                peer.send(_in_dialog(peer, "ACK", r, r.cseq[0]))
                peer.send(_in_dialog(peer, "BYE", r, r.cseq[0] + 1))
            pump.cancel()
            peer.send(peer.request("BYE", cseq=2, to_tag=tag))
            await asyncio.wait_for(call.ended.wait(), 2)
            assert call.end_reason == "remote_bye"
            for _ in range(100):
                if not ua.calls:
                    break
                await asyncio.sleep(0.02)
            assert not ua.calls, ua.calls
            assert ua.endpoint.stats["malformed"] >= 40
        finally:
            if pump is not None:
                pump.cancel()
            handler.release.set()
            peer.close()
            await ua.close()
    with caplog.at_level("WARNING", logger="telephony"):
        run(scenario())
    # an exception anywhere in the SIP layers is logged at ERROR ("handling ... failed") or by the
    # endpoint's task reaper (_task_done)
    failures = [r for r in caplog.records if r.levelno >= 40 or r.funcName == "_task_done"]
    assert not failures, "\n".join(r.getMessage() + "\n" + (logging.Formatter().formatException(r.exc_info)
                                                              if r.exc_info else "") for r in failures)


def _in_dialog(peer: RawPeer, method: str, ok: SipResponse, cseq: int) -> str:
    """A request in the dialog that the 200 `ok` set up, its From/To/Call-ID copied from it."""
    return (f"{method} sip:agent@127.0.0.1:{peer.agent[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {ok.header('From')}\r\nTo: {ok.header('To')}\r\n"
            f"Call-ID: {ok.call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n")


async def _drain_responses(peer: RawPeer) -> list[SipResponse]:
    out = []
    await asyncio.sleep(0.2)
    while True:
        try:
            data = peer.sock.recv(65536)
        except BlockingIOError:
            return out
        try:
            msg = parse_message(data)
        except SipParseError:
            continue
        if isinstance(msg, SipResponse):
            out.append(msg)


def test_a_control_character_in_a_header_is_dropped_quietly(run, caplog):
    """The error response of a malformed request echoes its Via/From/To/Call-ID/CSeq; one of them
    holding a control character cannot be echoed: the request is dropped without an exception
    escaping the socket's callback (which asyncio logs as an error, once per datagram)."""
    async def scenario():
        ua, _ = await agent()
        peer = RawPeer(ua.port)
        try:
            for header in ("To: <sip:agent@127.0.0.1>", "Call-ID: " + peer.call_id):
                peer.send(peer.request("OPTIONS").replace(header, header + "\x01"))
            await asyncio.sleep(0.2)
            assert ua.endpoint.stats["malformed"] == 2
            peer.send(peer.request("OPTIONS"))
            await peer.expect(200)
        finally:
            peer.close()
            await ua.close()
    with caplog.at_level("WARNING"):
        run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_shutdown_ends_calls_with_bye_without_waiting_for_a_peer_that_is_gone(run):
    """Closing the agent (SIGTERM on `voiceagent serve`) sends BYE on every call, but a caller who
    vanished never answers it: that must not hold the shutdown for the BYE's 32 s timeout."""
    async def scenario():
        async def until_ended(call):
            await call.ended.wait()

        ua = UserAgent("127.0.0.1", 0, on_call=until_ended, rtp_ports=(30000, 31000))
        await ua.start()
        peer = RawPeer(ua.port)
        try:
            peer.send(peer.request("INVITE", body=SDP.format(port=peer.rtp_port, direction="sendrecv")))
            ok = await peer.expect(200)
            peer.send(peer.request("ACK", to_tag=ok.to_addr.tag))
            await asyncio.sleep(0.3)
            assert len(ua.calls) == 1
            started = time.monotonic()
            await ua.close()
            took = time.monotonic() - started
            bye = await peer.expect(method="BYE", timeout=0.5)  # it was said; nobody answered it
            assert bye.call_id == peer.call_id
            assert took < 5.0, f"close() took {took:.1f} s"
            assert not ua.calls
        finally:
            peer.close()
    run(scenario())


# -- 5. The CLI over SIP (subprocesses, real models) --------------------------------------------

def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0


from tests.peers.operator import create_token, get_json  # noqa: E402


def _http_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:  # 503 while loading, 404...
        return exc.code, json.load(exc)


def _last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


async def _options(port: int) -> SipResponse:
    peer = RawPeer(port)
    try:
        peer.send(peer.request("OPTIONS"))
        return await peer.expect(200)
    finally:
        peer.close()


@needs_baresip
def test_cli_serve_answers_sip_beside_http_and_exits_0_on_sigterm(tmp_path):
    http_port, sip_port = free_port("tcp"), free_port("sip")
    var = tmp_path / "var"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([VOICEAGENT, "serve", "--http", f"127.0.0.1:{http_port}", "--sip", f"127.0.0.1:{sip_port}"],
                                stdout=log, stderr=subprocess.STDOUT, env=cli_env(VOICEAGENT_VAR=str(var)))
    base = f"http://127.0.0.1:{http_port}"

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    try:
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log_tail()}"
            try:
                health = _http_json(f"{base}/healthz", 2)[1].get("status")
            except OSError:
                health = None  # not listening yet
            if health == "ok":
                break
            time.sleep(0.5)
        assert health == "ok", log_tail()
        time.sleep(0.5)  # the SIP side polls for the models every 0.2 s: until then INVITEs get 503

        ok = asyncio.run(_options(sip_port))
        assert "INVITE" in [m.strip() for m in (ok.headers.get("Allow") or "").split(",")]

        audio = caller_audio(tmp_path, "en_order_status_16k.wav", lead_s=1.0, tail_s=8.0)
        with Baresip("caller", audio_source=audio) as caller:
            caller.dial(f"sip:agent@127.0.0.1:{sip_port}")
            caller.wait_for("CALL_ESTABLISHED", 10)
            closed = caller.wait_for("CALL_CLOSED", 40)
            assert closed["param"] == "end of file"  # the caller hung up, not the agent
            heard = caller.heard_audio()
        assert _rms(heard) > 0.01, "the agent's voice did not reach the caller"

        # the call was stored; the HTTP API serves its record
        store, records = CallStore(var / "calls.db"), []
        deadline = time.monotonic() + 20
        while not records and time.monotonic() < deadline:
            records = store.recent(5)
            time.sleep(0.2)
        assert len(records) == 1, log_tail()
        # the record is the operators' business: 401 without one, and an API token reads it
        assert _http_json(f"{base}/api/ops/calls/{records[0]['call_id']}")[0] == 401
        status, record = get_json(f"{base}/api/ops/calls/{records[0]['call_id']}", create_token(var))
        assert status == 200
        assert record["channel"]["kind"] == "sip" and record["channel"]["transport"] == "udp"
        assert record["channel"]["direction"] == "inbound" and record["channel"]["end_reason"] == "remote_bye"
        assert any(t["role"] == "agent" for t in record["turns"])

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log_tail()
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@needs_baresip
def test_cli_dial_calls_a_phone_and_writes_the_record(tmp_path):
    out = tmp_path / "out"
    audio = caller_audio(tmp_path, "en_order_status_16k.wav", lead_s=6.0, tail_s=4.0)
    with Baresip("customer", audio_source=audio) as callee:
        result = subprocess.run([VOICEAGENT, "dial", callee.uri, "--out", str(out), "--lang", "en"],
                                capture_output=True, text=True, timeout=120,
                                env=cli_env(VOICEAGENT_VAR=str(tmp_path / "var")))
        assert result.returncode == 0, result.stderr[-3000:]
        callee.wait_for("CALL_ESTABLISHED", 1)
        heard = callee.heard_audio()
    summary = _last_json_line(result.stdout)
    assert summary["answered"] is True and summary["target"] == callee.uri and summary["turns"] >= 1
    record = json.loads((out / "call.json").read_text())
    assert record["call_id"] == summary["call_id"]
    agent_turns = [t for t in record["turns"] if t["role"] == "agent"]
    assert agent_turns and agent_turns[0]["kind"] == "greeting"
    assert record["channel"]["direction"] == "outbound" and record["channel"]["kind"] == "sip"
    assert _rms(heard) > 0.01, "the callee heard nothing"


def test_cli_dial_failures_exit_1_with_the_outcome_and_2_for_a_bad_uri(tmp_path):
    env = cli_env(VOICEAGENT_VAR=str(tmp_path / "var"))
    bad = subprocess.run([VOICEAGENT, "dial", "not-a-uri"], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and not bad.stdout
    assert len(bad.stderr.strip().splitlines()) == 1 and "not-a-uri" in bad.stderr

    config = tmp_path / "fast.toml"
    config.write_text("[sip]\nring_timeout_s = 2.0\n")
    closed = free_port("sip")  # nobody listens there
    started = time.monotonic()
    result = subprocess.run([VOICEAGENT, "--config", str(config), "dial", f"sip:nobody@127.0.0.1:{closed}"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    summary = _last_json_line(result.stdout)
    assert summary["answered"] is False and summary["outcome"] == "no_answer"
    assert time.monotonic() - started < 60  # the ring timeout, not the 32 s of timer B
