"""AudioSocket framing (sans-IO), the AudioSocket server's handling of bad connections, and the AMI
client against the in-repo Asterisk (tests/peers/asterisk.py). No models needed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest

from telephony.asterisk.ami import AmiClient, AmiError, AmiTimeout, AmiUnavailable
from telephony.asterisk.audiosocket import (Audio, AudioSocketError, AudioSocketParser, CallUuid, Dtmf, Hangup, Kind,
                                            PeerError, encode, encode_audio, encode_dtmf, encode_error, encode_hangup,
                                            encode_uuid)
from telephony.asterisk.server import AudioSocketServer
from tests.peers.asterisk import FakeAsterisk, ManagerUser

U = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
FRAME = b"\x01\x00" * 160  # 20 ms of 8 kHz slin


# -- the wire format ------------------------------------------------------------------------------
def test_messages_as_asterisk_frames_them():
    # res_audiosocket.c: kind, 16-bit big-endian length, payload; the UUID as 16 binary bytes
    assert encode_uuid(U) == b"\x01\x00\x10" + U.bytes
    assert encode_audio(FRAME) == b"\x10\x01\x40" + FRAME  # 320 bytes
    assert encode_audio(b"\x00\x00" * 320, 16000)[:1] == b"\x12"  # slin16 in newer Asterisk
    assert encode_audio(b"\x00\x00" * 960, 48000)[:1] == b"\x16"
    assert encode_dtmf("5") == b"\x03\x00\x015"
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_error(0x02) == b"\xff\x00\x01\x02"
    with pytest.raises(ValueError):
        encode_audio(b"")  # Asterisk ends the call on a zero-length audio message
    with pytest.raises(ValueError):
        encode_audio(FRAME, 11025)  # no such kind
    with pytest.raises(ValueError):
        encode(Kind.AUDIO, b"\x00" * 70000)


def test_parser_reads_a_call_split_anywhere():
    stream = (encode_uuid(U) + encode_audio(FRAME) + encode_dtmf("#") + encode_audio(b"\x02\x00" * 320, 16000)
              + encode_error(0x01) + encode_hangup())
    for step in (1, 2, 3, 7, 64, len(stream)):
        parser = AudioSocketParser()
        out = []
        for i in range(0, len(stream), step):
            out += parser.feed(stream[i:i + step])
        assert out == [CallUuid(U), Audio(FRAME, 8000), Dtmf("#"), Audio(b"\x02\x00" * 320, 16000),
                       PeerError(0x01), Hangup()], step
        assert parser.pending == 0
    assert PeerError(0x01).reason == "the caller hung up" and PeerError(None).reason == "error (no code)"


def test_parser_waits_for_a_length_larger_than_the_data():
    parser = AudioSocketParser()
    parser.feed(encode_uuid(U))
    assert parser.feed(b"\x10\x01\x40" + FRAME[:100]) == [] and parser.pending == 103
    assert parser.feed(FRAME[100:]) == [Audio(FRAME, 8000)] and parser.pending == 0


@pytest.mark.parametrize("data, reason", [
    (encode_audio(FRAME), "expected the call's UUID first"),
    (b"\x01\x00\x04abcd", "UUID payload is 4 bytes"),
    (encode_uuid(U) + encode_uuid(U), "a second UUID"),
    (encode_uuid(U) + b"\x42\x00\x00", "unknown message kind 0x42"),
    (b"GET / HTTP/1.1\r\n\r\n", "unknown message kind 0x47"),
])
def test_protocol_violations_are_errors(data, reason):
    with pytest.raises(AudioSocketError, match=reason):
        AudioSocketParser().feed(data)


def test_framed_but_wrong_media_is_dropped_and_counted():
    parser = AudioSocketParser()
    out = parser.feed(encode_uuid(U) + b"\x10\x00\x00" + b"\x10\x00\x03abc" + b"\x03\x00\x01x" + b"\x03\x00\x02" + b"12"
                      + encode_audio(FRAME))
    assert out == [CallUuid(U), Audio(b"ab", 8000), Audio(FRAME, 8000)]
    assert (parser.stats.empty_audio, parser.stats.odd_audio, parser.stats.bad_dtmf) == (1, 1, 2)


# -- the server: bad connections end alone ------------------------------------------------------
class _Echo:
    """on_call for the server tests: keeps what each call sent, echoes audio back."""

    def __init__(self):
        self.calls = []

    async def __call__(self, conn):
        got = []
        self.calls.append((conn, got))
        async for message in conn.messages():
            got.append(message)
            if isinstance(message, Audio):
                conn.send_pcm(message.pcm)


async def _open(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed(reader, timeout=3.0) -> bytes:
    """Everything the server sent until it closed the connection."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(4096):
            data += chunk
    return data


def test_bad_connections_are_closed_and_the_server_keeps_serving(caplog):
    caplog.set_level(logging.WARNING)

    async def scenario():
        echo = _Echo()
        server = AudioSocketServer(echo, port=0, uuid_timeout_s=0.5, media_timeout_s=0.8, first_audio_timeout_s=0.3)
        await server.start()
        try:
            # 1. garbage instead of a UUID
            r, w = await _open(server.port)
            w.write(b"\xde\xad\xbe\xef" * 10)
            assert await _closed(r) == b""
            # 2. a connection that says nothing
            r, w = await _open(server.port)
            assert await _closed(r) == b""
            # 3. a UUID, then garbage mid-call
            r, w = await _open(server.port)
            w.write(encode_uuid(uuid.uuid4()) + encode_audio(FRAME))
            await asyncio.sleep(0.2)
            w.write(b"\x77\x00\x01z")
            await _closed(r)
            # 4. a length larger than the data, then the connection drops
            r, w = await _open(server.port)
            w.write(encode_uuid(uuid.uuid4()) + encode_audio(FRAME) + b"\x10\x01\x40" + FRAME[:50])
            await asyncio.sleep(0.2)
            w.close()
            # 5. a call that goes quiet: media timeout
            r, w = await _open(server.port)
            w.write(encode_uuid(uuid.uuid4()) + encode_audio(FRAME))
            assert await _closed(r, 5.0)  # it got its echo, then a hangup when the media stopped
            # 6. a good call after all that: zero-length audio is dropped, the rest echoed, 0x00 ends it
            good = uuid.uuid4()
            r, w = await _open(server.port)
            w.write(encode_uuid(good) + encode_audio(FRAME) + b"\x10\x00\x00" + encode_dtmf("7") + encode_audio(FRAME))
            await asyncio.sleep(0.3)
            w.write(encode_hangup())
            echoed = await _closed(r)
            await asyncio.sleep(0.1)
            return server, echo, good, echoed
        finally:
            await server.close()

    server, echo, good, echoed = asyncio.run(scenario())
    assert server.counters["protocol_errors"] == 1 and server.counters["no_uuid"] == 1
    by_uuid = {c.uuid: (c, got) for c, got in echo.calls}
    conn, got = by_uuid[good]
    assert got == [Audio(FRAME, 8000), Dtmf("7"), Audio(FRAME, 8000)]
    assert echoed == encode_audio(FRAME) * 2 and conn.end_reason == "hangup"
    assert conn.stats.dropped == {"empty_audio": 1}
    reasons = sorted(c.end_reason for c, _ in echo.calls)
    assert any(r.startswith("protocol_error: unknown message kind 0x77") for r in reasons), reasons
    assert "media_timeout" in reasons and "closed" in reasons
    log = caplog.text
    assert "no UUID within" in log and "unknown message kind 0xde" in log and "inside a message" in log
    assert not server.calls  # nothing left behind


def test_calls_beyond_max_calls_are_handed_to_overflow_and_closed():
    async def scenario():
        overflowed = []

        async def hold(conn):
            async for _ in conn.messages():
                pass

        async def overflow(conn):
            overflowed.append(conn.uuid)

        server = AudioSocketServer(hold, port=0, max_calls=1, on_overflow=overflow, first_audio_timeout_s=0.2)
        await server.start()
        try:
            r1, w1 = await _open(server.port)
            w1.write(encode_uuid(uuid.uuid4()) + encode_audio(FRAME))
            await asyncio.sleep(0.3)
            second = uuid.uuid4()
            r2, w2 = await _open(server.port)
            w2.write(encode_uuid(second) + encode_audio(FRAME))
            data = await _closed(r2)
            assert len(server.calls) == 1
            w1.write(encode_hangup())
            await _closed(r1)
            return overflowed, second, data, server.counters
        finally:
            await server.close()

    overflowed, second, data, counters = asyncio.run(scenario())
    assert overflowed == [second] and data == encode_hangup() and counters["overflow"] == 1


# -- AMI -------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _linked(ast: FakeAsterisk, secret: str = "s3cret", action_timeout_s: float = 2.0):
    """`ast` listening and an AmiClient logging in to it (fast backoff); both closed afterwards."""
    await ast.start()
    ami = AmiClient("127.0.0.1", ast.ami_port, "voiceagent", secret, reconnect_min_s=0.05, reconnect_max_s=0.4,
                    action_timeout_s=action_timeout_s)
    ami.start()
    try:
        yield ami
    finally:
        await ami.close()
        await ast.close()


def test_ami_login_events_map_uuids_to_channels_and_actions_reach_the_right_channel():
    async def scenario():
        ast = FakeAsterisk()
        async with _linked(ast) as ami:
            assert await ami.wait_ready(3)
            channel = ast._new_channel("13800138000", "4000")
            ast._set_var(channel, "VOICEAGENT_UUID", str(U))
            info = await ami.channel_for(str(U), 2.0)
            await ami.setvar(info.channel, "__VOICEAGENT_CALL_ID", "abc123")
            await ami.redirect(info.channel, "voiceagent-transfer", "human", 1)
            with pytest.raises(AmiError, match="Channel not existent"):
                await ami.redirect("PJSIP/nobody-00000099", "voiceagent-transfer", "human")
            with pytest.raises(AmiError, match="Transfer failed"):
                await ami.blind_transfer(info.channel, "voiceagent-transfer", "human")
            return ast, info, channel

    ast, info, channel = asyncio.run(scenario())
    assert info.channel == channel.name and info.uniqueid == channel.uniqueid and info.caller_id == "13800138000"
    assert channel.variables["__VOICEAGENT_CALL_ID"] == "abc123"
    assert channel.redirected_to == ("voiceagent-transfer", "human", "1")
    login = ast.actions[0]
    assert login["Action"] == "Login" and login["Events"] == "call,dialplan"
    redirect = next(a for a in ast.actions if a["Action"] == "Redirect")
    assert redirect["Channel"] == channel.name and redirect["ActionID"]


def test_a_uuid_whose_event_was_missed_is_found_with_status():
    async def scenario():
        ast = FakeAsterisk()
        ast.send_varset = False
        async with _linked(ast) as ami:
            assert await ami.wait_ready(3)
            channel = ast._new_channel("13900139000", "4000")
            ast._set_var(channel, "VOICEAGENT_UUID", str(U))
            info = await ami.channel_for(str(U).upper(), 0.2)
            return info, channel

    info, channel = asyncio.run(scenario())
    assert info is not None and info.channel == channel.name


def test_bad_login_is_reported_retried_with_backoff_and_does_not_crash(caplog):
    caplog.set_level(logging.INFO)

    async def scenario():
        ast = FakeAsterisk()
        async with _linked(ast, secret="wrong") as ami:
            assert not await ami.wait_ready(1.5)
            with pytest.raises(AmiUnavailable, match="refused"):
                await ami.redirect("PJSIP/x-1", "c", "e")
            # no event can come while AMI is down: a new call's lookup must not keep it waiting 30 s
            lookup = await asyncio.wait_for(ami.channel_for(str(U), 30.0), 1.0)
            return dict(ami.counters), ami.last_error, lookup

    counters, error, lookup = asyncio.run(scenario())
    assert lookup is None
    assert "login as 'voiceagent' refused: Authentication failed" in error
    # backoff 0.05, 0.1, 0.2, 0.4, 0.4... : a handful of tries in 1.5 s, not a tight loop
    assert 2 <= counters["login_failures"] <= 8 and counters["logins"] == 0, counters
    assert "check manager.conf" in caplog.text


def test_actions_without_permission_or_response_fail_clearly():
    async def scenario():
        ast = FakeAsterisk(users={"voiceagent": ManagerUser("s3cret", write={"call"})})  # no originate
        async with _linked(ast, action_timeout_s=0.5) as ami:
            assert await ami.wait_ready(3)
            result = await ami.originate("PJSIP/13800138000@trunk", "voiceagent-outbound", "s", ring_timeout_s=1)
            ast.respond = False  # Asterisk hangs: no response to anything
            with pytest.raises(AmiTimeout, match="no response to Hangup within"):
                await ami.hangup("PJSIP/x-1")
            return result, ami.counters

    result, counters = asyncio.run(scenario())
    assert result.outcome == "error" and "Permission denied" in result.message
    assert counters["action_timeouts"] == 1


@pytest.mark.parametrize("scripted, outcome, reason", [("busy", "busy", 5), ("no_answer", "no_answer", 3),
                                                        ("congestion", "congestion", 8), ("never", "timeout", None)])
def test_originate_reports_how_the_dial_went(scripted, outcome, reason):
    async def scenario():
        ast = FakeAsterisk()
        ast.originate_outcome = scripted
        async with _linked(ast, action_timeout_s=0.5) as ami:
            assert await ami.wait_ready(3)
            return await ami.originate("PJSIP/13800138000@trunk", "voiceagent-outbound", "s",
                                       variables={"VOICEAGENT_UUID": str(U)}, ring_timeout_s=0.5)

    result = asyncio.run(scenario())
    assert result.outcome == outcome and result.reason == reason


def test_ami_reconnects_when_asterisk_comes_back_and_forgets_unanswered_actions():
    async def scenario():
        ast = FakeAsterisk()
        async with _linked(ast, action_timeout_s=5.0) as ami:
            assert await ami.wait_ready(3)
            ast.respond = False
            pending = asyncio.ensure_future(ami.hangup("PJSIP/x-1"))
            await asyncio.sleep(0.1)
            await ast.stop_ami()  # Asterisk restarts
            with pytest.raises(AmiUnavailable, match="lost"):
                await asyncio.wait_for(pending, 2)  # failed at once, not left to time out (or replayed)
            assert not ami.ready
            ast.respond = True
            await asyncio.sleep(0.5)
            await ast.start(ast.ami_port)
            assert await ami.wait_ready(5)
            await ami.action({"Action": "Ping"})
            hangups_sent = [a for a in ast.actions if a["Action"] == "Hangup"]
            return ami.counters, hangups_sent

    counters, hangups = asyncio.run(scenario())
    assert counters["logins"] == 2 and counters["disconnects"] == 1
    assert len(hangups) == 1  # the unanswered Hangup was not sent again after the reconnect


def test_garbage_from_ami_is_ignored():
    async def scenario():
        ast = FakeAsterisk()
        async with _linked(ast) as ami:
            assert await ami.wait_ready(3)
            for session in ast._sessions:
                session.writer.write(b"\x00\xff garbage\r\nno colon here\r\n\r\n\xfe\xfe\r\n\r\n")
            await asyncio.sleep(0.1)
            await ami.action({"Action": "Ping"})
            return ami.ready

    assert asyncio.run(scenario())

