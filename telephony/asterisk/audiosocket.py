"""AudioSocket, the TCP media protocol of Asterisk's AudioSocket() application and channel driver.

Sans-IO, like h11: `AudioSocketParser.feed(bytes)` returns messages, `encode_*` make the bytes to
send. The sockets are in server.py.

Wire format (docs.asterisk.org, Channel-Drivers/AudioSocket; res/res_audiosocket.c): every message
is a 3-byte header, kind (1 byte) and payload length (2 bytes, big-endian), then the payload.

    0x00  hangup: terminate the call (closing the socket does the same)
    0x01  the call's UUID, 16 bytes binary: always the first message Asterisk sends
    0x03  one DTMF digit, 1 ASCII byte (Asterisk -> us)
    0x10  audio, signed linear 16-bit little-endian mono at 8 kHz (the dialplan application's rate)
    0x11-0x18  the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz (newer Asterisk, chan_audiosocket
          with a slinN codec); Asterisk accepts audio back in any of them
    0xff  an error on Asterisk's side; payload, if any: 1 byte code (0x01 the caller hung up,
          0x02 frame forwarding failed, 0x04 memory)

What Asterisk accepts from us is narrower (ast_audiosocket_receive_frame): audio or hangup only; any
other kind, or an audio message with length 0, ends the call. So this side only ever sends audio
in whole frames and hangup.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("!BH")
MAX_PAYLOAD = 0xFFFF


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10  # slin, 8 kHz
    AUDIO_SLIN12 = 0x11
    AUDIO_SLIN16 = 0x12
    AUDIO_SLIN24 = 0x13
    AUDIO_SLIN32 = 0x14
    AUDIO_SLIN44 = 0x15
    AUDIO_SLIN48 = 0x16
    AUDIO_SLIN96 = 0x17
    AUDIO_SLIN192 = 0x18
    ERROR = 0xFF


AUDIO_RATES: dict[int, int] = {
    Kind.AUDIO: 8000, Kind.AUDIO_SLIN12: 12000, Kind.AUDIO_SLIN16: 16000, Kind.AUDIO_SLIN24: 24000,
    Kind.AUDIO_SLIN32: 32000, Kind.AUDIO_SLIN44: 44100, Kind.AUDIO_SLIN48: 48000, Kind.AUDIO_SLIN96: 96000,
    Kind.AUDIO_SLIN192: 192000,
}
AUDIO_KINDS: dict[int, int] = {rate: kind for kind, rate in AUDIO_RATES.items()}

# the 0xff payload codes Asterisk itself sends (res_audiosocket documentation)
ERROR_CODES = {0x00: "none", 0x01: "the caller hung up", 0x02: "frame forwarding failed", 0x04: "memory error"}

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class AudioSocketError(ValueError):
    """The peer broke the protocol. A byte stream cannot be resynchronised after that: the
    connection is closed (the reason is logged), other calls are not touched."""


@dataclass(frozen=True)
class CallUuid:
    uuid: uuid.UUID


@dataclass(frozen=True)
class Audio:
    pcm: bytes  # signed 16-bit little-endian samples
    sample_rate: int


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class PeerError:
    code: int | None  # None: no payload

    @property
    def reason(self) -> str:
        if self.code is None:
            return "error (no code)"
        return ERROR_CODES.get(self.code, f"application error 0x{self.code:02x}")


Message = CallUuid | Audio | Dtmf | Hangup | PeerError


@dataclass
class ParserStats:
    messages: int = 0
    empty_audio: int = 0  # zero-length audio messages, dropped
    odd_audio: int = 0  # audio with an odd byte count: the last byte dropped
    bad_dtmf: int = 0  # a DTMF payload that is not one key: dropped


class AudioSocketParser:
    """Bytes from the peer in, messages out.

    The first message must be the UUID (Asterisk sends it before any audio); a second UUID, an
    unknown kind or a malformed UUID is an AudioSocketError. Audio and DTMF that are wrong but
    framed (length 0, an odd length, a DTMF payload that is no key) are dropped and counted: the
    frame boundaries still hold, so the call goes on. A length larger than what has arrived is
    waited for; `pending` says how many bytes are still held when the connection ends (a truncated
    message).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.uuid: uuid.UUID | None = None
        self.stats = ParserStats()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if kind not in Kind._value2member_map_:
                raise AudioSocketError(f"unknown message kind 0x{kind:02x} (length {length})")
            if len(self._buffer) < HEADER.size + length:
                break
            payload = bytes(self._buffer[HEADER.size:HEADER.size + length])
            del self._buffer[:HEADER.size + length]
            message = self._message(Kind(kind), payload)
            if message is not None:
                self.stats.messages += 1
                out.append(message)
        return out

    def _message(self, kind: Kind, payload: bytes) -> Message | None:
        if self.uuid is None and kind != Kind.UUID:
            raise AudioSocketError(f"expected the call's UUID first, got kind 0x{kind:02x}")
        if kind == Kind.UUID:
            if self.uuid is not None:
                raise AudioSocketError("a second UUID on one connection")
            if len(payload) != 16:
                raise AudioSocketError(f"UUID payload is {len(payload)} bytes, not 16")
            self.uuid = uuid.UUID(bytes=payload)
            return CallUuid(self.uuid)
        if kind in AUDIO_RATES:
            if not payload:
                self.stats.empty_audio += 1
                return None
            if len(payload) % 2:
                self.stats.odd_audio += 1
                payload = payload[:-1]
                if not payload:
                    return None
            return Audio(payload, AUDIO_RATES[kind])
        if kind == Kind.DTMF:
            digit = payload[:1].decode("ascii", "replace").upper()
            if len(payload) != 1 or digit not in DTMF_DIGITS:
                self.stats.bad_dtmf += 1
                return None
            return Dtmf(digit)
        if kind == Kind.HANGUP:
            return Hangup()
        return PeerError(payload[0] if payload else None)  # Kind.ERROR


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a 16-bit length")
    return HEADER.pack(kind, len(payload)) + payload


def encode_uuid(call_uuid: uuid.UUID) -> bytes:
    return encode(Kind.UUID, call_uuid.bytes)


def encode_audio(pcm: bytes, sample_rate: int = 8000) -> bytes:
    """One audio message. Never empty: Asterisk ends the call on a zero-length audio message."""
    if not pcm:
        raise ValueError("an audio message needs at least one sample")
    kind = AUDIO_KINDS.get(sample_rate)
    if kind is None:
        raise ValueError(f"AudioSocket has no audio kind for {sample_rate} Hz")
    return encode(kind, pcm)


def encode_dtmf(digit: str) -> bytes:
    if digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF key: {digit!r}")
    return encode(Kind.DTMF, digit.encode("ascii"))


def encode_hangup() -> bytes:
    return encode(Kind.HANGUP)


def encode_error(code: int | None = None) -> bytes:
    return encode(Kind.ERROR, b"" if code is None else bytes([code]))
