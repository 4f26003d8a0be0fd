"""One call's RTP session: G.711 audio and RFC 4733 key presses both ways, RTCP reports.

Layers, inner first:
- `ReceptionStats`: RFC 3550 appendix A.1/A.3/A.8 bookkeeping for one remote source (sequence
  cycles, loss, interarrival jitter), which feeds our RTCP reception report blocks.
- `TimestampMapper`: RTP timestamps of one source onto the call clock.
- `RtpReceiver`: datagrams in, AudioFrame / DtmfDigitEvent out, through the reordering buffer.
- `RtpSender`: what goes out in each 20 ms slot: the frame due, silence, or a key-press packet.
- `RtpStream`: the sockets, the pacer and RTCP tasks, remote address checks and latching.
Everything but RtpStream is sans-IO: it takes the time and the bytes as arguments.

Packets and RTCP messages are aiortc's (`aiortc.rtp`); the jitter buffer is ours (jitter.py says
why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import heapq
import ipaddress
import logging
import random
import secrets
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
from aiortc.clock import current_ntp_time
from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    clamp_packets_lost,
    is_rtcp,
)
from aiortc.utils import random16, random32

from telephony.audio import AudioFrame

from .dtmf import DtmfDigitEvent, DtmfPacket, DtmfReceiver, dtmf_packets
from .g711 import CODECS
from .jitter import MAX_DROPOUT, MAX_MISORDER, JitterBuffer
from .sdp import AudioCodec, NegotiatedMedia

log = logging.getLogger(__name__)

CLOCK_RATE = 8000  # G.711 and telephone-event
PTIME_S = 0.020
FRAME_SAMPLES = int(CLOCK_RATE * PTIME_S)
RTCP_SDES_CNAME = 1
MAX_DRIFT_S = 1.0  # a source's timestamps further than this from arrival times are re-based
# A new SSRC from the remote's address replaces the established one only once that one has been
# silent this long (a live source sends every 20-60 ms; a phone that stops sending in silences
# stops for longer), or within SSRC_RENEGOTIATED_S of a re-INVITE: packets spoofed with other SSRCs
# must not restart the caller's timeline. A source displaced after a silence takes the stream back
# the moment it speaks again, so a spoofer who slipped into a pause cannot keep the caller out.
SSRC_SWITCH_S = 1.0
SSRC_RENEGOTIATED_S = 2.0

ReceivedItem = AudioFrame | DtmfDigitEvent


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


@dataclass
class RtpStats:
    """Counters for one stream. Bytes are RTP payload octets, as in RTCP sender reports."""

    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    lost: int = 0  # sequence numbers the jitter buffer gave up on
    late: int = 0  # packets that came after their number was given up on (also counted in lost)
    duplicates: int = 0  # copies of packets already handed over, dropped
    bad_packets: int = 0  # not RTP/RTCP, or a payload type not negotiated
    wrong_source: int = 0  # from an address other than the negotiated (or latched) one
    other_ssrc: int = 0  # from the right address but another SSRC while the established one is live
    rtcp_in: int = 0
    rtcp_out: int = 0
    jitter_ms: float = 0.0  # RFC 3550 A.8 interarrival jitter of the current remote source


class ReceptionStats:
    """RFC 3550 A.1 (sequence numbers), A.3 (loss) and A.8 (jitter) for one remote SSRC."""

    def __init__(self, seq: int, clock_rate: int = CLOCK_RATE):
        self.clock_rate = clock_rate
        self.jitter = 0.0  # in timestamp units
        self._transit: tuple[int, float] | None = None  # last (timestamp, arrival_s)
        self._init(seq)

    def _init(self, seq: int) -> None:
        self.base_seq = self.max_seq = seq
        self._bad_seq: int | None = None
        self.cycles = 0
        self.received = 0
        self._expected_prior = self._received_prior = 0

    def update_seq(self, seq: int) -> None:
        udelta = (seq - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        elif udelta <= 0x10000 - MAX_MISORDER:
            if seq != self._bad_seq:  # a jump: restart only if the next packet confirms it
                self._bad_seq = (seq + 1) & 0xFFFF
                return
            self._init(seq)
        self.received += 1

    def update_jitter(self, timestamp: int, arrival_s: float) -> None:
        if self._transit is not None:
            last_ts, last_arrival = self._transit
            d = (arrival_s - last_arrival) * self.clock_rate - _signed32(timestamp - last_ts)
            self.jitter += (abs(d) - self.jitter) / 16
        self._transit = (timestamp, arrival_s)

    def reset_transit(self) -> None:
        """Arrival times are about to come from another clock: the next transit time starts the
        jitter estimate over instead of being compared with one on the old clock."""
        self._transit = None

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    def report_block(self, ssrc: int, lsr: int, dlsr: int) -> RtcpReceiverInfo:
        """The reception report for the interval since the previous one (A.3)."""
        expected = self.extended_max - self.base_seq + 1
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        return RtcpReceiverInfo(ssrc=ssrc, fraction_lost=min(fraction, 255),
                                packets_lost=clamp_packets_lost(expected - self.received),
                                highest_sequence=self.extended_max & 0xFFFFFFFF, jitter=int(self.jitter),
                                lsr=lsr, dlsr=dlsr)


class TimestampMapper:
    """RTP timestamps of one source onto the call clock: the first packet's arrival anchors the
    mapping, and the anchor moves to a packet's arrival when the mapping strays more than
    `max_drift_s` from it (a timestamp jump, a sender restart, clocks drifting apart)."""

    def __init__(self, clock_rate: int = CLOCK_RATE, max_drift_s: float = MAX_DRIFT_S):
        self.clock_rate = clock_rate
        self.max_drift_s = max_drift_s
        self._anchor: tuple[int, float] | None = None

    def map(self, timestamp: int, arrival_s: float, check: bool = True) -> float:
        """`check=False` for packets whose timestamp is not their sending time (the packets of a key
        press all carry its start)."""
        if self._anchor is None:
            self._anchor = (timestamp, arrival_s)
        base_ts, base_s = self._anchor
        t = base_s + _signed32(timestamp - base_ts) / self.clock_rate
        if check and abs(t - arrival_s) > self.max_drift_s:
            self._anchor = (timestamp, arrival_s)
            t = arrival_s
        return t

    def reset(self) -> None:
        self._anchor = None


@dataclass
class _Held:
    """A packet in the jitter buffer, already placed on the call clock (and decoded, for audio)."""

    packet: RtpPacket
    start_s: float
    samples: np.ndarray | None  # None for a telephone-event packet


class RtpReceiver:
    """Validated RTP packets of the negotiated payload types in, frames and key presses out. One
    remote SSRC at a time: another one takes over only after a pause of the established one or a
    re-INVITE (`allow_new_source`); until then its packets are dropped (stats.other_ssrc)."""

    def __init__(self, stats: RtpStats, capacity: int = 16, max_wait_s: float = 0.06,
                 ssrc_switch_s: float = SSRC_SWITCH_S):
        self.stats = stats
        self.remote_ssrc: int | None = None
        self.ssrc_switch_s = ssrc_switch_s
        self._source_heard_s = 0.0  # when the established source's last packet came
        self._switch_until_s: float | None = None  # a re-INVITE lets a new source in until then
        self._displaced_ssrc: int | None = None  # the source a silence let another replace
        self._buffer: JitterBuffer[_Held] = JitterBuffer(capacity, max_wait_s)
        self._mapper = TimestampMapper()
        self._dtmf = DtmfReceiver()
        self._reception: ReceptionStats | None = None
        self._codec: AudioCodec | None = None
        self._dtmf_pt: int | None = None
        self._out: list[ReceivedItem] = []  # from a previous source, not yet popped
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of its NTP time, arrival)

    def configure(self, codec: AudioCodec, dtmf: AudioCodec | None) -> None:
        self._codec = codec
        self._dtmf_pt = dtmf.payload_type if dtmf else None

    def feed(self, data: bytes, now: float) -> bool:
        """Take one datagram that arrived at `now`; False (and counted) when it is not a packet of
        ours. Never raises for what the network sends."""
        try:
            packet = RtpPacket.parse(data)
        except (ValueError, struct.error):
            self.stats.bad_packets += 1
            return False
        codec = self._codec
        is_audio = codec is not None and packet.payload_type == codec.payload_type and len(packet.payload) > 0
        is_dtmf = packet.payload_type == self._dtmf_pt and len(packet.payload) >= 4
        if codec is None or not (is_audio or is_dtmf):
            self.stats.bad_packets += 1
            return False
        if packet.ssrc != self.remote_ssrc:
            renegotiated = self._switch_until_s is not None and now <= self._switch_until_s
            if packet.ssrc != self._displaced_ssrc and not self._may_switch(now):
                self.stats.other_ssrc += 1
                return False
            self._displaced_ssrc = None if renegotiated or packet.ssrc == self._displaced_ssrc else self.remote_ssrc
            self._new_source(packet)
        self._source_heard_s = now
        assert self._reception is not None
        self._reception.update_seq(packet.sequence_number)
        self.stats.packets_in += 1
        self.stats.bytes_in += len(packet.payload)
        samples = None
        if is_audio:
            self._reception.update_jitter(packet.timestamp, now)
            self.stats.jitter_ms = self._reception.jitter * 1000 / CLOCK_RATE
            samples = CODECS[codec.name][1](packet.payload)
        start_s = self._mapper.map(packet.timestamp, now, check=is_audio)
        self._buffer.push(packet.sequence_number, _Held(packet, start_s, samples), now)
        return True

    def pop(self, now: float) -> list[ReceivedItem]:
        """What may be handed to the consumer at `now`, in order."""
        out, self._out = self._out, []
        for held in self._buffer.pop(now):
            out += self._emit(held)
        buffer = self._buffer
        self.stats.lost, self.stats.late, self.stats.duplicates = buffer.lost, buffer.late, buffer.duplicates
        return out

    def next_deadline(self) -> float | None:
        return self._buffer.next_deadline()

    def reset_timeline(self, now: float | None = None) -> None:
        """The call clock was replaced (`now`: its time): place the next packets anew. The jitter estimate compares
        arrival times too: without the reset, the first packet after the switch counted the distance
        between the two clocks (the stream's monotonic time and the call's, which starts at 0) as
        jitter, so jitter_ms read hundreds of seconds in RTCP and in the call's record."""
        self._mapper.reset()
        if self._reception is not None:
            self._reception.reset_transit()
        if now is not None:  # the established source counts as heard now, on the new clock
            self._source_heard_s = now
            self._switch_until_s = None

    def allow_new_source(self, now: float) -> None:
        """The media was renegotiated (a re-INVITE): the remote may switch to a new SSRC at once."""
        self._switch_until_s = now + SSRC_RENEGOTIATED_S

    def _may_switch(self, now: float) -> bool:
        if self.remote_ssrc is None or now - self._source_heard_s >= self.ssrc_switch_s:
            return True
        return self._switch_until_s is not None and now <= self._switch_until_s

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        self._last_sr = ((ntp_timestamp >> 16) & 0xFFFFFFFF, now)

    def report_block(self, now: float) -> RtcpReceiverInfo | None:
        """Our reception report about the remote source, once there is one (LSR/DLSR per RFC 3550
        6.4.1, from the remote's last sender report)."""
        if self._reception is None or self.remote_ssrc is None:
            return None
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr, dlsr = self._last_sr[0], int((now - self._last_sr[1]) * 65536)
        return self._reception.report_block(self.remote_ssrc, lsr, dlsr)

    def _new_source(self, packet: RtpPacket) -> None:
        """A new SSRC (the remote restarted its stream, a PBX switched media): hand over what the
        old one left in the buffer, then start over: numbering, timing, key presses."""
        for held in self._buffer.flush():
            self._out += self._emit(held)
        self.remote_ssrc = packet.ssrc
        self._switch_until_s = None
        self._reception = ReceptionStats(packet.sequence_number)
        self._mapper.reset()
        self._dtmf.reset()
        self._last_sr = None

    def _emit(self, held: _Held) -> list[ReceivedItem]:
        if held.samples is None:
            p = held.packet
            digit = self._dtmf.feed(p.timestamp, bool(p.marker), p.payload)
            return [DtmfDigitEvent(digit, held.start_s)] if digit else []
        samples = held.samples
        if len(samples) % FRAME_SAMPLES:  # not a multiple of 20 ms (a 30 ms phone): one frame as sent
            return [AudioFrame(samples, CLOCK_RATE, held.start_s)]
        return [AudioFrame(samples[i:i + FRAME_SAMPLES], CLOCK_RATE, held.start_s + i / CLOCK_RATE)
                for i in range(0, len(samples), FRAME_SAMPLES)]


class RtpSender:
    """Decides the packet of each 20 ms slot: continuous numbering and timing for the whole call.

    Slot n carries RTP timestamp ts0 + 160 n, so a slot the pacer had to skip leaves a timestamp
    gap (real time passed) but no sequence gap (no packet is missing). Each slot carries the
    earliest queued frame that is due; frames handed over late go out one per slot, in order and
    never dropped: speech stays whole, and the delay is absorbed at the next pause.
    """

    def __init__(self) -> None:
        self.ssrc = random32()
        self.packet_count = 0
        self.octet_count = 0
        self._seq = random16()
        self._ts0 = random32()
        self._frames: list[tuple[float, int, np.ndarray]] = []  # heap by due time, then arrival order
        self._added = 0
        self._presses: deque[list[DtmfPacket]] = deque()
        self._press: tuple[int, int, deque[DtmfPacket]] | None = None  # (first slot, timestamp, packets left)
        self._talking = False  # the previous packet carried audio we were given
        self._first = True
        self._codec: AudioCodec | None = None
        self._dtmf_pt: int | None = None
        self._silence = b""

    def configure(self, codec: AudioCodec, dtmf: AudioCodec | None) -> None:
        self._codec = codec
        self._dtmf_pt = dtmf.payload_type if dtmf else None
        self._silence = CODECS[codec.name][0](np.zeros(FRAME_SAMPLES, dtype=np.float32))

    @property
    def can_send_dtmf(self) -> bool:
        return self._dtmf_pt is not None

    def timestamp(self, slot: float) -> int:
        return (self._ts0 + round(slot * FRAME_SAMPLES)) & 0xFFFFFFFF

    def queue(self, samples: np.ndarray, due_s: float) -> None:
        if samples.shape != (FRAME_SAMPLES,):
            raise ValueError(f"one frame is {FRAME_SAMPLES} samples at 8 kHz, got shape {samples.shape}")
        self._added += 1
        heapq.heappush(self._frames, (due_s, self._added, samples))

    def queue_press(self, packets: list[DtmfPacket]) -> None:
        self._presses.append(packets)

    def clear(self) -> None:
        self._frames.clear()

    def queued_s(self) -> float:
        return len(self._frames) * PTIME_S

    def packet(self, slot: int, slot_s: float, sending: bool) -> RtpPacket | None:
        """The packet for slot `slot`, which starts at `slot_s` on the call clock; None when the slot
        stays empty (not sending, or between the updates of a key press)."""
        frame = None
        if self._frames and self._frames[0][0] <= slot_s + PTIME_S / 2:  # due within this slot
            frame = heapq.heappop(self._frames)[2]
        if not sending or self._codec is None:
            self._presses.clear()
            self._press = None
            return None
        if self._press is None and self._presses and self._dtmf_pt is not None:
            self._press = (slot, self.timestamp(slot), deque(self._presses.popleft()))
        if self._press is not None:  # a key press replaces the audio while it lasts
            return self._press_packet(slot)
        marker = self._first or (frame is not None and not self._talking)
        self._talking = frame is not None
        payload = CODECS[self._codec.name][0](frame) if frame is not None else self._silence
        return self._emit(self._codec.payload_type, marker, self.timestamp(slot), payload)

    def _press_packet(self, slot: int) -> RtpPacket | None:
        assert self._press is not None and self._dtmf_pt is not None
        first_slot, timestamp, left = self._press
        if left[0].offset > (slot - first_slot) * FRAME_SAMPLES:
            return None
        marker, _, payload = left.popleft()
        if not left:
            self._press = None
            self._talking = False  # marker on the audio after it
        return self._emit(self._dtmf_pt, marker, timestamp, payload)

    def _emit(self, payload_type: int, marker: bool, timestamp: int, payload: bytes) -> RtpPacket:
        packet = RtpPacket(payload_type=payload_type, marker=int(marker), sequence_number=self._seq,
                           timestamp=timestamp, ssrc=self.ssrc, payload=payload)
        self._seq = (self._seq + 1) & 0xFFFF
        self._first = False
        self.packet_count += 1
        self.octet_count += len(payload)
        return packet


def _host_key(host: str) -> str:
    """An address as comparable text: IPv6 compressed, IPv4-mapped IPv6 as IPv4."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host.lower()  # a host name in c=: it cannot match a packet's source
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _is_ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False


def _can_send_to(host: str, port: int) -> bool:
    """Not to port 0 (stream disabled) nor to 0.0.0.0 (RFC 2543 hold)."""
    if port == 0:
        return False
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.handler: Callable[[bytes, tuple], None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.handler is not None:
            self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error: %s", exc)  # ICMP unreachable for a remote not listening yet

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _bind(loop: asyncio.AbstractEventLoop, host: str, port: int) -> tuple[asyncio.DatagramTransport, _Socket]:
    return await loop.create_datagram_endpoint(_Socket, local_addr=(host, port))  # type: ignore[return-value]


class RtpStream:
    """One RTP session (RTCP on port+1) for one call."""

    timeout_s: float = 30.0  # no RTP for this long while the remote sends -> receive() gives None
    rtcp_interval_s: float = 5.0

    def __init__(self, rtp: tuple[asyncio.DatagramTransport, _Socket], rtcp: tuple[asyncio.DatagramTransport, _Socket],
                 clock: Callable[[], float], latch: bool = False):
        """Use `await RtpStream.open(...)`."""
        self._rtp, self._rtp_socket = rtp
        self._rtcp, self._rtcp_socket = rtcp
        self._rtp_socket.handler = self._on_rtp
        self._rtcp_socket.handler = self._on_rtcp
        self.local_port: int = self._rtp.get_extra_info("sockname")[1]
        self._ipv6 = self._rtp.get_extra_info("socket").family == socket.AF_INET6
        self.latch = latch
        self.stats = RtpStats()
        self.timed_out = False
        self._clock = clock
        self._receiver = RtpReceiver(self.stats)
        self._sender = RtpSender()
        self._cname = f"{secrets.token_hex(8)}@voiceagent"
        self._media: NegotiatedMedia | None = None
        self._remote: tuple[str, int] | None = None  # where RTP goes: negotiated, or latched
        self._rtcp_remote: tuple[str, int] | None = None
        self._latched = False
        self._rtcp_latched = False
        self._last_rx = 0.0
        self._out: deque[ReceivedItem] = deque()
        self._wakeup = asyncio.Event()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task] = []
        self._slot = 0
        self._anchor: tuple[float, int] | None = None  # (clock time, slot) the pacer's schedule counts from
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, host: str, port_range: tuple[int, int] = (10000, 20000),
                   clock: Callable[[], float] = time.monotonic, latch: bool = False) -> RtpStream:
        """Bind an even RTP port in `port_range` (inclusive) and the odd one above it for RTCP,
        trying other pairs while they are taken. `latch`: symmetric RTP for callers behind NAT (the
        first valid packet from the negotiated host, whatever its port, fixes where we send).
        Raises OSError when no pair is free."""
        loop = asyncio.get_running_loop()
        low, high = port_range
        pairs = range(low + (low % 2), high, 2)
        for port in random.sample(pairs, min(len(pairs), 64)):
            try:
                rtp = await _bind(loop, host, port)
            except OSError:
                continue
            try:
                rtcp = await _bind(loop, host, port + 1)
            except OSError:
                rtp[0].close()
                await rtp[1].closed
                continue
            return cls(rtp, rtcp, clock, latch)
        raise OSError(errno.EADDRINUSE, f"no free RTP/RTCP port pair in {low}-{high} on {host}")

    # -- the call's clock ---------------------------------------------------------------------
    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        """Move the stream onto another timeline (the call's own clock, once the call has one)."""
        self._clock = clock
        self._anchor = None
        now = clock()
        self._receiver.reset_timeline(now)
        self._last_rx = now

    # -- control ------------------------------------------------------------------------------
    def start(self, media: NegotiatedMedia) -> None:
        """Begin sending and receiving, or follow a re-INVITE: new remote address, codec or
        direction. Numbering and timing carry on; latching starts over."""
        if self._closed:
            raise RuntimeError("RTP stream is closed")
        self._media = media
        self._remote = (_host_key(media.remote_address), media.remote_port)
        self._rtcp_remote = (self._remote[0], media.remote_rtcp_port or media.remote_port + 1)
        self._latched = self._rtcp_latched = False
        self._sender.configure(media.codec, media.dtmf)
        self._receiver.configure(media.codec, media.dtmf)
        self._last_rx = self._clock()
        self._receiver.allow_new_source(self._last_rx)
        self.timed_out = False
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._pace()), loop.create_task(self._report())]

    @property
    def codec_name(self) -> str | None:
        return self._media.codec.name if self._media is not None else None

    def stats_dict(self) -> dict:
        return dataclasses.asdict(self.stats)

    def silent_too_long(self) -> bool:
        """The RTP timeout has struck (whether or not anyone is reading): the far end is gone."""
        remaining = self._timeout_remaining()
        if remaining is not None and remaining <= 0:
            self.timed_out = True
            self._wakeup.set()
        return self.timed_out

    def send(self, samples: np.ndarray, due_s: float) -> None:
        """Queue one frame (float32, 8 kHz, 160 samples) to be heard at `due_s` on the call clock."""
        self._sender.queue(samples, due_s)

    def clear_output(self) -> None:
        """Drop the queued frames (barge-in)."""
        self._sender.clear()

    def queued_s(self) -> float:
        """Seconds of audio queued and not sent yet."""
        return self._sender.queued_s()

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue a key press as RFC 4733 events (after any press still going out). Without a
        negotiated telephone-event the press cannot be sent: it is dropped with a warning.
        ValueError for a key that is not 0-9 * # A-D."""
        packets = dtmf_packets(digit, duration_ms)
        if not self._sender.can_send_dtmf:
            log.warning("DTMF %r not sent: the remote did not negotiate telephone-event", digit)
            return
        self._sender.queue_press(packets)

    async def receive(self) -> ReceivedItem | None:
        """The next 20 ms frame (8 kHz, start_s from its RTP timestamp) or key press. Packets lost
        for good are simply absent. None once the stream is closed or the RTP timeout struck."""
        while True:
            if self._closed or self.timed_out:
                return None
            if self._out:
                return self._out.popleft()
            self._wakeup.clear()
            remaining = self._timeout_remaining()
            if remaining is not None and remaining <= 0:
                self.timed_out = True
                continue
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                pass  # checked at the top

    async def close(self) -> None:
        """RTCP BYE, sockets closed (their ports free again when this returns), tasks ended;
        receive() returns None at once. Every call, concurrent ones too, returns once it is done."""
        if self._closing is None:
            self._closed = True
            self._wakeup.set()
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)  # a caller given up on must not leave the ports open

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._media is not None:
            self._send_rtcp([RtcpByePacket(sources=[self._sender.ssrc])])
        for transport in (self._rtp, self._rtcp):
            transport.close()
        await asyncio.gather(self._rtp_socket.closed, self._rtcp_socket.closed)

    # -- receiving ----------------------------------------------------------------------------
    def _timeout_remaining(self) -> float | None:
        """Seconds left before the RTP timeout; None while steady RTP is not expected: not started,
        we do not receive, or the remote is not sendrecv (a remote holding us with sendonly may
        play music, or send nothing at all)."""
        media = self._media
        if media is None or media.remote_direction != "sendrecv" or media.local_direction in ("sendonly", "inactive"):
            return None
        return self._last_rx + self.timeout_s - self._clock()

    def _source_ok(self, addr: tuple, any_port: bool) -> bool:
        """From the remote host, and from its RTP port unless `any_port` or still latching."""
        if self._remote is None or _host_key(addr[0]) != self._remote[0]:
            return False
        return any_port or addr[1] == self._remote[1] or (self.latch and not self._latched)

    def _on_rtp(self, data: bytes, addr: tuple) -> None:
        if is_rtcp(data):  # rtcp-mux (RFC 5761): some peers send RTCP on the RTP port
            self._on_rtcp(data, addr)
            return
        if not self._source_ok(addr, any_port=False):
            self.stats.wrong_source += 1
            return
        now = self._clock()
        if not self._receiver.feed(data, now):
            return
        self._last_rx = now
        if self.latch and not self._latched:
            self._latched = True
            self._remote = (_host_key(addr[0]), addr[1])
            if not self._rtcp_latched:
                self._rtcp_remote = (self._remote[0], addr[1] + 1)
        self._deliver(now)

    def _deliver(self, now: float) -> None:
        items = self._receiver.pop(now)
        if items:
            self._out.extend(items)
            self._wakeup.set()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        deadline = self._receiver.next_deadline()
        if deadline is not None and not self._closed:
            self._flush_timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline - now), lambda: self._deliver(self._clock()))

    def _on_rtcp(self, data: bytes, addr: tuple) -> None:
        # Any port of the remote host: RTCP ports are the ones NATs and PBXs rewrite most.
        if not self._source_ok(addr, any_port=True):
            self.stats.wrong_source += 1
            return
        try:
            packets = RtcpPacket.parse(data)
        except (ValueError, struct.error):
            self.stats.bad_packets += 1
            return
        self.stats.rtcp_in += 1
        if self.latch and not self._rtcp_latched:  # symmetric RTCP (RFC 4961)
            self._rtcp_latched = True
            self._rtcp_remote = (_host_key(addr[0]), addr[1])
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == self._receiver.remote_ssrc:
                self._receiver.on_sender_report(packet.sender_info.ntp_timestamp, self._clock())

    # -- sending ------------------------------------------------------------------------------
    def _sending(self) -> bool:
        media = self._media
        return (media is not None and self._remote is not None and media.local_direction in ("sendrecv", "sendonly")
                and _can_send_to(*self._remote))

    def _sendto(self, transport: asyncio.DatagramTransport, data: bytes, dest: tuple[str, int]) -> None:
        host = dest[0]
        if self._ipv6 and _is_ipv4(host):
            host = f"::ffff:{host}"  # an IPv4 peer from a dual-stack socket
        transport.sendto(data, (host, dest[1]))

    async def _pace(self) -> None:
        """One packet every 20 ms on a fixed schedule: slot n is due at anchor + 20 ms * n, so
        timing errors never add up; when the loop was late by whole slots, they are skipped."""
        while True:
            if self._anchor is None:
                self._anchor = (self._clock(), self._slot)
            anchor_s, anchor_slot = self._anchor
            due = anchor_s + (self._slot - anchor_slot) * PTIME_S
            now = self._clock()
            if now < due - 0.001:
                await asyncio.sleep(due - now)
                continue
            missed = int((now - due) / PTIME_S)
            self._slot += missed
            due += missed * PTIME_S
            sending = self._sending()
            packet = self._sender.packet(self._slot, due, sending)
            if packet is not None and self._remote is not None:
                self._sendto(self._rtp, packet.serialize(), self._remote)
                self.stats.packets_out += 1
                self.stats.bytes_out += len(packet.payload)
            self._slot += 1

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.rtcp_interval_s)
            self._send_rtcp([])

    def _send_rtcp(self, extra: list[AnyRtcpPacket]) -> None:
        """A compound RTCP packet (RFC 3550 6.1): SR while we send (RR otherwise) with our report
        on the remote source, our CNAME, then `extra`."""
        if self._rtcp_remote is None or not _can_send_to(*self._rtcp_remote):
            return
        now = self._clock()
        reports = [block] if (block := self._receiver.report_block(now)) is not None else []
        first: AnyRtcpPacket
        if self._sending() and self._sender.packet_count:
            slot = self._slot
            if self._anchor is not None:
                slot = self._anchor[1] + (now - self._anchor[0]) / PTIME_S  # the RTP time of `now`
            info = RtcpSenderInfo(ntp_timestamp=current_ntp_time(), rtp_timestamp=self._sender.timestamp(slot),
                                  packet_count=self._sender.packet_count & 0xFFFFFFFF,
                                  octet_count=self._sender.octet_count & 0xFFFFFFFF)
            first = RtcpSrPacket(ssrc=self._sender.ssrc, sender_info=info, reports=reports)
        else:
            first = RtcpRrPacket(ssrc=self._sender.ssrc, reports=reports)
        sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=self._sender.ssrc,
                                                     items=[(RTCP_SDES_CNAME, self._cname.encode())])])
        data = b"".join(bytes(p) for p in [first, sdes, *extra])
        self._sendto(self._rtcp, data, self._rtcp_remote)
        self.stats.rtcp_out += 1
