"""Audio between aiortc and the engine: the browser's decoded frames (Opus at 48 kHz stereo, or
G.711 at 8 kHz) to mono float at the engine's rate, and the agent's audio as a paced outgoing track.

aiortc pulls an outgoing track (`recv()` once per frame, and sends what it returns at once), so the
track itself keeps the 20 ms pace, like a sound card: it hands out the agent's queued audio, or
silence when there is none. aiortc's encoders resample from our rate to the codec's (48 kHz for
Opus), so the agent's audio is resampled once, inside the codec."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Callable

import av
import numpy as np
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony.audio import StreamResampler, float_to_pcm16, pcm16_to_float
from telephony.rtp.stream import TimestampMapper

RATE = 16000  # the engine's rate: what the leg receives and sends
FRAME = RATE // 50  # 20 ms
_SILENCE = np.zeros(FRAME, dtype="<i2")


def hand_over_without_prefetch(receiver) -> bool:
    """Make aiortc's audio receiver pass each packet on as soon as the next one shows it complete.

    aiortc's audio jitter buffer holds 4 packets before it lets the first go (prefetch=4): 80 ms
    added to everything the caller says, measured in the page. That smooths playout for a listener;
    the engine is not one (it reads the frames as data, and timing jitter does it no harm), and the
    buffer waits for a missing packet whatever the prefetch, so reordering is handled the same with
    prefetch 1 (20 ms: a packet is known complete when the next timestamp arrives). aiortc keeps the
    buffer private: where its layout differs (another version), the receiver is left as it is."""
    name = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, name, None)
    if not isinstance(current, JitterBuffer):
        return False
    setattr(receiver, name, JitterBuffer(capacity=current.capacity, prefetch=1))
    return True


def to_mono(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as mono float32 in [-1, 1] at the frame's own rate."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if data.dtype != np.int16:
        raise ValueError(f"unexpected sample format {frame.format.name}")
    # planar: (channels, samples); packed: (1, samples * channels), interleaved
    samples = pcm16_to_float(data if frame.format.is_planar else data.reshape(-1, channels).T)
    return samples.mean(axis=0) if channels > 1 else samples[0]


class InboundAudio:
    """Decoded browser frames to 16 kHz mono, without clicks at frame borders. The rate may change
    mid-call (a renegotiated codec): the resampler follows it."""

    def __init__(self):
        self._rate = 0
        self._resampler: StreamResampler | None = None

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        if frame.sample_rate != self._rate:
            self._rate = frame.sample_rate
            self._resampler = StreamResampler(self._rate, RATE)
        return self._resampler.process(to_mono(frame))


class InboundTimeline:
    """Where each piece of the caller's converted audio starts on the call clock: from the frames'
    RTP timestamps (when the browser sent them), not from when they arrived.

    Arrival jitters here (aiortc's decoder thread, an event loop shared with other calls: gaps of
    280 ms seen with Chromium on the same cores). Stamped by arrival, the engine took frames that
    came early for duplicates and dropped them, and frames that came late for holes and filled
    them with silence: in every browser call measured, ~7% of the caller's frames lost and 2 s of
    silence put in, which Whisper then misheard. Converted audio is contiguous, so each piece
    starts where the last ended; only a jump in the timestamps (packets lost) or a restarted source
    moves it."""

    def __init__(self):
        self._mapper: TimestampMapper | None = None
        self._clock_rate = 0
        self._in_end: float | None = None  # where the frames so far end
        self._out_next: float | None = None  # where the next converted audio starts

    def place(self, frame: av.AudioFrame, converted: int, arrived_s: float) -> float:
        """The start on the call clock of the `converted` samples (at RATE) made from `frame`,
        which arrived, whole, at `arrived_s`."""
        duration = frame.samples / frame.sample_rate
        start = arrived_s - duration
        if frame.pts is not None and frame.time_base:
            clock_rate = round(1 / frame.time_base)
            if self._mapper is None or clock_rate != self._clock_rate:
                self._mapper, self._clock_rate = TimestampMapper(clock_rate), clock_rate
            start = self._mapper.map(int(frame.pts), start)
        if self._out_next is None or self._in_end is None:
            self._out_next = start
        else:
            jump = start - self._in_end
            if jump > 0.005:  # packets lost: the engine fills the hole with silence
                self._out_next += jump
            elif jump < -0.5 * duration:  # a restarted source (the mapping was re-based)
                self._out_next = start
        self._in_end = start + duration
        placed = self._out_next
        self._out_next += converted / RATE
        return placed


class FramePacer:
    """The 20 ms pace of an outgoing track aiortc pulls: `next_pts()` waits until the next frame is
    due (like a sound card) and says its timestamp in samples."""

    def __init__(self, rate: int = RATE, frame: int = FRAME):
        self.rate, self.frame = rate, frame
        self._start: float | None = None
        self._pts = 0

    async def next_pts(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += self.frame
            due = self._start + self._pts / self.rate
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.2:  # the loop was stalled: start a new pace rather than burst to catch up
                self._start, self._pts = now, 0
        return self._pts


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice to the browser: queued 16 kHz PCM out every 20 ms, silence in between.

    `on_playing(True/False)` is called when the agent starts and stops being heard, which the page
    shows as "speaking" / "listening"."""

    kind = "audio"

    def __init__(self, on_playing: Callable[[bool], None] | None = None):
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._pace = FramePacer()
        self._pts = 0
        self._playing = False
        self._quiet = 15
        self.on_playing = on_playing
        self.frames_sent = 0
        self.frames_spoken = 0

    def push(self, samples: np.ndarray) -> None:
        """Queue agent audio (float32 at 16 kHz), cut into 20 ms frames; the last is zero-padded."""
        pcm = float_to_pcm16(samples)
        for i in range(0, len(pcm), FRAME):
            chunk = pcm[i:i + FRAME]
            if len(chunk) < FRAME:
                chunk = np.pad(chunk, (0, FRAME - len(chunk)))
            self._queue.append(chunk)

    def clear(self) -> None:
        self._queue.clear()

    def queued_s(self) -> float:
        return len(self._queue) * FRAME / RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._pts = await self._pace.next_pts()
        chunk = self._queue.popleft() if self._queue else _SILENCE
        # a gap between two sentences is still speaking; 300 ms of nothing is listening again
        self._quiet = 0 if chunk is not _SILENCE else self._quiet + 1
        self._set_playing(self._quiet < 15)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.frames_sent += 1
        self.frames_spoken += chunk is not _SILENCE
        return frame

    def _set_playing(self, playing: bool) -> None:
        if playing != self._playing:
            self._playing = playing
            if self.on_playing is not None:
                self.on_playing(playing)
