"""The AudioSocket server: Asterisk's AudioSocket() connects here, one TCP connection per call.

The thin asyncio layer around the sans-IO parser (audiosocket.py). Each connection must send the
call's UUID first (within `uuid_timeout_s`) and its first audio soon after (which fixes the call's
sample rate: 8 kHz from the dialplan application, the slinN rate from the channel driver); only
then is it a call, handed to `on_call` as an `AudioSocketConnection`. Its slot among `max_calls` is
taken as soon as the UUID is read, so the limit holds however fast connections come. Whatever a connection does
wrong (garbage, a truncated message, silence) ends that connection alone, with the reason logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .audiosocket import (Audio, AudioSocketError, AudioSocketParser, CallUuid, Dtmf, Hangup, PeerError,
                          encode_audio, encode_hangup)

log = logging.getLogger(__name__)

READ_SIZE = 65536


@dataclass
class MediaStats:
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    dtmf_in: int = 0
    dropped: dict = field(default_factory=dict)  # what the parser dropped (empty, odd, bad DTMF)

    def as_dict(self) -> dict:
        return {"frames_in": self.frames_in, "bytes_in": self.bytes_in, "frames_out": self.frames_out,
                "bytes_out": self.bytes_out, "dtmf_in": self.dtmf_in, "dropped": dict(self.dropped)}


class AudioSocketConnection:
    """One call's media. `messages` yields Audio and Dtmf until the call ends; `end_reason` then
    says why: "hangup" (Asterisk sent 0x00), "closed" (the socket closed: the caller hung up, or the
    channel left AudioSocket() for a transfer), "asterisk_error: ...", "protocol_error: ...",
    "media_timeout", "agent_hangup", "server_stopped"."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: AudioSocketParser,
                 call_uuid: uuid.UUID, peer: tuple[str, int], media_timeout_s: float):
        self.reader = reader
        self.writer = writer
        self.parser = parser
        self.uuid = call_uuid
        self.peer = peer
        self.media_timeout_s = media_timeout_s
        self.sample_rate = 8000
        self.stats = MediaStats()
        self.end_reason: str | None = None
        self.ended = asyncio.Event()
        self.opened_at = time.monotonic()
        self._pending: list[Audio | Dtmf] = []

    @property
    def active(self) -> bool:
        return self.end_reason is None

    # -- receiving ----------------------------------------------------------------------------
    async def first_audio(self, timeout_s: float) -> None:
        """Wait for the first audio message (it fixes `sample_rate`); keep what arrives meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.active and not any(isinstance(m, Audio) for m in self._pending):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return  # no audio yet: assume the dialplan application's 8 kHz
            self._pending.extend(await self._read(remaining))
        for m in self._pending:
            if isinstance(m, Audio):
                self.sample_rate = m.sample_rate
                break

    async def messages(self):
        """Audio and DTMF from Asterisk, in order, until the call ends."""
        while self._pending:
            yield self._pending.pop(0)
        while self.active:
            for message in await self._read(self.media_timeout_s):
                yield message

    async def _read(self, timeout_s: float) -> list[Audio | Dtmf]:
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout_s)
        except asyncio.TimeoutError:
            if timeout_s >= self.media_timeout_s:
                self.close("media_timeout")
            return []
        except (ConnectionError, OSError):
            data = b""
        if not data:
            if self.parser.pending:
                log.warning("audiosocket %s: connection closed inside a message (%d bytes of it)", self.uuid,
                            self.parser.pending)
            self.close("closed")
            return []
        try:
            parsed = self.parser.feed(data)
        except AudioSocketError as exc:
            log.warning("audiosocket %s: %s: connection closed", self.uuid, exc)
            self.close(f"protocol_error: {exc}")
            return []
        out: list[Audio | Dtmf] = []
        for message in parsed:
            if isinstance(message, Audio):
                self.stats.frames_in += 1
                self.stats.bytes_in += len(message.pcm)
                out.append(message)
            elif isinstance(message, Dtmf):
                self.stats.dtmf_in += 1
                out.append(message)
            elif isinstance(message, Hangup):
                self.close("hangup")
                break
            elif isinstance(message, PeerError):
                log.warning("audiosocket %s: Asterisk reports an error: %s", self.uuid, message.reason)
                self.close(f"asterisk_error: {message.reason}")
                break
        s = self.parser.stats
        self.stats.dropped = {k: v for k, v in (("empty_audio", s.empty_audio), ("odd_audio", s.odd_audio),
                                                ("bad_dtmf", s.bad_dtmf)) if v}
        return out

    # -- sending ------------------------------------------------------------------------------
    def send_pcm(self, pcm: bytes) -> None:
        """One frame of agent audio at the call's rate, now (the leg paces)."""
        if not self.active or not pcm:
            return
        try:
            self.writer.write(encode_audio(pcm, self.sample_rate))
        except (ConnectionError, OSError, RuntimeError):
            self.close("closed")
            return
        self.stats.frames_out += 1
        self.stats.bytes_out += len(pcm)

    def hangup(self, reason: str = "agent_hangup") -> None:
        """Ask Asterisk to hang the channel up (0x00), then close."""
        if not self.active:
            return
        try:
            self.writer.write(encode_hangup())
        except (ConnectionError, OSError, RuntimeError):
            pass
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.ended.set()
        if not self.writer.is_closing():
            self.writer.close()


class AudioSocketServer:
    """Accepts AudioSocket connections and hands each call to `on_call` (a coroutine that runs the
    call; the connection is closed when it returns). `max_calls` calls at once; one more is handed
    to `on_overflow` (e.g. send the caller to the human queue) and its connection closed."""

    def __init__(self, on_call: Callable[[AudioSocketConnection], Awaitable[None]], host: str = "127.0.0.1",
                 port: int = 9092, max_calls: int = 4, uuid_timeout_s: float = 5.0, media_timeout_s: float = 10.0,
                 first_audio_timeout_s: float = 1.0,
                 on_overflow: Callable[[AudioSocketConnection], Awaitable[None]] | None = None):
        self.on_call = on_call
        self.on_overflow = on_overflow
        self.host = host
        self.port = port
        self.max_calls = max_calls
        self.uuid_timeout_s = uuid_timeout_s
        self.media_timeout_s = media_timeout_s
        self.first_audio_timeout_s = first_audio_timeout_s
        self.calls: dict[uuid.UUID, AudioSocketConnection] = {}
        self.accepting = True  # False until the models are loaded: connections are refused then
        self.counters = {"connections": 0, "calls": 0, "no_uuid": 0, "protocol_errors": 0, "overflow": 0,
                         "duplicate_uuid": 0, "not_ready": 0, "failed": 0}
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("AudioSocket listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.calls.values()):
            conn.hangup("server_stopped")
        if self._tasks:  # the calls end on their own once their connection is closed: records are kept
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = (str(peername[0]), int(peername[1]))
        sock = writer.get_extra_info("socket")
        if sock is not None:  # 20 ms frames must not wait for Nagle (Asterisk sets TCP_NODELAY too)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        parser = AudioSocketParser()
        early: list = []
        try:
            early = await asyncio.wait_for(_read_uuid(reader, parser), self.uuid_timeout_s)
        except asyncio.TimeoutError:
            self.counters["no_uuid"] += 1
            log.warning("audiosocket %s:%d: no UUID within %.1f s: connection closed", *peer, self.uuid_timeout_s)
            return
        except AudioSocketError as exc:
            self.counters["protocol_errors"] += 1
            log.warning("audiosocket %s:%d: %s: connection closed", *peer, exc)
            return
        except ConnectionError as exc:
            log.info("audiosocket %s:%d: closed before its UUID (%s)", *peer, exc)
            return
        call_uuid = parser.uuid
        assert call_uuid is not None
        conn = AudioSocketConnection(reader, writer, parser, call_uuid, peer, self.media_timeout_s)
        for message in early:  # what came in the same read as the UUID
            if isinstance(message, Audio):
                conn.stats.frames_in += 1
                conn.stats.bytes_in += len(message.pcm)
            if isinstance(message, (Audio, Dtmf)):
                conn._pending.append(message)
            elif isinstance(message, Hangup):
                conn.close("hangup")
            elif isinstance(message, PeerError):
                conn.close(f"asterisk_error: {message.reason}")
        if not self.accepting:
            self.counters["not_ready"] += 1
            log.warning("audiosocket %s: models still loading: call refused", call_uuid)
            conn.hangup("not_ready")
            return
        if call_uuid in self.calls:
            self.counters["duplicate_uuid"] += 1
            log.warning("audiosocket %s: that UUID already has a call: connection closed", call_uuid)
            conn.hangup("duplicate_uuid")
            return
        if len(self.calls) >= self.max_calls:
            self.counters["overflow"] += 1
            log.warning("audiosocket %s: %d calls already (max_calls): overflow", call_uuid, len(self.calls))
            if self.on_overflow is not None:
                try:
                    await self.on_overflow(conn)
                except Exception:
                    log.exception("audiosocket %s: overflow handling failed", call_uuid)
            conn.hangup("overflow") if conn.active else None
            return
        # The slot is taken here, before the first await: Asterisk sends the first audio ~20 ms after
        # the UUID, and a burst of connections checked during that wait all passed the limit.
        self.calls[call_uuid] = conn
        try:
            await conn.first_audio(self.first_audio_timeout_s)
            if not conn.active:
                log.info("audiosocket %s: ended before its first audio (%s)", call_uuid, conn.end_reason)
                return
            self.counters["calls"] += 1
            try:
                await self.on_call(conn)
            except Exception:
                self.counters["failed"] += 1
                log.exception("audiosocket %s: the call failed", call_uuid)
        finally:
            if self.calls.get(call_uuid) is conn:
                del self.calls[call_uuid]
            if conn.active:
                conn.hangup("agent_hangup")

    def status(self) -> dict:
        return {"listening": f"{self.host}:{self.port}", "active_calls": len(self.calls), "max_calls": self.max_calls,
                "accepting": self.accepting, **self.counters}


async def _read_uuid(reader: asyncio.StreamReader, parser: AudioSocketParser) -> list:
    """Read until the UUID message has arrived; returns the messages that came after it in the same
    reads."""
    while parser.uuid is None:
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("closed" if not parser.pending else "closed inside the UUID message")
        messages = parser.feed(data)
        if parser.uuid is not None:
            return [m for m in messages if not isinstance(m, CallUuid)]
    return []
