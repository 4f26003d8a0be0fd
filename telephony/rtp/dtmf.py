"""Key presses as RTP events (RFC 4733, "telephone-event"): the payload, a receiver that reports
each press once, and the packet train a sender emits for one press.

An event is one key press. All its packets carry the same RTP timestamp (the moment the key went
down) and report the duration so far; the last one has the E bit set and is sent three times,
since losing it would leave the receiver waiting for the key to come up (RFC 4733 2.5.1.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from aiortc.utils import uint32_gt

EVENTS = "0123456789*#ABCD"  # event codes 0-15 (RFC 4733 3.2); 16 is hook flash, which we ignore

MAX_DURATION = 0xFFFF  # the 16-bit duration field, in timestamp units (8.19 s at 8 kHz)
END_PACKETS = 3


@dataclass(frozen=True)
class DtmfEvent:
    """The 4-byte telephone-event payload (RFC 4733 2.3)."""

    event: int
    end: bool
    volume: int  # power level of the tone in -dBm0, 0-63 (RFC 4733 2.3.4)
    duration: int  # in RTP timestamp units since the event's timestamp

    def pack(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)

    @classmethod
    def unpack(cls, payload: bytes) -> DtmfEvent:
        """Parse the first event of a payload; raises ValueError when it is shorter than 4 bytes."""
        if len(payload) < 4:
            raise ValueError(f"telephone-event payload is {len(payload)} bytes, needs 4")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


@dataclass(frozen=True)
class DtmfDigitEvent:
    """A key the remote pressed, as RtpStream.receive() hands it over; `at_s` is on the call clock."""

    digit: str
    at_s: float


class DtmfReceiver:
    """Turns telephone-event packets, in sequence order, into digits, each press exactly once.

    A press is identified by its RTP timestamp: the updates, the three end packets and any
    retransmission share it, so only the first packet seen with a new timestamp reports the digit
    (even if the marker packet was lost). A packet with an older timestamp is a straggler of an
    earlier press. A new timestamp without the marker for the same, still unfinished event is the
    next segment of a press longer than the duration field can hold (RFC 4733 2.5.1.3), not a new
    press.

    Sans-IO: feed() takes what the stream took off the wire.
    """

    def __init__(self) -> None:
        self._timestamp: int | None = None
        self._event: int | None = None
        self._ended = False

    def feed(self, timestamp: int, marker: bool, payload: bytes) -> str | None:
        """The digit this packet starts, or None; raises ValueError for a short payload."""
        ev = DtmfEvent.unpack(payload)
        if self._timestamp is not None:
            if timestamp == self._timestamp:
                self._ended = self._ended or ev.end
                return None
            if not uint32_gt(timestamp, self._timestamp):
                return None
        continuation = not marker and ev.event == self._event and not self._ended
        self._timestamp, self._event, self._ended = timestamp, ev.event, ev.end
        return None if continuation else ev.digit

    def reset(self) -> None:
        """Forget the current press: a new sender (SSRC) has its own timestamps."""
        self._timestamp, self._event, self._ended = None, None, False


class DtmfPacket(NamedTuple):
    """One packet of a press. `offset` is when to send it, in RTP timestamp units after the press
    starts; the packet's RTP timestamp is the press's start, the same for every packet."""

    marker: bool
    offset: int
    payload: bytes


def dtmf_packets(digit: str, duration_ms: int = 100, volume: int = 10, interval_ms: int = 50,
                 clock_rate: int = 8000) -> list[DtmfPacket]:
    """The packets for one press of `digit` lasting `duration_ms`, as RFC 4733's own example
    (section 5.1) sends them: an update at the end of every `interval_ms` reporting the duration so
    far (the first with the marker bit), then the final duration three times with the E bit.

    Raises ValueError for a key outside EVENTS or a press longer than one event can describe.
    """
    if len(digit) != 1 or digit.upper() not in EVENTS:
        raise ValueError(f"not a DTMF key: {digit!r}")
    event = EVENTS.index(digit.upper())
    total = duration_ms * clock_rate // 1000
    step = interval_ms * clock_rate // 1000
    if not 0 < total <= MAX_DURATION or step <= 0:
        raise ValueError(f"DTMF duration must be 1-{MAX_DURATION * 1000 // clock_rate} ms, got {duration_ms}")
    packets = [DtmfPacket(offset == step, offset, DtmfEvent(event, False, volume, offset).pack())
               for offset in range(step, total, step)]
    end = DtmfEvent(event, True, volume, total).pack()
    packets += [DtmfPacket(not packets and i == 0, total, end) for i in range(END_PACKETS)]
    return packets
