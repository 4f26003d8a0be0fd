"""The SIP user agent on the wire, without the models: a raw UDP/TCP peer in the test sends what a
phone, a proxy or an attacker would, and the test reads what comes back. What the caller hears is
tested with a real phone in test_sip_calls.py."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import numpy as np
import pytest

from telephony.sip.message import SipParseError, SipResponse, parse_message
from telephony.sip.ua import UserAgent

SDP = ("v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       "a=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n")


class RawPeer:
    """A UDP socket that speaks SIP by hand."""

    def __init__(self, agent_port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.agent = ("127.0.0.1", agent_port)
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.rtp_port = self.rtp.getsockname()[1]

    def request(self, method: str, *, cseq: int = 1, to_tag: str = "", body: str = "", branch: str | None = None,
                extra: str = "", call_id: str | None = None, ctype: str = "application/sdp") -> str:
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
        to = "<sip:agent@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        text = (f"{method} sip:agent@127.0.0.1:{self.agent[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag={self.tag}\r\nTo: {to}\r\n"
                f"Call-ID: {call_id or self.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:caller@127.0.0.1:{self.port}>\r\n{extra}")
        if body:
            text += f"Content-Type: {ctype}\r\n"
        return text + f"Content-Length: {len(body.encode())}\r\n\r\n{body}"

    def send(self, text: str | bytes) -> None:
        self.sock.sendto(text.encode() if isinstance(text, str) else text, self.agent)

    async def expect(self, status: int | None = None, method: str | None = None, timeout: float = 3.0):
        """The next message of that kind (other ones, e.g. 100 Trying, are skipped)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            try:
                msg = parse_message(data)
            except SipParseError:  # our error response echoes the bad header it complains about
                if status is not None and data.startswith(f"SIP/2.0 {status} ".encode()):
                    return data
                continue
            if status is not None and isinstance(msg, SipResponse) and msg.status == status:
                return msg
            if method is not None and not isinstance(msg, SipResponse) and msg.method == method:
                return msg
        raise AssertionError(f"no {status or method} within {timeout} s")

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()


class Calls:
    """What the agent side saw: the calls handed to it; each is held until `release`."""

    def __init__(self):
        self.calls = []
        self.release = asyncio.Event()

    async def __call__(self, call) -> None:
        self.calls.append(call)
        await self.release.wait()


def media_port(message) -> int:
    """The audio port an SDP body (of a request or response) offers or answers with."""
    return int(message.body.decode().split("m=audio ")[1].split()[0])


async def call_up(peer: RawPeer, calls: list, cseq: int = 1):
    """The peer calls the agent, gets the 200, ACKs it; returns (the 200, our To tag, the SipCall
    the agent's handler received into `calls`)."""
    peer.send(peer.request("INVITE", cseq=cseq, body=SDP.format(port=peer.rtp_port, direction="sendrecv")))
    ok = await peer.expect(200)
    tag = ok.to_addr.tag
    peer.send(peer.request("ACK", cseq=cseq, to_tag=tag))
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    return ok, tag, calls[-1]


@pytest.fixture
def run():
    def runner(coro):
        return asyncio.run(asyncio.wait_for(coro, 30))
    return runner


async def agent(**kw) -> tuple[UserAgent, Calls]:
    handler = Calls()
    ua = UserAgent("127.0.0.1", 0, on_call=handler, rtp_ports=(30000, 31000), **kw)
    await ua.start()
    return ua, handler


def test_options_is_answered_and_unknown_methods_are_refused(run):
    async def scenario():
        ua, _ = await agent()
        peer = RawPeer(ua.port)
        try:
            peer.send(peer.request("OPTIONS"))
            ok = await peer.expect(200)
            assert "INVITE" in ok.headers.get("Allow") and "REFER" in ok.headers.get("Allow")
            peer.send(peer.request("FROBNICATE"))
            await peer.expect(501)
            peer.send(peer.request("MESSAGE", body="hi", ctype="text/plain"))
            await peer.expect(405)
            peer.send(peer.request("BYE", to_tag="nosuchtag"))
            await peer.expect(481)  # a dialog we do not have (wrong Call-ID or tag)
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_malformed_requests_get_an_error_and_the_agent_keeps_answering(run):
    async def scenario():
        ua, _ = await agent()
        peer = RawPeer(ua.port)
        try:
            good = peer.request("OPTIONS")
            peer.send(good.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1))
            await peer.expect(505)
            peer.send(good.replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"))
            await peer.expect(400)
            peer.send(good.replace("Content-Length: 0", "Content-Length: 500"))  # says more than it has
            await peer.expect(400)
            for junk in (b"\x00\xff" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n", b"\r\n\r\n", good[:40].encode(),
                         good.replace("Via", "X-" * 5000 + "Via").encode()):
                peer.send(junk)
            peer.send(peer.request("OPTIONS"))
            await peer.expect(200)  # still serving
            assert ua.endpoint.stats["malformed"] >= 6
        finally:
            peer.close()
            await ua.close()
    run(scenario())


def test_inbound_call_answer_ack_media_and_bye_from_the_caller(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            peer.send(peer.request("INVITE", body=SDP.format(port=peer.rtp_port, direction="sendrecv")))
            await peer.expect(100)
            ok = await peer.expect(200)
            assert ok.to_addr.tag and ok.contact is not None
            answer = ok.body.decode()
            assert "m=audio" in answer and " RTP/AVP 0" in answer and "telephone-event" in answer
            tag = ok.to_addr.tag
            peer.send(peer.request("ACK", to_tag=tag))
            await asyncio.sleep(0.3)
            assert len(handler.calls) == 1 and handler.calls[0].active
            call = handler.calls[0]
            # the agent's RTP reaches the caller's port (silence while it says nothing: continuous RTP)
            agent_port = media_port(ok)
            await asyncio.sleep(0.3)
            packets = []
            while True:
                try:
                    packets.append(peer.rtp.recvfrom(2048))
                except BlockingIOError:
                    break
            assert len(packets) >= 5 and packets[0][1][1] == agent_port
            peer.send(peer.request("BYE", cseq=2, to_tag=tag))
            await peer.expect(200)
            await asyncio.wait_for(call.ended.wait(), 2)
            assert call.end_reason == "remote_bye"
            assert not ua.calls
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


def test_the_200_is_resent_until_the_ack_comes(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            peer.send(peer.request("INVITE", body=SDP.format(port=peer.rtp_port, direction="sendrecv")))
            first = await peer.expect(200)
            again = await peer.expect(200, timeout=2.0)  # T1 later, still no ACK: resent
            assert again.to_addr.tag == first.to_addr.tag
            peer.send(peer.request("ACK", to_tag=first.to_addr.tag))
            await asyncio.sleep(1.5)
            with pytest.raises(AssertionError):
                await peer.expect(200, timeout=1.5)  # no more after the ACK
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


def test_service_unavailable_with_retry_after_at_capacity_and_cancel_before_answer(run):
    async def scenario():
        ua, handler = await agent(max_calls=1)
        a, b = RawPeer(ua.port), RawPeer(ua.port)
        try:
            await call_up(a, handler.calls)
            b.send(b.request("INVITE", body=SDP.format(port=b.rtp_port, direction="sendrecv")))
            # 503, not 486 Busy Here: a dispatcher in front of many workers tries the next one on 503
            full = await b.expect(503)
            assert int(full.headers.get("Retry-After")) > 0
            assert ua.stats["busy"] == 1
        finally:
            handler.release.set()
            a.close()
            b.close()
            await ua.close()
    run(scenario())


def test_cancel_of_an_unknown_transaction_and_sdp_without_common_codec(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            peer.send(peer.request("CANCEL"))
            await peer.expect(481)
            g729 = SDP.format(port=peer.rtp_port, direction="sendrecv").replace("RTP/AVP 0 101", "RTP/AVP 18") \
                .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000")
            peer.send(peer.request("INVITE", body=g729, call_id="g729-" + peer.call_id))
            await peer.expect(488)
            assert not ua.calls
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


def test_reinvite_puts_the_call_on_hold_and_back(run):
    async def scenario():
        ua, handler = await agent()
        peer = RawPeer(ua.port)
        try:
            _, tag, _ = await call_up(peer, handler.calls)
            peer.send(peer.request("INVITE", cseq=2, to_tag=tag, body=SDP.format(port=peer.rtp_port, direction="sendonly")))
            held = await peer.expect(200)
            assert "a=recvonly" in held.body.decode()
            peer.send(peer.request("ACK", cseq=2, to_tag=tag))
            await asyncio.sleep(0.2)
            while True:  # drain what was sent before the hold
                try:
                    peer.rtp.recv(2048)
                except BlockingIOError:
                    break
            await asyncio.sleep(0.3)
            with pytest.raises(BlockingIOError):
                peer.rtp.recv(2048)  # on hold: the agent sends nothing
            peer.send(peer.request("INVITE", cseq=3, to_tag=tag, body=SDP.format(port=peer.rtp_port, direction="sendrecv")))
            back = await peer.expect(200)
            assert "a=sendrecv" in back.body.decode()
            peer.send(peer.request("ACK", cseq=3, to_tag=tag))
            await asyncio.sleep(0.3)
            assert peer.rtp.recv(2048)  # media again
            assert handler.calls[0].active
        finally:
            handler.release.set()
            peer.close()
            await ua.close()
    run(scenario())


def test_garbage_rtp_and_rtp_from_a_stranger_do_not_disturb_the_call_and_silence_ends_it(run):
    async def scenario():
        ua, handler = await agent(rtp_timeout_s=1.5)
        peer = RawPeer(ua.port)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ok, _, call = await call_up(peer, handler.calls)
            agent_rtp = ("127.0.0.1", media_port(ok))
            await asyncio.sleep(0.2)
            for junk in (b"", b"\x80", b"\x00" * 11, b"\xff" * 172, bytes(range(256))):
                peer.rtp.sendto(junk, agent_rtp)
            header = bytes([0x80, 0x00, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4])
            stranger.sendto(header + bytes([0xFF] * 160), agent_rtp)
            await asyncio.sleep(0.2)
            assert call.rtp.stats.bad_packets >= 4 and call.rtp.stats.wrong_source >= 1
            assert call.active
            # the caller goes silent without a BYE: the RTP timeout ends the call with a BYE
            bye = await peer.expect(method="BYE", timeout=4.0)
            assert bye.call_id == peer.call_id
            assert call.end_reason == "rtp_timeout" or not call.active
        finally:
            handler.release.set()
            stranger.close()
            peer.close()
            await ua.close()
    run(scenario())
